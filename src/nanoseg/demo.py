"""``nanoseg demo``: the main job (segment, measure, draw) on the built-in example micrograph."""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from nanoseg.io import check_output_dir, read_label_map, read_micrograph, write_csv
from nanoseg.metrics import confusion, scores
from nanoseg.segment import Segmenter, write_outputs

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
    out_dir = check_output_dir(out, [source])
    mic = read_micrograph(source)
    yield f"example micrograph: {source}"
    yield f"  {mic.describe()}"
    segmenter = Segmenter.load()
    name = segmenter.card.get("name", "nanoseg")
    yield f"model: built-in ({name}, threshold {segmenter.threshold:.3g})"
    result = segmenter(mic)
    paths = write_outputs(result, out_dir, mic.name)
    row = {"file": str(source), "stem": mic.name, "status": "ok", **result.summary()}
    summary = write_csv(out_dir / "summary.csv", [row])
    table = result.particles
    interior = table[~table["touches_border"]]
    yield f"{len(table)} particles ({len(interior)} not touching the border)"
    if len(interior):
        d = interior["equivalent_diameter_nm"]
        yield (
            f"  equivalent diameter: median {d.median():.2f} nm, mean {d.mean():.2f} nm, "
            f"range {d.min():.2f}-{d.max():.2f} nm"
        )
    truth = read_label_map(example_label_path(), shape=mic.shape)
    dice = scores(confusion(result.mask, truth))["dice"]
    yield f"  Dice against the simulated truth: {dice:.3f}"
    for name, path in {**paths, "summary": summary}.items():
        yield f"{name + ':':13s}{path}"
