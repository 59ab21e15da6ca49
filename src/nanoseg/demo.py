"""``nanoseg demo``: the main job (segment, measure, draw) on the built-in example micrograph."""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pandas as pd

from nanoseg.batch import BatchOptions, load_segmenter, segment_batch
from nanoseg.errors import NanosegError
from nanoseg.io import read_label_map, read_micrograph
from nanoseg.metrics import confusion, scores
from nanoseg.segment import output_paths

__all__ = ["example_label_path", "example_path", "run_demo"]


def example_path() -> Path:
    """Path of the example micrograph shipped inside the package (a simulated MRC file)."""
    return Path(str(resources.files("nanoseg") / "data" / "example.mrc"))


def example_label_path() -> Path:
    """Path of the example's true particle map (0/255 PNG), known because it is simulated."""
    return Path(str(resources.files("nanoseg") / "data" / "example_label.png"))


def run_demo(out: str | Path) -> Iterator[str]:
    """Segment the bundled example with the bundled model, write the outputs, report as it goes.

    Parameters
    ----------
    out : str or pathlib.Path
        Output folder (created if needed).

    Yields
    ------
    str
        Lines to show the user.
    """
    source = example_path()
    mic = read_micrograph(source)
    yield f"example micrograph: {source}"
    yield f"  {mic.describe()}"
    options = BatchOptions()
    segmenter = load_segmenter(options)  # the batch run below reuses this one
    name = segmenter.card.get("name", "nanoseg")
    yield f"model: built-in ({name}, threshold {segmenter.threshold:.3g})"
    # The demo is the main job: the same batch run as `nanoseg segment example.mrc --out OUT`.
    run = segment_batch([source], out, options)
    (row,) = run["rows"]
    if row["status"] != "ok":
        raise NanosegError(row["error"])
    paths = output_paths(Path(out), row["stem"])
    table = pd.read_csv(paths["particles"])
    interior = table[~table["touches_border"].astype(bool)]
    yield f"{len(table)} particles ({len(interior)} not touching the border)"
    if len(interior):
        d = interior["equivalent_diameter_nm"]
        yield (
            f"  equivalent diameter: median {d.median():.2f} nm, mean {d.mean():.2f} nm, "
            f"range {d.min():.2f}-{d.max():.2f} nm"
        )
    mask = read_label_map(paths["mask"], shape=mic.shape)
    truth = read_label_map(example_label_path(), shape=mic.shape)
    yield f"  Dice against the simulated truth: {scores(confusion(mask, truth))['dice']:.3f}"
    files = {**paths, "summary": run["summary"], "histogram": run["histogram"]}
    for name, path in files.items():
        yield f"{name + ':':13s}{path}"
