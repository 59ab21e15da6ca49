"""Would dropping faint detections fix `real-dev`? An oracle and a contrast rule, scored.

Usage::

    python benchmarks/faint_detections.py [--shared ../shared]
        [--sim runs/builtin/sim --data runs/builtin/data.h5 [--n 120]]

On `real-dev` (border particles dropped) the bundled model finds most hand-drawn particles but
also many the masks leave out. This script segments every crop as ``nanoseg segment`` does
(no pixel size, default outlines) and reports:

- the pooled Dice, and the pooled Dice if an oracle dropped every predicted particle that does
  not overlap a drawn one (the most any rule that only removes detections could reach);
- the pooled Dice after dropping particles whose contrast is below T, for several T, where the
  contrast is (median of the smoothed image over a ring around the particle - median over the
  particle) / standard deviation over the ring (smoothing and ring as in :mod:`nanoseg.refine`).

With ``--sim``/``--data`` the same rule is scored on `--n` micrographs of the simulated test
split (chosen with a fixed seed), pooled per regime (HRTEM, medium, survey), with the pixel
size from the file: a rule that helps `real-dev` must not lose the faint simulated particles.
"""

from __future__ import annotations

import argparse
import json
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy import ndimage
from simulated_segment import regime, split_stems

from nanoseg.io import read_label_map, read_micrograph
from nanoseg.metrics import drop_border_objects
from nanoseg.segment import Segmenter

THRESHOLDS = (0.5, 1.0, 1.5, 2.0)


def particle_contrast(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels of `mask` and each particle's contrast in ring standard deviations (NaN: no ring)."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    if n == 0:
        return labels, np.zeros(0)
    areas = np.bincount(labels.ravel())[1:]
    diameter = float(np.median(2 * np.sqrt(areas / np.pi)))
    band = max(2, round(diameter / 8))
    smooth = ndimage.gaussian_filter(np.asarray(image, np.float32), max(1.0, diameter / 20))
    contrast = np.full(n, np.nan)
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        box = tuple(slice(max(s.start - 3 * band, 0), s.stop + 3 * band) for s in box)
        near = labels[box]
        particle = (near == index).view(np.uint8)
        outer = ndimage.maximum_filter(particle, size=4 * band + 1).view(bool)
        inner = ndimage.maximum_filter(particle, size=2 * band + 1).view(bool)
        ring = outer & ~inner & (near == 0)
        if ring.sum() >= 5:
            values = smooth[box]
            level = np.median(values[ring]) - np.median(values[particle.view(bool)])
            contrast[index - 1] = level / max(float(values[ring].std()), 1e-12)
    return labels, contrast


def tally(pred: np.ndarray, truth: np.ndarray, image: np.ndarray, totals: dict) -> None:
    """Add one micrograph's pixel counts for every rule to `totals`."""
    labels, contrast = particle_contrast(image, pred)
    n = contrast.size
    overlap = np.bincount(labels[truth], minlength=n + 1)[1:]
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    totals["truth"] += int(truth.sum())
    rules = {"none": np.ones(n, bool), "oracle": overlap > 0}
    for t in THRESHOLDS:
        rules[f"contrast >= {t}"] = ~(contrast < t)  # no ring (NaN): kept
    for name, keep in rules.items():
        totals[name][0] += int(overlap[keep].sum())
        totals[name][1] += int(areas[keep].sum())


def dice(totals: dict) -> dict[str, float]:
    truth = totals["truth"]
    return {
        name: round(2 * counts[0] / (counts[1] + truth), 3)
        for name, counts in totals.items()
        if name != "truth"
    }


def new_totals() -> dict:
    totals: dict = defaultdict(lambda: [0, 0])
    totals["truth"] = 0
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parents[1]
    parser.add_argument("--shared", type=Path, default=root.parent / "shared")
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--sim", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--n", type=int, default=120, help="simulated micrographs scored")
    args = parser.parse_args()
    segmenter = Segmenter.load(args.model)
    groups: dict[str, dict] = defaultdict(new_totals)
    folder = args.shared / "data" / "real-dev"
    for path in sorted((folder / "images").glob("*.png")):
        mic = read_micrograph(path)
        truth = read_label_map(folder / "masks" / path.name, shape=mic.shape) > 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # no pixel size: said once per crop otherwise
            pred = drop_border_objects(segmenter(mic).mask > 0)
        tally(pred, truth, mic.data, groups["real-dev"])
    if args.sim is not None and args.data is not None:
        stems = split_stems(args.data, "test")
        rng = np.random.default_rng(0)
        for k in sorted(rng.choice(len(stems), min(args.n, len(stems)), replace=False)):
            mic = read_micrograph(args.sim / "images" / f"{stems[k]}.mrc")
            truth = read_label_map(args.sim / "labels" / f"{stems[k]}.png", shape=mic.shape) > 0
            pred = segmenter(mic).mask > 0
            tally(pred, truth, mic.data, groups[f"simulated {regime(mic.pixel_size)}"])
    table = {group: dice(totals) for group, totals in groups.items()}
    rules = list(next(iter(table.values())))
    print("| rule | " + " | ".join(table) + " |")
    print("| --- |" + " --- |" * len(table))
    for rule in rules:
        print(f"| {rule} | " + " | ".join(str(table[g].get(rule, "")) for g in table) + " |")
    print(json.dumps(table))


if __name__ == "__main__":
    main()
