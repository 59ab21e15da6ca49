"""nanoseg: find nanoparticles in (HR)TEM micrographs.

The public API is small on purpose::

    from nanoseg import Segmenter, read_micrograph
    mic = read_micrograph("sample.dm4")   # Micrograph: float32 data, pixel size in nm
    result = Segmenter.load()(mic)        # mask, probability and particle table
"""

__version__ = "0.1.0"

from nanoseg.errors import (
    CorruptFileError,
    InvalidDataError,
    NanosegError,
    OutputError,
    ShapeMismatchError,
    UnsupportedFormatError,
)
from nanoseg.io import Micrograph, read_label_map, read_micrograph

__all__ = [
    "CorruptFileError",
    "InvalidDataError",
    "Micrograph",
    "NanosegError",
    "OutputError",
    "SegmentResult",
    "Segmenter",
    "ShapeMismatchError",
    "UnsupportedFormatError",
    "__version__",
    "read_label_map",
    "read_micrograph",
]


def __getattr__(name: str):
    # Segmenter pulls in torch: import it on first use so `import nanoseg` stays fast.
    if name in ("Segmenter", "SegmentResult"):
        from nanoseg import segment

        return getattr(segment, name)
    raise AttributeError(f"module 'nanoseg' has no attribute {name!r}")
