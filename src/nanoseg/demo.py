"""``nanoseg demo``: the main job on the built-in example micrograph."""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from nanoseg.io import check_output_dir, read_micrograph, write_csv, write_png
from nanoseg.report import to_display

__all__ = ["example_path", "run_demo"]


def example_path() -> Path:
    """Path of the example micrograph shipped inside the package (an MRC file)."""
    return Path(str(resources.files("nanoseg") / "data" / "example.mrc"))


def run_demo(out: str | Path) -> Iterator[str]:
    """Read the bundled example, write a preview and a description to `out`, report as it goes.

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
    preview = write_png(out_dir / f"{mic.name}_preview.png", to_display(mic.data), mic.pixel_size)
    height, width = mic.shape
    row = {
        "file": str(source),
        "format": mic.format,
        "width_px": width,
        "height_px": height,
        "dtype": mic.dtype,
        "pixel_size_nm": "" if mic.pixel_size is None else mic.pixel_size,
        "min": float(mic.data.min()),
        "max": float(mic.data.max()),
        "mean": float(mic.data.mean()),
    }
    table = write_csv(out_dir / "summary.csv", [row])
    yield f"preview: {preview}"
    yield f"table:   {table}"
