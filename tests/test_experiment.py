"""The paper's study, quick settings: runs end to end, writes its report, resumes."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nanoseg.cli import app
from nanoseg.dataset import dataset_summary
from nanoseg.experiment import MATERIALS, NETWORKS, run_experiment

runner = CliRunner()
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("experiment") / "run"
    result = runner.invoke(app, ["experiment", "--out", str(out), "--quick", "--workers", "2"])
    assert result.exit_code == 0, result.output
    return out, result.stdout


def test_quick_experiment_writes_the_report(quick_run: tuple[Path, str]) -> None:
    out, stdout = quick_run
    assert "results.md" in stdout
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    pairs = {(r["method"], r["test_material"]) for r in rows}
    networks = {"U-Net (Au)", "U-Net (CdSe)", "U-Net (Au+CdSe)"}
    materials = set(MATERIALS.values())
    assert pairs == {(m, t) for m in [*networks, "Bragg filtering"] for t in materials}
    assert len(rows) == 12
    for row in rows:
        for key in ("dice", "pixel_accuracy", "iou"):
            assert 0 <= float(row[key]) <= 1
        assert int(row["n_tiles"]) > 0
    paper = {(r["method"], r["test_material"]): r["paper_pixel_accuracy"] for r in rows}
    assert paper[("U-Net (Au+CdSe)", "Au")] == "0.92"
    assert paper[("Bragg filtering", "CdSe")] == "0.71"
    text = (out / "results.md").read_text()
    assert "| U-Net (Au+CdSe) | Pd |" in text and "SPEC.md" in text
    for name in ["confusion_matrices.png", *(f"overlays/{m}.png" for m in MATERIALS)]:
        assert (out / name).read_bytes()[:8] == PNG_SIGNATURE, name
    for network in NETWORKS:
        for material in MATERIALS:
            assert (out / "eval" / f"{network}_on_{material}" / "metrics.json").is_file()


def test_networks_get_the_same_number_of_training_tiles(quick_run: tuple[Path, str]) -> None:
    out, _ = quick_run
    tiles = {
        network: dataset_summary(out / "data" / f"train_{network}.h5")["splits"]
        for network in NETWORKS
    }
    assert len({t["train"]["tiles"] for t in tiles.values()}) == 1
    assert len({t["validation"]["tiles"] for t in tiles.values()}) == 1
    mixed = tiles["au+cdse"]["train"]["materials"]
    assert mixed["au"]["tiles"] == mixed["cdse"]["tiles"]
    assert set(tiles["au"]["train"]["materials"]) == {"au"}


def test_a_second_run_skips_finished_steps(quick_run: tuple[Path, str]) -> None:
    out, _ = quick_run
    weights = {n: (out / "runs" / n / "best" / "model.safetensors") for n in NETWORKS}
    before = {n: p.stat().st_mtime_ns for n, p in weights.items()}
    result = run_experiment(out, quick=True)
    assert {n: p.stat().st_mtime_ns for n, p in weights.items()} == before
    assert result["timings"]["training"] < 5
    assert len(result["rows"]) == 12
    other = runner.invoke(app, ["experiment", "--out", str(out), "--seed", "3"])
    assert other.exit_code == 2
    assert "holds an experiment with other settings" in other.stderr
