"""Writers for small, valid microscope files, so the readers can be tested without sample data.

Each writer produces the structure the vendor software writes, reduced to the tags/fields that
real readers look at. Every file is checked against two independent readers in
``tests/test_microscope_files.py``: rosettasciio (``rsciio``, what nanoseg uses) and ncempy.

Sources followed (installed packages: rosettasciio 0.15, ncempy 1.16):

* DM3/DM4: ``rsciio/digitalmicrograph/_api.py`` and ``ncempy/io/dm.py``, plus C. Boothroyd's
  "Digital Micrograph file format" notes (header, 8 zero bytes at the end).
* SER: ``rsciio/tia/_api.py`` and ``ncempy/io/ser.py``.
* Velox EMD: ``rsciio/emd/_emd_velox.py`` and ``ncempy/io/emdVelox.py``.
* Berkeley EMD v0.2: ``rsciio/emd/_emd_ncem.py`` and ``ncempy/io/emd.py``.

Quirks found while doing so (what a reader built on rsciio has to expect):

* DM: rsciio skips the thumbnail only because the root ``Thumbnails`` group lists its
  ``ImageIndex``; without that group the thumbnail comes back as an extra first signal with a
  structured RGBA dtype (fields B, G, R, A -> R, G, B, A). ncempy instead treats the first image
  as a thumbnail when its ``DataType`` is 23 (RGBA) and it is 2-D, and then expects it to carry
  two ``Calibrations/Dimension`` entries. ``ImageList`` entries must be unnamed (rsciio names
  them ``TagGroup<i>`` and parses ``<i>`` back). Strings are arrays of UTF-16 code units (tag
  type 4), which rsciio turns back into ``str`` and reports verbatim (no unit conversion).
  Angstrom is written as ``"Å"`` (U+00C5) and micrometres as ``"µm"`` (U+00B5, micro sign), the
  Latin-1 characters DM's unit strings use as far as known (not checked against a real GMS file
  here); a reader should also accept U+212B / U+03BC. An uncalibrated image has scale 1 and an
  *empty* unit array, which rsciio reports as ``units == ""``. Calibrations are 4-byte floats,
  so a scale of 0.002 reads back as 0.0020000000949949026. rsciio fails with ``BoxKeyError``
  without an ``ImageTags`` group (an empty one will do); ``Calibrations/Brightness`` is written
  because DM writes it.
* SER: TIA stores image rows bottom-up; both readers flip them (``dc[..., ::-1, :]``). rsciio
  reads the time tag as if it directly followed each data element, so the tags are written
  there. rsciio converts TIA's metres to nanometres itself: spatial axes come back with
  ``units == "nm"`` and ``scale == delta * 1e9``. No ``.emi`` file is needed (rsciio only reads
  one when asked to open the ``.emi``).
* Velox EMD: rsciio re-scales the axes with pint's ``to_compact`` applied to *half the field of
  view*, so a 0.05 nm pixel on an 11-pixel-wide image comes back as ``scale == 50.0,
  units == "pm"``, a 4096 x 0.5 nm image as ``"µm"``. rsciio raises ``KeyError`` unless the
  metadata has ``Acquisition``, and for stacks also ``Scan`` and
  ``Detectors/Detector-<DetectorIndex>/ExposureTime``; ncempy needs ``Acquisition``, ``Stage``
  and ``BinaryResult/Detector``.
* Berkeley EMD: rsciio and ncempy disagree on orientation. ncempy (written at NCEM, who define
  the format) keeps ``data`` as stored, with ``dim1`` describing axis 0. rsciio transposes every
  dataset (unless a ``dim0`` exists, i.e. the newer py4DSTEM layout) and pairs array axis 0 with
  the last ``dimN``: it is consistent with files HyperSpy writes (``data.T``), but returns NCEM
  files transposed. :func:`write_emd_berkeley` writes NCEM's layout by default; pass
  ``hyperspy_layout=True`` for the layout rsciio reads the right way round.
"""

from __future__ import annotations

import json
import struct
import uuid
from os import PathLike
from pathlib import Path
from typing import Any

import h5py
import numpy as np

__all__ = ["write_dm", "write_emd_berkeley", "write_emd_velox", "write_ser"]

StrPath = str | PathLike[str]

# --------------------------------------------------------------------------------------------
# Gatan DigitalMicrograph DM3 / DM4
# --------------------------------------------------------------------------------------------

#: numpy dtype -> ImageData.DataType (DM's image pixel type; 23 is the RGBA of thumbnails).
_DM_IMAGE_TYPES: dict[str, int] = {
    "int8": 9,
    "uint8": 6,
    "int16": 1,
    "uint16": 10,
    "int32": 7,
    "uint32": 11,
    "float32": 2,
    "float64": 12,
}

#: numpy dtype -> DM tag data type ("encoded type") for simple values and array elements. The
#: pixel array uses the pixel's own type: rsciio takes the array length as the pixel count.
_DM_TAG_TYPES: dict[str, int] = {
    "int16": 2,
    "int32": 3,
    "uint16": 4,
    "uint32": 5,
    "float32": 6,
    "float64": 7,
    "bool": 8,
    "int8": 9,
    "uint8": 10,
    "int64": 11,
    "uint64": 12,
}

#: Unit spellings normalised to the characters DigitalMicrograph writes.
_DM_UNIT_ALIASES = {
    "A": "\u00c5",
    "\u212b": "\u00c5",  # ANGSTROM SIGN -> LATIN CAPITAL LETTER A WITH RING ABOVE
    "angstrom": "\u00c5",
    "um": "\u00b5m",
    "\u03bcm": "\u00b5m",  # GREEK SMALL LETTER MU -> MICRO SIGN
}

# A tag group is a list of (name, value) pairs (name "" for DM's unnamed list entries); a value
# is a nested group, a str (UTF-16 array, as DM stores text), a 1-D array, or a scalar.
DMGroup = list[tuple[str, Any]]


def _dm_leaf(value: Any) -> tuple[tuple[int, ...], bytes]:
    """Return the type-info array and the little-endian payload of one data tag."""
    if isinstance(value, str):
        codes = np.frombuffer(value.encode("utf-16-le"), "<u2")
        return (20, 4, codes.size), codes.tobytes()
    if isinstance(value, bool):
        array = np.asarray(value, np.bool_)
    elif isinstance(value, int):
        array = np.asarray(value, np.int32)  # DM's "long"
    elif isinstance(value, float):
        array = np.asarray(value, np.float32)  # calibrations are 4-byte floats in DM files
    else:
        array = np.asarray(value)
    code = _DM_TAG_TYPES[array.dtype.name]
    payload = array.astype(array.dtype.newbyteorder("<")).tobytes()
    # simple type: [type]; array of a simple type: [20, element type, length]
    return ((code,) if array.ndim == 0 else (20, code, array.size)), payload


def _dm_group_body(group: DMGroup, v4: bool) -> bytes:
    """Encode a tag group: sorted flag, open flag, tag count, then the entries."""
    count = struct.pack(">Q" if v4 else ">L", len(group))
    return b"\x01\x00" + count + b"".join(_dm_entry(name, value, v4) for name, value in group)


def _dm_entry(name: str, value: Any, v4: bool) -> bytes:
    """Encode one tag entry (group 0x14 or data 0x15), including DM4's per-tag byte size."""
    label = name.encode("latin-1")
    if isinstance(value, list):
        kind, body = 20, _dm_group_body(value, v4)
    else:
        info, payload = _dm_leaf(value)
        fmt = ">Q" if v4 else ">L"
        kind = 21
        body = b"%%%%" + struct.pack(fmt, len(info)) + b"".join(struct.pack(fmt, i) for i in info)
        body += payload
    size = struct.pack(">Q", len(body)) if v4 else b""
    return struct.pack(">BH", kind, len(label)) + label + size + body


def _dm_image(
    pixels: np.ndarray, data_type: int, calibrations: list[tuple[float, str]], name: str
) -> DMGroup:
    """Build one ``ImageList`` entry. ``calibrations`` is [(scale, unit), ...] in x, y, z order."""
    dimension = [
        ("", [("Origin", 0.0), ("Scale", float(scale)), ("Units", unit)])
        for scale, unit in calibrations
    ]
    return [
        ("ImageData", [
            ("Calibrations", [
                ("Brightness", [("Origin", 0.0), ("Scale", 1.0), ("Units", "")]),
                ("Dimension", dimension),
                ("DisplayCalibratedUnits", True),
            ]),
            # DM stores pixels x-fastest, i.e. C order of (z, y, x), first row on top.
            ("Data", np.ascontiguousarray(pixels).ravel()),
            ("DataType", data_type),
            ("Dimensions", [("", int(n)) for n in pixels.shape[::-1]]),
            ("PixelDepth", pixels.dtype.itemsize),
        ]),
        ("ImageTags", []),
        ("Name", name),
    ]  # fmt: skip


def _dm_thumbnail(frame: np.ndarray) -> np.ndarray:
    """Grey RGBA (DataType 23) preview of at most 64 px a side, packed as uint32 like DM does."""
    step = max(1, -(-max(frame.shape) // 64))
    small = frame[::step, ::step].astype(np.float64)
    span = np.ptp(small) or 1.0
    grey = np.round(255 * (small - small.min()) / span).astype(np.uint32)
    return (0xFF000000 | grey << 16 | grey << 8 | grey).astype(np.uint32)


def write_dm(
    path: StrPath,
    data: np.ndarray,
    pixel_size: float | None,
    unit: str = "nm",
    version: int = 3,
) -> None:
    """Write a Gatan DigitalMicrograph DM3 or DM4 image.

    Parameters
    ----------
    path : str or os.PathLike
        Output file (``.dm3`` / ``.dm4``).
    data : numpy.ndarray
        2-D image ``(y, x)`` or 3-D stack ``(frames, y, x)``; dtype int8, uint8, int16, uint16,
        int32, uint32, float32 or float64.
    pixel_size : float or None
        Size of one pixel in ``unit`` (x and y). ``None`` writes DM's uncalibrated state:
        scale 1 and an empty unit string.
    unit : str, default "nm"
        Spatial unit; "A"/"Å"/"angstrom" are written as DM's "Å" (U+00C5), "um"/"μm" as "µm"
        (micro sign).
    version : {3, 4}, default 3
        DM3 (32-bit sizes) or DM4 (64-bit sizes and per-tag byte counts).
    """
    if version not in (3, 4):
        raise ValueError(f"version must be 3 or 4, not {version}")
    if data.ndim not in (2, 3):
        raise ValueError(f"need 2-D or 3-D data, got shape {data.shape}")
    if data.dtype.name not in _DM_IMAGE_TYPES:
        raise ValueError(f"dtype {data.dtype} is not supported")
    v4 = version == 4
    if pixel_size is None:
        spatial = [(1.0, ""), (1.0, "")]
    else:
        unit = _DM_UNIT_ALIASES.get(unit, unit)
        spatial = [(pixel_size, unit), (pixel_size, unit)]
    calibrations = spatial + [(1.0, "")] * (data.ndim - 2)  # frame axis: uncalibrated

    frame = data if data.ndim == 2 else data[0]
    thumb = _dm_thumbnail(frame)
    root: DMGroup = [
        ("ImageList", [
            ("", _dm_image(thumb, 23, [(1.0, ""), (1.0, "")], "")),
            ("", _dm_image(data, _DM_IMAGE_TYPES[data.dtype.name], calibrations, "test image")),
        ]),
        ("ImageSourceList", [
            ("", [("ClassName", "ImageSource:Simple"), ("Id", [("", 0)]), ("ImageRef", 1)]),
        ]),
        ("InImageMode", True),
        # rsciio drops the images listed here; DM lists its thumbnail (ImageList entry 0).
        ("Thumbnails", [("", [("ImageIndex", 0)])]),
    ]  # fmt: skip
    body = _dm_group_body(root, v4) + b"\x00" * 8  # DM ends the file with 8 zero bytes
    if v4:
        # version, root length = file length - 24, byte order of the tag data (1 = little)
        header = struct.pack(">LQL", 4, len(body) + 16 - 24, 1)
    else:
        header = struct.pack(">LLL", 3, len(body) + 12 - 16, 1)
    Path(path).write_bytes(header + body)


# --------------------------------------------------------------------------------------------
# FEI / Thermo Fisher TIA series (.ser)
# --------------------------------------------------------------------------------------------

_SER_DATA_TYPES = {
    "uint8": 1,
    "uint16": 2,
    "uint32": 3,
    "int8": 4,
    "int16": 5,
    "int32": 6,
    "float32": 7,
    "float64": 8,
}


def write_ser(path: StrPath, data: np.ndarray, pixel_size_m: float | None) -> None:
    """Write a TIA series file of 2-D images (DataTypeID 0x4122, time-only tags).

    Parameters
    ----------
    path : str or os.PathLike
        Output file; TIA names them ``<name>_1.ser``. No ``.emi`` companion is written.
    data : numpy.ndarray
        One image ``(y, x)`` or a series ``(frames, y, x)``; dtype u1/u2/u4/i1/i2/i4/f4/f8.
    pixel_size_m : float or None
        Pixel size in metres (``CalibrationDeltaX/Y``). ``None`` writes a delta of 1.0, which
        readers take as 1 m per pixel.
    """
    frames = data[np.newaxis] if data.ndim == 2 else data
    if frames.ndim != 3 or data.dtype.name not in _SER_DATA_TYPES:
        raise ValueError(f"need (y, x) or (frames, y, x) data of a TIA dtype, got {data.shape}")
    n, ny, nx = frames.shape
    delta = 1.0 if pixel_size_m is None else float(pixel_size_m)

    # Dimension array: one "Number" axis counting the images of the series (size 1 = single
    # image, which rsciio then drops). Units length 0, as TIA writes for an image series.
    description = b"Number"
    dim = struct.pack("<IddII", n, 0.0, 1.0, 0, len(description)) + description
    dim += struct.pack("<I", 0)
    head_len = 34 + len(dim)  # 22-byte fixed header + 8-byte OffsetArrayOffset + NumberDims
    offsets_len = 2 * 8 * n  # data offsets, then tag offsets (64-bit in SeriesVersion 0x220)

    elements, data_offsets, tag_offsets = [], [], []
    position = head_len + offsets_len
    for i, frame in enumerate(frames):
        element = struct.pack(
            "<ddIddIHII", 0.0, delta, 0, 0.0, delta, 0, _SER_DATA_TYPES[data.dtype.name], nx, ny
        )
        # TIA stores the bottom row first; both readers flip it back.
        element += np.ascontiguousarray(frame[::-1]).astype(frame.dtype.newbyteorder("<")).tobytes()
        tag = struct.pack("<HHI", 0x4152, 0, 1_700_000_000 + i)  # time tag: id, 0, unix time
        data_offsets.append(position)
        tag_offsets.append(position + len(element))
        elements.append(element + tag)
        position += len(element) + len(tag)

    header = struct.pack("<HHHIIII", 0x4949, 0x0197, 0x0220, 0x4122, 0x4152, n, n)
    header += struct.pack("<QI", head_len, 1) + dim
    offsets = struct.pack(f"<{n}Q", *data_offsets) + struct.pack(f"<{n}Q", *tag_offsets)
    Path(path).write_bytes(header + offsets + b"".join(elements))


# --------------------------------------------------------------------------------------------
# Thermo Fisher Velox EMD
# --------------------------------------------------------------------------------------------


def write_emd_velox(path: StrPath, data: np.ndarray, pixel_size_nm: float) -> None:
    """Write a Velox EMD (HDF5) holding one TEM image or image stack.

    Parameters
    ----------
    path : str or os.PathLike
        Output file (``.emd``).
    data : numpy.ndarray
        Image ``(y, x)`` or stack ``(frames, y, x)``; stored as Velox does, ``(y, x, frames)``
        with one chunk per frame.
    pixel_size_nm : float
        Pixel size in nm; written in metres (``BinaryResult.PixelSize``, ``PixelUnitX = "m"``).
    """
    frames = data[np.newaxis] if data.ndim == 2 else data
    if frames.ndim != 3:
        raise ValueError(f"need (y, x) or (frames, y, x) data, got shape {data.shape}")
    n, ny, nx = frames.shape
    size_m = repr(pixel_size_nm * 1e-9)
    # Velox writes every value as a string. Only keys the readers use, plus their containers.
    metadata = {
        "Acquisition": {"AcquisitionStartDatetime": {"DateTime": "1700000000"}},
        "BinaryResult": {
            "AcquisitionUnit": "",
            "CompositionType": "Single",
            "Detector": "BM-Ceta",
            "DetectorIndex": "0",
            "ImageSize": {"width": str(nx), "height": str(ny)},
            "Offset": {"x": "0", "y": "0"},
            "PixelSize": {"width": size_m, "height": size_m},
            "PixelUnitX": "m",
            "PixelUnitY": "m",
        },
        "CustomProperties": {},
        "Detectors": {
            "Detector-0": {
                "DetectorName": "BM-Ceta",
                "DetectorType": "ImagingDetector",
                "ExposureTime": "0.5",
            }
        },
        "Instrument": {"InstrumentClass": "Talos", "InstrumentModel": "Talos F200X"},
        "Optics": {"AccelerationVoltage": "200000"},
        "Scan": {},
        "Stage": {"AlphaTilt": "0", "BetaTilt": "0"},
    }
    text = np.frombuffer(json.dumps(metadata).encode("utf-8"), np.uint8)
    column = np.zeros(-(-(text.size + 1) // 1024) * 1024, np.uint8)  # zero-padded, as Velox
    column[: text.size] = text
    with h5py.File(path, "w") as f:
        version = json.dumps({"format": "Velox", "version": "11"}).encode()
        f.create_dataset("Version", data=np.array([version]))
        group = f.create_group(f"Data/Image/{uuid.uuid5(uuid.NAMESPACE_URL, str(path)).hex}")
        group.create_dataset("Data", data=np.moveaxis(frames, 0, -1), chunks=(ny, nx, 1))
        # One metadata column per frame: (bytes, frames) uint8.
        group.create_dataset("Metadata", data=np.repeat(column[:, np.newaxis], n, axis=1))


# --------------------------------------------------------------------------------------------
# Berkeley EMD v0.2
# --------------------------------------------------------------------------------------------


def write_emd_berkeley(
    path: StrPath,
    data: np.ndarray,
    pixel_size_nm: float | None,
    *,
    hyperspy_layout: bool = False,
) -> None:
    """Write a Berkeley (NCEM) EMD v0.2 file with one ``emd_group_type = 1`` group.

    Parameters
    ----------
    path : str or os.PathLike
        Output file (``.emd``).
    data : numpy.ndarray
        Image ``(y, x)`` or stack ``(frames, y, x)``.
    pixel_size_nm : float or None
        Spacing of the ``y``/``x`` dim vectors, with ``units = "nm"``; ``None`` writes a
        spacing of 1 with empty units.
    hyperspy_layout : bool, default False
        False: NCEM's layout (ncempy): ``data`` as given, ``dim1`` describes axis 0 (``y``).
        True: the layout HyperSpy/rsciio write: ``data.T`` stored, ``dim1`` describes ``x``.
        rsciio returns the data the right way round only for True, ncempy only for False.
    """
    if data.ndim not in (2, 3):
        raise ValueError(f"need 2-D or 3-D data, got shape {data.shape}")
    scale, units = (1.0, "") if pixel_size_nm is None else (float(pixel_size_nm), "nm")
    axes = [("y", scale, units), ("x", scale, units)]
    if data.ndim == 3:
        axes.insert(0, ("Number", 1.0, ""))
    stored = data
    if hyperspy_layout:
        stored, axes = data.T, axes[::-1]
    with h5py.File(path, "w") as f:
        f.attrs["version_major"] = 0
        f.attrs["version_minor"] = 2
        for name in ("data", "microscope", "sample", "user", "comments"):
            f.create_group(name)
        group = f["data"].create_group("micrograph")
        group.attrs["emd_group_type"] = 1
        group.create_dataset("data", data=stored)
        for i, (name, step, unit) in enumerate(axes, start=1):
            dim = group.create_dataset(f"dim{i}", data=np.arange(stored.shape[i - 1]) * step)
            dim.attrs["name"] = name
            dim.attrs["units"] = unit
