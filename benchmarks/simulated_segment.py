"""Score `nanoseg segment` on simulated test micrographs: Dice per material and particle sizes.

Usage::

    python benchmarks/simulated_segment.py --sim runs/builtin/sim --data runs/builtin/data.h5
        [--model builtin] [--edge contrast|network] [--split test] [--auto]
        [--by material|regime]
        [--pixel-size-range 0.5:1] [--particle-px-range 5:10] [--tta none|flip|d4]

Each micrograph of the data set's split (whole micrographs, not tiles) is segmented exactly as
``nanoseg segment`` does, with the pixel size from its MRC header (``--auto``: none, so the
particle scale is estimated from the image). Dice is pooled per material (or per pixel-size
regime with ``--by regime``: HRTEM <= 0.05 nm/px < medium <= 0.3 nm/px < survey);
``--pixel-size-range LOW:HIGH`` keeps only micrographs with a pixel size in that range (nm),
``--particle-px-range LOW:HIGH`` only those whose median simulated particle is that many
pixels wide (diameter over pixel size).
Sizes: every simulated particle that lies wholly inside the field (its centre at least one
diameter from the edge) and touches no other particle is matched to the predicted particle
that contains its centre; the relative error of the predicted equivalent diameter is taken
against the particle's simulated diameter (``diameter_nm``) and against the equivalent diameter
of its true projected footprint (``projected_diameter_nm``). Prints medians per material.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path

import h5py
import numpy as np
from skimage import measure

from nanoseg.dataset import SPLITS
from nanoseg.io import read_label_map, read_micrograph
from nanoseg.metrics import confusion, scores
from nanoseg.predict import TTA_MODES
from nanoseg.refine import EDGES
from nanoseg.segment import Segmenter


def isolated(particles: list[dict], field_nm: float) -> list[dict]:
    """Particles inside the field, with no other particle closer than the sum of radii + 0.5 nm."""
    keep = []
    for i, p in enumerate(particles):
        r = p["diameter_nm"] / 2
        if not (r <= p["x_nm"] <= field_nm - r and r <= p["y_nm"] <= field_nm - r):
            continue
        clear = all(
            math.hypot(p["x_nm"] - q["x_nm"], p["y_nm"] - q["y_nm"])
            > r + q["diameter_nm"] / 2 + 0.5
            for j, q in enumerate(particles)
            if j != i
        )
        if clear:
            keep.append(p)
    return keep


def regime(pixel_size: float) -> str:
    """HRTEM (fringes), medium magnification or survey, by pixel size in nm."""
    return "hrtem" if pixel_size <= 0.05 else "medium" if pixel_size <= 0.3 else "survey"


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """``--sim``, ``--data``, ``--model`` and ``--split``: a simulation folder, the data set
    built from it (which says which micrographs are in which split) and the model to score."""
    parser.add_argument("--sim", type=Path, required=True)
    parser.add_argument(
        "--data", type=Path, default=None,
        help="the data set built from --sim, for its splits; without it, every micrograph "
        "of --sim (a simulation no model was trained on)",
    )  # fmt: skip
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--split", default="test", choices=SPLITS)
    add_edge_argument(parser)


def add_edge_argument(parser: argparse.ArgumentParser) -> None:
    """``--edge`` and ``--edge-level``: where `segment` puts particle outlines
    (:data:`nanoseg.refine.EDGES`)."""
    parser.add_argument(
        "--edge", default="contrast", choices=EDGES,
        help="particle outlines: half-contrast edge (the default) or the network's own",
    )  # fmt: skip
    parser.add_argument(
        "--edge-level", type=float, default=0.5,
        help="fraction of the particle's contrast where --edge contrast puts the outline",
    )  # fmt: skip


def _range(text: str | None) -> tuple[float, float]:
    """``LOW:HIGH`` as two numbers; everything when not given."""
    if not text:
        return 0.0, math.inf
    low, high = map(float, text.split(":"))
    return low, high


def split_stems(data: Path, split: str) -> list[str]:
    """File stems of the micrographs whose tiles are in `split` of the data set `data`."""
    with h5py.File(data, "r") as h5:
        sources = h5["sources"][()]
    index = SPLITS.index(split)
    return [Path(s["source"].decode()).stem for s in sources if s["split"] == index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    parser.add_argument(
        "--auto", action="store_true", help="give no pixel size: the scale is estimated"
    )
    parser.add_argument(
        "--by", choices=("material", "regime"), default="material",
        help="pool Dice per material or per pixel-size regime (HRTEM, medium, survey)",
    )  # fmt: skip
    parser.add_argument(
        "--pixel-size-range", default=None,
        help="LOW:HIGH nm: only micrographs with a pixel size in this range",
    )  # fmt: skip
    parser.add_argument(
        "--particle-px-range", default=None,
        help="LOW:HIGH px: only micrographs whose median particle is that wide",
    )  # fmt: skip
    parser.add_argument("--tta", default="none", choices=TTA_MODES, help="test-time augmentation")
    args = parser.parse_args()
    low, high = _range(args.pixel_size_range)
    low_px, high_px = _range(args.particle_px_range)
    stems = (
        split_stems(args.data, args.split)
        if args.data is not None
        else sorted(p.stem for p in (args.sim / "images").glob("*.mrc"))
    )
    segmenter = Segmenter.load(args.model, edge=args.edge, edge_level=args.edge_level, tta=args.tta)
    counts: dict[str, np.ndarray] = defaultdict(lambda: np.zeros((2, 2), np.int64))
    errors: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    found: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    used = 0
    for stem in stems:
        meta = json.loads((args.sim / "metadata" / f"{stem}.json").read_text())
        mic = read_micrograph(args.sim / "images" / f"{stem}.mrc")
        if not low <= mic.pixel_size <= high:
            continue
        if args.particle_px_range:
            widths = [p["diameter_nm"] / mic.pixel_size for p in meta["particles"]]
            if not widths or not low_px <= float(np.median(widths)) <= high_px:
                continue
        used += 1
        truth = read_label_map(args.sim / "labels" / f"{stem}.png", shape=mic.shape)
        result = segmenter(mic, pixel_size="auto") if args.auto else segmenter(mic)
        material = meta["material"] if args.by == "material" else regime(mic.pixel_size)
        counts[material] += confusion(result.mask, truth)
        labels = measure.label(result.mask, connectivity=2)
        table = result.particles.set_index("id")
        field_nm = mic.shape[1] * mic.pixel_size
        for p in isolated(meta["particles"], field_nm):
            found[material][1] += 1
            col, row = int(p["x_nm"] / mic.pixel_size), int(p["y_nm"] / mic.pixel_size)
            label = labels[min(row, mic.shape[0] - 1), min(col, mic.shape[1] - 1)]
            if label == 0:
                continue
            found[material][0] += 1
            # Without a pixel size the table is in px: the known pixel size converts it.
            d = 2 * math.sqrt(table.loc[label, "area_px"] / math.pi) * mic.pixel_size
            errors[material]["diameter"].append(abs(d - p["diameter_nm"]) / p["diameter_nm"])
            errors[material]["projected"].append(
                abs(d - p["projected_diameter_nm"]) / p["projected_diameter_nm"]
            )
    if not used:
        raise SystemExit("no micrograph is in the ranges asked for")
    summary = {}
    for material in sorted(counts):
        dice = float(scores(counts[material])["dice"])
        e = errors[material]
        summary[material] = {
            "dice": round(dice, 4),
            "isolated_particles": found[material][1],
            "matched": found[material][0],
            "median_rel_error_vs_diameter": round(float(np.median(e["diameter"])), 4)
            if e["diameter"]
            else None,
            "median_rel_error_vs_projected": round(float(np.median(e["projected"])), 4)
            if e["projected"]
            else None,
        }
        s = summary[material]
        print(
            f"{material:6s} Dice {dice:.4f}  particles matched {s['matched']}/"
            f"{s['isolated_particles']}  median size error "
            f"{s['median_rel_error_vs_diameter']}"
            f"  vs projected {s['median_rel_error_vs_projected']}"
        )
    all_counts = sum(counts.values())
    all_errors = [x for e in errors.values() for x in e["diameter"]]
    print(
        f"all   Dice {scores(all_counts)['dice']:.4f}  median size error "
        f"{np.median(all_errors):.4f} over {len(all_errors)} particles"
    )
    print(
        json.dumps(
            {
                "model": args.model,
                "edge": args.edge,
                "edge_level": args.edge_level,
                "tta": args.tta,
                "split": args.split if args.data is not None else f"all of {args.sim}",
                "n": used,
                **summary,
            }
        )
    )


if __name__ == "__main__":
    main()
