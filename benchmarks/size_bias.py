"""How well a model draws particles of a given width in pixels: size bias and Dice per px.

Usage::

    python benchmarks/size_bias.py --sim runs/builtin/sim --data runs/builtin/data.h5
        [--model builtin] [--split test] [--n 60] [--max-pixel-size 0.3]

Decides the smallest particle width (px of the network's input) a model is trusted at, the
lower end of the range that scale estimation resamples into. Each micrograph of the split with
a pixel size up to ``--max-pixel-size`` (HRTEM and medium magnification: particles 20-300 px)
is shrunk so its median particle becomes 12, 16, 20, 24, 28, 34, 40, 48, 56 and 68 px wide
(area-averaging, as a lower magnification would record it; never enlarged) and segmented at
that scale with no further resampling. Every isolated simulated particle (as in
``simulated_segment.py``) is matched to the predicted particle containing its centre; the
signed relative error of the predicted equivalent diameter against the true projected
footprint's is binned by the particle's width in input px. Prints one Markdown row per bin:
particles, matched fraction, median signed error, and the pooled Dice of the micrographs at
each target width.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict

import numpy as np
from simulated_segment import add_data_arguments, isolated, split_stems
from skimage import measure
from skimage.transform import rescale

from nanoseg.io import read_label_map, read_micrograph
from nanoseg.measure import clean_mask
from nanoseg.metrics import confusion, scores
from nanoseg.segment import Segmenter

TARGETS = (12, 16, 20, 24, 28, 34, 40, 48, 56, 68)
BINS = (10, 14, 18, 22, 26, 31, 37, 44, 52, 62, 80)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    parser.add_argument("--n", type=int, default=60, help="micrographs (evenly spread)")
    parser.add_argument("--max-pixel-size", type=float, default=0.3)
    args = parser.parse_args()
    if args.data is None:
        parser.error("--data is needed: its test split says which micrographs to shrink")
    stems = split_stems(args.data, args.split)
    metas = {s: json.loads((args.sim / "metadata" / f"{s}.json").read_text()) for s in stems}
    stems = [s for s in stems if metas[s]["pixel_size_nm"] <= args.max_pixel_size]
    stems = [stems[i] for i in np.linspace(0, len(stems) - 1, min(args.n, len(stems))).astype(int)]
    segmenter = Segmenter.load(args.model, edge=args.edge)
    errors: dict[int, list[float]] = defaultdict(list)
    missed: dict[int, int] = defaultdict(int)
    counts: dict[int, np.ndarray] = defaultdict(lambda: np.zeros((2, 2), np.int64))
    for stem in stems:
        meta = metas[stem]
        mic = read_micrograph(args.sim / "images" / f"{stem}.mrc")
        truth = read_label_map(args.sim / "labels" / f"{stem}.png", shape=mic.shape)
        px = mic.pixel_size
        particles = isolated(meta["particles"], mic.shape[1] * px)
        if not particles:
            continue
        median_px = float(np.median([p["projected_diameter_nm"] / px for p in particles]))
        for target in TARGETS:
            factor = target / median_px
            if factor > 1 or min(mic.shape) * factor < 64:
                continue
            image = rescale(mic.data, factor, order=1, anti_aliasing=True, preserve_range=True)
            prob, _ = segmenter._probability(image.astype(np.float32), 1.0)
            mask = clean_mask(prob > segmenter.threshold, 4)
            small_truth = rescale(truth.astype(np.float32), factor, anti_aliasing=True) >= 0.5
            counts[target] += confusion(mask, small_truth)
            labels = measure.label(mask, connectivity=2)
            areas = np.bincount(labels.ravel())
            for p in particles:
                true_px = p["projected_diameter_nm"] / px * factor
                row = min(int(p["y_nm"] / px * factor), mask.shape[0] - 1)
                col = min(int(p["x_nm"] / px * factor), mask.shape[1] - 1)
                b = int(np.digitize(true_px, BINS))
                if b == 0 or b == len(BINS):
                    continue
                label = labels[row, col]
                if label == 0:
                    missed[b] += 1
                    continue
                found_px = 2 * math.sqrt(areas[label] / math.pi)
                errors[b].append(found_px / true_px - 1)
    print(f"{len(stems)} micrographs, model {args.model}")
    print("| particle width (px) | particles | found | median size error |")
    print("| --- | --- | --- | --- |")
    for b in range(1, len(BINS)):
        e = errors[b]
        n = len(e) + missed[b]
        if n:
            median = f"{100 * np.median(e):+.1f} %" if e else "-"
            print(f"| {BINS[b - 1]}-{BINS[b]} | {n} | {len(e) / n:.2f} | {median} |")
    print("| target width (px) | Dice |")
    print("| --- | --- |")
    for target in TARGETS:
        if counts[target].sum():
            print(f"| {target} | {scores(counts[target])['dice']:.3f} |")


if __name__ == "__main__":
    main()
