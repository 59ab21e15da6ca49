"""Check the test-file writers in ``microscope_files`` against rosettasciio and ncempy.

Every file is read back by both libraries: the pixels must come back identical (same dtype, not
transposed or flipped) and the spatial calibration must be what was written.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rsciio")
ncempy_io = pytest.importorskip("ncempy.io")

from microscope_files import write_dm, write_emd_berkeley, write_emd_velox, write_ser  # noqa: E402
from rsciio.digitalmicrograph import file_reader as read_dm  # noqa: E402
from rsciio.emd import file_reader as read_emd  # noqa: E402
from rsciio.tia import file_reader as read_tia  # noqa: E402

DTYPES = ["int8", "uint8", "int16", "uint16", "int32", "float32", "float64"]
SHAPES = [(7, 11), (64, 64)]


def pattern(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Non-symmetric values that fit every dtype, so a flip or transpose would be caught."""
    values = np.arange(np.prod(shape)).reshape(shape) * 7 % 113 - 20
    if np.dtype(dtype).kind == "u":
        values += 20
    return values.astype(dtype)


def spatial(axes: list[dict]) -> list[tuple[str, float, str]]:
    """(name, scale, units) of the non-navigation axes of an rsciio signal dictionary."""
    return [(ax["name"], float(ax["scale"]), ax["units"]) for ax in axes if not ax["navigate"]]


def only_signal(signals: list[dict]) -> dict:
    assert len(signals) == 1
    return signals[0]


# -------------------------------------------------------------------------------------- DM --


@pytest.mark.parametrize("version", [3, 4])
@pytest.mark.parametrize("dtype", [*DTYPES, "uint32"])
@pytest.mark.parametrize("shape", SHAPES)
def test_dm_data_roundtrip(tmp_path, version, dtype, shape):
    data = pattern(shape, dtype)
    path = tmp_path / f"image.dm{version}"
    write_dm(path, data, 0.25, "nm", version=version)

    signal = only_signal(read_dm(str(path)))  # thumbnail skipped
    assert signal["data"].dtype == data.dtype
    np.testing.assert_array_equal(signal["data"], data)
    assert spatial(signal["axes"]) == [("y", 0.25, "nm"), ("x", 0.25, "nm")]
    assert signal["metadata"]["General"]["title"] == "test image"

    ncem = ncempy_io.dm.dmReader(path)
    np.testing.assert_array_equal(ncem["data"], data)
    assert ncem["pixelUnit"] == ["nm", "nm"]


@pytest.mark.parametrize("version", [3, 4])
@pytest.mark.parametrize(
    ("pixel_size", "unit", "expected_unit"),
    [
        (0.25, "nm", "nm"),
        (1.5, "A", "\u00c5"),
        (1.5, "\u00c5", "\u00c5"),
        (0.002, "um", "\u00b5m"),
        (None, "nm", ""),
    ],
)
def test_dm_calibration(tmp_path, version, pixel_size, unit, expected_unit):
    data = pattern((7, 11), "float32")
    path = tmp_path / f"image.dm{version}"
    write_dm(path, data, pixel_size, unit, version=version)
    scale = 1.0 if pixel_size is None else pixel_size

    axes = only_signal(read_dm(str(path)))["axes"]
    assert [ax["name"] for ax in axes] == ["y", "x"]
    assert [ax["size"] for ax in axes] == [7, 11]
    assert [ax["units"] for ax in axes] == [expected_unit] * 2
    # DM stores Scale as a 4-byte float.
    np.testing.assert_allclose([ax["scale"] for ax in axes], scale, rtol=1e-7)
    assert [float(ax["offset"]) for ax in axes] == [0.0, 0.0]

    ncem = ncempy_io.read(path)
    np.testing.assert_array_equal(ncem["data"], data)
    assert ncem["pixelUnit"] == [expected_unit] * 2
    np.testing.assert_allclose(ncem["pixelSize"], scale, rtol=1e-7)


@pytest.mark.parametrize("version", [3, 4])
def test_dm_stack(tmp_path, version):
    data = pattern((3, 7, 11), "int16")
    path = tmp_path / f"stack.dm{version}"
    write_dm(path, data, 1.5, "A", version=version)

    signal = only_signal(read_dm(str(path)))
    np.testing.assert_array_equal(signal["data"], data)
    axes = signal["axes"]
    assert [(ax["name"], ax["navigate"], ax["units"]) for ax in axes] == [
        ("z", True, ""),
        ("y", False, "\u00c5"),
        ("x", False, "\u00c5"),
    ]
    np.testing.assert_allclose([ax["scale"] for ax in axes], [1.0, 1.5, 1.5])

    ncem = ncempy_io.dm.dmReader(path)
    np.testing.assert_array_equal(ncem["data"], data)
    assert ncem["pixelUnit"] == ["", "\u00c5", "\u00c5"]


def test_dm_thumbnail_is_first_image(tmp_path):
    path = tmp_path / "image.dm3"
    write_dm(path, pattern((64, 64), "uint16"), 0.1)
    image_list = only_signal(read_dm(str(path)))["original_metadata"]["ImageList"]
    assert list(image_list) == ["TagGroup0"]  # rsciio keeps only the image it returned
    with ncempy_io.dm.fileDM(path) as dm_file:
        assert dm_file.thumbnail
        assert dm_file.numObjects == 2
        assert dm_file.dataType == [23, 10]


# ------------------------------------------------------------------------------------- SER --


@pytest.mark.parametrize("dtype", [*DTYPES, "uint32"])
@pytest.mark.parametrize("shape", SHAPES)
def test_ser_roundtrip(tmp_path, dtype, shape):
    data = pattern(shape, dtype)
    path = tmp_path / "image_1.ser"
    write_ser(path, data, 2.5e-10)

    signal = only_signal(read_tia(str(path)))
    assert signal["data"].dtype == data.dtype
    np.testing.assert_array_equal(signal["data"], data)
    names_units = [(name, units) for name, _, units in spatial(signal["axes"])]
    assert names_units == [("y", "nm"), ("x", "nm")]  # rsciio converts TIA's metres to nm
    np.testing.assert_allclose([s for _, s, _ in spatial(signal["axes"])], 0.25)

    if dtype != "uint8":  # ncempy 1.16 maps SER type 1 to the invalid dtype string " <u1"
        ncem = ncempy_io.read(path)
        np.testing.assert_array_equal(ncem["data"], data)
        np.testing.assert_allclose(ncem["pixelSize"], 2.5e-10)
        assert ncem["pixelUnit"] == ["m", "m"]


@pytest.mark.parametrize("pixel_size_m", [1.5e-10, None])
def test_ser_series(tmp_path, pixel_size_m):
    data = pattern((3, 7, 11), "float32")
    path = tmp_path / "series_1.ser"
    write_ser(path, data, pixel_size_m)

    signal = only_signal(read_tia(str(path)))
    np.testing.assert_array_equal(signal["data"], data)
    frames, y_axis, x_axis = signal["axes"]
    assert frames["navigate"] and frames["name"] is None and frames["units"] is None
    assert frames["size"] == 3
    expected_nm = 1e9 if pixel_size_m is None else 0.15
    for axis, name, size in ((y_axis, "y", 7), (x_axis, "x", 11)):
        assert (axis["name"], axis["size"], axis["units"]) == (name, size, "nm")
        assert not axis["navigate"]
        assert axis["scale"] == pytest.approx(expected_nm)

    with ncempy_io.ser.fileSER(path) as ser:
        for i, frame in enumerate(data):
            image, meta = ser.getDataset(i)
            np.testing.assert_array_equal(image, frame)
            assert meta["Calibration"][0]["CalibrationDelta"] == (pixel_size_m or 1.0)
            assert ser._getTag(i)["TagTypeID"] == 0x4152  # the tag offsets point at real tags


def test_ser_single_image_in_series_form(tmp_path):
    data = pattern((1, 7, 11), "int16")
    path = tmp_path / "single_1.ser"
    write_ser(path, data, 2e-10)
    signal = only_signal(read_tia(str(path)))
    np.testing.assert_array_equal(signal["data"], data[0])  # size-1 series axis dropped
    assert len(signal["axes"]) == 2


# ------------------------------------------------------------------------------- Velox EMD --


@pytest.mark.parametrize("dtype", ["uint16", "int32", "float32"])
@pytest.mark.parametrize("shape", SHAPES)
def test_velox_roundtrip(tmp_path, dtype, shape):
    data = pattern(shape, dtype)
    path = tmp_path / "image.emd"
    write_emd_velox(path, data, 0.25)

    signal = only_signal(read_emd(str(path)))
    assert signal["data"].dtype == data.dtype
    np.testing.assert_array_equal(signal["data"], data)
    axes = spatial(signal["axes"])
    assert [(name, units) for name, _, units in axes] == [("y", "nm"), ("x", "nm")]
    np.testing.assert_allclose([scale for _, scale, _ in axes], 0.25)

    ncem = ncempy_io.read(path)
    np.testing.assert_array_equal(ncem["data"], data)
    np.testing.assert_allclose(ncem["pixelSize"], 0.25)
    assert ncem["pixelUnit"] == ["nm", "nm"]


def test_velox_units_are_rescaled_by_rsciio(tmp_path):
    path = tmp_path / "image.emd"
    write_emd_velox(path, pattern((7, 11), "uint16"), 0.05)  # half the width: 0.275 nm
    axes = spatial(only_signal(read_emd(str(path)))["axes"])
    assert [units for _, _, units in axes] == ["pm", "pm"]
    np.testing.assert_allclose([scale for _, scale, _ in axes], 50.0)
    assert ncempy_io.read(path)["pixelSize"] == pytest.approx((0.05, 0.05))


def test_velox_stack(tmp_path):
    data = pattern((3, 7, 11), "uint16")
    path = tmp_path / "stack.emd"
    write_emd_velox(path, data, 0.5)

    signal = only_signal(read_emd(str(path)))
    np.testing.assert_array_equal(signal["data"], data)
    time_axis, *_ = signal["axes"]
    assert (time_axis["name"], time_axis["navigate"], time_axis["size"]) == ("Time", True, 3)
    assert [(n, u) for n, _, u in spatial(signal["axes"])] == [("y", "nm"), ("x", "nm")]

    ncem = ncempy_io.read(path)  # ncempy returns Velox's own (y, x, frames) order
    np.testing.assert_array_equal(ncem["data"], np.moveaxis(data, 0, -1))


# ---------------------------------------------------------------------------- Berkeley EMD --


@pytest.mark.parametrize("shape", [(7, 11), (3, 7, 11)])
@pytest.mark.parametrize("pixel_size_nm", [0.25, None])
def test_berkeley_ncem_layout(tmp_path, shape, pixel_size_nm):
    data = pattern(shape, "float32")
    path = tmp_path / "image.emd"
    write_emd_berkeley(path, data, pixel_size_nm)
    scale, units = (1.0, "") if pixel_size_nm is None else (pixel_size_nm, "nm")

    ncem = ncempy_io.read(path)
    np.testing.assert_array_equal(ncem["data"], data)
    assert ncem["pixelName"][-2:] == ["y", "x"]
    assert ncem["pixelUnit"][-2:] == [units, units]
    np.testing.assert_allclose(ncem["pixelSize"][-2:], scale)

    # rsciio transposes Berkeley datasets: NCEM-layout files come back as data.T.
    signal = only_signal(read_emd(str(path)))
    np.testing.assert_array_equal(signal["data"], data.T)
    assert [(ax["name"], ax["units"]) for ax in signal["axes"][:2]] == [("x", units), ("y", units)]
    np.testing.assert_allclose([ax["scale"] for ax in signal["axes"][:2]], scale)


@pytest.mark.parametrize("shape", [(7, 11), (3, 7, 11)])
def test_berkeley_hyperspy_layout(tmp_path, shape):
    data = pattern(shape, "uint16")
    path = tmp_path / "image.emd"
    write_emd_berkeley(path, data, 0.25, hyperspy_layout=True)

    signal = only_signal(read_emd(str(path)))
    assert signal["data"].dtype == data.dtype
    np.testing.assert_array_equal(signal["data"], data)
    assert spatial(signal["axes"])[-2:] == [("y", 0.25, "nm"), ("x", 0.25, "nm")]
    assert not any(ax["navigate"] for ax in signal["axes"])  # even the frame axis
    assert signal["metadata"]["General"]["title"] == "micrograph"

    ncem = ncempy_io.read(path)
    np.testing.assert_array_equal(ncem["data"], data.T)


# ------------------------------------------------------------------------- damaged files --

WRITERS = {
    "dm3": (lambda p, d: write_dm(p, d, 0.2, version=3), read_dm, "x.dm3"),
    "dm4": (lambda p, d: write_dm(p, d, 0.2, version=4), read_dm, "x.dm4"),
    "ser": (lambda p, d: write_ser(p, d, 2e-10), read_tia, "x_1.ser"),
    "velox": (lambda p, d: write_emd_velox(p, d, 0.2), read_emd, "x.emd"),
    "berkeley": (lambda p, d: write_emd_berkeley(p, d, 0.2), read_emd, "x.emd"),
}


@pytest.mark.parametrize(
    ("fmt", "keep", "error"),
    [
        ("dm3", "half", struct.error),
        ("dm3", 100, struct.error),
        ("dm4", "half", struct.error),
        ("dm4", 100, struct.error),
        ("ser", "half", ValueError),
        ("ser", "all but 1", ValueError),
        ("ser", 100, struct.error),
        ("velox", "half", OSError),
        ("velox", 100, OSError),
        ("berkeley", "half", OSError),
        ("berkeley", 100, OSError),
    ],
)
def test_truncated_files_raise(tmp_path, fmt, keep, error):
    """Record what rsciio raises on a cut-off file (nanoseg must turn these into its errors)."""
    write, read, name = WRITERS[fmt]
    path: Path = tmp_path / name
    write(path, pattern((64, 64), "uint16"))
    full = path.read_bytes()
    size = {"half": len(full) // 2, "all but 1": len(full) - 1}.get(keep, keep)
    path.write_bytes(full[:size])
    logging.disable(logging.CRITICAL)
    try:
        with pytest.raises(error):
            read(str(path))
    finally:
        logging.disable(logging.NOTSET)
