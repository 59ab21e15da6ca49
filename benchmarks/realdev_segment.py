"""Score `nanoseg segment` on the real development micrographs (never used for training).

Usage::

    python benchmarks/realdev_segment.py [--model builtin] [--shared ../shared] [--tta none]
        [--pixel-size NM]

For each set, every image is segmented with the given model exactly as ``nanoseg segment``
does (no per-image tuning; by default no pixel size, as the files carry none), and particle
Dice is pooled over the set's pixels. ``real-dev`` masks leave out particles that touch the
border, so predicted ones that do are dropped before scoring (its README's rule);
``real-dev-hrtem`` scores every particle. Object F1 matches particles at IoU >= 0.5.
Reference figures (from the sets' READMEs): real-dev, paper network 0.76, tuned Otsu 0.57;
real-dev-hrtem, paper network 0.89, tuned Otsu 0.98.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from simulated_segment import add_edge_argument

from nanoseg.io import read_label_map, read_micrograph
from nanoseg.metrics import confusion, drop_border_objects, object_scores, scores
from nanoseg.segment import Segmenter

SETS = {"real-dev": True, "real-dev-hrtem": False}  # name -> drop border particles


def score_set(segmenter: Any, folder: Path, drop_border: bool, pixel_size: float | None) -> dict:
    """Pooled Dice and object F1 of `segmenter` on one image/mask folder pair."""
    counts = np.zeros((2, 2), np.int64)
    tp = fp = fn = 0
    per_image = {}
    for image_path in sorted((folder / "images").glob("*.png")):
        mic = read_micrograph(image_path)
        truth = read_label_map(folder / "masks" / image_path.name, shape=mic.shape)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pred = segmenter(mic, pixel_size=pixel_size).mask
        if drop_border:
            pred = drop_border_objects(pred)
        c = confusion(pred, truth)
        counts += c
        objects = object_scores(pred, truth)
        tp, fp, fn = tp + objects["tp"], fp + objects["fp"], fn + objects["fn"]
        per_image[image_path.stem] = round(float(scores(c)["dice"]), 4)
    return {
        "dice": round(float(scores(counts)["dice"]), 4),
        "object_f1": round(2 * tp / max(2 * tp + fp + fn, 1), 4),
        "per_image_dice": per_image,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parents[1]
    parser.add_argument("--shared", type=Path, default=root.parent / "shared")
    parser.add_argument("--model", default="builtin")
    add_edge_argument(parser)
    parser.add_argument("--tta", default="none")
    parser.add_argument("--pixel-size", type=float, default=None)
    parser.add_argument(
        "--threshold", action="store_true", help="score the thresholding baseline instead"
    )
    parser.add_argument("--method", default="otsu", help="threshold method (otsu, li, local)")
    parser.add_argument("--sigma", default="auto", help="threshold smoothing, px, or auto")
    parser.add_argument("--background", type=float, default=None, help="background sigma, px")
    args = parser.parse_args()
    if args.threshold:
        from nanoseg.baselines import ThresholdSegmenter

        sigma = args.sigma if args.sigma == "auto" else float(args.sigma)
        segmenter = ThresholdSegmenter(args.method, sigma, args.background)
        args.model = f"threshold {args.method} sigma {args.sigma} background {args.background}"
    else:
        segmenter = Segmenter.load(
            args.model, tta=args.tta, edge=args.edge, edge_level=args.edge_level
        )
    results = {}
    for name, drop in SETS.items():
        folder = args.shared / "data" / name
        if not folder.is_dir():
            print(f"{name}: not found under {args.shared}, skipped")
            continue
        results[name] = score_set(segmenter, folder, drop, args.pixel_size)
        r = results[name]
        print(f"{name:15s} pooled Dice {r['dice']:.4f}  object F1 {r['object_f1']:.3f}")
    print(json.dumps({"model": args.model, "tta": args.tta, "results": results}))


if __name__ == "__main__":
    main()
