"""Write known arrays with known pixel sizes in every writable format and read them back."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from nanoseg.errors import InvalidDataError
from nanoseg.io import (
    read_label_map,
    read_micrograph,
    unit_to_nm,
    write_csv,
    write_mask,
    write_mrc,
    write_png,
    write_tiff,
)


def ramp(shape: tuple[int, int], dtype: str, scale: float = 1.0) -> np.ndarray:
    """A non-symmetric test image, so a transposed or flipped read-back would be caught."""
    y, x = np.indices(shape)
    return ((y * 37 + x * 11) % 251 * scale).astype(dtype)


@pytest.mark.parametrize("dtype", ["int8", "int16", "uint16", "float32"])
def test_mrc_roundtrip(tmp_path, dtype):
    data = ramp((48, 64), dtype, scale=1.0 if dtype == "int8" else 97.3)
    if dtype == "int16":
        data = data - 5000  # negative values survive
    path = write_mrc(tmp_path / "a.mrc", data, pixel_size=0.0234)
    mic = read_micrograph(path)
    assert mic.format == "MRC"
    assert mic.dtype == dtype
    assert mic.data.dtype == np.float32
    assert mic.data.shape == (48, 64)
    np.testing.assert_array_equal(mic.data, data.astype(np.float32))
    assert mic.pixel_size == pytest.approx(0.0234, rel=1e-6)


def test_mrc_without_pixel_size_reads_none(tmp_path):
    path = write_mrc(tmp_path / "a.mrc", ramp((8, 9), "int16"))
    assert read_micrograph(path).pixel_size is None


def test_mrc_stack_is_summed_or_framed(tmp_path):
    stack = np.stack([ramp((16, 20), "int16") + i for i in range(3)])
    path = write_mrc(tmp_path / "s.mrc", stack, pixel_size=0.1)
    summed = read_micrograph(path)
    assert summed.frames == 3
    np.testing.assert_array_equal(summed.data, stack.sum(axis=0).astype(np.float32))
    second = read_micrograph(path, frame=1)
    np.testing.assert_array_equal(second.data, stack[1].astype(np.float32))


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_tiff_roundtrip(tmp_path, dtype):
    data = ramp((30, 41), dtype, scale=1.0 if dtype == "uint8" else 13.7)
    path = write_tiff(tmp_path / "a.tif", data, pixel_size=0.0234)
    mic = read_micrograph(path)
    assert mic.format == "TIFF"
    assert mic.dtype == dtype
    np.testing.assert_array_equal(mic.data, data.astype(np.float32))
    assert mic.pixel_size == pytest.approx(0.0234, rel=1e-6)


def test_probability_map_float32_tiff_keeps_values(tmp_path):
    rng = np.random.default_rng(0)
    prob = rng.random((33, 17), dtype=np.float32)
    path = write_tiff(tmp_path / "p_prob.tif", prob, pixel_size=1.5)
    mic = read_micrograph(path)
    np.testing.assert_array_equal(mic.data, prob)
    assert mic.pixel_size == pytest.approx(1.5, rel=1e-6)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("pixel_size", [0.0234, 0.5, None])
def test_mask_roundtrip(tmp_path, suffix, pixel_size):
    mask = ramp((25, 31), "uint8") % 3 == 0
    path = write_mask(tmp_path / f"m{suffix}", mask, pixel_size=pixel_size)
    values = read_micrograph(path)
    assert set(np.unique(values.data)) == {0.0, 255.0}
    np.testing.assert_array_equal(read_label_map(path, shape=mask.shape), mask)
    if pixel_size is None:
        assert values.pixel_size is None
    else:
        assert values.pixel_size == pytest.approx(pixel_size, rel=1e-9)


def test_png_16bit_roundtrip(tmp_path):
    data = ramp((19, 23), "uint16", scale=261.0)
    path = write_png(tmp_path / "a.png", data, pixel_size=0.2)
    mic = read_micrograph(path)
    np.testing.assert_array_equal(mic.data, data.astype(np.float32))
    assert mic.pixel_size == pytest.approx(0.2)


def test_overlay_png_rgb_reads_as_luminance(tmp_path):
    rgb = np.zeros((10, 12, 3), dtype=np.uint8)
    rgb[..., 0] = 200
    rgb[..., 1] = 100
    rgb[..., 2] = 50
    path = write_png(tmp_path / "o.png", rgb)
    mic = read_micrograph(path)
    expected = 0.299 * 200 + 0.587 * 100 + 0.114 * 50
    np.testing.assert_allclose(mic.data, expected, rtol=1e-6)


def test_palette_png_reads_as_its_colours(tmp_path):
    palette = np.array([(0, 0, 0), (100, 100, 100), (255, 200, 0)], dtype=np.uint8)
    indices = np.array([[0, 1, 2, 1]] * 3, dtype=np.uint8)
    path = write_png(tmp_path / "p.png", indices, 0.25, palette=palette)
    mic = read_micrograph(path)
    assert mic.pixel_size == pytest.approx(0.25)
    np.testing.assert_allclose(mic.data[0], [0, 100, 0.299 * 255 + 0.587 * 200, 100], rtol=1e-6)
    with pytest.raises(InvalidDataError, match="beyond the palette"):
        write_png(tmp_path / "q.png", indices + 1, palette=palette)
    with pytest.raises(InvalidDataError, match="palette PNG takes"):
        write_png(tmp_path / "q.png", indices, palette=palette.astype(float))
    assert not (tmp_path / "q.png").exists()


def test_csv_roundtrip(tmp_path):
    rows = [{"id": 1, "area_nm2": 12.5, "name": "a,b"}, {"id": 2, "area_nm2": 3.25, "name": "c"}]
    path = write_csv(tmp_path / "t.csv", rows)
    with open(path, newline="") as handle:
        back = list(csv.DictReader(handle))
    assert [r["id"] for r in back] == ["1", "2"]
    assert [float(r["area_nm2"]) for r in back] == [12.5, 3.25]
    assert back[0]["name"] == "a,b"


def test_npy_reads_without_pixel_size(tmp_path):
    data = ramp((7, 5), "float64", scale=0.5)
    np.save(tmp_path / "a.npy", data)
    mic = read_micrograph(tmp_path / "a.npy")
    assert mic.pixel_size is None
    np.testing.assert_array_equal(mic.data, data.astype(np.float32))


def test_rgba_png_and_grey_alpha_png(tmp_path):
    from PIL import Image

    grey = ramp((12, 14), "uint8")
    rgba = np.dstack([grey, grey, grey, np.full_like(grey, 255)])
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_allclose(read_micrograph(tmp_path / "rgba.png").data, grey, atol=1e-3)
    Image.fromarray(np.dstack([grey, np.full_like(grey, 128)]), mode="LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_micrograph(tmp_path / "la.png").data, grey)


def test_screen_dpi_is_not_a_pixel_size(tmp_path):
    from PIL import Image

    Image.fromarray(ramp((8, 8), "uint8")).save(tmp_path / "a.png", dpi=(72, 72))
    assert read_micrograph(tmp_path / "a.png").pixel_size is None


def test_tiff_calibrated_in_centimetres(tmp_path):
    import tifffile

    # 0.5 nm/px = 2e7 px/cm
    tifffile.imwrite(
        tmp_path / "a.tif", ramp((8, 8), "uint16"), resolution=(2e7, 2e7), resolutionunit=3
    )
    assert read_micrograph(tmp_path / "a.tif").pixel_size == pytest.approx(0.5, rel=1e-6)


def test_tiff_rgb_is_luminance_and_stack_is_summed(tmp_path):
    import tifffile

    rgb = np.zeros((6, 7, 3), np.uint8)
    rgb[..., 1] = 100
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    np.testing.assert_allclose(read_micrograph(tmp_path / "rgb.tif").data, 58.7, rtol=1e-6)
    stack = np.stack([ramp((6, 7), "uint16") * (i + 1) for i in range(4)])
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    mic = read_micrograph(tmp_path / "stack.tif")
    assert mic.frames == 4
    np.testing.assert_array_equal(mic.data, stack.sum(axis=0))


@pytest.mark.parametrize(
    ("unit", "nm"),
    [
        ("nm", 1.0),
        ("Å", 0.1),
        ("\u212b", 0.1),
        ("A", 0.1),
        ("µm", 1e3),
        ("um", 1e3),
        ("m", 1e9),
        ("pm", 1e-3),
        ("1/nm", None),
        ("", None),
        ("<undefined>", None),
    ],
)
def test_unit_conversion(unit, nm):
    assert unit_to_nm(unit) == nm


def test_real_rgba_png_from_shared_data_reads_as_grey():
    """The real-dev-hrtem tiles are 8-bit RGBA with equal grey channels (a real-life input)."""
    from pathlib import Path

    path = Path(__file__).parents[2] / "shared/data/real-dev-hrtem/images/msa_train_0.png"
    if not path.exists():
        pytest.skip("shared development data not present")
    mic = read_micrograph(path)
    assert mic.shape == (512, 512)
    assert mic.pixel_size is None
    from PIL import Image

    with Image.open(path) as im:
        assert im.mode == "RGBA"
        red = np.asarray(im)[..., 0].astype(np.float32)
    np.testing.assert_allclose(mic.data, red, atol=1e-3)
