"""How well is the particle scale estimated without a pixel size?

Usage::

    python benchmarks/scale_estimate.py [--shared ../shared] [--sim runs/builtin/sim]
        [--data runs/builtin/data.h5] [--per-regime 12] [--model builtin]

For each image, the estimated typical particle diameter (px) is compared with the true one: the
median equivalent diameter of the mask's particles clear of the border (real sets), or of the
simulated particles' projected footprints (``projected_diameter_nm / pixel_size``; simulated
test micrographs, ``--per-regime`` of each of HRTEM, medium and survey). Two estimators:
``network`` (``Segmenter.auto_scale``, what ``segment`` uses) and ``LoG``
(:func:`nanoseg.scale.estimate_scale`, what ``threshold --sigma auto`` uses). Prints the share
of images within a factor 1.5 and the median ratio, per set and estimator.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import h5py
import numpy as np

from nanoseg.errors import InvalidDataError
from nanoseg.io import read_label_map, read_micrograph
from nanoseg.measure import interior_diameters
from nanoseg.scale import estimate_scale
from nanoseg.segment import Segmenter


def mask_diameter(mask: np.ndarray) -> float:
    sizes = interior_diameters(mask)
    return float(np.median(sizes)) if len(sizes) else float("nan")


def estimates(segmenter: Segmenter, image: np.ndarray) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, _, network, _ = segmenter.auto_scale(image)
    try:
        log = estimate_scale(image).diameter_px
    except InvalidDataError:
        log = None
    return {"network": np.nan if network is None else network,
            "LoG": np.nan if log is None else log}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parents[1]
    parser.add_argument("--shared", type=Path, default=root.parent / "shared")
    parser.add_argument("--sim", type=Path)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--per-regime", type=int, default=12)
    parser.add_argument("--model", default="builtin")
    args = parser.parse_args()
    segmenter = Segmenter.load(args.model)
    ratios: dict[str, dict[str, list[float]]] = {}

    def add(group: str, image: np.ndarray, truth: float) -> None:
        for name, value in estimates(segmenter, image).items():
            ratios.setdefault(group, {}).setdefault(name, []).append(value / truth)

    for name in ("real-dev", "real-dev-hrtem"):
        folder = args.shared / "data" / name
        for path in sorted((folder / "images").glob("*.png")):
            mic = read_micrograph(path)
            add(name, mic.data, mask_diameter(read_label_map(folder / "masks" / path.name) > 0))
    if args.sim and args.data:
        with h5py.File(args.data, "r") as h5:
            sources = h5["sources"][()]
        stems = [Path(s["source"].decode()).stem for s in sources if s["split"] == 2]
        taken: dict[str, int] = {}
        for stem in stems:
            meta = json.loads((args.sim / "metadata" / f"{stem}.json").read_text())
            px = meta["pixel_size_nm"]
            regime = "hrtem" if px <= 0.05 else "medium" if px <= 0.3 else "survey"
            if taken.get(regime, 0) >= args.per_regime:
                continue
            taken[regime] = taken.get(regime, 0) + 1
            truth = np.median([p["projected_diameter_nm"] for p in meta["particles"]]) / px
            add(f"simulated {regime}", read_micrograph(args.sim / "images" / f"{stem}.mrc").data,
                truth)  # fmt: skip
    print("| images | estimator | within 1.5x | median estimate / truth |")
    print("|---|---|---|---|")
    for group, by_name in ratios.items():
        for name, values in by_name.items():
            r = np.asarray(values, float)
            ok = np.isfinite(r) & (r > 1 / 1.5) & (r < 1.5)
            print(f"| {group} | {name} | {ok.sum()}/{len(r)} | {np.nanmedian(r):.2f} |")


if __name__ == "__main__":
    main()
