"""The command line: `info` and `demo` as a user runs them."""

from __future__ import annotations

import csv

import numpy as np
from typer.testing import CliRunner

from nanoseg import __version__, read_micrograph
from nanoseg.cli import app
from nanoseg.io import write_mrc, write_tiff

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"nanoseg {__version__}"


def test_info_one_line_per_file(tmp_path):
    a = write_mrc(tmp_path / "a.mrc", np.full((20, 30), 7, np.int16), pixel_size=0.03)
    b = write_tiff(tmp_path / "b.tif", np.linspace(0, 1, 50, dtype=np.float32).reshape(5, 10))
    result = runner.invoke(app, ["info", str(a), str(b)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"{a}: MRC, 30x20 px, int16, pixel 0.03 nm (0.9 nm wide), range [7, 7]",
        f"{b}: TIFF, 10x5 px, float32, pixel size unknown, range [0, 1]",
    ]


def test_info_frame_option(tmp_path):
    stack = np.stack([np.full((4, 5), i, np.int16) for i in range(3)])
    path = write_mrc(tmp_path / "s.mrc", stack, pixel_size=0.1)
    summed = runner.invoke(app, ["info", str(path)])
    assert "3 frames summed" in summed.stdout and "range [3, 3]" in summed.stdout
    second = runner.invoke(app, ["info", "--frame", "2", str(path)])
    assert "range [2, 2]" in second.stdout
    bad = runner.invoke(app, ["info", "--frame", "last", str(path)])
    assert bad.exit_code == 2
    assert bad.stderr.strip() == "error: --frame must be 'sum' or a frame number, not 'last'"
    beyond = runner.invoke(app, ["info", "--frame", "5", str(path)])
    assert beyond.exit_code == 2
    assert "frame 5 requested but the stack has 3" in beyond.stderr


def test_demo_segments_the_example(tmp_path):
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    for suffix in ("_mask.png", "_prob.tif", "_overlay.png", "_particles.csv"):
        path = out / f"example{suffix}"
        assert str(path) in result.stdout
        assert path.is_file()
    overlay = read_micrograph(out / "example_overlay.png")
    assert overlay.data.max() > overlay.data.min()
    with open(out / "summary.csv", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert float(row["pixel_size_nm"]) == overlay.pixel_size > 0
    # The example is simulated, so the demo can say how well the bundled model did on it.
    dice = float(result.stdout.split("Dice against the simulated truth: ")[1].split()[0])
    assert dice > 0.8
    assert int(row["n_particles"]) >= 3


def test_demo_refuses_output_that_is_a_file(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("x")
    result = runner.invoke(app, ["demo", "--out", str(target)])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {target}: output path exists and is not a folder"
