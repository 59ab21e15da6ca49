"""Move simulated particle labels to each particle's half-contrast edge, for training.

``nanoseg simulate`` labels a particle by its geometric footprint (every pixel within an
atomic radius of an atom). The visible edge of a sphere, or of a particle whose outer atomic
layers barely scatter, lies inside that footprint, and people draw particles, and
``nanoseg segment --edge contrast`` outlines them, at the half-contrast edge. Labels moved
there by the same code (:func:`nanoseg.refine.refine_outlines`, on the simulated micrograph
itself) would teach a network that convention directly, so that ``segment`` need not move
outlines after the network (1.2-1.3 s of a 4096^2 micrograph). Particles with weak contrast or
under :data:`nanoseg.refine.MIN_DIAMETER_PX` across keep their footprint, as in ``segment``.

Session 12 trained the bundled recipe on such labels; it was not shipped (docs/training.md,
"Labels at the half-contrast edge"), and ``make builtin-model`` does not use this script. It
stays so the experiment can be rerun.

    python scripts/contrast_labels.py SIM_DIR OUT_DIR [--level 0.5]

Writes ``OUT_DIR/<stem>.png`` (0/255) for every micrograph listed in ``SIM_DIR/metadata.csv``.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from scipy import ndimage

from nanoseg.io import read_label_map, read_micrograph, write_mask
from nanoseg.measure import EIGHT_CONNECTED, padded_box
from nanoseg.refine import MIN_DIAMETER_PX, refine_outlines

#: Each moved outline is smoothed by a Gaussian of this fraction of the particle's diameter.
SMOOTHING = 1 / 16


def smooth_outlines(mask: np.ndarray, fraction: float = SMOOTHING) -> np.ndarray:
    """Each particle of `mask` with its outline smoothed, one particle at a time.

    The half-contrast outline of a particle in a simulated micrograph follows the noise and
    the lattice fringes pixel by pixel; a network taught such ragged edges draws ragged,
    unsure ones. Each particle's own mask is blurred by a Gaussian of `fraction` of its
    equivalent diameter and cut at 0.5 (which keeps a convex particle's size), so particles
    never blur into each other. Particles under :data:`MIN_DIAMETER_PX` are left as they are.

    Parameters
    ----------
    mask : numpy.ndarray
        bool ``(height, width)``.
    fraction : float

    Returns
    -------
    numpy.ndarray
        bool ``(height, width)``.
    """
    labels, _ = ndimage.label(mask, structure=EIGHT_CONNECTED)
    claimed = np.zeros(mask.shape, np.uint8)
    for index, found in enumerate(ndimage.find_objects(labels), start=1):
        if found is None:
            continue
        diameter = 2 * np.sqrt(np.count_nonzero(labels[found] == index) / np.pi)
        sigma = fraction * diameter
        box = padded_box(found, int(3 * sigma) + 1, mask.shape)
        own = labels[box] == index
        if diameter >= MIN_DIAMETER_PX:
            own = ndimage.gaussian_filter(own.astype(np.float32), sigma) > 0.5
        claimed[box] += own
    # Where two smoothed particles claim a pixel, neither gets it: neighbours stay apart.
    return claimed == 1


def contrast_labels(sim: Path, out: Path, level: float = 0.5) -> list[float]:
    """Write the half-contrast labels of every micrograph in `sim` to `out`.

    Returns
    -------
    list of float
        For each micrograph, the new label's area over the simulated one's.
    """
    csv.field_size_limit(2**31 - 1)
    out.mkdir(parents=True, exist_ok=True)
    ratios = []
    with open(sim / "metadata.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            mic = read_micrograph(sim / row["file"])
            footprint = read_label_map(sim / row["label"], shape=mic.shape).astype(bool)
            # The same minimum area as `segment` uses: 1 nm^2.
            min_area_px = 1.0 / mic.pixel_size**2 if mic.pixel_size else 0.0
            moved = smooth_outlines(
                refine_outlines(mic.data, footprint, level, min_area_px=min_area_px)
            )
            write_mask(out / f"{Path(row['label']).stem}.png", moved)
            ratios.append(float(moved.sum()) / max(int(footprint.sum()), 1))
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sim", type=Path, help="a `nanoseg simulate` folder (or merged ones)")
    parser.add_argument("out", type=Path, help="folder for the moved labels")
    parser.add_argument("--level", type=float, default=0.5, help="fraction of the contrast")
    args = parser.parse_args()
    ratios = contrast_labels(args.sim, args.out, args.level)
    print(
        f"{len(ratios)} labels written to {args.out}; label area kept: median "
        f"{np.median(ratios):.3f} (10th-90th percentile {np.percentile(ratios, 10):.3f}-"
        f"{np.percentile(ratios, 90):.3f})"
    )


if __name__ == "__main__":
    main()
