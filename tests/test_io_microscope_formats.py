"""read_micrograph on DM3/DM4, SER and EMD files: values, orientation, stacks, calibration units.

The files are written by ``tests/microscope_files.py`` in the vendors' layouts (no downloads).
"""

from __future__ import annotations

import numpy as np
import pytest
from microscope_files import write_dm, write_emd_berkeley, write_emd_velox, write_ser

from nanoseg import CorruptFileError, read_micrograph


def pattern(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Values that differ along every axis, so a transposed or flipped read is caught."""
    grids = np.indices(shape)
    values = sum((k * 7 + 3) * g for k, g in enumerate(grids)) % 200
    return values.astype(dtype)


@pytest.mark.parametrize("version", [3, 4])
@pytest.mark.parametrize("dtype", ["int16", "uint16", "int32", "float32"])
def test_dm_values_and_pixel_size(tmp_path, version, dtype):
    data = pattern((13, 17), dtype)
    path = tmp_path / f"a.dm{version}"
    write_dm(path, data, 0.0312, unit="nm", version=version)
    mic = read_micrograph(path)
    assert mic.format == f"DM{version}"
    assert mic.dtype == dtype
    np.testing.assert_array_equal(mic.data, data.astype(np.float32))
    assert mic.pixel_size == pytest.approx(0.0312, rel=1e-6)  # DM stores float32 scales


@pytest.mark.parametrize(
    ("scale", "unit", "nm"), [(0.312, "Å", 0.0312), (0.0005, "µm", 0.5), (2.5, "nm", 2.5)]
)
def test_dm_calibration_units_are_converted(tmp_path, scale, unit, nm):
    path = tmp_path / "a.dm4"
    write_dm(path, pattern((8, 9), "int16"), scale, unit=unit, version=4)
    assert read_micrograph(path).pixel_size == pytest.approx(nm, rel=1e-6)


def test_dm_uncalibrated_has_no_pixel_size(tmp_path):
    path = tmp_path / "a.dm3"
    write_dm(path, pattern((8, 9), "int16"), None)
    assert read_micrograph(path).pixel_size is None


def test_dm_stack_summed(tmp_path):
    stack = pattern((3, 10, 12), "int16")
    path = tmp_path / "s.dm4"
    write_dm(path, stack, 0.05, version=4)
    mic = read_micrograph(path)
    assert mic.frames == 3
    np.testing.assert_array_equal(mic.data, stack.sum(axis=0))
    np.testing.assert_array_equal(read_micrograph(path, frame=2).data, stack[2])


@pytest.mark.parametrize("dtype", ["int16", "float32"])
def test_ser_values_and_pixel_size_in_metres(tmp_path, dtype):
    data = pattern((12, 15), dtype)
    path = tmp_path / "a.ser"
    write_ser(path, data, 0.0234e-9)
    mic = read_micrograph(path)
    assert mic.format == "SER"
    np.testing.assert_array_equal(mic.data, data.astype(np.float32))
    assert mic.pixel_size == pytest.approx(0.0234, rel=1e-9)


def test_ser_placeholder_calibration_is_no_pixel_size(tmp_path):
    path = tmp_path / "a.ser"
    write_ser(path, pattern((6, 7), "int16"), None)  # TIA's uncalibrated: 1 m per pixel
    assert read_micrograph(path).pixel_size is None


def test_ser_series_summed(tmp_path):
    stack = pattern((4, 6, 7), "int16")
    path = tmp_path / "s.ser"
    write_ser(path, stack, 0.1e-9)
    mic = read_micrograph(path)
    assert mic.frames == 4
    np.testing.assert_array_equal(mic.data, stack.sum(axis=0))


@pytest.mark.parametrize("pixel_size", [0.05, 0.5, 20.0])
def test_velox_emd_any_unit_prefix(tmp_path, pixel_size):
    data = pattern((11, 14), "uint16")
    path = tmp_path / "a.emd"
    write_emd_velox(path, data, pixel_size)  # rsciio reports pm, nm or µm depending on the field
    mic = read_micrograph(path)
    assert mic.format == "EMD"
    np.testing.assert_array_equal(mic.data, data.astype(np.float32))
    assert mic.pixel_size == pytest.approx(pixel_size, rel=1e-6)


def test_velox_emd_stack(tmp_path):
    stack = pattern((3, 9, 10), "uint16")
    path = tmp_path / "s.emd"
    write_emd_velox(path, stack, 0.1)
    mic = read_micrograph(path)
    assert mic.frames == 3
    np.testing.assert_array_equal(mic.data, stack.sum(axis=0))


@pytest.mark.parametrize("hyperspy_layout", [False, True])
@pytest.mark.parametrize("shape", [(7, 11), (3, 7, 11)])
def test_berkeley_emd_comes_back_the_right_way_round(tmp_path, hyperspy_layout, shape):
    data = pattern(shape, "float32")
    path = tmp_path / "b.emd"
    write_emd_berkeley(path, data, 0.25, hyperspy_layout=hyperspy_layout)
    mic = read_micrograph(path)
    expected = data.sum(axis=0) if data.ndim == 3 else data
    np.testing.assert_array_equal(mic.data, expected)
    assert mic.pixel_size == pytest.approx(0.25)
    assert mic.frames == (shape[0] if data.ndim == 3 else 1)


@pytest.mark.parametrize(
    ("name", "write"),
    [
        ("a.dm3", lambda p, d: write_dm(p, d, 0.1, version=3)),
        ("a.dm4", lambda p, d: write_dm(p, d, 0.1, version=4)),
        ("a.ser", lambda p, d: write_ser(p, d, 0.1e-9)),
        ("a.emd", lambda p, d: write_emd_velox(p, d, 0.1)),
    ],
)
@pytest.mark.parametrize("keep", [0.5, 100])
def test_truncated_vendor_files_give_one_line_error(tmp_path, name, write, keep):
    full = tmp_path / f"full_{name}"
    write(full, pattern((64, 64), "int16"))
    raw = full.read_bytes()
    cut = tmp_path / name
    cut.write_bytes(raw[: int(len(raw) * keep) if isinstance(keep, float) else keep])
    with pytest.raises(CorruptFileError) as info:
        read_micrograph(cut)
    message = str(info.value)
    assert message.startswith(f"{cut}: not a readable {name[2:].upper()} file")
    assert "\n" not in message
