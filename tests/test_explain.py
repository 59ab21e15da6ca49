"""Activation maps: one PNG per requested layer plus the probability map; clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from nanoseg.cli import app
from nanoseg.errors import NanosegError
from nanoseg.explain import explain
from nanoseg.io import write_mrc
from nanoseg.model import paper_unet, save_model

runner = CliRunner()
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _micrograph(shape: tuple[int, int] = (160, 200), seed: int = 0) -> np.ndarray:
    """Dark discs with fringes on noise, like a small HRTEM field."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    disc = (yy - 70) ** 2 + (xx - 90) ** 2 <= 30**2
    image = 1000 + 30 * rng.normal(size=shape) - disc * (200 + 80 * np.cos(xx * 1.3 + yy * 0.4))
    return image.astype(np.float32)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    card = {"threshold": 0.5, "preprocessing": {"median": 3, "normalize": "percentile"}}
    return save_model(tmp_path_factory.mktemp("model") / "m", paper_unet(), card)


def test_one_png_per_layer_and_the_probability(model_dir: Path, tmp_path: Path) -> None:
    layers = ["encoder.0.conv", "decoder.0.concat", "concatenate_2"]  # a Keras name too
    result = explain(model_dir, _micrograph(), tmp_path / "out", layers=layers, pixel_size=0.04)
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == sorted(
        ["encoder.0.conv.png", "decoder.0.concat.png", "concatenate_2.png", "probability.png"]
    )
    for path in result["files"].values():
        assert Path(path).read_bytes()[:8] == PNG_SIGNATURE
    # 160x200 is cut to multiples of 16: 160x192; the first concatenation is at 1/8 size.
    assert result["crop"] == (0, 4, 160, 192) and result["cropped"]
    assert result["shapes"]["encoder.0.conv"] == (4, 160, 192)
    assert result["shapes"]["decoder.0.concat"] == (64, 20, 24)
    assert result["shapes"]["concatenate_2"] == (48, 40, 48)  # 16 skip + 32 up


def test_large_images_are_explained_on_a_centred_crop(model_dir: Path, tmp_path: Path) -> None:
    result = explain("builtin", _micrograph((300, 260)), tmp_path, pixel_size=0.03, crop=128)
    assert result["scale_factor"] == 1.0
    assert result["crop"] == (86, 66, 128, 128)
    assert "centred 128x128 px crop" in result["where"]
    assert set(result["files"]) == {"encoder.0.conv", "decoder.0.concat", "probability"}


def test_unknown_layer_lists_the_layers(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(NanosegError, match=r"unknown layer 'decoder\.9\.concat'; layers: encoder"):
        explain(model_dir, _micrograph(), tmp_path, layers=["decoder.9.concat"])
    assert not list(tmp_path.iterdir())  # checked before any work


def test_explain_cli(model_dir: Path, tmp_path: Path) -> None:
    image = write_mrc(tmp_path / "m.mrc", _micrograph(), 0.04)
    out = tmp_path / "out"
    result = runner.invoke(app, ["explain", "builtin", str(image), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "decoder.0.concat.png",
        "encoder.0.conv.png",
        "probability.png",
    ]
    assert "encoder.0.conv (4 maps of 192x160 px)" in result.stdout
    chosen = runner.invoke(
        app, ["explain", str(model_dir), str(image), "--out", str(tmp_path / "two"),
              "--layers", "centre.1.act,final"],
    )  # fmt: skip
    assert chosen.exit_code == 0, chosen.output
    assert {p.name for p in (tmp_path / "two").iterdir()} == {
        "centre.1.act.png",
        "final.png",
        "probability.png",
    }
    bad = runner.invoke(
        app, ["explain", "builtin", str(image), "--out", str(out), "--layers", "nope"]
    )
    assert bad.exit_code == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: unknown layer 'nope'; layers: encoder.0.conv, ")
    missing = runner.invoke(app, ["explain", "builtin", str(tmp_path / "x.mrc"), "--out", "o"])
    assert missing.exit_code == 2 and missing.stderr.startswith("error: ")
