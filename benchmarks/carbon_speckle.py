"""How strong the carbon's speckle is next to the particles' contrast: real crops vs simulations.

Usage::

    python benchmarks/carbon_speckle.py [--shared ../shared] [SIM_FOLDER [--prefix medium] ...]

Per micrograph: the standard deviation, on carbon clear of particles, of the image band-passed
between 1 px and the median particle diameter (Gaussian sigmas), divided by the difference of
the medians of carbon and of particle cores after smoothing by a quarter diameter. Particles are
the hand-drawn masks (``real-dev``) or the simulation's labels. Simulated micrographs count when
their pixel size is 0.1 nm or coarser and their particles at least 6 px wide. Prints each real
crop's ratio and, per simulation folder, the median, quartiles and share at 0.3 or more.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from nanoseg.io import read_label_map, read_micrograph


def speckle_ratio(image: np.ndarray, mask: np.ndarray, diameter: float) -> float | None:
    """Carbon speckle over particle contrast, or None when too little carbon or particle."""
    image = image.astype(np.float64)
    smooth = ndi.gaussian_filter(image, diameter / 4)
    carbon = ~ndi.binary_dilation(mask, iterations=max(2, int(diameter / 2)))
    core = ndi.binary_erosion(mask, iterations=max(1, int(diameter / 6)))
    if core.sum() < 20 or carbon.sum() < 1000:
        return None
    contrast = abs(np.median(smooth[carbon]) - np.median(smooth[core]))
    band = ndi.gaussian_filter(image, 1.0) - ndi.gaussian_filter(image, diameter)
    return float(band[carbon].std() / max(contrast, 1e-9))


def median_diameter(mask: np.ndarray) -> float | None:
    """Median equivalent diameter (px) of the mask's particles."""
    labels, n = ndi.label(mask)
    if n == 0:
        return None
    return float(np.median(2 * np.sqrt(np.bincount(labels.ravel())[1:] / np.pi)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parents[1]
    parser.add_argument("sims", type=Path, nargs="*", help="folders written by nanoseg simulate")
    parser.add_argument("--shared", type=Path, default=root.parent / "shared")
    parser.add_argument("--prefix", default="", help="only metadata files starting with this")
    args = parser.parse_args()
    folder = args.shared / "data" / "real-dev"
    for path in sorted((folder / "images").glob("*.png")):
        mic = read_micrograph(path)
        truth = read_label_map(folder / "masks" / path.name, shape=mic.shape)
        diameter = median_diameter(truth)
        ratio = None if diameter is None else speckle_ratio(mic.data, truth, diameter)
        print(
            f"{path.stem}: "
            + ("too little carbon or particle" if ratio is None else f"{ratio:.2f}")
        )
    for sim in args.sims:
        ratios = []
        for meta_path in sorted((sim / "metadata").glob(f"{args.prefix}*.json")):
            meta = json.loads(meta_path.read_text())
            if meta["pixel_size_nm"] < 0.1:
                continue
            mic = read_micrograph(sim / "images" / f"{meta_path.stem}.mrc")
            truth = read_label_map(sim / "labels" / f"{meta_path.stem}.png", shape=mic.shape)
            diameter = median_diameter(truth)
            if diameter is None or diameter < 6:
                continue
            ratio = speckle_ratio(mic.data, truth, diameter)
            if ratio is not None:
                ratios.append(ratio)
        if not ratios:
            print(f"{sim}: no micrograph at 0.1 nm/px or coarser with particles of 6 px or more")
            continue
        r = np.array(ratios)
        q1, q2, q3 = np.percentile(r, [25, 50, 75])
        print(f"{sim}: {len(r)} micrographs, median {q2:.2f} ({q1:.2f}-{q3:.2f}), "
              f"share >= 0.3: {(r >= 0.3).mean():.0%}")  # fmt: skip


if __name__ == "__main__":
    main()
