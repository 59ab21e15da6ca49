"""Evaluation: scores per material, `evaluate_model`'s files, and the `evaluate` command."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nanoseg.cli import app
from nanoseg.dataset import Split, build_dataset, load_split
from nanoseg.evaluate import CSV_COLUMNS, OUTPUT_FILES, evaluate_model, evaluate_predictions
from nanoseg.io import write_mask, write_mrc
from nanoseg.metrics import binarize, confusion
from nanoseg.model import load_model, paper_unet, save_model
from nanoseg.predict import predict_tiles

runner = CliRunner()
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _make_raw(root: Path, n: int = 6, size: int = 64) -> Path:
    """n small micrographs with dark round particles; au and cdse alternate, pairs share a
    scene, so every split holds both materials."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rows, cols = np.indices((size, size))
    lines = ["file,material,scene"]
    for i in range(n):
        mask = np.zeros((size, size), bool)
        for r, c in rng.integers(6, size - 6, (4, 2)):
            mask |= (rows - r) ** 2 + (cols - c) ** 2 <= 25
        image = 1000 + rng.normal(0, 30, (size, size)) - 400 * mask
        write_mrc(root / "images" / f"m{i}.mrc", image.astype(np.int16), pixel_size=0.1)
        write_mask(root / "labels" / f"m{i}.png", mask)
        lines.append(f"images/m{i}.mrc,{'au' if i % 2 else 'cdse'},{i // 2}")
    (root / "meta.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("evaluate")
    raw = _make_raw(root / "raw")
    data = root / "data.h5"
    build_dataset(
        raw / "images", raw / "labels", data, tile=32, keep_empty=1.0,
        split=(0.34, 0.33, 0.33), material_from=raw / "meta.csv",
    )  # fmt: skip
    train_only = root / "train_only.h5"
    build_dataset(
        raw / "images", raw / "labels", train_only, tile=32, split=(1, 0, 0),
        material_from=raw / "meta.csv",
    )  # fmt: skip
    import torch

    torch.manual_seed(0)
    model = save_model(
        root / "model",
        paper_unet(),
        {"threshold": 0.4, "preprocessing": {"median": 3, "normalize": "dataset-max"}},
    )
    return {"root": root, "data": data, "train_only": train_only, "model": model}


def _split(labels: np.ndarray, materials: list[str]) -> Split:
    n = len(labels)
    return Split(
        images=np.zeros(labels.shape, np.float32),
        labels=labels,
        materials=np.array(materials),
        sources=np.array([f"s{i}" for i in range(n)]),
        index=np.arange(n),
        attrs={},
    )


def test_evaluate_predictions_per_material_counts():
    labels = np.zeros((3, 4, 4), bool)
    labels[0, :2] = True  # au tile: 8 particle pixels
    labels[1, :, :1] = True  # cdse tile: 4 particle pixels
    labels[2, 0, 0] = True  # au tile: 1 particle pixel
    prob = np.zeros((3, 4, 4), np.float32)
    prob[0, :1] = 0.9  # au: 4 found, 4 missed
    prob[0, 3, :2] = 0.6  # au: 2 false particle pixels
    prob[1] = 0.3  # cdse: nothing above 0.5
    prob[2, 0, 0] = 0.5  # au: found exactly at the threshold (>=)
    result = evaluate_predictions(prob, _split(labels, ["au", "cdse", "au"]), 0.5, name="hand")
    assert result["name"] == "hand" and result["n_tiles"] == 3 and result["threshold"] == 0.5
    assert set(result["per_material"]) == {"au", "cdse"}
    au, cdse, overall = (
        result["per_material"]["au"],
        result["per_material"]["cdse"],
        result["overall"],
    )
    assert (au["tp"], au["fp"], au["fn"], au["tn"], au["n_tiles"]) == (5, 2, 4, 21, 2)
    assert au["dice"] == pytest.approx(10 / 16)
    assert (cdse["tp"], cdse["fn"], cdse["dice"], cdse["precision"]) == (0, 4, 0.0, 0.0)
    assert overall["n_tiles"] == 3
    assert (overall["tp"], overall["fp"], overall["fn"]) == (5, 2, 8)
    assert overall["pixel_accuracy"] == pytest.approx(38 / 48)
    # At 0.25 everything of the cdse tile becomes particle: the curve agrees.
    curve = result["threshold_curve"]
    j = int(np.argmin(np.abs(np.array(curve["threshold"]) - 0.25)))
    assert curve["recall"][j] == pytest.approx(9 / 13)
    json.dumps(result, allow_nan=False)


def test_evaluate_predictions_takes_masks_and_checks_shape():
    labels = np.random.default_rng(0).random((2, 8, 8)) < 0.3
    split = _split(labels, ["pd", "pd"])
    perfect = evaluate_predictions(labels, split, 0.5, name="baseline")
    assert perfect["overall"]["dice"] == 1.0 and perfect["per_material"]["pd"]["iou"] == 1.0
    with pytest.raises(ValueError, match="do not match"):
        evaluate_predictions(labels[:1], split, 0.5, name="x")
    with pytest.raises(ValueError, match="threshold"):
        evaluate_predictions(labels, split, 1.5, name="x")


def test_evaluate_model_writes_metrics_and_figures(files: dict[str, Path], tmp_path: Path):
    out = tmp_path / "eval"
    metrics = evaluate_model(files["model"], files["data"], out)
    for name in OUTPUT_FILES:
        assert (out / name).stat().st_size > 0, name
    for name in ("confusion_matrices.png", "overlays.png", "threshold_curve.png"):
        assert (out / name).read_bytes()[:8] == PNG_SIGNATURE
    assert not list(out.glob(".*tmp*"))  # no temporary file left behind
    stored = json.loads((out / "metrics.json").read_text())
    assert stored == metrics
    assert metrics["threshold"] == 0.4 and metrics["threshold_source"] == "model card"
    assert metrics["split"] == "test" and metrics["warnings"] == []
    assert metrics["model"]["card"]["threshold"] == 0.4
    assert metrics["model"]["card"]["architecture"]["widths"] == [4, 8, 16, 32]
    assert set(metrics["per_material"]) == {"au", "cdse"}
    # The numbers are those of the model's own predictions on the test tiles.
    split = load_split(files["data"], "test")
    model, _ = load_model(files["model"])
    pred = binarize(predict_tiles(model, split.images), 0.4)
    (tn, fp), (fn, tp) = confusion(pred, split.labels).tolist()
    overall = metrics["overall"]
    assert (overall["tn"], overall["fp"], overall["fn"], overall["tp"]) == (tn, fp, fn, tp)
    assert metrics["n_tiles"] == overall["n_tiles"] == len(split)
    assert sum(m["n_tiles"] for m in metrics["per_material"].values()) == len(split)
    assert metrics["data"]["tiles_per_material"] == {
        m: r["n_tiles"] for m, r in metrics["per_material"].items()
    }
    with open(out / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [r["material"] for r in rows] == ["au", "cdse", "overall"]
    assert float(rows[-1]["dice"]) == pytest.approx(overall["dice"], rel=1e-5)
    assert int(rows[-1]["n_tiles"]) == len(split)
    row_sum = float(rows[0]["true_particle_pred_background"]) + float(
        rows[0]["true_particle_pred_particle"]
    )
    assert row_sum == pytest.approx(1.0, abs=1e-5)


def test_evaluate_model_threshold_option_and_other_split(files: dict[str, Path], tmp_path: Path):
    metrics = evaluate_model(
        files["model"], files["data"], tmp_path / "v", split="validation", threshold=0.7
    )
    assert metrics["threshold"] == 0.7 and metrics["threshold_source"] == "option"
    assert metrics["split"] == "validation"
    assert metrics["n_tiles"] == len(load_split(files["data"], "validation"))


def test_cli_evaluate(files: dict[str, Path], tmp_path: Path):
    out = tmp_path / "cli"
    result = runner.invoke(
        app, ["evaluate", str(files["model"]), str(files["data"]), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("model on the test split (")
    assert "threshold 0.4 (model card)" in lines[0]
    assert lines[1].startswith("au ") and lines[2].startswith("cdse ")
    assert lines[3].startswith("overall ")
    for line in lines[1:4]:
        for word in ("accuracy", "Dice", "IoU", "precision", "recall"):
            assert word in line
    assert str(out) in lines[-1] and "metrics.json" in lines[-1]
    assert (out / "overlays.png").is_file()


def test_cli_warns_when_preprocessing_differs(files: dict[str, Path], tmp_path: Path):
    model = save_model(
        tmp_path / "other", paper_unet(), {"preprocessing": {"median": 3, "normalize": "image-max"}}
    )
    result = runner.invoke(
        app, ["evaluate", str(model), str(files["data"]), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert "warning: the model expects normalize 'image-max'" in result.stderr
    assert "threshold 0.5 (default)" in result.stdout
    # Tiles scaled by another data set maximum than the model was trained with.
    from nanoseg.evaluate import _preprocessing_warnings

    attrs = load_split(files["data"], "test").attrs
    card = {"preprocessing": {"median": 3, "normalize": "dataset-max", "dataset_max": 1.0}}
    assert _preprocessing_warnings(card, {**attrs, "dataset_max": 1.005}) == []
    (warning,) = _preprocessing_warnings(card, {**attrs, "dataset_max": 2.0})
    assert "factor 0.5" in warning


def _error(args: list[str]) -> str:
    result = runner.invoke(app, ["evaluate", *args])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    message = result.stderr.strip()
    assert message.startswith("error: ") and "\n" not in message, message
    return message


def test_cli_bad_input(files: dict[str, Path], tmp_path: Path):
    data, model = str(files["data"]), str(files["model"])
    out = str(tmp_path / "out")
    assert "no such model" in _error([str(tmp_path / "missing"), data, "--out", out])
    broken = tmp_path / "broken"
    broken.mkdir()
    for item in files["model"].iterdir():
        (broken / item.name).write_bytes(item.read_bytes())
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    assert "not a readable safetensors file" in _error([str(broken), data, "--out", out])
    message = _error([model, str(files["train_only"]), "--out", out])
    assert "has no test tile" in message
    assert "unknown split" in _error([model, data, "--split", "dev", "--out", out])
    assert "between 0 and 1" in _error([model, data, "--out", out, "--threshold", "1.5"])
    assert not (tmp_path / "out").exists()  # nothing created before the inputs were checked
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert "not a folder" in _error([model, data, "--out", str(a_file)])
    assert "not an HDF5 file" in _error([model, str(a_file), "--out", out])
