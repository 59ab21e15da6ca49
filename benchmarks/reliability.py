"""How far a model's particle probability can be read as a confidence: a reliability table.

Usage::

    python benchmarks/reliability.py --data runs/builtin/data.h5 [--model builtin]
        [--split validation] [--n 120]

The first ``--n`` tiles of the split are predicted as ``nanoseg train`` predicts them when it
chooses the threshold (:func:`nanoseg.predict.predict_tiles`, the model's own pixel size, no
tiling). Pixels are binned by their predicted probability; for each bin the table gives the
pixels, their mean probability and the fraction of them that are particle in the labels. A
calibrated model has the two equal. Also printed: the largest probability the model gave and,
for a network whose last layer can only lower the particle logit from its bias (every weight
of the particle-minus-carbon logit negative after ReLU features), the ceiling that implies.
"""

from __future__ import annotations

import argparse
import itertools

import torch

from nanoseg.dataset import load_split
from nanoseg.predict import predict_tiles
from nanoseg.segment import Segmenter

EDGES = (0.0, 0.05, 0.2, 0.4, 0.55, 0.7, 0.85, 0.9, 0.905, 0.909, 0.95, 1.0 + 1e-6)


def logit_ceiling(model: torch.nn.Module) -> float | None:
    """sigmoid(bias) of the particle-minus-carbon logit when all its weights are negative."""
    final = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    if final.out_channels != 2 or final.bias is None:
        return None
    weight = (final.weight[1] - final.weight[0]).detach()
    if (weight > 0).any():
        return None
    bias = final.bias.detach()
    return float(torch.sigmoid(bias[1] - bias[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="HDF5 data set (nanoseg dataset build)")
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--n", type=int, default=120, help="tiles used (the first n)")
    args = parser.parse_args()
    model = Segmenter.load(args.model).model
    split = load_split(args.data, args.split)
    probability = predict_tiles(model, split.images[: args.n]).ravel()
    truth = split.labels[: args.n].ravel() > 0
    print(f"{args.model} on {min(args.n, len(split.images))} {args.split} tiles of {args.data}")
    print(
        f"largest probability {probability.max():.4f}; ceiling of the last layer: "
        f"{logit_ceiling(model)}"
    )
    print("| probability | pixels | mean probability | fraction particle |")
    print("| --- | --- | --- | --- |")
    for low, high in itertools.pairwise(EDGES):
        inside = (probability >= low) & (probability < high)
        if inside.any():
            print(
                f"| {low:.3f}-{min(high, 1):.3f} | {inside.sum()} | "
                f"{probability[inside].mean():.3f} | {truth[inside].mean():.3f} |"
            )


if __name__ == "__main__":
    main()
