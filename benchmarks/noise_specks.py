"""Count false detections in white noise: the cartoon exports of ``tests/test_annotations.py``.

Usage::

    python benchmarks/noise_specks.py [--model builtin] [--seeds 0,1,2] [--pixel-size 0.3]

Each cartoon is five dark discs (30 px) on Gaussian-filtered white noise (8-bit), once with
nothing else and once with a "50 nm" scale bar and label burned in, which `segment` finds and
fills with the carbon's grey (as the annotation tests do). Real carbon is not white noise, so
this is no quality figure: it shows how a model behaves on texture it was never trained on.
Prints, per noise seed, the particles found, how many of them are the drawn discs (a centroid
within 3 px of a disc's centre), and the areas of the others.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_annotations import BAR, PARTICLES, _export

from nanoseg.segment import Segmenter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--pixel-size", type=float, default=0.3)
    args = parser.parse_args()
    segmenter = Segmenter.load(args.model)
    centres = np.array(PARTICLES, dtype=float)
    for seed in map(int, args.seeds.split(",")):
        clean = _export(seed=seed, text=False)
        clean[BAR] = 150  # no scale bar either: the carbon's mean grey
        for name, image in (("no label", clean), ("label left out", _export(seed=seed))):
            table = segmenter(image, pixel_size=args.pixel_size).particles
            centroids = table[["centroid_y_px", "centroid_x_px"]].to_numpy()
            distance = np.hypot(*(centroids[:, None, :] - centres[None]).transpose(2, 0, 1))
            drawn = (distance < 3).any(axis=1)
            extra = sorted(table.loc[~drawn, "area_px"].astype(int).tolist(), reverse=True)
            print(
                f"seed {seed}, {name}: {len(table)} particles, {int(drawn.sum())} of the "
                f"{len(centres)} discs, {len(extra)} extra (areas {extra} px)"
            )


if __name__ == "__main__":
    main()
