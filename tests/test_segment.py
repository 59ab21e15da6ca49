"""Whole-micrograph prediction, particle measurement and the segment command (files and Dask)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import typer
from scipy import ndimage
from typer.testing import CliRunner

from nanoseg.batch import BatchOptions, expand_inputs, segment_batch, unique_stems
from nanoseg.cli import app
from nanoseg.io import read_micrograph, write_mrc, write_png
from nanoseg.measure import clean_mask, measure_particles, typical_diameter
from nanoseg.model import paper_unet, save_model
from nanoseg.predict import blend_window, model_scale, predict_image
from nanoseg.segment import Segmenter

runner = CliRunner()


def _texture(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = ndimage.gaussian_filter(rng.normal(size=shape), 3).astype(np.float32)
    return image / image.std()


@pytest.fixture(scope="module")
def network() -> torch.nn.Module:
    torch.manual_seed(0)
    return paper_unet().eval()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, network: torch.nn.Module) -> Path:
    card = {
        "preprocessing": {"median": 3, "normalize": "percentile"},
        "threshold": 0.5,
        "pixel_size_range_nm": [0.1, 0.2],
    }
    return save_model(tmp_path_factory.mktemp("model") / "m", network, card)


# ------------------------------------------------------------------------------- prediction


@pytest.fixture(scope="module")
def bundled() -> tuple[torch.nn.Module, np.ndarray]:
    """The bundled (trained) network in float32 and the example micrograph, preprocessed: an
    untrained network's map is nearly flat and would hide seams."""
    from nanoseg.demo import example_path
    from nanoseg.predict import preprocess

    segmenter = Segmenter.load(precision="float32")
    image = preprocess(read_micrograph(example_path()).data, segmenter.card)
    return segmenter.model, image[:600, :760]


def test_tiles_blend_to_the_single_pass_map(bundled: tuple[torch.nn.Module, np.ndarray]) -> None:
    network, image = bundled
    whole = predict_image(network, image, tile=2048)  # one tile
    tiled = predict_image(network, image, tile=512)  # 2 x 3 tiles of 512 px
    assert tiled.shape == image.shape and tiled.dtype == np.float32
    assert np.ptp(whole) > 0.9  # particles and carbon, not a flat map
    # No seams: up to rounding, the same map as one pass over the whole micrograph.
    assert np.abs(tiled - whole).max() < 1e-4


def test_shifted_image_gives_shifted_map(bundled: tuple[torch.nn.Module, np.ndarray]) -> None:
    # Shifts by multiples of the network's pooling grid are exact.
    network, image = bundled
    grid = 2**network.config.depth
    base = predict_image(network, image, tile=512)
    shifted = predict_image(network, image[2 * grid :, 3 * grid :], tile=512)
    # Away from the borders (where the two images differ, and where each is padded up to the
    # grid), the maps agree.
    edge = network.config.tile_margin + grid
    inner = (slice(edge, -edge), slice(edge, -edge))
    assert np.abs(shifted[inner] - base[2 * grid :, 3 * grid :][inner]).max() < 1e-4


def test_tta_makes_the_map_follow_mirrors_and_turns(network: torch.nn.Module) -> None:
    image = _texture((128, 128), seed=2)

    def run(x: np.ndarray, tta: str) -> np.ndarray:
        return predict_image(network, np.ascontiguousarray(x), tile=128, overlap=16, tta=tta)

    plain = run(image, "none")
    # Without TTA the network is not mirror-equivariant; averaging over the symmetries makes it.
    assert np.abs(run(image[:, ::-1], "none")[:, ::-1] - plain).max() > 1e-3
    flip = run(image, "flip")
    assert np.allclose(run(image[:, ::-1], "flip")[:, ::-1], flip, atol=1e-5)
    assert np.allclose(run(image[::-1], "flip")[::-1], flip, atol=1e-5)
    d4 = run(image, "d4")
    assert np.allclose(run(image.T, "d4").T, d4, atol=1e-5)
    # Non-square micrographs (here smaller than a tile, so one non-square tile) get the
    # transposes too, not just the mirrors.
    wide = _texture((96, 160), seed=3)
    d4 = run(wide, "d4")
    assert np.allclose(run(np.ascontiguousarray(wide.T), "d4").T, d4, atol=1e-5)
    assert np.abs(d4 - run(wide, "flip")).max() > 1e-3


def test_small_and_odd_images(network: torch.nn.Module) -> None:
    for shape in [(20, 33), (9, 200), (130, 70)]:
        prob = predict_image(network, _texture(shape), tile=64, overlap=16)
        assert prob.shape == shape
        assert np.isfinite(prob).all() and prob.min() >= 0 and prob.max() <= 1


def test_blend_window_ramps() -> None:
    w = blend_window(64, 16, margin=8)
    assert w.shape == (64,) and w[24:40].min() == 1 and w[:8].max() == w[-8:].max() == 0
    assert np.allclose(w[8:24], w[-24:-8][::-1])
    # Two neighbours overlapping by 2 * margin + overlap sum to 1 where they overlap.
    assert np.allclose(w[-32:] + w[:32], 1)
    edge = blend_window(64, 16, margin=8, start=False)
    assert edge[:40].min() == 1 and edge[-8:].max() == 0


def test_model_scale_clamps_into_the_training_range() -> None:
    card = {"pixel_size_range_nm": [0.02, 0.05]}
    assert model_scale(card, 0.03) == (1.0, 0.03)
    factor, target = model_scale(card, 0.01)
    assert target == 0.02 and factor == pytest.approx(0.5)
    factor, target = model_scale(card, 0.2)
    assert target == 0.05 and factor == pytest.approx(4)
    assert model_scale(card, None) == (1.0, None)


# ------------------------------------------------------------------------------- measuring


def _discs(shape, centres, radii):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    mask = np.zeros(shape, bool)
    for (y, x), r in zip(centres, radii, strict=True):
        mask |= (yy - y) ** 2 + (xx - x) ** 2 <= r**2
    return mask


def test_measure_discs_in_nm() -> None:
    mask = _discs((200, 300), [(50, 60), (120, 200), (0, 150)], [20, 12, 10])
    table = measure_particles(mask, mask.astype(np.float32) * 0.9, pixel_size=0.5)
    assert len(table) == 3
    by_x = table.sort_values("centroid_x_px").reset_index(drop=True)
    assert by_x.loc[0, "equivalent_diameter_nm"] == pytest.approx(20, rel=0.03)
    assert by_x.loc[2, "equivalent_diameter_nm"] == pytest.approx(12, rel=0.05)
    assert by_x.loc[0, "centroid_x_nm"] == pytest.approx(30, abs=0.1)
    assert by_x.loc[0, "circularity"] > 0.9 and by_x.loc[0, "solidity"] > 0.95
    assert by_x.loc[0, "mean_probability"] == pytest.approx(0.9)
    assert list(by_x["touches_border"]) == [False, True, False]
    assert by_x.loc[0, "area_nm2"] == pytest.approx(by_x.loc[0, "area_px"] * 0.25)


def test_measured_shapes_match_scikit_image() -> None:
    from skimage import draw, measure

    mask = np.zeros((120, 160), bool)
    for r, c, a, b, angle in [(30, 40, 12, 5, 0.4), (80, 110, 20, 9, 2.0), (90, 30, 3, 3, 0)]:
        mask[draw.ellipse(r, c, a, b, rotation=angle, shape=mask.shape)] = True
    mask[10:12, 100:130] = True  # a thin bar
    mask[0:6, 0:9] = True  # in a corner
    probability = np.random.default_rng(0).random(mask.shape).astype(np.float32)
    table = measure_particles(mask, probability, pixel_size=1.0).set_index("id")
    labels = measure.label(mask, connectivity=2)
    assert len(table) == labels.max() == 5
    for region in measure.regionprops(labels, intensity_image=probability):
        row = table.loc[region.label]
        assert (row["centroid_y_px"], row["centroid_x_px"]) == pytest.approx(region.centroid)
        assert row["area_px"] == region.area
        assert row["equivalent_diameter_nm"] == pytest.approx(region.equivalent_diameter_area)
        circularity = min(1, 4 * np.pi * region.area / region.perimeter_crofton**2)
        assert row["circularity"] == pytest.approx(circularity)
        assert row["mean_probability"] == pytest.approx(region.intensity_mean)
        assert row["major_axis_nm"] == pytest.approx(region.axis_major_length)
        assert row["minor_axis_nm"] == pytest.approx(region.axis_minor_length)
        assert row["eccentricity"] == pytest.approx(region.eccentricity)
        # Solidity against the hull of the pixel squares, at least the filled area.
        assert region.area / region.area_convex - 0.15 < row["solidity"] <= 1
    assert table["solidity"].min() > 0.85  # convex shapes


def test_irregular_particles_measured_like_scikit_image() -> None:
    # Concave, holed, interleaved and border-touching particles: several runs per row and
    # particle, rows shared by many particles, one-pixel specks and lines.
    from scipy.spatial import ConvexHull
    from skimage import measure

    rng = np.random.default_rng(3)
    mask = ndimage.gaussian_filter(rng.normal(size=(90, 110)), 2) > 0.05
    mask[40, 5] = mask[60, 100:104] = True
    mask[61:63, 100:104] = mask[59, 99:105] = False
    probability = rng.random(mask.shape).astype(np.float32)
    table = measure_particles(mask, probability).set_index("id")
    labels = measure.label(mask, connectivity=2)
    assert len(table) == labels.max() > 20
    for region in measure.regionprops(labels, intensity_image=probability):
        row = table.loc[region.label]
        assert (row["centroid_y_px"], row["centroid_x_px"]) == pytest.approx(region.centroid)
        assert row["area_px"] == region.area
        circularity = min(1, 4 * np.pi * region.area / region.perimeter_crofton**2)
        assert row["circularity"] == pytest.approx(circularity)
        assert row["mean_probability"] == pytest.approx(region.intensity_mean, rel=1e-6)
        assert row["eccentricity"] == pytest.approx(region.eccentricity, abs=1e-9)
        ys, xs = np.nonzero(region.image)
        corners = np.concatenate(
            [np.stack([ys + dy, xs + dx], 1) for dy in (0, 1) for dx in (0, 1)]
        )
        hull = ConvexHull(corners).volume if np.ptp(ys) and np.ptp(xs) else region.area
        assert row["solidity"] == pytest.approx(min(1, region.area / hull))
        top, left, bottom, right = region.bbox
        border = top == 0 or left == 0 or bottom == mask.shape[0] or right == mask.shape[1]
        assert row["touches_border"] == border


def test_measure_without_pixel_size_and_empty_mask() -> None:
    table = measure_particles(_discs((50, 50), [(25, 25)], [8]))
    assert math.isnan(table.loc[0, "equivalent_diameter_nm"]) and table.loc[0, "area_px"] > 190
    assert len(measure_particles(np.zeros((10, 10), bool))) == 0


def test_clean_mask_matches_scikit_image() -> None:
    from skimage import morphology

    rng = np.random.default_rng(1)
    for density, area in [(0.4, 5), (0.55, 12.5), (0.7, 30)]:
        mask = rng.random((80, 90)) < density
        size = math.ceil(area)
        expected = morphology.remove_small_objects(mask, max_size=size - 1, connectivity=2)
        expected = morphology.remove_small_holes(expected, max_size=size - 1)
        np.testing.assert_array_equal(clean_mask(mask, area), expected)


def test_clean_mask_drops_specks_and_fills_pinholes() -> None:
    mask = _discs((60, 60), [(30, 30), (5, 5)], [10, 1])
    mask[30, 30] = False
    cleaned = clean_mask(mask, 20)
    assert cleaned[30, 30] and not cleaned[5, 5]


def test_clean_mask_drops_detections_far_below_the_typical_size() -> None:
    # Three particles 40 px across, a 6 px speck in the middle, a 6 px sliver at the border.
    mask = _discs((200, 200), [(50, 50), (50, 150), (150, 60), (120, 120), (198, 150)],
                  [20, 20, 20, 3, 3])  # fmt: skip
    kept = clean_mask(mask, 0, 0.2)
    assert not kept[120, 120]  # 6 px < 0.2 * 40 px: a speck
    assert kept[198, 150]  # at the border: maybe part of a particle outside the field
    assert ndimage.label(kept)[1] == 4
    assert ndimage.label(clean_mask(mask, 0, 0.1))[1] == 5  # 6 px > 0.1 * 40 px
    np.testing.assert_array_equal(clean_mask(mask, 0, 0.0), mask)


def test_single_particles_beside_a_merged_cluster_are_not_specks() -> None:
    # One cluster 160 px across (most of the area) and eight single particles 30 px across:
    # measured by area alone the typical size would be the cluster's, and 30 < 0.2 * 160.
    centres = [(100, 100)] + [(40 + 40 * (i % 2), 240 + 40 * (i // 2)) for i in range(8)]
    mask = _discs((300, 420), [*centres, (260, 60)], [80] + [15] * 8 + [2])
    kept = clean_mask(mask, 0, 0.2)
    assert ndimage.label(kept)[1] == 9  # the cluster and the singles; the 4 px speck is gone
    assert not kept[260, 60]


def test_typical_diameter_is_not_decided_by_many_specks() -> None:
    assert typical_diameter(np.array([30.0, 31.0, 32.0] + [3.0] * 50)) == 31.0
    assert typical_diameter(np.array([5.0])) == 5.0


def test_segment_drops_specks_unless_asked_not_to(model_dir: Path) -> None:
    from nanoseg.errors import NanosegError
    from nanoseg.segment import DEFAULT_MIN_RELATIVE_DIAMETER

    seg = Segmenter.load(model_dir)
    assert seg.settings["min_relative_diameter"] == DEFAULT_MIN_RELATIVE_DIAMETER
    # The command line's default is the library's.
    command = typer.main.get_command(app).commands["segment"]  # type: ignore[attr-defined]
    option = next(p for p in command.params if p.name == "min_relative_diameter")
    assert option.default == DEFAULT_MIN_RELATIVE_DIAMETER
    with pytest.raises(NanosegError, match="--min-relative-diameter"):
        Segmenter.load(model_dir, min_relative_diameter=1.5)


# ------------------------------------------------------------------------------- segmenting


def _write_micrographs(folder: Path, n: int = 3, pixel_size: float | None = 0.15) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        mask = _discs((160, 200), [(50 + 10 * i, 60), (110, 140)], [15, 12])
        rng = np.random.default_rng(i)
        image = 1000 - 400 * ndimage.gaussian_filter(mask.astype(float), 1.5)
        image = rng.poisson(image).astype(np.int16)
        path = folder / f"mic{i}.mrc"
        write_mrc(path, image, pixel_size)
        paths.append(path)
    return paths


def test_segmenter_api_on_files_and_arrays(model_dir: Path, tmp_path: Path) -> None:
    path = _write_micrographs(tmp_path, 1)[0]
    seg = Segmenter.load(model_dir, tile=128, overlap=16)
    result = seg(path)
    assert result.mask.shape == (160, 200) and result.probability.dtype == np.float32
    assert result.pixel_size == pytest.approx(0.15) and result.pixel_size_source == "file"
    assert isinstance(result.particles, pd.DataFrame)
    # 0.15 nm/px lies in the model's range: no resampling.
    assert result.scale_factor == 1
    # A pixel size below the range is resampled to 0.1 nm/px and the maps come back full size.
    small = seg(path, pixel_size=0.05)
    assert small.scale_factor == pytest.approx(0.5) and small.mask.shape == (160, 200)
    with pytest.warns(UserWarning, match="no pixel size"):
        array_result = seg(read_micrograph(path).data)
    assert array_result.pixel_size is None and array_result.pixel_size_source == "unknown"


def test_segmenter_rejects_nan_and_tiny_images(model_dir: Path) -> None:
    from nanoseg.errors import InvalidDataError

    seg = Segmenter.load(model_dir)
    image = np.ones((64, 64), np.float32)
    image[3, 3] = np.nan
    with pytest.raises(InvalidDataError, match="NaN"):
        seg(image, pixel_size=0.15)
    with pytest.raises(InvalidDataError, match="too small"):
        seg(np.ones((4, 64), np.float32), pixel_size=0.15)


def test_inputs_folders_globs_and_stems(tmp_path: Path) -> None:
    a = _write_micrographs(tmp_path / "a", 2)
    b = _write_micrographs(tmp_path / "b", 1)
    (tmp_path / "a" / "notes.txt").write_text("not a micrograph")
    found = expand_inputs([tmp_path / "a", str(tmp_path / "b" / "*.mrc"), a[0]])
    assert found == [p.resolve() for p in [*a, *b]]
    assert unique_stems(found) == ["mic0", "mic1", "mic0-2"]
    from nanoseg.errors import NanosegError

    with pytest.raises(NanosegError, match="no such file"):
        expand_inputs([tmp_path / "missing.mrc"])


def test_batch_outputs_resume_and_a_bad_file(model_dir: Path, tmp_path: Path) -> None:
    _write_micrographs(tmp_path / "in", 2)
    bad = tmp_path / "in" / "broken.mrc"
    bad.write_bytes(b"not an mrc file at all")
    nan = np.ones((64, 64), np.float32)
    nan[5, 5] = np.nan
    np.save(tmp_path / "in" / "hasnan.npy", nan)
    np.save(tmp_path / "in" / "cube.npy", np.ones((2, 3, 64, 64), np.float32))
    out = tmp_path / "out"
    options = BatchOptions(model=str(model_dir), tile=128, overlap=16)
    first = segment_batch([tmp_path / "in"], out, options)
    assert (first["done"], first["skipped"], first["failed"]) == (5, 0, 3)
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["stem"]) == ["broken", "cube", "hasnan", "mic0", "mic1"]
    errors = summary.set_index("stem")["error"]
    assert list(summary["status"]) == ["error", "error", "error", "ok", "ok"]
    assert "broken.mrc" in errors["broken"] and "hasnan.npy" in errors["hasnan"]
    assert "cube.npy: 4-D data" in errors["cube"]
    for stem in ("mic0", "mic1"):
        for suffix in ("_mask.png", "_prob.tif", "_overlay.png", "_particles.csv"):
            assert (out / f"{stem}{suffix}").is_file()
    assert (out / "size_histogram.png").is_file()
    assert "broken.mrc" in (out / "log" / "segment.log").read_text()
    mask = read_micrograph(out / "mic0_mask.png")
    assert mask.pixel_size == pytest.approx(0.15) and set(np.unique(mask.data)) <= {0, 255}
    before = (out / "mic1_prob.tif").stat().st_mtime_ns
    # Started again: finished micrographs are skipped, the broken one is tried again.
    second = segment_batch([tmp_path / "in"], out, options)
    assert (second["done"], second["skipped"], second["failed"]) == (3, 2, 3)
    assert (out / "mic1_prob.tif").stat().st_mtime_ns == before
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "summary.csv").drop(columns="seconds"), summary.drop(columns="seconds")
    )
    # Other settings redo the work.
    third = segment_batch(
        [tmp_path / "in"], out, BatchOptions(**{**options.__dict__, "threshold": 0.3})
    )
    assert third["done"] == 5
    record = json.loads((out / "log" / "mic0.json").read_text())
    assert record["settings"]["threshold"] == 0.3


def test_batch_on_a_local_dask_cluster_matches_serial(model_dir: Path, tmp_path: Path) -> None:
    _write_micrographs(tmp_path / "in", 3)
    options = BatchOptions(model=str(model_dir), tile=128, overlap=16)
    segment_batch([tmp_path / "in"], tmp_path / "serial", options)
    parallel = segment_batch([tmp_path / "in"], tmp_path / "dask", options, workers=2)
    assert parallel["done"] == 3 and parallel["failed"] == 0
    for stem in ("mic0", "mic1", "mic2"):
        a = read_micrograph(tmp_path / "serial" / f"{stem}_prob.tif").data
        b = read_micrograph(tmp_path / "dask" / f"{stem}_prob.tif").data
        # Workers run torch with one thread, which sums in another order: float rounding only.
        assert np.allclose(a, b, atol=1e-5)
        mask_a = read_micrograph(tmp_path / "serial" / f"{stem}_mask.png").data
        mask_b = read_micrograph(tmp_path / "dask" / f"{stem}_mask.png").data
        assert np.array_equal(mask_a, mask_b)


def test_segment_cli(model_dir: Path, tmp_path: Path) -> None:
    _write_micrographs(tmp_path / "in", 1, pixel_size=None)
    rgba = np.full((64, 80, 4), 255, np.uint8)
    rgba[..., :3] = np.clip(_texture((64, 80))[..., None] * 40 + 128, 0, 255).astype(np.uint8)
    write_png(tmp_path / "in" / "rgba.png", rgba)
    result = runner.invoke(
        app,
        [
            "segment",
            str(tmp_path / "in"),
            "--out",
            str(tmp_path / "out"),
            "--model",
            str(model_dir),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "2 micrograph(s) segmented" in result.output
    assert "no pixel size" in result.output
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert set(summary["pixel_size_source"]) == {"unknown"}


def test_segment_cli_errors(model_dir: Path, tmp_path: Path) -> None:
    cases = [
        (["segment", str(tmp_path / "nothing.mrc"), "--out", str(tmp_path / "o")], "no such file"),
        (
            [
                "segment",
                str(tmp_path),
                "--out",
                str(tmp_path / "o"),
                "--model",
                str(tmp_path / "x"),
            ],
            "no such model",
        ),
        (
            [
                "segment",
                str(tmp_path),
                "--out",
                str(tmp_path / "o"),
                "--tta",
                "d8",
                "--model",
                str(model_dir),
            ],
            "--tta",
        ),
        (
            ["segment", str(tmp_path), "--out", str(tmp_path / "o"), "--edge", "sharp"],
            "--edge must be one of contrast, network",
        ),
        (
            ["segment", str(tmp_path), "--out", str(tmp_path / "o"), "--edge-level", "1"],
            "--edge-level must be between 0 and 1",
        ),
    ]
    _write_micrographs(tmp_path, 1)
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output
    # Bad options are caught before anything is written.
    assert not (tmp_path / "o").exists()
    # A flat image cannot be normalised: reported, the others go on, exit code 1.
    write_png(tmp_path / "flat.png", np.full((64, 64), 7, np.uint8))
    result = runner.invoke(
        app, ["segment", str(tmp_path), "--out", str(tmp_path / "o2"), "--model", str(model_dir)]
    )
    assert result.exit_code == 1 and "flat.png: cannot normalise" in result.output
    assert "1 micrograph(s) segmented" in result.output
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = runner.invoke(
        app, ["segment", str(tmp_path), "--out", str(blocker), "--model", str(model_dir)]
    )
    assert result.exit_code == 2 and "error:" in result.output


SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-dev-hrtem"


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data/real-dev-hrtem")
def test_bundled_model_on_real_hrtem_tiles() -> None:
    """A regression guard on real data (never trained on): the bundled model, no pixel size."""
    from nanoseg.io import read_label_map
    from nanoseg.metrics import confusion, scores

    seg = Segmenter.load()
    counts = np.zeros((2, 2), np.int64)
    for path in sorted((SHARED / "images").glob("*.png")):
        mic = read_micrograph(path)
        with pytest.warns(UserWarning, match="no pixel size"):
            result = seg(mic)
        counts += confusion(result.mask, read_label_map(SHARED / "masks" / path.name))
    # Measured 0.956 (0.825 with --edge network; benchmarks/anyscale_table.py).
    assert scores(counts)["dice"] > 0.93


# ------------------------------------------------------------------------------- precision


def test_bfloat16_and_float32_give_the_same_particles() -> None:
    from nanoseg.demo import example_path

    maps = {p: Segmenter.load(precision=p)(example_path()) for p in ("float32", "bfloat16")}
    single, half = maps["float32"], maps["bfloat16"]
    assert half.probability.dtype == np.float32
    assert np.abs(half.probability - single.probability).max() < 0.1
    overlap = np.logical_and(half.mask, single.mask).sum()
    assert 2 * overlap / (half.mask.sum() + single.mask.sum()) > 0.99
    assert abs(len(half.particles) - len(single.particles)) <= 1


def test_precision_is_checked_and_recorded(model_dir: Path) -> None:
    from nanoseg.errors import NanosegError
    from nanoseg.segment import resolve_precision

    assert resolve_precision("auto") in ("float32", "bfloat16")
    assert Segmenter.load(model_dir, precision="float32").settings["precision"] == "float32"
    with pytest.raises(NanosegError, match="--precision must be one of"):
        Segmenter.load(model_dir, precision="half")


def test_overlay_outlines_particles_and_draws_a_scale_bar(tmp_path: Path) -> None:
    from PIL import Image
    from skimage.segmentation import find_boundaries

    from nanoseg.report import OUTLINE_COLOUR, OVERLAY_PALETTE, overlay_image, overlay_indexed

    rng = np.random.default_rng(0)
    image = rng.normal(100, 5, (300, 400)).astype(np.float32)
    yy, xx = np.mgrid[:300, :400]
    mask = (yy - 120) ** 2 + (xx - 150) ** 2 < 30**2
    mask |= (yy < 20) & (xx > 350)  # a particle cut by the image's edge
    plain = overlay_image(image, mask)
    assert plain.shape == (300, 400, 3) and plain.dtype == np.uint8
    outline = (plain == OUTLINE_COLOUR).all(axis=-1)
    # 1 px outlines at this size: skimage's inner boundaries; the image's edge is no boundary.
    np.testing.assert_array_equal(outline, find_boundaries(mask, mode="inner"))
    grey = plain[~outline]
    assert (grey[:, 0] == grey[:, 1]).all() and np.ptp(grey[:, 0]) > 100
    # Larger micrographs get thicker outlines: here 3 px, all inside the particle.
    big = np.zeros((3600, 3600), bool)
    big[1000:1200, 1000:1200] = True
    thick = (overlay_image(np.zeros(big.shape), big) == OUTLINE_COLOUR).all(axis=-1)
    assert thick[1100, 1000:1003].all() and not thick[1100, 1003] and not thick[1100, 999]
    # With a pixel size: a black box with a white bar in the lower left corner, nothing else.
    scaled = overlay_image(image, mask, pixel_size=0.5)
    # What the command writes: the same picture as a palette PNG, read back as it.
    path = write_png(
        tmp_path / "o.png", overlay_indexed(image, mask, 0.5), 0.5, palette=OVERLAY_PALETTE
    )
    with Image.open(path) as written:
        assert written.mode == "P"
        np.testing.assert_array_equal(np.asarray(written.convert("RGB")), scaled)
    changed = (scaled != plain).any(axis=-1)
    rows, cols = np.nonzero(changed)
    assert rows.min() > 200 and cols.max() < 200
    corner = scaled[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    assert (corner == 0).all(axis=-1).mean() > 0.5
    # The bar: 20 nm (the round length nearest below a fifth of the width), 40 px of white
    # (254, the palette's brightest grey).
    assert ((corner == 254).all(axis=-1).sum(axis=1) == 40).any()
