"""Process-wide settings for working through many large micrographs.

glibc's ``malloc`` gives each block over 32 MB its own fresh pages (``mmap``) and hands them
back to the system when the block is freed. A 4096² micrograph passes through dozens of
full-size arrays (float32 maps, label images, masks), so every one of them is built on fresh
pages: 300,000-400,000 page faults, 0.6-0.9 s of a 2.3 s segmentation on a 2-core machine
(BENCHMARKS.md). :func:`keep_freed_memory` makes the allocator keep freed memory and reuse
it instead. The ``nanoseg`` command calls it; a Python program that segments many
micrographs may call it too. The price: the process keeps the memory of its largest
micrograph until it exits, instead of shrinking between micrographs. Dask workers do not call
it (see :func:`nanoseg.batch.load_segmenter`).

:func:`resolve_device` picks where the network runs: a CUDA GPU when torch sees one, else the
CPU. Everything around the network (reading, filtering, outlines, measuring) stays on the CPU.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import TYPE_CHECKING

from nanoseg.errors import NanosegError

if TYPE_CHECKING:
    import torch

__all__ = ["keep_freed_memory", "resolve_device"]

# mallopt parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# The largest value mallopt takes (an int): no block is mapped on its own, and free memory
# at the top of the heap is returned only past 2 GB.
_LARGEST = 2**31 - 1


def keep_freed_memory() -> bool:
    """Make the C allocator keep freed memory for reuse rather than return it to the system.

    Returns
    -------
    bool
        True when the setting took (Linux with glibc); False elsewhere, where nothing is
        changed. Calling it again is harmless.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; musl's is a stub that returns 0.
    return bool(mallopt(_M_MMAP_THRESHOLD, _LARGEST)) and bool(mallopt(_M_TRIM_THRESHOLD, _LARGEST))


def resolve_device(device: str = "auto") -> torch.device:
    """The torch device that ``--device`` names.

    Parameters
    ----------
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Returns
    -------
    torch.device

    Raises
    ------
    NanosegError
        For any other name, or for a GPU that torch cannot see (a CPU-only build of torch,
        no driver, or N out of range).
    """
    import torch

    name = str(device).strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    kind, _, index = name.partition(":")
    if kind not in ("cpu", "cuda") or (index and (kind == "cpu" or not index.isdigit())):
        raise NanosegError(f"--device must be auto, cpu, cuda or cuda:N, not '{device}'")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise NanosegError(
                f"--device {device}: torch {torch.__version__} sees no CUDA GPU "
                "(a CPU-only build, or no driver); use --device cpu"
            )
        if index and int(index) >= torch.cuda.device_count():
            raise NanosegError(
                f"--device {device}: torch sees {torch.cuda.device_count()} GPU(s), numbered from 0"
            )
        # cuBLAS is deterministic only with a fixed workspace; it reads this when it starts.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return torch.device(name)
