"""Peak memory and time of `nanoseg dataset build` on many large micrographs (a test of scale).

Usage::

    python benchmarks/dataset_memory.py --n 100 --size 4096 --work /tmp/nanoseg-bench-ds

Writes `n` int16 MRC micrographs of `size` x `size` px with label maps into WORK (synthetic
dark discs on a noisy background: this measures streaming, not physics; generated once and
reused), then builds the data set in a child process and reports its peak resident memory
(``ru_maxrss`` of the child) and wall time as a Markdown table row for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from nanoseg.io import write_mask, write_mrc


def make_inputs(work: Path, n: int, size: int) -> None:
    """Synthetic micrographs with particles, written once (skipped if already there)."""
    images, labels = work / "images", work / "labels"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    rows, cols = np.ogrid[:size, :size]
    for i in range(n):
        if (labels / f"m{i:03d}.png").exists():
            continue
        mask = np.zeros((size, size), bool)
        for r, c in rng.integers(0, size, size=(200, 2)):
            radius = rng.integers(10, 60)
            r0, r1, c0, c1 = max(r - radius, 0), r + radius, max(c - radius, 0), c + radius
            sub_r, sub_c = rows[r0:r1], cols[:, c0:c1]
            mask[r0:r1, c0:c1] |= (sub_r - r) ** 2 + (sub_c - c) ** 2 <= radius**2
        image = rng.normal(3000, 200, (size, size)) - 1200 * mask
        write_mrc(images / f"m{i:03d}.mrc", image.astype(np.int16), pixel_size=0.03)
        write_mask(labels / f"m{i:03d}.png", mask)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--work", type=Path, default=Path("/tmp/nanoseg-bench-ds"))
    args = parser.parse_args()
    make_inputs(args.work, args.n, args.size)
    out = args.work / "data.h5"
    out.unlink(missing_ok=True)
    command = [
        sys.executable, "-m", "nanoseg", "dataset", "build",
        "--images", str(args.work / "images"), "--labels", str(args.work / "labels"),
        "--out", str(out),
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, check=True)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    result = {
        "micrographs": args.n,
        "size": args.size,
        "peak_rss_mb": round(peak_mb),
        "seconds": round(seconds),
        "output_gb": round(out.stat().st_size / 1e9, 2),
    }
    print(json.dumps(result))
    print(
        f"| dataset build, {args.n} x {args.size}^2 int16 MRC | {peak_mb:.0f} MB | "
        f"{seconds:.0f} s | {result['output_gb']} GB |"
    )


if __name__ == "__main__":
    main()
