"""Check the Keras import on real micrographs: the paper's combined network on real-dev.

Usage::

    python benchmarks/realdev_paper_network.py [--shared ../shared]

The reference figure (shared/data/real-dev/README.md) is a pooled particle Dice of about 0.76
for the paper's released combined network with each image upsampled x2 before 512 px tiles.
Our port, reading the same Keras file, should reproduce it. Per image: upsample x2 (bilinear or
bicubic), 3x3 median filter, divide by the image maximum, pad bottom/right (reflect or zero) to
512 px tiles, particle probability, average 2x2 back to the original grid, threshold 0.5, drop
predicted particles touching the border (the masks omit them), pool Dice over the 8 images.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import median_filter

from nanoseg.io import read_label_map, read_micrograph
from nanoseg.metrics import confusion, drop_border_objects, object_scores, scores
from nanoseg.model import import_keras
from nanoseg.predict import predict_tiles

TILE = 512


def preprocess(image: np.ndarray, method: str) -> np.ndarray:
    """Upsample x2, 3x3 median filter, divide by the maximum: the paper's input."""
    height, width = image.shape
    resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}[method]
    up = np.asarray(Image.fromarray(image, mode="F").resize((2 * width, 2 * height), resample))
    up = median_filter(up, size=3)
    return (up / up.max()).astype(np.float32)


def probability(model, image: np.ndarray, pad: str) -> np.ndarray:
    """Particle probability of a whole image from non-overlapping 512 px tiles."""
    height, width = image.shape
    padded = np.pad(
        image,
        ((0, -height % TILE), (0, -width % TILE)),
        mode="reflect" if pad == "reflect" else "constant",
    )
    origins = [
        (r, c) for r in range(0, padded.shape[0], TILE) for c in range(0, padded.shape[1], TILE)
    ]
    tiles = np.stack([padded[r : r + TILE, c : c + TILE] for r, c in origins])
    probs = predict_tiles(model, tiles, batch_size=4)
    out = np.zeros(padded.shape, np.float32)
    for (r, c), prob in zip(origins, probs, strict=True):
        out[r : r + TILE, c : c + TILE] = prob
    return out[:height, :width]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parents[1]
    parser.add_argument("--shared", type=Path, default=root.parent / "shared")
    args = parser.parse_args()
    data = args.shared / "data" / "real-dev"
    weights = args.shared / "reference/pynanofind-weights/unet32_AuCdSeDots_09_final.h5"
    model, _ = import_keras(weights)
    names = sorted(p.stem for p in (data / "images").glob("*.png"))
    results = {}
    for method in ("bilinear", "bicubic"):
        for pad in ("reflect", "zero"):
            counts = np.zeros((2, 2), np.int64)
            preds, truths = [], []
            for name in names:
                mic = read_micrograph(data / "images" / f"{name}.png")
                truth = read_label_map(data / "masks" / f"{name}.png", shape=mic.shape)
                prob2 = probability(model, preprocess(mic.data, method), pad)
                height, width = mic.shape
                prob = prob2.reshape(height, 2, width, 2).mean(axis=(1, 3))
                pred = drop_border_objects(prob > 0.5)
                counts += confusion(pred, truth)
                preds.append(pred)
                truths.append(truth)
            pooled = scores(counts)
            objects = [object_scores(p, t) for p, t in zip(preds, truths, strict=True)]
            tp = sum(o["tp"] for o in objects)
            fp = sum(o["fp"] for o in objects)
            fn = sum(o["fn"] for o in objects)
            f1 = 2 * tp / max(2 * tp + fp + fn, 1)
            results[f"{method}/{pad}"] = {
                "dice": round(pooled["dice"], 4),
                "object_f1": round(f1, 4),
            }
            print(f"{method:8s} {pad:7s} pooled Dice {pooled['dice']:.4f}  object F1 {f1:.3f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
