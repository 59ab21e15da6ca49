"""nanoseg: find nanoparticles in (HR)TEM micrographs.

The public API is small on purpose::

    from nanoseg import read_micrograph
    mic = read_micrograph("sample.dm4")   # Micrograph: float32 data, pixel size in nm
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
    "ShapeMismatchError",
    "UnsupportedFormatError",
    "__version__",
    "read_label_map",
    "read_micrograph",
]
