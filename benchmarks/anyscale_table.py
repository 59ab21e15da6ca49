"""The any-scale table: bundled model, threshold with --sigma auto, threshold tuned per set.

Usage::

    python benchmarks/anyscale_table.py [--model builtin] [--shared ../shared]

Scores, on ``real-dev`` (border particles dropped, as its README says) and ``real-dev-hrtem``
(all particles), with no pixel size given (the files carry none) and no per-image tuning:

- the model (``nanoseg segment``: particle scale estimated from the image), with its default
  half-contrast outlines and with ``--edge network`` (the network's own outlines),
- ``nanoseg threshold --sigma auto`` (Otsu; sigma from the LoG particle-scale estimate),
- the same threshold with sigma tuned on each set: the best pooled Dice over sigma in
  1, 1.5, 2, 3, 4, 6, 8 px (background 25 x sigma). This is an upper bound for the baseline:
  it looks at the masks.

Prints a Markdown table (for BENCHMARKS.md) and the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from realdev_segment import SETS, score_set

from nanoseg.baselines import ThresholdSegmenter
from nanoseg.segment import Segmenter

SIGMAS = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parents[1]
    parser.add_argument("--shared", type=Path, default=root.parent / "shared")
    parser.add_argument("--model", default="builtin")
    args = parser.parse_args()
    rows: dict[str, dict[str, str]] = {}
    results: dict[str, dict] = {}
    model = Segmenter.load(args.model)
    plain = Segmenter.load(args.model, edge="network")
    for name, drop in SETS.items():
        folder = args.shared / "data" / name
        if not folder.is_dir():
            print(f"{name}: not found under {args.shared}, skipped")
            continue
        network = score_set(model, folder, drop, None)
        outline = score_set(plain, folder, drop, None)
        auto = score_set(ThresholdSegmenter("otsu", "auto"), folder, drop, None)
        tuned = {s: score_set(ThresholdSegmenter("otsu", s), folder, drop, None) for s in SIGMAS}
        best = max(tuned, key=lambda s: tuned[s]["dice"])
        results[name] = {"model": network, "model_edge_network": outline,
                         "threshold_auto": auto,
                         "threshold_tuned": {"sigma": best, **tuned[best]}}  # fmt: skip
        for label, r, note in (
            (f"nanoseg segment ({args.model})", network, ""),
            (f"nanoseg segment ({args.model}) --edge network", outline, ""),
            ("nanoseg threshold --sigma auto", auto, ""),
            ("threshold, sigma tuned on each set", tuned[best], f" (sigma {best:g} px)"),
        ):
            rows.setdefault(label, {})[name] = f"{r['dice']:.3f} / {r['object_f1']:.2f}{note}"
    names = list(results)
    print("| method | " + " | ".join(f"{n}: Dice / object F1" for n in names) + " |")
    print("|---|" + "---|" * len(names))
    for label, cells in rows.items():
        print(f"| {label} | " + " | ".join(cells.get(n, "") for n in names) + " |")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
