"""Time the ``nanoseg segment`` command end to end: reading, segmenting and writing every output.

Usage::

    python benchmarks/batch_speed.py [--size 4096] [--count 3] [--workers N] [--work DIR]

Writes `count` synthetic float32 MRC micrographs (``segment_speed.synthetic``, pixel size
0.05 nm, inside the bundled model's range, so nothing is resampled) and runs the installed
``nanoseg segment`` on them in a child process, as a user would. Reports the wall time of the
command (Python start-up and model loading included), the per-micrograph times from its log
(read, segment, write the mask, probability map, overlay and particle table) and the child's
peak resident memory (with ``--workers``, the largest single process's). Prints one
Markdown table row for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mrcfile
import numpy as np
from segment_speed import synthetic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--count", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0, help="segment's --workers (0: none)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/batch_speed"))
    args = parser.parse_args()
    inputs, out = args.work / "in", args.work / "out"
    shutil.rmtree(args.work, ignore_errors=True)
    inputs.mkdir(parents=True)
    for i in range(args.count):
        with mrcfile.new(inputs / f"m{i}.mrc") as mrc:
            mrc.set_data(synthetic(args.size, seed=i))
            mrc.voxel_size = 0.5  # Angstrom: 0.05 nm per pixel
    command = Path(sys.executable).with_name("nanoseg")
    start = time.perf_counter()
    extra = ["--workers", str(args.workers)] if args.workers else []
    subprocess.run([str(command), "segment", str(inputs), "--out", str(out), *extra], check=True)
    wall = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    log = (out / "log" / "segment.log").read_text()
    each = [float(s) for s in re.findall(r"particles \((\d+\.\d+) s\)", log)]
    overlay_mb = os.path.getsize(out / "m0_overlay.png") / 1e6
    print(
        f"| {args.count} x {args.size}^2, workers {args.workers or 'none'} | {wall:.1f} s | "
        f"{' / '.join(f'{s:.1f}' for s in each)} s | {peak_mb:.0f} MB | "
        f"overlay PNG {overlay_mb:.0f} MB; {os.cpu_count()} cores |"
    )
    np.testing.assert_equal(len(each), args.count)


if __name__ == "__main__":
    main()
