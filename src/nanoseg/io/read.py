"""Read micrographs and label maps from microscope files.

One entry point per kind of file: :func:`read_micrograph` turns any supported file into a
:class:`Micrograph` (2-D float32 data plus pixel size in nm), :func:`read_label_map` turns a
hand-drawn label image into a boolean particle mask.

Which library reads which format (see the README for why):

============================  ==========================  ======================================
extension                     library                     pixel size from
============================  ==========================  ======================================
``.mrc .mrcs .map .st .ali``  mrcfile                     header voxel size (Angstrom)
``.dm3 .dm4``                 rosettasciio                image calibrations (scale + units)
``.ser``                      rosettasciio                TIA calibration (metres)
``.emd``                      rosettasciio                Velox / Berkeley axis calibration
``.tif .tiff``                tifffile                    ImageJ resolution + unit, FEI metadata,
                                                          or resolution per centimetre
``.png .jpg .jpeg``           Pillow                      nanoseg's ``pixel_size_nm`` text chunk,
                                                          else pHYs finer than 1 um/px
``.npy``                      numpy                       never (None)
============================  ==========================  ======================================

Rules applied to every file:

* Stacks (3-D data ``(frames, y, x)``: movies, series, MRC stacks) are reduced to one image by
  summing all frames (a dose-fractionated exposure adds up to the full-dose image); pass
  ``frame=i`` to take frame ``i`` instead.
* Colour images (RGB, RGBA, palette, grey + alpha) are converted to luminance with the ITU-R
  BT.601 weights (0.299 R + 0.587 G + 0.114 B, what Pillow uses); alpha is dropped.
* Data is returned as float32 with its full dynamic range: never rescaled, never squeezed to 8 bit.
* 1-D data, 4-D or higher data, empty axes, complex data, NaN or infinite values, and images with
  more than ``MAX_PIXELS`` pixels per frame are refused with a
  :class:`~nanoseg.errors.NanosegError`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from nanoseg.errors import (
    CorruptFileError,
    InvalidDataError,
    NanosegError,
    ShapeMismatchError,
    UnsupportedFormatError,
)

__all__ = [
    "MAX_PIXELS",
    "READ_EXTENSIONS",
    "Micrograph",
    "coloured_pixels",
    "read_label_map",
    "read_micrograph",
    "sha256_file",
    "unit_to_nm",
]

#: Largest frame nanoseg reads, in pixels (32768 x 32768). Larger headers are taken as corrupt.
MAX_PIXELS = 1 << 30

#: Luminance weights (ITU-R BT.601) for colour to grey.
_LUMA = np.array([0.299, 0.587, 0.114])
#: A pixel of a colour file is coloured when its R, G, B spread over more than this fraction
#: of the channels' full scale.
COLOUR_SPREAD = 0.15
#: More coloured pixels than this fraction: a false-colour image, not drawn annotations.
MAX_COLOURED = 0.05

#: PNG text key under which nanoseg stores the exact pixel size (pHYs holds whole px per metre
#: only, which cannot express HRTEM pixel sizes below ~0.23 nm).
PNG_PIXEL_SIZE_KEY = "nanoseg:pixel_size_nm"

_NM_PER_UNIT = {
    "nm": 1.0,
    "nanometer": 1.0,
    "nanometre": 1.0,
    "a": 0.1,
    "å": 0.1,  # U+00E5 after lower-casing U+00C5
    "\u212b": 0.1,  # ANGSTROM SIGN
    "ang": 0.1,
    "angstrom": 0.1,
    "pm": 1e-3,
    "um": 1e3,
    "µm": 1e3,  # MICRO SIGN
    "μm": 1e3,  # GREEK SMALL LETTER MU
    "\\u00b5m": 1e3,  # how ImageJ escapes the micro sign in TIFF descriptions
    "micron": 1e3,
    "micrometer": 1e3,
    "micrometre": 1e3,
    "mm": 1e6,
    "cm": 1e7,
    "m": 1e9,
    "meter": 1e9,
    "metre": 1e9,
}


def unit_to_nm(unit: str | None) -> float | None:
    """Return how many nanometres one `unit` is, or None for an unknown or reciprocal unit.

    Parameters
    ----------
    unit : str or None
        A length unit as microscope software writes it: ``"nm"``, ``"Å"``, ``"A"``, ``"µm"``,
        ``"um"``, ``"micron"``, ``"m"`` and similar. Reciprocal units (``"1/nm"``) describe
        diffraction patterns, not images, and give None.

    Returns
    -------
    float or None
        Nanometres per unit.
    """
    if unit is None:
        return None
    key = str(unit).strip().lower()
    return _NM_PER_UNIT.get(key)


@dataclass(frozen=True, eq=False)
class Micrograph:
    """A micrograph as nanoseg sees it.

    Attributes
    ----------
    data : numpy.ndarray
        Image, shape ``(height, width)``, dtype float32, in the file's own intensity units.
    pixel_size : float or None
        Pixel size in nm per pixel; None when the file carries no (real-space) calibration.
    path : pathlib.Path or None
        File it was read from; None for arrays built in memory.
    format : str
        Short name of the file format (``"MRC"``, ``"DM4"``, ``"TIFF"``, ...).
    dtype : str
        Data type as stored in the file (``"int16"``, ``"uint8"``, ...).
    frames : int
        Number of frames in the file (1 for a single image; >1 means a stack was reduced).
    metadata : dict
        The file's raw metadata (header fields, tags, original metadata tree).
    coloured : numpy.ndarray or None
        bool ``(height, width)``: in a colour file of a greyscale micrograph, the pixels drawn
        in colour (labels, arrows, scale bars; see :func:`coloured_pixels`); None otherwise.
    """

    data: np.ndarray
    pixel_size: float | None
    path: Path | None = None
    format: str = "array"
    dtype: str = "float32"
    frames: int = 1
    metadata: dict[str, Any] = field(default_factory=dict, repr=False)
    coloured: np.ndarray | None = field(default=None, repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` in pixels."""
        return self.data.shape  # type: ignore[return-value]

    @property
    def name(self) -> str:
        """File stem, used to name outputs (``"micrograph"`` for in-memory arrays)."""
        return self.path.stem if self.path is not None else "micrograph"

    def describe(self) -> str:
        """One line: format, size, stored dtype, frames, pixel size and value range."""
        height, width = self.shape
        parts = [self.format, f"{width}x{height} px", self.dtype]
        if self.frames > 1:
            parts.append(f"{self.frames} frames summed")
        if self.pixel_size is None:
            parts.append("pixel size unknown")
        else:
            parts.append(f"pixel {self.pixel_size:.4g} nm ({width * self.pixel_size:.4g} nm wide)")
        parts.append(f"range [{self.data.min():.6g}, {self.data.max():.6g}]")
        return ", ".join(parts)


@dataclass
class _Raw:
    """What a format reader hands back before the shared rules are applied."""

    array: np.ndarray
    layout: Literal["grey", "colour", "stack"]
    format: str
    pixel_size: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Format readers. Each takes a Path and returns a _Raw; they may raise anything, which
# _read_raw turns into a one-line CorruptFileError naming the file.
# --------------------------------------------------------------------------------------------


def _read_mrc(path: Path) -> _Raw:
    import mrcfile

    # Check the header against the file size first, so a damaged header gets a precise message.
    with mrcfile.open(path, mode="r", permissive=False, header_only=True) as mrc:
        header = mrc.header
        nx, ny, nz = int(header.nx), int(header.ny), int(header.nz)
        _check_frame_size(nx, ny)
        itemsize = mrcfile.utils.data_dtype_from_header(header).itemsize
        offset = 1024 + int(header.nsymbt)
    expected = offset + nx * ny * max(nz, 1) * itemsize
    actual = path.stat().st_size
    if actual < expected:
        raise CorruptFileError(
            f"truncated MRC: header claims {nx}x{ny}x{nz} values ({expected} bytes) "
            f"but the file has {actual} bytes"
        )
    # mmap keeps memory flat for large stacks; permissive=False rejects files without 'MAP '.
    with mrcfile.mmap(path, mode="r", permissive=False) as mrc:
        header = mrc.header
        if mrc.data is None:
            raise CorruptFileError("MRC header present but no data block", path)
        if np.iscomplexobj(mrc.data):
            raise InvalidDataError("complex MRC data (mode 3/4) is not an image", path)
        array = np.array(mrc.data)  # copy out of the memory map before the file closes
        voxel = mrc.voxel_size
        sizes = [float(voxel.x), float(voxel.y)]
        metadata = {name: _plain(header[name]) for name in header.dtype.names}
    # MRC voxel sizes are in Angstrom; 0 means "not calibrated".
    pixel_size = _mean_size(s * 0.1 for s in sizes)
    layout = "stack" if array.ndim == 3 and nz > 1 else "grey"
    if array.ndim == 3 and nz == 1:
        array = array[0]
    return _Raw(array, layout, "MRC", pixel_size, metadata)


def _read_rsciio(path: Path, fmt: str) -> _Raw:
    if fmt in ("DM3", "DM4"):
        from rsciio.digitalmicrograph import file_reader
    elif fmt == "SER":
        from rsciio.tia import file_reader
    else:
        from rsciio.emd import file_reader

    signals = file_reader(str(path))
    # Structured dtypes are RGBA thumbnails (DM) and not images to segment.
    images = [s for s in signals if np.asarray(s["data"]).dtype.names is None and _is_image(s)]
    if not images:
        shapes = ", ".join(str(np.shape(s["data"])) for s in signals) or "none"
        raise InvalidDataError(f"no 2-D image in the file (signals found: {shapes})", path)
    signal = images[0]  # documented rule: the first image signal in the file
    array, spatial = _yx_order(np.asarray(signal["data"]), signal["axes"])
    sizes = []
    for axis in spatial:
        factor = unit_to_nm(axis.get("units"))
        scale = float(axis.get("scale", 1.0) or 0.0)
        sizes.append(scale * factor if factor is not None else float("nan"))
    metadata = {
        "original_metadata": signal.get("original_metadata", {}),
        "metadata": signal.get("metadata", {}),
        "axes": signal["axes"],
    }
    layout = "stack" if array.ndim == 3 else "grey"
    return _Raw(array, layout, fmt, _mean_size(sizes), metadata)


def _axis_names(axes: list[dict[str, Any]]) -> list[str]:
    return [str(a.get("name") or "").strip().lower() for a in axes]


def _is_image(signal: dict[str, Any]) -> bool:
    axes = signal["axes"]
    names = _axis_names(axes)
    signal_dims = sum(1 for a in axes if not a.get("navigate", False))
    return signal_dims == 2 or ("x" in names and "y" in names)


def _yx_order(array: np.ndarray, axes: list[dict[str, Any]]) -> tuple[np.ndarray, list[dict]]:
    """Put the axes named y and x last, in that order (rsciio returns Berkeley EMD transposed)."""
    names = _axis_names(axes)
    if "x" in names and "y" in names and array.ndim == len(axes):
        iy, ix = names.index("y"), names.index("x")
        others = [i for i in range(array.ndim) if i not in (iy, ix)]
        return np.transpose(array, [*others, iy, ix]), [axes[iy], axes[ix]]
    return array, [a for a in axes if not a.get("navigate", False)][-2:]


def _read_tiff(path: Path) -> _Raw:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if not tif.series:
            raise CorruptFileError("TIFF file holds no image", path)
        series = tif.series[0]
        shape = series.shape
        axes = series.axes
        if len(shape) >= 2:
            y, x = (shape[axes.index("Y")], shape[axes.index("X")]) if "YX" in axes else shape[:2]
            _check_frame_size(int(x), int(y))
        array = series.asarray()
        page = tif.pages[0]
        pixel_size = _tiff_pixel_size(tif, page)
        metadata = {tag.name: _plain(tag.value) for tag in page.tags.values() if tag.count < 4096}
        for kind in ("imagej", "fei", "sem", "ome"):
            value = getattr(tif, f"{kind}_metadata", None)
            if value:
                metadata[f"{kind}_metadata"] = value
    if "S" in axes:
        samples_axis = axes.index("S")
        array = np.moveaxis(array, samples_axis, -1)
        rest = array.ndim - 1
        if array.shape[-1] == 1:
            return _Raw(
                array[..., 0], "stack" if rest == 3 else "grey", "TIFF", pixel_size, metadata
            )
        if rest == 2:
            return _Raw(array, "colour", "TIFF", pixel_size, metadata)
        raise InvalidDataError(f"colour stack of shape {array.shape} is not supported", path)
    return _Raw(array, "stack" if array.ndim == 3 else "grey", "TIFF", pixel_size, metadata)


def _tiff_pixel_size(tif: Any, page: Any) -> float | None:
    """Pixel size in nm from, in order: FEI/Thermo metadata, ImageJ unit + resolution, cm unit."""
    fei = tif.fei_metadata or tif.sem_metadata
    if fei:
        for section in ("Scan", "EScan", "Image"):
            width = (fei.get(section) or {}).get("PixelWidth")
            if width:
                return float(width) * 1e9  # metres
    tags = page.tags
    if "XResolution" not in tags:
        return None
    num, den = tags["XResolution"].value
    if not num or not den:
        return None
    per_unit = num / den  # pixels per unit
    imagej = tif.imagej_metadata or {}
    unit = imagej.get("unit")
    if unit is not None:
        factor = unit_to_nm(unit)
        return factor / per_unit if factor is not None else None
    resolution_unit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2
    if resolution_unit == 3:  # CENTIMETER; INCH (2) is a print resolution, not a calibration
        return 1e7 / per_unit
    return None


def _read_pillow(path: Path) -> _Raw:
    from PIL import Image, ImageSequence

    with Image.open(path) as im:
        _check_frame_size(*im.size)
        fmt = "PNG" if im.format == "PNG" else (im.format or "image")
        pixel_size = _png_pixel_size(im.info)
        metadata = {k: _plain(v) for k, v in im.info.items() if not isinstance(v, bytes)}
        frames = [_pillow_frame_to_array(frame) for frame in ImageSequence.Iterator(im)]
    if len(frames) > 1:
        if frames[0].ndim != 2:
            raise InvalidDataError("animated colour images are not supported", path)
        return _Raw(np.stack(frames), "stack", fmt, pixel_size, metadata)
    array = frames[0]
    return _Raw(array, "colour" if array.ndim == 3 else "grey", fmt, pixel_size, metadata)


def _pillow_frame_to_array(im: Any) -> np.ndarray:
    mode = im.mode
    if mode in ("LA", "La"):
        return np.asarray(im.getchannel(0))
    if mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGBA" if "A" in mode or "transparency" in im.info else "RGB")
    return np.asarray(im)


def _png_pixel_size(info: dict[str, Any]) -> float | None:
    text = info.get(PNG_PIXEL_SIZE_KEY)
    if text is not None:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if math.isfinite(value) and value > 0:
            return value
    dpi = info.get("dpi")
    if dpi and dpi[0]:
        nm = 25.4e6 / float(dpi[0])
        # Coarser than 1 um/px is a screen or print resolution (72, 96, 300 dpi), not a
        # calibration of an electron micrograph.
        return nm if nm <= 1000.0 else None
    return None


def _read_npy(path: Path) -> _Raw:
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    if array.ndim >= 2:
        _check_frame_size(array.shape[-1], array.shape[-2])
    array = np.array(array)
    if array.ndim == 3 and array.shape[-1] in (3, 4) and min(array.shape[:2]) > 4:
        return _Raw(array, "colour", "NPY")
    return _Raw(array, "stack" if array.ndim == 3 else "grey", "NPY")


_READERS: dict[str, tuple[str, Callable[[Path], _Raw]]] = {}
for _ext in (".mrc", ".mrcs", ".map", ".st", ".ali"):
    _READERS[_ext] = ("MRC", _read_mrc)
for _ext, _fmt in ((".dm3", "DM3"), (".dm4", "DM4"), (".ser", "SER"), (".emd", "EMD")):
    _READERS[_ext] = (_fmt, lambda p, f=_fmt: _read_rsciio(p, f))
for _ext in (".tif", ".tiff"):
    _READERS[_ext] = ("TIFF", _read_tiff)
for _ext, _fmt in ((".png", "PNG"), (".jpg", "JPEG"), (".jpeg", "JPEG")):
    _READERS[_ext] = (_fmt, _read_pillow)
_READERS[".npy"] = ("NPY", _read_npy)

#: File extensions :func:`read_micrograph` accepts (lower case, with the dot).
READ_EXTENSIONS = tuple(sorted(_READERS))


# --------------------------------------------------------------------------------------------
# Shared rules
# --------------------------------------------------------------------------------------------


def _read_raw(path: str | os.PathLike[str]) -> tuple[Path, _Raw]:
    path = Path(path)
    if not path.exists():
        raise CorruptFileError("file not found", path)
    if path.is_dir():
        raise CorruptFileError("is a folder, not a file", path)
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise UnsupportedFormatError(
            f"unknown file type '{path.suffix or '(no extension)'}'; "
            f"nanoseg reads {' '.join(READ_EXTENSIONS)}",
            path,
        )
    fmt, read = reader
    if path.stat().st_size == 0:
        raise CorruptFileError("file is empty", path)
    try:
        with _quiet_libraries():
            raw = read(path)
    except NanosegError as err:
        if err.path is None:
            raise type(err)(err.problem, path) from err
        raise
    except MemoryError as err:
        raise CorruptFileError(
            f"{fmt} header claims more data than can be held in memory", path
        ) from err
    except Exception as err:  # third-party parsers raise anything on a damaged file
        detail = str(err).strip().splitlines()[0] if str(err).strip() else ""
        detail = f"{type(err).__name__}: {detail}" if detail else type(err).__name__
        if len(detail) > 160:
            detail = detail[:157] + "..."
        raise CorruptFileError(f"not a readable {fmt} file, or truncated ({detail})", path) from err
    return path, raw


@contextlib.contextmanager
def _quiet_libraries() -> Iterator[None]:
    """Silence the readers' warnings and log lines: nanoseg reports problems itself, in one line."""
    loggers = [logging.getLogger(name) for name in ("tifffile", "rsciio", "mrcfile", "PIL")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.CRITICAL + 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _check_frame_size(width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise CorruptFileError(
            f"header claims a {width}x{height} image, larger than nanoseg reads "
            f"({MAX_PIXELS} pixels); the file is damaged or not an image"
        )


def _check_array(array: np.ndarray, path: Path) -> None:
    if array.ndim < 2:
        raise InvalidDataError(
            f"{array.ndim}-D data of shape {array.shape}; a micrograph must be 2-D", path
        )
    if array.ndim > 3:
        raise InvalidDataError(
            f"{array.ndim}-D data of shape {array.shape}; only 2-D images and 3-D stacks "
            "(frames, y, x) are supported",
            path,
        )
    if 0 in array.shape:
        raise InvalidDataError(f"data has an empty axis (shape {array.shape})", path)
    if np.iscomplexobj(array):
        raise InvalidDataError("complex data is not an image", path)
    if array.dtype.kind not in "biuf":
        raise InvalidDataError(f"data type {array.dtype} is not numeric", path)


def coloured_pixels(rgb: np.ndarray) -> np.ndarray | None:
    """The pixels of a colour image that are not grey, when few enough to be annotations.

    A micrograph is grey; a colour export of one is grey too, except where labels, arrows or
    a scale bar were drawn in colour. A pixel counts as coloured when its channels spread over
    more than :data:`COLOUR_SPREAD` of the channels' full scale (JPEG's colour noise stays
    well below). An image with more than :data:`MAX_COLOURED` of its pixels coloured is a
    false-colour rendering, not a grey micrograph with annotations.

    Parameters
    ----------
    rgb : numpy.ndarray
        ``(height, width, 3 or 4)``, integer or float (alpha ignored).

    Returns
    -------
    numpy.ndarray or None
        bool ``(height, width)``, or None when no pixel (or too many) is coloured.
    """
    channels = rgb[..., :3]
    if channels.dtype.kind in "ui":
        full = float(np.iinfo(channels.dtype).max)
    else:
        full = float(np.max(channels)) or 1.0
    spread = channels.max(axis=-1).astype(np.float64) - channels.min(axis=-1)
    coloured = spread > COLOUR_SPREAD * full
    fraction = float(coloured.mean())
    return coloured if 0 < fraction <= MAX_COLOURED else None


def _luminance(array: np.ndarray) -> np.ndarray:
    rgb = array[..., :3].astype(np.float64)
    return rgb @ _LUMA


def read_micrograph(
    path: str | os.PathLike[str], *, frame: int | Literal["sum"] = "sum"
) -> Micrograph:
    """Read a micrograph file into a :class:`Micrograph`.

    Parameters
    ----------
    path : str or os.PathLike
        MRC, DM3/DM4, SER, EMD, TIFF, PNG, JPEG or NPY file (chosen by extension).
    frame : int or "sum", default "sum"
        How a stack of frames becomes one image: the sum of all frames, or frame number `frame`.

    Returns
    -------
    Micrograph
        ``data`` of shape ``(height, width)``, dtype float32; ``pixel_size`` in nm or None.

    Raises
    ------
    UnsupportedFormatError
        The extension is not one nanoseg reads.
    CorruptFileError
        The file is missing, empty, truncated, or not a file of its type.
    InvalidDataError
        The data is 1-D, 4-D or more, has an empty axis, NaN/inf values, or is complex.
    """
    path, raw = _read_raw(path)
    array = raw.array
    _check_array(array, path)
    stored_dtype = str(array.dtype)
    n_frames = 1
    coloured = None
    if raw.layout == "colour":
        if array.ndim != 3 or array.shape[-1] not in (3, 4):
            raise InvalidDataError(f"colour image of shape {array.shape} is not RGB(A)", path)
        coloured = coloured_pixels(array)
        array = _luminance(array)
    elif raw.layout == "stack" and array.ndim == 3:
        n_frames = array.shape[0]
        if frame == "sum":
            array = array.sum(axis=0, dtype=np.float64)
        else:
            if not -n_frames <= int(frame) < n_frames:
                raise InvalidDataError(
                    f"frame {frame} requested but the stack has {n_frames}", path
                )
            array = array[int(frame)]
    if array.ndim != 2:
        raise InvalidDataError(f"cannot make a 2-D image from data of shape {array.shape}", path)
    if min(array.shape) < 2:
        raise InvalidDataError(
            f"image of shape {array.shape} is too small to be a micrograph", path
        )
    data = np.ascontiguousarray(array, dtype=np.float32)
    bad = data.size - int(np.count_nonzero(np.isfinite(data)))
    if bad:
        raise InvalidDataError(f"data contains {bad} NaN or infinite values", path)
    return Micrograph(
        data=data,
        pixel_size=raw.pixel_size,
        path=path,
        format=raw.format,
        dtype=stored_dtype,
        frames=n_frames,
        metadata=raw.metadata,
        coloured=coloured,
    )


def read_label_map(
    path: str | os.PathLike[str], shape: tuple[int, int] | None = None, *, image: str | None = None
) -> np.ndarray:
    """Read a hand-drawn label map: any nonzero pixel is particle.

    Parameters
    ----------
    path : str or os.PathLike
        8- or 16-bit PNG or TIFF (any format :func:`read_micrograph` reads is accepted). Colour
        label maps count a pixel as particle when any colour channel (not alpha) is nonzero.
    shape : (int, int), optional
        ``(height, width)`` of the micrograph it labels; a different size is an error.
    image : str, optional
        Name of that micrograph, used in the error message.

    Returns
    -------
    numpy.ndarray
        Boolean mask, shape ``(height, width)``; True marks particle pixels.

    Raises
    ------
    ShapeMismatchError
        The label map's size differs from `shape`.
    CorruptFileError, UnsupportedFormatError, InvalidDataError
        As for :func:`read_micrograph`; stacks are refused.
    """
    path, raw = _read_raw(path)
    array = raw.array
    _check_array(array, path)
    if raw.layout == "colour":
        mask = np.any(array[..., :3] != 0, axis=-1)
    elif array.ndim == 2:
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise InvalidDataError("label map contains NaN or infinite values", path)
        mask = array != 0
    else:
        raise InvalidDataError(f"label map must be one 2-D image, got shape {array.shape}", path)
    if shape is not None and mask.shape != tuple(shape):
        what = f"its micrograph {image}" if image else "its micrograph"
        raise ShapeMismatchError(
            f"label map is {mask.shape[1]}x{mask.shape[0]} px but {what} is "
            f"{shape[1]}x{shape[0]} px",
            path,
        )
    return mask


def _mean_size(sizes: Any) -> float | None:
    """Mean of the x and y pixel sizes in nm, or None if any is missing or not positive."""
    values = [float(s) for s in sizes]
    # Outside 0.1 pm .. 0.1 mm per pixel is a placeholder calibration (TIA writes 1 m), not a size.
    if not values or any(not math.isfinite(v) or not 1e-4 <= v <= 1e5 for v in values):
        return None
    return float(sum(values) / len(values))


def _plain(value: Any) -> Any:
    """Make header values JSON-friendly (numpy scalars and small arrays to Python)."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "S":
            return value.tobytes().decode("latin-1").rstrip("\x00 ")
        return value.tolist() if value.size <= 1024 else f"<array {value.shape} {value.dtype}>"
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("latin-1").rstrip("\x00 ")
    return value


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, read in blocks (data sets can be gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()
