"""Building training data sets: pairing, tiles, filtering, normalisation, splits, provenance."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy import ndimage
from synthetic import make_set as _make_set
from typer.testing import CliRunner

import nanoseg.dataset as dataset_module
from nanoseg import ShapeMismatchError
from nanoseg.cli import app
from nanoseg.dataset import (
    DatasetError,
    assign_splits,
    build_dataset,
    dataset_summary,
    normalize,
    tail_percentiles,
    tile_origins,
)
from nanoseg.io import write_mask


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    return _make_set(tmp_path / "raw")


def _build(data: Path, out: Path, **kwargs):
    kwargs.setdefault("tile", 32)
    kwargs.setdefault("material_from", data / "meta.csv")
    return build_dataset(data / "images", data / "labels", out, **kwargs)


def test_tile_origins_cover_every_pixel():
    assert tile_origins(100, 32, 32) == [0, 32, 64, 68]
    assert tile_origins(130, 32, 32) == [0, 32, 64, 96, 98]
    assert tile_origins(64, 32, 16) == [0, 16, 32]
    assert tile_origins(20, 32, 32) == [0]


def test_tiles_positions_values_and_provenance(data: Path, tmp_path: Path):
    out = tmp_path / "d.h5"
    summary = _build(data, out, keep_empty=1.0)
    with h5py.File(out) as h5:
        tiles = h5["tiles"][()]
        images, labels = h5["images"], h5["labels"]
        assert images.dtype == np.float32 and labels.dtype == np.uint8
        # 4 row origins x 5 column origins per micrograph, all kept.
        assert len(tiles) == 6 * 20 == summary["tiles_kept"] == summary["tiles_total"]
        first = tiles["source"] == b"m0.mrc"
        assert sorted(
            {
                (int(r), int(c))
                for r, c in zip(tiles["row"][first], tiles["col"][first], strict=True)
            }
        ) == [(r, c) for r in (0, 32, 64, 68) for c in (0, 32, 64, 96, 98)]
        # Values: median 3x3 filtered, divided by the maximum of the filtered data set.
        from nanoseg.io import read_micrograph

        filtered = [
            ndimage.median_filter(
                read_micrograph(data / "images" / f"m{i}.mrc").data, 3, mode="reflect"
            )
            for i in range(6)
        ]
        dataset_max = max(float(f.max()) for f in filtered)
        assert dataset_max < 2000  # the spikes are gone
        assert h5.attrs["dataset_max"] == pytest.approx(dataset_max)
        index = int(np.flatnonzero(first & (tiles["row"] == 64) & (tiles["col"] == 98))[0])
        np.testing.assert_allclose(
            images[index], filtered[0][64:96, 98:130] / dataset_max, rtol=1e-6
        )
        label0 = data / "labels" / "m0.png"
        from nanoseg.io import read_label_map

        np.testing.assert_array_equal(labels[index], read_label_map(label0)[64:96, 98:130])
        assert tiles["material"][first][0] == b"cdse"
        assert tiles["pixel_size_nm"][first][0] == pytest.approx(0.1)
        assert tiles["particle_fraction"][index] == pytest.approx(labels[index].mean())


def test_empty_tiles_dropped_unless_kept(data: Path, tmp_path: Path):
    dropped = _build(data, tmp_path / "a.h5")
    assert dropped["tiles_kept"] == dropped["tiles_with_particles"] < dropped["tiles_total"]
    with h5py.File(tmp_path / "a.h5") as h5:
        assert all(h5["labels"][i].any() for i in range(len(h5["labels"])))
    half = _build(data, tmp_path / "b.h5", keep_empty=0.5)
    assert dropped["tiles_kept"] < half["tiles_kept"] < half["tiles_total"]


def test_split_by_micrograph_and_by_scene(data: Path, tmp_path: Path):
    _build(data, tmp_path / "s.h5", material_from=None, split=(0.5, 0.25, 0.25))
    with h5py.File(tmp_path / "s.h5") as h5:
        tiles = h5["tiles"][()]
    for source in set(tiles["source"]):
        assert len(set(tiles["split"][tiles["source"] == source])) == 1
    assert set(tiles["split"]) == {0, 1, 2}
    # With a scene column, the micrographs of one scene stay together.
    _build(data, tmp_path / "g.h5", split=(0.34, 0.33, 0.33))
    with h5py.File(tmp_path / "g.h5") as h5:
        sources = h5["sources"][()]
    for scene in set(sources["group"]):
        assert len(set(sources["split"][sources["group"] == scene])) == 1


def test_assign_splits_follows_fractions():
    groups = {f"g{i}": 10 for i in range(100)}
    result = assign_splits(groups, (0.55, 0.18, 0.27), np.random.default_rng(0))
    counts = np.bincount(list(result.values()), minlength=3)
    np.testing.assert_allclose(counts / 100, (0.55, 0.18, 0.27), atol=0.02)


def _contents(path: Path) -> dict[str, bytes]:
    """Every dataset's and attribute's values (HDF5 may leave unused bytes uninitialised)."""
    out = {}
    with h5py.File(path) as h5:
        for name, item in h5.items():
            out[name] = repr(item[()].tolist()).encode()
        for key, value in h5.attrs.items():
            out[f"@{key}"] = repr(np.asarray(value).tolist()).encode()
    return out


def test_same_seed_same_file_other_seed_other_split(data: Path, tmp_path: Path):
    _build(data, tmp_path / "a.h5", seed=3)
    _build(data, tmp_path / "b.h5", seed=3)
    assert _contents(tmp_path / "a.h5") == _contents(tmp_path / "b.h5")
    splits = set()
    for seed in range(6):
        _build(data, tmp_path / f"c{seed}.h5", seed=seed)
        with h5py.File(tmp_path / f"c{seed}.h5") as h5:
            splits.add(tuple(h5["sources"]["split"]))
    assert len(splits) > 1


@pytest.mark.parametrize("mode", ["image-max", "percentile", "zscore"])
def test_normalisation_modes(mode: str):
    image = np.random.default_rng(0).normal(100, 10, (40, 40)).astype(np.float32)
    out, offset, scale = normalize(image, mode)
    if mode == "image-max":
        assert out.max() == pytest.approx(1.0) and offset == 0
    elif mode == "percentile":
        assert np.percentile(out, 0.1) == pytest.approx(0, abs=1e-5)
        assert np.percentile(out, 99.9) == pytest.approx(1, abs=1e-5)
    else:
        assert out.mean() == pytest.approx(0, abs=1e-5) and out.std() == pytest.approx(1, abs=1e-4)
    np.testing.assert_allclose(out * scale + offset, image, rtol=1e-5)


def test_tail_percentiles_equal_numpys() -> None:
    rng = np.random.default_rng(0)
    misleading = rng.normal(size=(1200, 1000))
    # Every value the strided sample reads is 0: its tails say nothing about the image's.
    misleading.ravel()[:: misleading.size // dataset_module._TAIL_SAMPLE] = 0.0
    images = [
        rng.normal(size=(1100, 1000)).astype(np.float32),
        rng.integers(0, 256, (1000, 1100)).astype(np.uint8),  # ties; negating would wrap
        rng.integers(0, 4, (1000, 1000)).astype(np.float32),  # a few grey levels
        misleading,
        rng.normal(size=(40, 40)),  # small: numpy itself
    ]
    q = (0, 0.1, 1, 37.5, 50, 99, 99.9, 100)
    for image in images:
        # float32 images are interpolated in float32 by numpy: equal to its rounding.
        np.testing.assert_allclose(tail_percentiles(image, q), np.percentile(image, q), rtol=1e-6)


def test_resampling_to_a_pixel_size(data: Path, tmp_path: Path):
    _build(data, tmp_path / "r.h5", pixel_size=0.2, keep_empty=1.0)
    with h5py.File(tmp_path / "r.h5") as h5:
        sources = h5["sources"][()]
        assert (sources["height"] == 50).all() and (sources["width"] == 65).all()
        assert h5["tiles"]["pixel_size_nm"][0] == pytest.approx(0.2)


def test_summary_per_split_and_material(data: Path, tmp_path: Path):
    summary = _build(data, tmp_path / "d.h5")
    assert summary == dataset_summary(tmp_path / "d.h5")
    assert sum(s["tiles"] for s in summary["splits"].values()) == summary["tiles_kept"]
    assert sum(s["micrographs"] for s in summary["splits"].values()) == 6
    for split in summary["splits"].values():
        for material, values in split["materials"].items():
            assert material in ("au", "cdse")
            assert 0 < values["particle_pixel_fraction"] < 1


def test_cli_build_and_info(data: Path, tmp_path: Path):
    out = tmp_path / "cli.h5"
    args = ["dataset", "build", "--images", str(data / "images"), "--labels",
            str(data / "labels"), "--out", str(out), "--tile", "32",
            "--material-from", str(data / "meta.csv")]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "micrographs -> 120 tiles of 32 px" in result.stdout
    info = CliRunner().invoke(app, ["dataset", "info", str(out)])
    assert info.exit_code == 0
    written = [line for line in result.stdout.splitlines() if line.strip()]
    assert written[0] == f"wrote {out}"
    assert info.stdout.splitlines() == written[1:]
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2
    assert (
        again.stderr.strip() == f"error: {out}: output file exists (use --overwrite to replace it)"
    )
    assert CliRunner().invoke(app, [*args, "--overwrite"]).exit_code == 0


def test_bad_inputs_leave_no_file(data: Path, tmp_path: Path):
    out = tmp_path / "x.h5"
    # A label map of the wrong size.
    write_mask(data / "labels" / "m1.png", np.ones((10, 10), bool))
    with pytest.raises(
        ShapeMismatchError,
        match=r"m1\.png: label map is 10x10 px but its micrograph m1\.mrc is 130x100",
    ):
        _build(data, out)
    # A label map without particles.
    write_mask(data / "labels" / "m1.png", np.zeros((100, 130), bool))
    with pytest.raises(DatasetError, match=r"m1\.png: label map has no particle pixel anywhere"):
        _build(data, out)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".x.h5")] == []


def test_unmatched_and_empty_folders(data: Path, tmp_path: Path):
    (data / "labels" / "m5.png").unlink()
    with pytest.raises(DatasetError, match=r"1 file\(s\) without a partner: m5\.mrc"):
        _build(data, tmp_path / "u.h5")
    summary = _build(data, tmp_path / "u.h5", allow_unmatched=True)
    assert summary["micrographs"] == 5
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    with pytest.raises(DatasetError, match="no micrographs found"):
        build_dataset(empty, data / "labels", tmp_path / "e.h5")


def test_failure_while_writing_leaves_no_partial_file(data: Path, tmp_path: Path, monkeypatch):
    import nanoseg.dataset as module

    calls = {"n": 0}
    real = module.normalize

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "normalize", failing)
    with pytest.raises(RuntimeError):
        _build(data, tmp_path / "p.h5")
    assert not any(p.name.startswith(".p.h5") for p in tmp_path.iterdir())
    assert not (tmp_path / "p.h5").exists()


def test_info_refuses_other_files(tmp_path: Path):
    with h5py.File(tmp_path / "other.h5", "w") as h5:
        h5["x"] = 1
    with pytest.raises(DatasetError, match="not a nanoseg data set"):
        dataset_summary(tmp_path / "other.h5")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(DatasetError, match="not an HDF5 file"):
        dataset_summary(tmp_path / "text.h5")


@pytest.mark.parametrize(
    ("shape", "dtype", "size"),
    [((1, 1), np.float32, 3), ((1, 9), np.float32, 3), ((130, 67), np.float32, 3),
     ((70, 5), np.uint16, 3), ((40, 50), np.float64, 5)],
)  # fmt: skip
def test_median_filter_equals_scipy(shape: tuple[int, int], dtype: type, size: int) -> None:
    from nanoseg.dataset import median_filter

    # Few distinct values: many ties, the case a sorting shortcut gets wrong first.
    image = np.random.default_rng(1).integers(0, 6, size=shape).astype(dtype)
    expected = ndimage.median_filter(image, size=size, mode="reflect")
    result = median_filter(image, size)
    assert result.dtype == image.dtype
    np.testing.assert_array_equal(result, expected)
