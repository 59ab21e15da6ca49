"""Bragg-peak filtering: finds lattice in noise, nothing in noise alone, runs as a batch command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from nanoseg.bragg import BraggSegmenter, bragg_filter, bragg_map, evaluate_bragg
from nanoseg.cli import app
from nanoseg.dataset import build_dataset
from nanoseg.errors import InvalidDataError
from nanoseg.io import write_mask, write_mrc
from nanoseg.metrics import confusion, scores
from nanoseg.segment import SegmentResult

runner = CliRunner()


def _lattice(
    shape: tuple[int, int] = (256, 320),
    discs: tuple[tuple[int, int, int, float, float], ...] = ((120, 180, 60, 6.0, 0.3),),
    amplitude: float = 0.5,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Discs of two crossed fringe sets (row, col, radius, period px, angle rad) in Gaussian
    noise of standard deviation 1 on a level of 100; returns (image, truth)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = 100 + rng.normal(0, 1, shape)
    truth = np.zeros(shape, bool)
    for row, col, radius, period, angle in discs:
        disc = (yy - row) ** 2 + (xx - col) ** 2 <= radius**2
        fringes = sum(
            np.cos(2 * np.pi * (np.cos(a) * xx + np.sin(a) * yy) / period)
            for a in (angle, angle + 1.1)
        )
        image += amplitude * fringes * disc
        truth |= disc
    return image.astype(np.float32), truth


def _dice(mask: np.ndarray, truth: np.ndarray) -> float:
    return scores(confusion(mask, truth))["dice"]


@pytest.mark.parametrize("pixel_size", [None, 0.04])
def test_finds_a_lattice_disc_in_noise(pixel_size: float | None) -> None:
    image, truth = _lattice()
    probability, mask = bragg_map(image, pixel_size)
    assert probability.dtype == np.float32 and probability.shape == image.shape
    assert 0 <= probability.min() and probability.max() < 1
    assert mask.dtype == bool
    assert _dice(mask, truth) > 0.8
    # The fringes' period (6 px) is what the smoothing is tied to.
    assert bragg_filter(image, pixel_size).period_px == pytest.approx(6, rel=0.05)


def test_windows_find_particles_with_different_lattices() -> None:
    """Two particles with different periods and orientations far apart in a large image."""
    image, truth = _lattice(
        (600, 700), ((150, 160, 70, 5.0, 0.2), (430, 520, 90, 8.0, 1.0)), amplitude=0.4, seed=1
    )
    found = bragg_filter(image)
    assert found.windows > 1 and found.windows_with_peaks >= 2
    assert _dice(found.mask, truth) > 0.8


@pytest.mark.parametrize("seed", range(3))
def test_noise_alone_gives_an_empty_mask(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    yy, xx = np.mgrid[:384, :384]
    # Shot noise on uneven illumination: no lattice anywhere.
    image = rng.poisson(200 + 0.3 * xx + 0.1 * yy).astype(np.float32)
    found = bragg_filter(image)
    probability, mask = bragg_map(image)
    assert np.count_nonzero(mask) <= 0.001 * mask.size
    assert not found.found and np.all(probability == 0)


def test_segmenter_returns_a_segment_result() -> None:
    image, truth = _lattice()
    result = BraggSegmenter()(image, pixel_size=0.04)
    assert isinstance(result, SegmentResult)
    assert result.threshold == 0.5 and result.pixel_size == 0.04
    assert len(result.particles) == 1
    # A disc of radius 60 px at 0.04 nm/px is 4.8 nm across.
    assert result.particles["equivalent_diameter_nm"].iloc[0] == pytest.approx(4.8, rel=0.1)
    assert _dice(result.mask, truth) > 0.8
    assert BraggSegmenter().settings["baseline"] == "bragg"


def test_bad_input_is_an_expected_error() -> None:
    with pytest.raises(InvalidDataError, match="2-D"):
        bragg_filter(np.zeros((4, 64, 64), np.float32))
    with pytest.raises(InvalidDataError, match="too small"):
        bragg_filter(np.zeros((16, 64), np.float32))
    noisy = np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32)
    noisy[3, 3] = np.nan
    with pytest.raises(InvalidDataError, match="NaN"):
        bragg_filter(noisy)
    with pytest.raises(InvalidDataError, match="lattice spacing"):
        bragg_filter(np.ones((64, 64), np.float32), pixel_size=0.5)


def test_evaluate_bragg_scores_data_set_tiles(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for i in range(4):
        image, truth = _lattice((128, 128), ((64, 64, 30 + 3 * i, 5.0, 0.3 * i),), seed=i)
        write_mrc(tmp_path / "images" / f"m{i}.mrc", image, 0.04)
        write_mask(tmp_path / "labels" / f"m{i}.png", truth)
    data = tmp_path / "d.h5"
    build_dataset(tmp_path / "images", tmp_path / "labels", data, tile=128,
                  normalize_mode="percentile", split=(0.5, 0.0, 0.5))  # fmt: skip
    metrics, probability = evaluate_bragg(data, "test", images=tmp_path / "images")
    assert metrics["name"] == "bragg" and metrics["n_tiles"] == 2
    assert probability.shape == (2, 128, 128)
    assert metrics["overall"]["dice"] > 0.8
    # The data set's own tiles are median filtered, which blurs 5 px fringes: worse, but runs.
    median_filtered, _ = evaluate_bragg(data, "test")
    assert median_filtered["n_tiles"] == 2


def test_bragg_cli_writes_the_segment_outputs(tmp_path: Path) -> None:
    image, _ = _lattice()
    (tmp_path / "in").mkdir()
    write_mrc(tmp_path / "in" / "lattice.mrc", image, 0.04)
    out = tmp_path / "out"
    result = runner.invoke(app, ["bragg", str(tmp_path / "in"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    for suffix in ("_mask.png", "_prob.tif", "_overlay.png", "_particles.csv"):
        assert (out / f"lattice{suffix}").is_file()
    for name in ("summary.csv", "size_histogram.png", "log/segment.log"):
        assert (out / name).is_file()
    table = pd.read_csv(out / "lattice_particles.csv")
    assert table["equivalent_diameter_nm"].tolist() == pytest.approx([4.8], rel=0.1)
    summary = pd.read_csv(out / "summary.csv")
    assert summary["status"].tolist() == ["ok"] and summary["n_particles"].tolist() == [1]
    bad = runner.invoke(app, ["bragg", str(tmp_path / "in"), "--out", str(out), "--min-area", "-1"])
    assert bad.exit_code == 2 and "--min-area" in bad.output
