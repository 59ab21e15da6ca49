"""Small synthetic data sets for tests: dark discs on a noisy background, with label maps."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from nanoseg.io import write_mask, write_mrc


def blobs(shape: tuple[int, int], centres: list[tuple[int, int]], radius: int = 5) -> np.ndarray:
    rows, cols = np.indices(shape)
    mask = np.zeros(shape, bool)
    for r, c in centres:
        mask |= (rows - r) ** 2 + (cols - c) ** 2 <= radius**2
    return mask


def make_set(root: Path, n: int = 6, shape: tuple[int, int] = (100, 130), seed: int = 0) -> Path:
    """n micrographs with a few dark particles, an X-ray spike, and a material table."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rows = []
    for i in range(n):
        centres = [
            (int(rng.integers(8, shape[0] - 8)), int(rng.integers(8, min(60, shape[1] - 8))))
            for _ in range(3)
        ]
        mask = blobs(shape, centres)
        image = 1000 + rng.normal(0, 30, shape) - 400 * mask
        image[shape[0] // 2, shape[1] - 10] = (
            30000  # an X-ray spike, which the median filter must remove
        )
        write_mrc(root / "images" / f"m{i}.mrc", image.astype(np.int16), pixel_size=0.1)
        write_mask(root / "labels" / f"m{i}.png", mask)
        rows.append(
            {"file": f"images/m{i}.mrc", "material": "au" if i % 2 else "cdse", "scene": i // 2}
        )
    with open(root / "meta.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["file", "material", "scene"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def make_training_data(root: Path) -> Path:
    """A tiny data set of 32 px tiles (6 micrographs of blobs, split 3/1.5/1.5) for fast
    training runs; returns the HDF5 file."""
    from nanoseg.dataset import build_dataset

    raw = make_set(root / "raw", n=6, shape=(64, 96))
    out = root / "d.h5"
    build_dataset(raw / "images", raw / "labels", out, tile=32, normalize_mode="image-max",
                  split=(0.5, 0.25, 0.25))  # fmt: skip
    return out
