"""Time `Segmenter` on one large micrograph, and its peak memory.

Usage::

    python benchmarks/segment_speed.py [--size 4096] [--tta none] [--model builtin]
        [--precision auto|float32|bfloat16] [--edge contrast|network] [--device auto|cpu|cuda]
    python benchmarks/segment_speed.py --size 8192 --memory
    python benchmarks/segment_speed.py --micrograph FILE   # FILE tiled to --size, its pixel size

The micrograph is synthetic (smoothed noise with dark discs, float32, pixel size inside the
model's range so nothing is resampled): about 650 particles 60-100 px across. The outline
step's time grows with the number of particles, so ``--micrograph FILE`` (a simulated
micrograph, say, or ``example`` for the bundled one) tiles FILE to the size instead, at
FILE's own pixel size: thousands of particles for a dense medium-magnification scene.
The model is loaded and run once on a small image first (warm-up), then the whole call
``segmenter(image)`` is timed: preprocessing, tiled prediction, threshold, outline refinement
(``--edge contrast``, the default), measurement; then
the same call again, as for the next micrograph of a batch (the network's kernels for that tile
size are then already built).
With ``--memory`` the run happens in a child process and its peak resident memory
(``ru_maxrss``) is reported. The process reuses freed memory, as the ``nanoseg`` command does
(:func:`nanoseg.runtime.keep_freed_memory`); ``--allocator default`` measures glibc's
default, which gives every large array fresh pages. Prints one Markdown table row for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch
from scipy import ndimage
from simulated_segment import add_edge_argument

from nanoseg.runtime import keep_freed_memory
from nanoseg.segment import Segmenter


def synthetic(size: int, seed: int = 0) -> np.ndarray:
    """A ``(size, size)`` float32 image: smooth background and dark discs."""
    rng = np.random.default_rng(seed)
    small = ndimage.gaussian_filter(rng.normal(size=(size // 8, size // 8)), 2)
    image = np.kron(small, np.ones((8, 8))).astype(np.float32)
    yy, xx = np.ogrid[:size, :size]
    for y, x in rng.integers(0, size, size=(size // 64, 2)):
        image[max(0, y - 40) : y + 40, max(0, x - 40) : x + 40] -= 2.0 * (
            (yy[max(0, y - 40) : y + 40] - y) ** 2 + (xx[:, max(0, x - 40) : x + 40] - x) ** 2
            < 30**2
        )
    return image + rng.normal(0, 0.5, image.shape).astype(np.float32)


def tiled(path: str, size: int) -> tuple[np.ndarray, float | None]:
    """The micrograph at `path` (``example``: the bundled one) repeated to ``(size, size)``,
    and its pixel size."""
    from nanoseg.demo import example_path
    from nanoseg.io import read_micrograph

    mic = read_micrograph(example_path() if path == "example" else path)
    reps = [-(-size // n) for n in mic.shape]
    return np.tile(mic.data, reps)[:size, :size], mic.pixel_size


def run(
    size: int,
    tta: str,
    model: str,
    precision: str = "auto",
    edge: str = "contrast",
    allocator: str = "reuse",
    micrograph: str | None = None,
    device: str = "auto",
) -> dict:
    if allocator == "reuse":
        keep_freed_memory()
    segmenter = Segmenter.load(model, tta=tta, precision=precision, edge=edge, device=device)
    span = segmenter.card.get("pixel_size_range_nm") or [None]
    pixel = span[0]
    if micrograph is not None:
        image, pixel = tiled(micrograph, size)
    else:
        image = synthetic(size)
    segmenter(image[:256, :256], pixel_size=pixel)  # warm-up
    start = time.perf_counter()
    result = segmenter(image, pixel_size=pixel)
    seconds = time.perf_counter() - start
    # The next micrograph of a batch: the network's kernels for this tile size already exist.
    start = time.perf_counter()
    segmenter(image, pixel_size=pixel)
    again = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "size": size,
        "tta": tta,
        "seconds": round(seconds, 2),
        "next_seconds": round(again, 2),
        "particles": len(result.particles),
        "peak_mb": round(peak_mb),
        "threads": torch.get_num_threads(),
        "precision": segmenter.precision,
        "device": str(segmenter.device),
        "edge": edge,
        "allocator": allocator,
        "micrograph": micrograph or "synthetic",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--tta", default="none")
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--precision", default="auto", help="auto, float32 or bfloat16")
    add_edge_argument(parser)
    parser.add_argument(
        "--allocator", choices=["reuse", "default"], default="reuse", help="see the notes"
    )
    parser.add_argument("--micrograph", help="a file (or 'example') tiled to --size")
    parser.add_argument("--device", default="auto", help="where the network runs")
    parser.add_argument("--memory", action="store_true", help="run in a child process")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory and not args.child:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                "--size",
                str(args.size),
                "--tta",
                args.tta,
                "--model",
                args.model,
                "--precision",
                args.precision,
                "--edge",
                args.edge,
                "--allocator",
                args.allocator,
                "--device",
                args.device,
                *(["--micrograph", args.micrograph] if args.micrograph else []),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        result = json.loads(out.strip().splitlines()[-1])
    else:
        result = run(
            args.size,
            args.tta,
            args.model,
            args.precision,
            args.edge,
            args.allocator,
            args.micrograph,
            args.device,
        )
        if args.child:
            print(json.dumps(result))
            return
    print(json.dumps(result))
    print(
        f"| {result['size']}^2 {result['micrograph']}, tta {result['tta']} | {result['seconds']} s "
        f"(next micrograph {result['next_seconds']} s) | "
        f"{result['peak_mb']} MB | {result['particles']} particles; {result['precision']}; "
        f"{result['threads']} threads; {result['allocator']} allocator; "
        f"{os.cpu_count()} cores |"
    )


if __name__ == "__main__":
    main()
