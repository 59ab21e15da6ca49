"""Every kind of bad input gets one clear line naming the file, a NanosegError, exit code 2."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nanoseg.cli import app
from nanoseg.errors import (
    CorruptFileError,
    InvalidDataError,
    NanosegError,
    OutputError,
    ShapeMismatchError,
    UnsupportedFormatError,
)
from nanoseg.io import (
    atomic_path,
    check_output_dir,
    read_label_map,
    read_micrograph,
    write_mask,
    write_mrc,
    write_png,
    write_tiff,
)

IMAGE = (np.arange(48 * 64).reshape(48, 64) % 1000).astype(np.int16)


def _truncate(src: Path, dst: Path, keep: float | int) -> Path:
    data = src.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else keep
    dst.write_bytes(data[:n])
    return dst


def _make_bad_files(tmp: Path) -> dict[str, tuple[Path, type[NanosegError], str]]:
    """name -> (file, expected error class, a phrase the message must contain)."""
    good_mrc = write_mrc(tmp / "good.mrc", IMAGE, 0.025)
    good_tif = write_tiff(tmp / "good.tif", IMAGE.astype(np.uint16), 0.05)
    good_png = write_png(tmp / "good.png", (IMAGE % 256).astype(np.uint8))
    header = bytearray(good_mrc.read_bytes())
    struct.pack_into("<3i", header, 0, 100_000, 100_000, 1)
    (tmp / "absurd.mrc").write_bytes(bytes(header))
    (tmp / "empty.tif").write_bytes(b"")
    (tmp / "text.mrc").write_text("this is a text file, not a micrograph\n" * 50)
    (tmp / "notes.dm3").write_text("this is a text file, not a micrograph\n" * 50)
    np.save(tmp / "oned.npy", np.arange(10.0))
    np.save(tmp / "fourd.npy", np.zeros((2, 2, 8, 8)))
    np.save(tmp / "zero.npy", np.zeros((0, 8)))
    nan = np.ones((8, 8))
    nan[3, 4] = np.nan
    np.save(tmp / "nan.npy", nan)
    inf = np.ones((8, 8), np.float32)
    inf[1, 1] = np.inf
    write_tiff(tmp / "inf.tif", inf)
    (tmp / "image.xyz").write_bytes(b"\x00" * 64)
    return {
        "missing": (tmp / "missing.mrc", CorruptFileError, "not found"),
        "empty": (tmp / "empty.tif", CorruptFileError, "empty"),
        "truncated mrc": (
            _truncate(good_mrc, tmp / "half.mrc", 0.5),
            CorruptFileError,
            "truncated",
        ),
        "truncated mrc header": (
            _truncate(good_mrc, tmp / "head.mrc", 100),
            CorruptFileError,
            "MRC",
        ),
        "truncated tiff": (_truncate(good_tif, tmp / "half.tif", 0.5), CorruptFileError, "TIFF"),
        "truncated tiff header": (
            _truncate(good_tif, tmp / "head.tif", 100),
            CorruptFileError,
            "TIFF",
        ),
        "truncated png": (
            _truncate(good_png, tmp / "half.png", 0.5),
            CorruptFileError,
            "truncated",
        ),
        "text as mrc": (tmp / "text.mrc", CorruptFileError, "MRC"),
        "text as dm3": (tmp / "notes.dm3", CorruptFileError, "DM3"),
        "absurd header": (tmp / "absurd.mrc", CorruptFileError, "100000x100000"),
        "1-D": (tmp / "oned.npy", InvalidDataError, "1-D"),
        "4-D": (tmp / "fourd.npy", InvalidDataError, "4-D"),
        "zero-sized": (tmp / "zero.npy", InvalidDataError, "empty axis"),
        "NaN": (tmp / "nan.npy", InvalidDataError, "NaN"),
        "inf": (tmp / "inf.tif", InvalidDataError, "infinite"),
        "unknown extension": (tmp / "image.xyz", UnsupportedFormatError, ".xyz"),
        "folder": (tmp, CorruptFileError, "folder"),
    }


CASES = [
    "missing",
    "empty",
    "truncated mrc",
    "truncated mrc header",
    "truncated tiff",
    "truncated tiff header",
    "truncated png",
    "text as mrc",
    "text as dm3",
    "absurd header",
    "1-D",
    "4-D",
    "zero-sized",
    "NaN",
    "inf",
    "unknown extension",
    "folder",
]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    return _make_bad_files(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize("case", CASES)
def test_api_raises_documented_error(bad_files, case):
    path, error, phrase = bad_files[case]
    with pytest.raises(error) as info:
        read_micrograph(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert phrase in message
    assert "\n" not in message


@pytest.mark.parametrize("case", CASES)
def test_cli_one_line_exit_2_no_traceback(bad_files, case):
    path, _, phrase = bad_files[case]
    result = CliRunner().invoke(app, ["info", str(path)])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {path}")
    assert phrase in lines[0]
    assert "Traceback" not in result.output


def test_cli_reports_each_file_and_keeps_going(bad_files, tmp_path):
    good = write_mrc(tmp_path / "ok.mrc", IMAGE, 0.025)
    missing, _, _ = bad_files["missing"]
    result = CliRunner().invoke(app, ["info", str(missing), str(good)])
    assert result.exit_code == 2
    assert result.stdout.strip() == (
        f"{good}: MRC, 64x48 px, int16, pixel 0.025 nm (1.6 nm wide), range [0, 999]"
    )


def test_real_entry_point_prints_no_traceback(bad_files):
    path, _, _ = bad_files["text as mrc"]
    proc = subprocess.run(
        [sys.executable, "-m", "nanoseg", "info", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "Traceback" not in proc.stderr


def test_label_map_of_wrong_size(tmp_path):
    label = write_mask(tmp_path / "lab.png", np.ones((10, 12), bool))
    with pytest.raises(
        ShapeMismatchError,
        match=r"lab\.png: label map is 12x10 px but its micrograph a\.mrc is 14x10 px",
    ):
        read_label_map(label, shape=(10, 14), image="a.mrc")
    result = read_label_map(label, shape=(10, 12))
    assert result.dtype == bool and result.all()


def test_label_map_rejects_stacks(tmp_path):
    write_mrc(tmp_path / "stack.mrc", np.zeros((3, 8, 8), np.int16))
    with pytest.raises(InvalidDataError, match="one 2-D image"):
        read_label_map(tmp_path / "stack.mrc")


def test_colour_label_map_any_channel_counts(tmp_path):
    from PIL import Image

    rgb = np.zeros((6, 6, 3), np.uint8)
    rgb[1, 1, 0] = 255  # red stroke
    rgb[4, 4, 2] = 10  # faint blue stroke
    Image.fromarray(rgb).save(tmp_path / "lab.png")
    mask = read_label_map(tmp_path / "lab.png", shape=(6, 6))
    assert mask.sum() == 2 and mask[1, 1] and mask[4, 4]


def test_failed_write_leaves_no_file_and_keeps_old_one(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"previous content")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half a fi")
            raise RuntimeError("killed")
    assert target.read_bytes() == b"previous content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_writer_rejects_bad_array_without_leaving_a_file(tmp_path):
    with pytest.raises(InvalidDataError):
        write_png(tmp_path / "x.png", np.zeros((4, 4), np.float64))
    with pytest.raises(InvalidDataError):
        write_mask(tmp_path / "y.png", np.zeros((2, 3, 4)))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_unwritable_output_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="cannot write"):
            check_output_dir(locked / "sub")
        with pytest.raises(OutputError, match="cannot write"):
            write_mrc(locked / "a.mrc", IMAGE)
    finally:
        locked.chmod(0o700)


def test_output_folder_that_is_a_file_or_an_input(tmp_path):
    some_file = write_mrc(tmp_path / "a.mrc", IMAGE)
    with pytest.raises(OutputError, match="not a folder"):
        check_output_dir(tmp_path / "a.mrc")
    with pytest.raises(OutputError, match="one of the input files"):
        check_output_dir(some_file, [some_file])
    with pytest.raises(OutputError, match="does not exist"):
        write_mrc(tmp_path / "nowhere" / "b.mrc", IMAGE)


def test_output_folder_that_cannot_be_created(tmp_path):
    """A path through a regular file cannot be created, whoever runs the test (root included)."""
    blocker = write_mrc(tmp_path / "a.mrc", IMAGE)
    with pytest.raises(OutputError, match=r"cannot write to the output folder"):
        check_output_dir(blocker / "results")
