"""The thresholding baseline: recovers blobs, handles polarity, runs through the batch CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from nanoseg.baselines import ThresholdSegmenter
from nanoseg.cli import app
from nanoseg.errors import InvalidDataError, NanosegError
from nanoseg.io import write_mrc
from nanoseg.metrics import confusion, scores

runner = CliRunner()


def _blobs(seed: int = 0, shape=(256, 320)) -> tuple[np.ndarray, np.ndarray]:
    """Dark discs on a tilted, noisy background; returns (image, truth)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    truth = np.zeros(shape, bool)
    for y, x, r in [(60, 60, 14), (150, 200, 20), (200, 80, 10), (70, 250, 16)]:
        truth |= (yy - y) ** 2 + (xx - x) ** 2 <= r**2
    background = 1000 + 1.5 * xx  # uneven illumination: the right side is 50 % brighter
    image = rng.poisson(background * (1 - 0.25 * truth)).astype(np.float32)
    return image, truth


@pytest.mark.parametrize("method", ["otsu", "li", "local"])
def test_threshold_recovers_blobs(method: str) -> None:
    image, truth = _blobs()
    result = ThresholdSegmenter(method, sigma=2.0, background=40)(image, pixel_size=0.5)
    assert scores(confusion(result.mask, truth))["dice"] > 0.9
    assert len(result.particles) == 4
    assert result.probability.min() >= 0 and result.probability.max() <= 1


def test_polarity_bright_particles() -> None:
    image, truth = _blobs(1)
    inverted = image.max() - image
    dark = ThresholdSegmenter(sigma=2.0, background=40, polarity="bright")(inverted, 0.5)
    assert scores(confusion(dark.mask, truth))["dice"] > 0.9


def test_threshold_rejects_bad_options_and_images() -> None:
    with pytest.raises(NanosegError, match="--method"):
        ThresholdSegmenter("triangle")
    with pytest.raises(NanosegError, match="--sigma"):
        ThresholdSegmenter(sigma=0)
    with pytest.raises(InvalidDataError, match="flat"):
        ThresholdSegmenter(sigma=2.0)(np.ones((64, 64), np.float32), 0.5)
    with pytest.raises(InvalidDataError, match="constant"):
        ThresholdSegmenter(sigma="auto")(np.ones((64, 64), np.float32), 0.5)


def test_threshold_sigma_auto_recovers_blobs() -> None:
    image, truth = _blobs(3)
    result = ThresholdSegmenter(sigma="auto")(image, pixel_size=0.5)
    assert scores(confusion(result.mask, truth))["dice"] > 0.85
    assert len(result.particles) == 4
    # The blobs are 20-40 px wide: the estimate that set sigma is reported.
    assert 13 < result.scale_estimate_px < 60
    assert result.scale_method == "LoG scale space"


def test_threshold_cli_writes_segment_outputs(tmp_path: Path) -> None:
    image, _ = _blobs(2)
    (tmp_path / "in").mkdir()
    write_mrc(tmp_path / "in" / "blobs.mrc", image.astype(np.int16), 0.5)
    result = runner.invoke(
        app, ["threshold", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--sigma", "2"]
    )
    assert result.exit_code == 0, result.output
    for suffix in ("_mask.png", "_prob.tif", "_overlay.png", "_particles.csv"):
        assert (tmp_path / "out" / f"blobs{suffix}").is_file()
    table = pd.read_csv(tmp_path / "out" / "blobs_particles.csv")
    # The 20 px disc at 0.5 nm/px is 20 nm across.
    assert table["equivalent_diameter_nm"].max() == pytest.approx(20, rel=0.1)
    bad = runner.invoke(app, ["threshold", str(tmp_path / "in"), "--out", "x", "--method", "no"])
    assert bad.exit_code == 2 and "--method" in bad.output
