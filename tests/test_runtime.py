"""Process-wide settings (nanoseg.runtime)."""

from __future__ import annotations

import subprocess
import sys

import pytest

# In a fresh interpreter: the setting is process-wide, and other tests (the command line's)
# make it in this one.
FAULTS = """
import resource
import numpy as np
from nanoseg.runtime import keep_freed_memory

def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = np.ones(32 * 2**20, np.float32)  # 128 MB, as a 5800^2 float32 map
    del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

faults()
default = faults()
took = keep_freed_memory()
faults()
print(default, faults(), took)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_freed_memory_is_reused_without_page_faults() -> None:
    out = subprocess.run(
        [sys.executable, "-c", FAULTS], check=True, capture_output=True, text=True
    ).stdout
    default, reused, took = out.split()
    if took != "True":
        pytest.skip("not glibc: keep_freed_memory changes nothing")
    # By default a large array gets fresh pages each time (one fault per 4 kB page, or per
    # 2 MB where the kernel hands out huge pages: 64 or more for 128 MB); once freed memory
    # is kept, the second array of the same size reuses the first one's.
    assert int(default) >= 64
    assert int(reused) < int(default) / 10
