"""Where the network runs (``--device``): the CPU always, a CUDA GPU when torch sees one.

The GPU tests run only where torch sees a CUDA device; on a CPU-only machine they are skipped
and the tests of the error a user gets there run instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic import make_training_data
from typer.testing import CliRunner

from nanoseg.cli import app
from nanoseg.demo import example_path
from nanoseg.errors import NanosegError
from nanoseg.model import load_model
from nanoseg.runtime import resolve_device
from nanoseg.segment import Segmenter
from nanoseg.train import _cross_entropy, loss_function, make_config, train

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
without_cuda = pytest.mark.skipif(CUDA, reason="this machine has a CUDA GPU")

FAST = {"epochs": 2, "samples_per_epoch": 16, "batch_size": 4, "crop": 32, "patience": 3}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_training_data(tmp_path_factory.mktemp("train"))


def test_device_names() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if CUDA else "cpu")
    for bad in ("gpu", "cpu:1", "cuda:x", "tpu"):
        with pytest.raises(NanosegError, match="--device must be auto, cpu, cuda or cuda:N"):
            resolve_device(bad)
    assert Segmenter.load(device="cpu").settings["device"] == "cpu"


@without_cuda
def test_asking_for_a_gpu_without_one_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NanosegError, match="sees no CUDA GPU"):
        Segmenter.load(device="cuda")
    result = CliRunner().invoke(
        app, ["segment", str(example_path()), "--out", str(tmp_path / "o"), "--device", "cuda"]
    )
    assert result.exit_code != 0
    assert "sees no CUDA GPU" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").glob("*_mask.png"))


def test_deterministic_cross_entropy_equals_torchs() -> None:
    """CUDA trains with this form of the loss; it must be the CPU's cross-entropy."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 2, 8, 8, generator=generator, dtype=torch.float64)
    target = (torch.rand(3, 8, 8, generator=generator) > 0.5).long()
    expected = torch.nn.functional.cross_entropy(logits, target)
    assert float(_cross_entropy(logits, target)) == pytest.approx(float(expected), rel=1e-12)


@needs_cuda
def test_gpu_segments_like_the_cpu() -> None:
    cpu = Segmenter.load(device="cpu", precision="float32")(example_path())
    gpu_segmenter = Segmenter.load(device="cuda")
    assert gpu_segmenter.settings["device"] == "cuda"
    assert gpu_segmenter.precision == "float32"
    gpu = gpu_segmenter(example_path())
    assert gpu.probability.dtype == np.float32
    assert np.abs(gpu.probability - cpu.probability).max() < 0.05
    overlap = np.logical_and(gpu.mask, cpu.mask).sum()
    assert 2 * overlap / (gpu.mask.sum() + cpu.mask.sum()) > 0.99
    assert abs(len(gpu.particles) - len(cpu.particles)) <= 1
    for tta in ("flip", "d4"):
        mirrored = Segmenter.load(device="cuda", tta=tta)(example_path())
        assert np.abs(mirrored.probability - gpu.probability).mean() < 0.02


@needs_cuda
def test_gpu_training_is_deterministic_and_recorded(data: Path, tmp_path: Path) -> None:
    config = make_config("default", **FAST)
    first = train(data, tmp_path / "a", config, device="cuda")
    train(data, tmp_path / "b", config, device="cuda")
    for name in ("best", "last"):
        a = (tmp_path / "a" / name / "model.safetensors").read_bytes()
        b = (tmp_path / "b" / name / "model.safetensors").read_bytes()
        assert a == b, name
    assert first["training"]["device"].startswith("cuda (")
    model, _ = load_model(tmp_path / "a" / "best")
    assert next(model.parameters()).device.type == "cpu"  # a model file opens anywhere
    # The CUDA loss is the CPU's cross-entropy (plus Dice) on the same numbers.
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 2, 16, 16, generator=generator)
    target = (torch.rand(2, 16, 16, generator=generator) > 0.5).long()
    on_cpu = loss_function(logits, target, "ce+dice")
    on_gpu = loss_function(logits.cuda(), target.cuda(), "ce+dice")
    assert float(on_gpu) == pytest.approx(float(on_cpu), rel=1e-5)


@needs_cuda
def test_gpu_training_resumes_and_evaluates(data: Path, tmp_path: Path) -> None:
    config = make_config("default", **FAST)
    train(data, tmp_path / "whole", config, device="cuda")
    with pytest.raises(KeyboardInterrupt):
        train(data, tmp_path / "killed", config, stop_after=1, device="cuda")
    train(data, tmp_path / "killed", resume=True, device="cuda")
    whole = (tmp_path / "whole" / "last" / "model.safetensors").read_bytes()
    assert whole == (tmp_path / "killed" / "last" / "model.safetensors").read_bytes()
    result = CliRunner().invoke(
        app,
        ["evaluate", str(tmp_path / "whole" / "best"), str(data), "--out", str(tmp_path / "e"),
         "--device", "cuda"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "e" / "metrics.json").exists()
