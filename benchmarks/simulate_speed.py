"""Time `nanoseg simulate`: seconds per micrograph for a size, pixel-size range and worker count.

Usage::

    python benchmarks/simulate_speed.py --n 1000 --size 512 --workers 2 --out /tmp/bench-sim

It simulates into a fresh folder (deleted first), so nothing is resumed, and prints one Markdown
table row for BENCHMARKS.md with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

from nanoseg.simulate import simulate


def machine() -> str:
    """CPU model and core count, for the record."""
    model = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--pixel-size", default="0.02:0.05")
    parser.add_argument("--materials", default="au,pd,cdse")
    parser.add_argument("--variants", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/nanoseg-bench-sim"))
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    low, high = (float(v) for v in args.pixel_size.split(":"))
    start = time.perf_counter()
    simulate(
        args.out,
        args.n,
        materials=args.materials.split(","),
        size=args.size,
        pixel_size=(low, high),
        variants=args.variants,
        seed=args.seed,
        workers=args.workers,
    )
    seconds = time.perf_counter() - start
    result = {
        "n": args.n,
        "size": args.size,
        "pixel_size_nm": args.pixel_size,
        "materials": args.materials,
        "variants": args.variants,
        "workers": args.workers,
        "seconds": round(seconds, 1),
        "seconds_per_micrograph": round(seconds / args.n, 3),
        "machine": machine(),
    }
    print(json.dumps(result))
    print(
        f"| simulate {args.n} x {args.size}^2, {args.pixel_size} nm/px, {args.materials}, "
        f"{args.variants} variants/scene | {args.workers} | {seconds:.0f} s | "
        f"{seconds / args.n:.2f} s |"
    )


if __name__ == "__main__":
    main()
