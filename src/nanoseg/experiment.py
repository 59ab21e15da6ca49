"""The paper's study on simulated data: one material or two, and the Bragg-filter baseline.

Groschner, Choi & Scott trained the same U-Net on Au micrographs only, on CdSe only, and on
both, with the same number of training tiles, and tested every network on Au, CdSe and a
material none had seen (Pd); training on both materials won. They compared the combined
network with Bragg-peak filtering on one image per material. :func:`run_experiment` repeats
the study on simulated micrographs, start to finish:

1. **Simulate** Au, CdSe and Pd micrographs, one material at a time, into ``DIR/sim/<m>``
   (:func:`nanoseg.simulate.simulate`).
2. **Data sets** ``DIR/data/<m>.h5`` (:func:`nanoseg.dataset.build_dataset`: 3x3 median,
   tiles, split by simulated scene). Tiles are normalised per image (``percentile``, as the
   bundled model) rather than by each data set's maximum, so that a network trained on one
   material sees the tiles of another as it saw its own. Au and CdSe are split
   0.55/0.18/0.27 (the paper's 97/32/46 tiles); Pd 0.1/0/0.9, since only its test tiles are
   used.
3. **Training sets** with the same number of training tiles ``N`` (the smaller of the Au
   and CdSe training splits, made even) and of validation tiles ``V`` for the three
   networks: ``au`` (N Au tiles), ``cdse`` (N CdSe) and ``au+cdse`` (N/2 of each), drawn at
   random from the training and validation splits (:func:`nanoseg.dataset.combine_datasets`).
4. **Train** each network with the ``default`` preset (:func:`nanoseg.train.train`) into
   ``DIR/runs/<network>``.
5. **Evaluate** every network on every material's test split (``nanoseg evaluate``'s
   metrics and figures in ``DIR/eval/<network>_on_<m>``) and Bragg filtering
   (:func:`nanoseg.bragg.evaluate_bragg`) on the same tiles, cut from the raw micrographs
   (the networks' 3x3 median filter would blur the finest fringes).
6. **Report**: ``DIR/results.csv`` and ``DIR/results.md`` (method x test material: Dice,
   pixel accuracy, IoU, precision, recall, with the paper's numbers beside ours),
   ``DIR/confusion_matrices.png`` (methods x test materials) and
   ``DIR/overlays/<m>.png`` (one test tile per material, every method).

Every step that is finished is skipped when the command runs again (a simulated micrograph,
a data set file, a training run that chose its threshold; a killed training run resumes);
evaluation and the report are redone, they take seconds to minutes.

Settings (:data:`FULL` and :data:`QUICK`):

===================  ===================================  ================================
                     full (default)                       ``--quick`` (tests, a smoke run)
===================  ===================================  ================================
micrographs          Au 200, CdSe 200, Pd 64; 512 px      8 each; 128 px
pixel size           0.02-0.05 nm (the paper's HRTEM)     0.04-0.05 nm
particle diameter    Au, Pd 2-8 nm; CdSe 1.5-4 nm         1.5-2.5 nm
scenes               4 micrographs per scene              2 per scene
tiles                512 px (one per micrograph)          128 px
training             ``default`` preset, 15 epochs of     2 epochs of 16 samples, batch 4,
                     1000 samples (256 px crops)          64 px crops
time on 2 cores      14 min simulation, 15 min per        about 2 min in all
                     network, 1.5 min evaluation: 59 min
                     (measured; docs/study.md)
===================  ===================================  ================================

The full run gives each network about 100 training tiles, like the paper's 97.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nanoseg.errors import NanosegError

__all__ = [
    "FULL",
    "MATERIALS",
    "NETWORKS",
    "PAPER",
    "QUICK",
    "ExperimentSettings",
    "run_experiment",
]

#: Simulated materials, in table order, with their display names.
MATERIALS = {"au": "Au", "cdse": "CdSe", "pd": "Pd"}
#: Networks: name -> materials of their training tiles.
NETWORKS = {"au": ("au",), "cdse": ("cdse",), "au+cdse": ("au", "cdse")}
#: Method name of the Bragg baseline in the tables.
BRAGG = "bragg"
#: Split fractions (train, validation, test) per material.
SPLITS = {"au": (0.55, 0.18, 0.27), "cdse": (0.55, 0.18, 0.27), "pd": (0.1, 0.0, 0.9)}

#: The paper's figures: (method, test material) -> (pixel accuracy, Dice, note). From the
#: Results section of Groschner, Choi & Scott (text and Figs. 2-5; the paper has no numbered
#: tables), as summarised in the evaluation table of ``SPEC.md`` ("The method of the source
#: paper"). Bragg filtering and the combined network on Pd were scored on a single sample
#: image each, with thresholds tuned by hand per image for Bragg filtering.
PAPER: dict[tuple[str, str], tuple[float | None, float | None, str]] = {
    ("au", "au"): (0.88, 0.79, "Fig. 2c, test set"),
    ("au", "cdse"): (None, None, "fails: nearly everything called particle (Fig. 2f)"),
    ("cdse", "cdse"): (0.87, 0.24, "Fig. 3c; 14 % of particle pixels found"),
    ("au+cdse", "au"): (0.92, 0.87, "Fig. 4a, test set"),
    ("au+cdse", "cdse"): (0.89, 0.56, "Fig. 4b, test set"),
    ("au+cdse", "pd"): (0.96, None, "Fig. 5e, one micrograph"),
    (BRAGG, "au"): (0.77, None, "Fig. 5i, one image, thresholds tuned by hand"),
    (BRAGG, "cdse"): (0.71, None, "Fig. 5g, one image, thresholds tuned by hand"),
    (BRAGG, "pd"): (0.91, None, "Fig. 5h, one image, thresholds tuned by hand"),
}

#: Columns of ``results.csv``.
RESULT_COLUMNS = (
    "method",
    "trained_on",
    "test_material",
    "n_tiles",
    "dice",
    "pixel_accuracy",
    "iou",
    "precision",
    "recall",
    "threshold",
    "paper_pixel_accuracy",
    "paper_dice",
    "paper_note",
)


@dataclass(frozen=True)
class ExperimentSettings:
    """Sizes of one run of the study (see the module notes for the two presets)."""

    name: str
    micrographs: dict[str, int]
    size: int
    pixel_size: tuple[float, float]
    particle_size: dict[str, tuple[float, float]]
    variants: int
    tile: int
    train: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples as lists), as stored in ``DIR/settings.json``."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


FULL = ExperimentSettings(
    name="full",
    micrographs={"au": 200, "cdse": 200, "pd": 64},
    size=512,
    pixel_size=(0.02, 0.05),
    particle_size={"au": (2.0, 8.0), "cdse": (1.5, 4.0), "pd": (2.0, 8.0)},
    variants=4,
    tile=512,
    train={"epochs": 15},
)
QUICK = ExperimentSettings(
    name="quick",
    micrographs={"au": 8, "cdse": 8, "pd": 8},
    size=128,
    pixel_size=(0.04, 0.05),
    particle_size={"au": (1.5, 2.5), "cdse": (1.5, 2.5), "pd": (1.5, 2.5)},
    variants=2,
    tile=128,
    train={"epochs": 2, "samples_per_epoch": 16, "batch_size": 4, "crop": 64, "patience": 2},
)


class ExperimentError(NanosegError):
    """The experiment cannot run (an output folder holding another experiment, too few
    tiles)."""


def _check_settings(out: Path, settings: ExperimentSettings, seed: int) -> None:
    """Refuse to mix two experiments in one folder; record this one's settings."""
    from nanoseg.io import write_json

    path = out / "settings.json"
    wanted = {"settings": settings.to_dict(), "seed": seed}
    if path.exists():
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored != wanted:
            raise ExperimentError(
                f"holds an experiment with other settings ({stored['settings']['name']}, seed "
                f"{stored['seed']}); use another --out",
                out,
            )
    else:
        write_json(path, wanted)


def _simulate(out: Path, settings: ExperimentSettings, seed: int, workers: int) -> dict:
    from nanoseg.simulate import simulate

    folders = {}
    for index, material in enumerate(MATERIALS):
        folders[material] = simulate(
            out / "sim" / material,
            settings.micrographs[material],
            materials=[material],
            size=settings.size,
            pixel_size=settings.pixel_size,
            particle_size=settings.particle_size[material],
            variants=settings.variants,
            seed=seed + 1000 * index,
            workers=workers,
        )
    return folders


def _datasets(out: Path, sims: dict[str, Path], settings: ExperimentSettings, seed: int) -> dict:
    from nanoseg.dataset import build_dataset

    (out / "data").mkdir(exist_ok=True)
    files = {}
    for material, folder in sims.items():
        path = out / "data" / f"{material}.h5"
        if not path.exists():  # written atomically: there means complete
            build_dataset(
                folder / "images", folder / "labels", path, tile=settings.tile,
                normalize_mode="percentile", split=SPLITS[material],
                material_from=folder / "metadata.csv", seed=seed,
            )  # fmt: skip
        files[material] = path
    return files


def _training_sets(out: Path, data: dict[str, Path], seed: int) -> tuple[dict, dict]:
    """One data set file per network: the same number of training (and validation) tiles."""
    from nanoseg.dataset import combine_datasets, split_indices

    train = {m: split_indices(data[m], "train") for m in ("au", "cdse")}
    validation = {m: split_indices(data[m], "validation") for m in ("au", "cdse")}
    n_train = min(len(v) for v in train.values()) // 2 * 2
    n_val = min(len(v) for v in validation.values()) // 2 * 2
    if n_train < 2 or n_val < 2:
        raise ExperimentError(
            f"too few tiles to train on ({n_train} training, {n_val} validation tiles per "
            "network); simulate more micrographs",
            out,
        )
    rng = np.random.default_rng(seed)
    # One draw per material, so each single-material network's tiles include the combined
    # network's half of them.
    picks = {
        m: (rng.permutation(train[m])[:n_train], rng.permutation(validation[m])[:n_val])
        for m in train
    }
    files = {}
    for network, materials in NETWORKS.items():
        path = out / "data" / f"train_{network}.h5"
        share_t, share_v = n_train // len(materials), n_val // len(materials)
        if not path.exists():
            combine_datasets(
                [
                    (data[m], {"train": picks[m][0][:share_t], "validation": picks[m][1][:share_v]})
                    for m in materials
                ],
                path,
            )
        files[network] = path
    return files, {"train_tiles": n_train, "validation_tiles": n_val}


def _train(out: Path, files: dict[str, Path], settings: ExperimentSettings, seed: int) -> dict:
    from nanoseg.model import load_model
    from nanoseg.train import make_config, train

    models = {}
    for network, data in files.items():
        run = out / "runs" / network
        best = run / "best"
        finished = False
        if (best / "model.json").exists():
            _, card = load_model(best)
            finished = card.get("threshold") is not None
        if not finished:
            if (run / "config.json").exists():
                train(data, run, resume=True)
            else:
                train(data, run, make_config("default", seed=seed, **settings.train))
        models[network] = best
    return models


def _row(method: str, material: str, result: dict[str, Any], threshold: float) -> dict[str, Any]:
    paper_acc, paper_dice, note = PAPER.get((method, material), (None, None, ""))
    trained = "-" if method == BRAGG else "+".join(MATERIALS[m] for m in NETWORKS[method])
    return {
        "method": "Bragg filtering" if method == BRAGG else f"U-Net ({trained})",
        "key": method,
        "trained_on": trained,
        "test_material": MATERIALS[material],
        "material_key": material,
        "n_tiles": result["n_tiles"],
        **{k: result[k] for k in ("dice", "pixel_accuracy", "iou", "precision", "recall")},
        "confusion": result["confusion_normalized"],
        "threshold": threshold,
        "paper_pixel_accuracy": paper_acc,
        "paper_dice": paper_dice,
        "paper_note": note,
    }


def _evaluate(out: Path, models: dict, data: dict, sims: dict) -> tuple[list[dict], dict]:
    from nanoseg.bragg import evaluate_bragg
    from nanoseg.evaluate import evaluate_model
    from nanoseg.io import write_json

    rows = []
    for network, model in models.items():
        for material, path in data.items():
            metrics = evaluate_model(model, path, out / "eval" / f"{network}_on_{material}")
            rows.append(_row(network, material, metrics["overall"], metrics["threshold"]))
    bragg_prob = {}
    for material, path in data.items():
        # The same tiles, cut from the raw micrographs: no median filter for the FFT.
        metrics, bragg_prob[material] = evaluate_bragg(
            path, "test", images=sims[material] / "images"
        )
        folder = out / "eval" / f"bragg_on_{material}"
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / "metrics.json", metrics)
        rows.append(_row(BRAGG, material, metrics["overall"], 0.5))
    return rows, bragg_prob


def _overlays(out: Path, models: dict, data: dict, bragg_prob: dict, rows: list) -> dict:
    """``overlays/<m>.png``: a typical test tile of each material under every method."""
    from nanoseg.dataset import load_split
    from nanoseg.metrics import binarize, confusion, scores
    from nanoseg.model import load_model
    from nanoseg.predict import predict_tiles
    from nanoseg.report import overlay_figure

    (out / "overlays").mkdir(exist_ok=True)
    networks = {name: load_model(path) for name, path in models.items()}
    files = {}
    for material, path in data.items():
        tiles = load_split(path, "test")
        fraction = tiles.labels.reshape(len(tiles), -1).mean(axis=1)
        candidates = np.flatnonzero(fraction > 0)
        candidates = candidates if len(candidates) else np.arange(len(tiles))
        # The tile whose particle fraction is the median of the tiles with particles.
        pick = int(candidates[np.argsort(fraction[candidates])[len(candidates) // 2]])
        image, truth = tiles.images[pick], tiles.labels[pick]
        preds, titles = [], []
        for name, (network, card) in networks.items():
            threshold = float(card.get("threshold") or 0.5)
            preds.append(binarize(predict_tiles(network, image[None])[0], threshold))
            titles.append(f"U-Net ({'+'.join(MATERIALS[m] for m in NETWORKS[name])})")
        preds.append(binarize(bragg_prob[material][pick], 0.5))
        titles.append("Bragg filtering")
        titles = [
            f"{t}\nDice {scores(confusion(p, truth))['dice']:.2f}"
            for t, p in zip(titles, preds, strict=True)
        ]
        n = len(preds)
        files[material] = overlay_figure(
            np.repeat(image[None], n, 0),
            np.repeat(truth[None], n, 0),
            np.stack(preds),
            [f"{MATERIALS[material]} {tiles.sources[pick]}\n{t}" for t in titles],
            out / "overlays" / f"{material}.png",
        )
    return files


def _format(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _markdown(
    rows: list[dict],
    settings: ExperimentSettings,
    seed: int,
    counts: dict[str, Any],
    timings: dict[str, float],
) -> str:
    lines = [
        "# Training on one material or two: the paper's study on simulated micrographs",
        "",
        f"Run: `nanoseg experiment` ({settings.name} settings, seed {seed}). "
        f"Micrographs: {', '.join(f'{MATERIALS[m]} {n}' for m, n in settings.micrographs.items())}"
        f", {settings.size} px at {settings.pixel_size[0]:g}-{settings.pixel_size[1]:g} nm/px; "
        f"tiles of {settings.tile} px. Each network trained on {counts['train_tiles']} tiles "
        f"(validation {counts['validation_tiles']}); the combined network on half of each "
        f"material. Training: `default` preset with {settings.train or 'no changes'}.",
        "",
        "Scores are pooled over all test tiles of a material (pixel counts summed). Paper: "
        "Groschner, Choi & Scott, Results section and Figs. 2-5 (the paper has no numbered "
        "tables), as summarised in the evaluation table of SPEC.md; its Bragg-filter figures "
        "and the Pd figure come from one sample image each, with Bragg thresholds tuned by hand "
        "per image, while ours run unattended on every test tile (the same tiles as the "
        "networks', cut from the raw micrographs: no median filter before the FFT).",
        "",
        "| method | tested on | tiles | Dice | pixel accuracy | IoU | precision | recall "
        "| paper: pixel accuracy | paper: Dice | paper's note |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['test_material']} | {r['n_tiles']} | {_format(r['dice'])} "
            f"| {_format(r['pixel_accuracy'])} | {_format(r['iou'])} "
            f"| {_format(r['precision'])} | {_format(r['recall'])} "
            f"| {_format(r['paper_pixel_accuracy'], 2)} | {_format(r['paper_dice'], 2)} "
            f"| {r['paper_note']} |"
        )
    lines += [
        "",
        "Figures: `confusion_matrices.png` (rows: methods, columns: test materials; each row "
        "of a matrix sums to 1), `overlays/<material>.png` (one test tile, every method: "
        "white found, red false particle, blue missed). Per-pair metrics, threshold curves "
        "and more overlays: `eval/<network>_on_<material>/`.",
        "",
        "Time of this run (steps finished before are skipped): "
        + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
        + ".",
    ]
    if settings.name == "quick":
        lines += [
            "",
            "**Quick settings**: tiny micrographs and a few training steps check that the "
            "pipeline runs; these numbers say nothing about the methods.",
        ]
    return "\n".join(lines) + "\n"


def run_experiment(
    out_dir: str | os.PathLike[str],
    *,
    quick: bool = False,
    workers: int = 1,
    seed: int = 0,
    settings: ExperimentSettings | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the study (see the module notes) into `out_dir` and write its report.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Output folder; an earlier run of the same settings and seed there is continued.
    quick : bool
        Use :data:`QUICK` instead of :data:`FULL`.
    workers : int
        Simulation worker processes.
    seed : int
        Seed of the simulation, the splits and the training.
    settings : ExperimentSettings, optional
        Overrides `quick`.
    progress : callable, optional
        Called with one line as each step starts.

    Returns
    -------
    dict
        ``rows`` (one per method and test material, the columns of ``results.csv``),
        ``files`` (``results_md``, ``results_csv``, ``confusion``, ``overlays``), ``counts``
        (training and validation tiles per network) and ``timings`` (seconds per step).

    Raises
    ------
    NanosegError
        Bad options, an output folder holding another experiment, too few tiles.
    """
    from nanoseg.io import atomic_path, check_output_dir, write_csv
    from nanoseg.report import confusion_grid_figure

    if workers < 1:
        raise ExperimentError(f"--workers must be at least 1, not {workers}")
    settings = settings or (QUICK if quick else FULL)
    out = check_output_dir(out_dir)
    _check_settings(out, settings, seed)
    say = progress or (lambda _line: None)
    timings: dict[str, float] = {}

    def step(name: str, what: str, func: Callable[[], Any]) -> Any:
        say(what)
        start = time.perf_counter()
        result = func()
        timings[name] = time.perf_counter() - start
        return result

    sims = step(
        "simulation",
        "simulating " + ", ".join(f"{n} {MATERIALS[m]}" for m, n in settings.micrographs.items()),
        lambda: _simulate(out, settings, seed, workers),
    )
    data = step("data sets", "building data sets", lambda: _datasets(out, sims, settings, seed))
    files, counts = step(
        "training sets", "choosing training tiles", lambda: _training_sets(out, data, seed)
    )
    models = step(
        "training",
        f"training {len(NETWORKS)} networks on {counts['train_tiles']} tiles each",
        lambda: _train(out, files, settings, seed),
    )
    rows, bragg_prob = step(
        "evaluation", "evaluating on the test tiles", lambda: _evaluate(out, models, data, sims)
    )
    say("writing the report")
    start = time.perf_counter()
    grid: dict[str, dict[str, Any]] = {}
    for r in rows:
        grid.setdefault(r["method"], {})[r["test_material"]] = r["confusion"]
    confusion = confusion_grid_figure(
        grid, out / "confusion_matrices.png", title="Normalised confusion matrices, test tiles"
    )
    overlays = _overlays(out, models, data, bragg_prob, rows)
    table = [{k: _csv_value(r[k]) for k in RESULT_COLUMNS} for r in rows]
    results_csv = write_csv(out / "results.csv", table, RESULT_COLUMNS)
    timings["report"] = time.perf_counter() - start
    results_md = out / "results.md"
    with atomic_path(results_md) as tmp:
        tmp.write_text(_markdown(rows, settings, seed, counts, timings), encoding="utf-8")
    return {
        "rows": table,
        "files": {
            "results_md": results_md,
            "results_csv": results_csv,
            "confusion": confusion,
            "overlays": overlays,
        },
        "counts": counts,
        "timings": timings,
    }


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else value
