"""Merge several ``nanoseg simulate`` folders into one that ``dataset build`` reads unchanged.

Each run numbers its micrographs and scenes from 0, so the merged folder links every file
under a new stem (``<run>_<stem>``, metadata JSON included) and writes one ``metadata.csv``
whose ``scene`` column stays unique (``<run>-<scene>``): a data set then still keeps each
scene in a single split. Files are linked, not copied.

    python scripts/combine_simulations.py OUT hrtem=runs/sim-hrtem medium=runs/sim-medium ...
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

from nanoseg.io import write_csv


def combine(out: Path, runs: dict[str, Path]) -> Path:
    """Link the runs' images and labels into `out` and write `out`/metadata.csv."""
    csv.field_size_limit(2**31 - 1)
    for sub in ("images", "labels", "metadata"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rows = []
    for name, folder in runs.items():
        with open(folder / "metadata.csv", newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                for key in ("file", "label"):
                    source = folder / row[key]
                    target = Path(row[key]).parent / f"{name}_{Path(row[key]).name}"
                    link = out / target
                    if not link.exists():
                        os.symlink(source.resolve(), link)
                    row[key] = str(target)
                stem = Path(row["file"]).stem
                link = out / "metadata" / f"{stem}.json"
                if not link.exists():  # per-micrograph records, for the benchmarks
                    os.symlink(
                        (folder / "metadata" / f"{stem[len(name) + 1 :]}.json").resolve(), link
                    )
                row["scene"] = f"{name}-{row['scene']}"
                row["run"] = name
                rows.append(row)
    return write_csv(out / "metadata.csv", rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("runs", nargs="+", help="NAME=FOLDER of a simulate run")
    args = parser.parse_args()
    runs = {}
    for item in args.runs:
        name, _, folder = item.partition("=")
        if not folder or not (Path(folder) / "metadata.csv").is_file():
            parser.error(f"'{item}' is not NAME=FOLDER of a simulate run with metadata.csv")
        runs[name] = Path(folder)
    print(combine(args.out, runs))


if __name__ == "__main__":
    main()
