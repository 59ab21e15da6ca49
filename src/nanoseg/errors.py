"""Exceptions raised for expected problems with user input.

Every error nanoseg raises on purpose is a :class:`NanosegError`. Its message is one line that
names the file (when there is one) and the problem, so the command line can print it as is and
exit with code 2 instead of showing a traceback. Anything else that escapes is a bug.
"""

from __future__ import annotations

from os import PathLike

__all__ = [
    "CorruptFileError",
    "InvalidDataError",
    "NanosegError",
    "OutputError",
    "ShapeMismatchError",
    "UnsupportedFormatError",
]


class NanosegError(Exception):
    """Base class of all expected errors: bad input files, bad options, unwritable outputs.

    Parameters
    ----------
    message : str
        What is wrong, in one line.
    path : str or os.PathLike, optional
        The file the problem is about; it is put in front of the message.
    """

    def __init__(self, message: str, path: str | PathLike[str] | None = None) -> None:
        self.path = None if path is None else str(path)
        self.problem = message
        super().__init__(message if path is None else f"{path}: {message}")


class UnsupportedFormatError(NanosegError):
    """The file's extension is not one nanoseg can read."""


class CorruptFileError(NanosegError):
    """The file is missing, empty, truncated, or not what its extension says."""


class InvalidDataError(NanosegError):
    """The file was read but its data cannot be a micrograph (wrong dimensionality, NaN, ...)."""


class ShapeMismatchError(NanosegError):
    """A label map does not have the size of its micrograph."""


class OutputError(NanosegError):
    """An output cannot be written (unwritable folder, or it would overwrite an input)."""
