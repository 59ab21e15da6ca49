"""Training: the loss falls, a killed run resumes to the same weights, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic import make_set as _make_set
from synthetic import make_training_data

from nanoseg.dataset import DatasetError, build_dataset
from nanoseg.model import load_model
from nanoseg.train import TrainConfig, TrainError, augment, make_config, train

FAST = {
    "epochs": 3,
    "samples_per_epoch": 16,
    "batch_size": 4,
    "crop": 32,
    "lr": 3e-3,
    "patience": 3,
}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_training_data(tmp_path_factory.mktemp("train"))


def test_loss_falls_and_outputs_are_written(data: Path, tmp_path: Path):
    rows = []
    card = train(data, tmp_path / "run", make_config("default", **FAST), progress=rows.append)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    run = tmp_path / "run"
    for name in ("config.json", "log.csv", "loss.png", "history.json", "state.pt"):
        assert (run / name).exists(), name
    _, stored = load_model(run / "best")
    assert stored == card
    assert 0 < card["threshold"] < 1
    assert card["threshold_split"] == "validation"
    assert card["training"]["data_sha256"] and card["training"]["train_tiles"] > 0
    assert card["preprocessing"]["normalize"] == "image-max"
    assert card["pixel_size_nm"] == pytest.approx(0.1)
    assert set(card["metrics"]["validation"]) >= {"pixel_accuracy", "dice"}


def test_killed_run_resumes_to_the_same_weights(data: Path, tmp_path: Path):
    config = make_config("default", **FAST)
    train(data, tmp_path / "whole", config)
    with pytest.raises(KeyboardInterrupt):
        train(data, tmp_path / "killed", config, stop_after=1)
    assert json.loads((tmp_path / "killed" / "history.json").read_text())[-1]["epoch"] == 1
    train(data, tmp_path / "killed", resume=True)
    for name in ("best", "last"):
        whole = (tmp_path / "whole" / name / "model.safetensors").read_bytes()
        resumed = (tmp_path / "killed" / name / "model.safetensors").read_bytes()
        assert whole == resumed, name
    assert (tmp_path / "whole/log.csv").read_text().count("\n") == 4


def test_paper_preset_is_the_released_recipe():
    paper = make_config("paper")
    assert (paper.epochs, paper.samples_per_epoch, paper.batch_size, paper.lr) == (
        10,
        1000,
        20,
        1e-4,
    )
    assert (paper.patience, paper.min_delta, paper.loss, paper.crop) == (2, 1e-3, "ce", None)
    assert paper.rotate and paper.mirror and not paper.intensity and paper.scale is None


def test_augmentation_keeps_image_and_label_together():
    rng = np.random.default_rng(0)
    labels = np.zeros((4, 64, 64), np.uint8)
    for i in range(4):
        r, c = rng.integers(10, 54, 2)
        labels[i, r - 6 : r + 6, c - 9 : c + 9] = 1
    images = labels.astype(np.float32)
    config = TrainConfig(crop=48, intensity=False)
    x, y = augment(images, labels, config, np.random.default_rng(1))
    assert x.shape == (4, 1, 48, 48) and y.shape == (4, 48, 48) and y.dtype == torch.int64
    agree = ((x[:, 0] > 0.5).long() == y).float().mean()
    assert agree > 0.98  # only interpolation at the outlines differs


def test_rotation_reflects_instead_of_wrapping():
    """A bright column at one edge must not appear at the opposite edge after a rotation."""
    images = np.zeros((1, 32, 32), np.float32)
    images[0, :, :3] = 1.0  # left edge bright
    labels = np.zeros((1, 32, 32), np.uint8)
    config = TrainConfig(crop=None, intensity=False, scale=None, mirror=False)
    for seed in range(20):
        x, _ = augment(images, labels, config, np.random.default_rng(seed))
        # Whatever the angle, the brightness stays a band along one side: the middle row and
        # column through the centre never see it on both ends.
        row, col = x[0, 0, 16], x[0, 0, :, 16]
        assert not (row[0] > 0.5 and row[-1] > 0.5)
        assert not (col[0] > 0.5 and col[-1] > 0.5)


def test_bad_inputs(data: Path, tmp_path: Path):
    with pytest.raises(TrainError, match="unknown preset 'fast'"):
        make_config("fast")
    with pytest.raises(TrainError, match="--epochs must be at least 1"):
        make_config("default", epochs=0)
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    with pytest.raises(TrainError, match="run folder exists"):
        train(data, tmp_path / "used", make_config("default", **FAST))
    with pytest.raises(TrainError, match="nothing to resume"):
        train(data, tmp_path / "fresh", resume=True)
    raw = _make_set(tmp_path / "raw2", n=3, shape=(64, 64))
    no_validation = tmp_path / "nv.h5"
    build_dataset(raw / "images", raw / "labels", no_validation, tile=32, split=(1.0, 0.0, 0.0))
    with pytest.raises(DatasetError, match="no validation tile"):
        train(no_validation, tmp_path / "nv", make_config("default", **FAST))


def test_fine_tuning_starts_from_the_bundled_model(data: Path, tmp_path: Path):
    from nanoseg.segment import builtin_model_path

    builtin, builtin_card = load_model(builtin_model_path())
    # A vanishing learning rate: after training, the weights are still the bundled ones.
    still = train(data, tmp_path / "still", make_config("default", **{**FAST, "epochs": 1,
                  "lr": 1e-12, "init": "builtin"}))  # fmt: skip
    model, _ = load_model(tmp_path / "still" / "best")
    for (name, a), b in zip(builtin.named_parameters(), model.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name
    assert still["training"]["init"].startswith("builtin")
    assert builtin_card["weights_sha256"] in still["training"]["init"]
    # A real fine-tuning run from there lowers the loss.
    rows = []
    train(data, tmp_path / "tuned", make_config("default", **{**FAST, "init": "builtin"}),
          progress=rows.append)  # fmt: skip
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]


def test_widths_choose_the_network_from_the_command_line(data: Path, tmp_path: Path):
    from typer.testing import CliRunner

    from nanoseg.cli import app

    args = ["train", str(data), "--epochs", "1", "--samples-per-epoch", "4", "--batch-size", "2",
            "--crop", "32", "--widths", "2,4,8"]  # fmt: skip
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "narrow")])
    assert result.exit_code == 0, result.output
    model, card = load_model(tmp_path / "narrow" / "best")
    assert card["architecture"]["widths"] == [2, 4, 8]
    assert model.config.widths == (2, 4, 8)
    for bad, message in (("2,x", "integers separated by commas"), ("4", "at least two levels")):
        result = CliRunner().invoke(app, [*args[:-1], bad, "--out", str(tmp_path / "bad")])
        assert result.exit_code != 0 and message in result.output, result.output
    with pytest.raises(TrainError, match="cannot be used with --init"):
        make_config("default", widths=(2, 4), init="builtin")
