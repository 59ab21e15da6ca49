"""Evaluate a segmentation on a data set split: metrics per material and overall, and figures.

:func:`evaluate_predictions` scores any method's probabilities (or masks) against a
:class:`~nanoseg.dataset.Split`; :func:`evaluate_model` runs a saved model on a split of a data
set file and writes the paper's metrics and figures to a folder:

=========================  ====================================================================
``metrics.json``           everything: scores per material and overall, threshold and where it
                           came from, the threshold curve, model card summary, data set details
``metrics.csv``            one row per material and ``overall``: accuracy, Dice, IoU, precision,
                           recall, the normalised confusion matrix, number of tiles
``confusion_matrices.png`` normalised 2x2 matrix per material and overall (the paper's figures)
``overlays.png``           a few tiles per material: image, truth, prediction
``threshold_curve.png``    pixel accuracy and Dice against the threshold, the one used marked
=========================  ====================================================================
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from nanoseg.dataset import DatasetError, Split, load_split
from nanoseg.errors import InvalidDataError, NanosegError
from nanoseg.io import json_ready
from nanoseg.metrics import best_threshold, binarize, scores, threshold_curve

__all__ = [
    "CSV_COLUMNS",
    "OUTPUT_FILES",
    "evaluate_model",
    "evaluate_predictions",
    "format_metrics",
]

#: Files :func:`evaluate_model` writes.
OUTPUT_FILES = (
    "metrics.json",
    "metrics.csv",
    "confusion_matrices.png",
    "overlays.png",
    "threshold_curve.png",
)
#: Columns of ``metrics.csv``; ``true_X_pred_Y`` are the entries of the confusion matrix
#: normalised per true class (empty when the split has no pixel of class X).
CSV_COLUMNS = (
    "material",
    "n_tiles",
    "pixel_accuracy",
    "dice",
    "iou",
    "precision",
    "recall",
    "true_background_pred_background",
    "true_background_pred_particle",
    "true_particle_pred_background",
    "true_particle_pred_particle",
)
#: Model card entries copied into ``metrics.json`` (the rest, e.g. training logs, stays there).
_CARD_SUMMARY_KEYS = (
    "format_version",
    "nanoseg_version",
    "architecture",
    "weights_sha256",
    "threshold",
    "threshold_metric",
    "threshold_split",
    "preprocessing",
    "pixel_size_nm",
    "pixel_size_range_nm",
    "training",
    "epoch",
    "val_loss",
    "source",
    "metrics",
)
#: Overlay rows per material.
_OVERLAYS_PER_MATERIAL = 3


def _tile_counts(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-tile confusion counts, int64 ``(n, 2, 2)``."""
    axes = tuple(range(1, truth.ndim))
    pixels = int(np.prod(truth.shape[1:]))
    n_true = np.count_nonzero(truth, axis=axes).astype(np.int64)
    n_pred = np.count_nonzero(pred, axis=axes).astype(np.int64)
    tp = np.count_nonzero(pred & truth, axis=axes).astype(np.int64)
    fp, fn = n_pred - tp, n_true - tp
    tn = pixels - tp - fp - fn
    return np.stack([np.stack([tn, fp], -1), np.stack([fn, tp], -1)], -2)


def evaluate_predictions(
    prob: np.ndarray,
    split: Split,
    threshold: float,
    *,
    name: str,
) -> dict[str, Any]:
    """Score one method's output on a split, per material and overall.

    Works for any method: a network's probabilities, or a baseline's bool masks (passed as
    `prob` with threshold 0.5; the threshold curve is then flat).

    Parameters
    ----------
    prob : numpy.ndarray
        float ``(n, H, W)`` particle probabilities, or bool masks, one per tile of `split`, in
        its order.
    split : Split
        The tiles' truth: uses ``labels`` (bool ``(n, H, W)``) and ``materials`` (``(n,)`` str).
    threshold : float
        A pixel is particle where ``prob >= threshold``.
    name : str
        The method, recorded in the result.

    Returns
    -------
    dict
        ``name``, ``threshold``, ``n_tiles``; ``overall`` and ``per_material`` (material ->
        scores) with the keys of :func:`nanoseg.metrics.scores` plus ``n_tiles``;
        ``threshold_curve`` (lists: threshold, pixel_accuracy, dice, iou, precision, recall)
        and ``best_threshold_on_this_split`` (``pixel_accuracy``, ``dice``), for information
        only: a threshold is chosen on validation data, never on the test split. All values
        are plain Python (JSON-ready, no NaN).

    Raises
    ------
    ValueError
        `prob` does not have the shape of the labels, holds NaN, or a bad threshold.
    """
    prob = np.asarray(prob)
    truth = np.asarray(split.labels, dtype=bool)
    if prob.shape != truth.shape:
        raise ValueError(f"predictions {prob.shape} do not match the split's labels {truth.shape}")
    if not 0 <= float(threshold) <= 1:  # also refuses NaN
        raise ValueError(f"threshold must be a number in [0, 1], not {threshold!r}")
    curve = threshold_curve(prob, truth)  # also checks for NaN
    pred = binarize(prob, threshold)
    counts = _tile_counts(pred, truth)
    materials = np.asarray(split.materials).astype(str)

    def summary(select: np.ndarray) -> dict[str, Any]:
        return {**scores(counts[select].sum(axis=0)), "n_tiles": int(np.count_nonzero(select))}

    keys = ("threshold", "pixel_accuracy", "dice", "iou", "precision", "recall")
    return {
        "name": name,
        "threshold": float(threshold),
        "n_tiles": len(truth),
        "overall": summary(np.ones(len(truth), bool)),
        "per_material": {m: summary(materials == m) for m in sorted(set(materials.tolist()))},
        "threshold_curve": {k: np.asarray(curve[k]).tolist() for k in keys},
        "best_threshold_on_this_split": {
            m: best_threshold(curve, m) for m in ("pixel_accuracy", "dice")
        },
    }


def _choose_threshold(
    threshold: float | None, card: Mapping[str, Any], model_path: Path
) -> tuple[float, str]:
    if threshold is not None:
        if not 0 <= threshold <= 1:  # also refuses NaN
            raise NanosegError(f"--threshold must be between 0 and 1, not {threshold}")
        return float(threshold), "option"
    stored = card.get("threshold")
    if stored is None:
        return 0.5, "default"
    if isinstance(stored, bool) or not isinstance(stored, int | float) or not 0 <= stored <= 1:
        raise InvalidDataError(
            f"model card threshold must be a number in [0, 1], not {stored!r}", model_path
        )
    return float(stored), "model card"


def _preprocessing_warnings(card: Mapping[str, Any], attrs: Mapping[str, Any]) -> list[str]:
    """Differences between the model card's preprocessing and the data set's."""
    wanted = card.get("preprocessing")
    if not isinstance(wanted, Mapping):
        return []
    warnings = []
    for key in ("median", "normalize"):
        if key in wanted and key in attrs and wanted[key] != attrs[key]:
            warnings.append(
                f"the model expects {key} {wanted[key]!r} but the data set used {attrs[key]!r}"
            )
    trained, used = wanted.get("dataset_max"), attrs.get("dataset_max")
    if (
        wanted.get("normalize") == attrs.get("normalize") == "dataset-max"
        and isinstance(trained, int | float)
        and isinstance(used, int | float)
        and math.isfinite(trained)
        and math.isfinite(used)
        and not math.isclose(trained, used, rel_tol=0.01)
    ):
        warnings.append(
            f"the model was trained on tiles divided by {trained:g} but this data set's "
            f"are divided by {used:g}: intensities differ by a factor {trained / used:.3g}"
        )
    return warnings


def _overlay_choice(split: Split, per_material: int) -> np.ndarray:
    """Deterministic tiles to show: per material, evenly spaced among tiles with particles."""
    chosen = []
    materials = np.asarray(split.materials).astype(str)
    has_particles = np.asarray(split.labels).reshape(len(split), -1).any(axis=1)
    for material in sorted(set(materials.tolist())):
        tiles = np.flatnonzero((materials == material) & has_particles)
        if not len(tiles):
            tiles = np.flatnonzero(materials == material)
        picks = np.unique(np.round(np.linspace(0, len(tiles) - 1, per_material)).astype(int))
        chosen.extend(tiles[picks].tolist())
    return np.array(chosen, dtype=int)


def _csv_rows(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    groups = [*metrics["per_material"].items(), ("overall", metrics["overall"])]
    for material, result in groups:
        row = {"material": material}
        row.update({k: result[k] for k in CSV_COLUMNS[1:7]})
        flat: list[float | None] = []
        for pair in result["confusion_normalized"]:
            flat.extend([None, None] if pair is None else pair)
        for key, value in zip(CSV_COLUMNS[7:], flat, strict=True):
            row[key] = "" if value is None else f"{value:.6g}"
        for key in CSV_COLUMNS[2:7]:
            row[key] = f"{row[key]:.6g}"
        rows.append(row)
    return rows


def evaluate_model(
    model_path: str | os.PathLike[str],
    data_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    split: str = "test",
    threshold: float | None = None,
    batch_size: int = 8,
    device: str = "auto",
) -> dict[str, Any]:
    """Run a saved model on a split of a data set and write metrics and figures to `out_dir`.

    The model and the split are read and the output folder checked before the (slow)
    prediction; every file is written atomically. See the module notes for the files.

    Parameters
    ----------
    model_path : str or os.PathLike
        Model folder (``model.safetensors`` + ``model.json``), as :func:`nanoseg.model.load_model`
        takes.
    data_path : str or os.PathLike
        Data set file from ``nanoseg dataset build``; its tiles are already normalised.
    out_dir : str or os.PathLike
        Output folder, created if needed; existing files of the same names are replaced.
    split : str
        ``train``, ``validation`` or ``test`` (default).
    threshold : float, optional
        Particle threshold; by default the model card's, else 0.5.
    batch_size : int
        Tiles per forward pass.
    device : str
        Where the network runs (:func:`nanoseg.runtime.resolve_device`).

    Returns
    -------
    dict
        What :func:`evaluate_predictions` returns, plus ``threshold_source`` (``option``,
        ``model card`` or ``default``), ``split``, ``model`` (path, description and card
        summary), ``data`` (path, tile size, normalisation, tiles per material), ``warnings``
        (e.g. the model card's preprocessing differs from the data set's) and ``files``.

    Raises
    ------
    NanosegError
        Missing or damaged model, a data set without that split, tiles the network cannot
        take, a bad threshold, or an unwritable output folder.
    """
    from nanoseg.io import atomic_path, check_output_dir, write_csv
    from nanoseg.model import load_model
    from nanoseg.predict import predict_tiles
    from nanoseg.report import confusion_figure, overlay_figure, threshold_curve_figure
    from nanoseg.runtime import resolve_device

    model_path, data_path = Path(model_path), Path(data_path)
    target = resolve_device(device)
    model, card = load_model(model_path)
    chosen, source = _choose_threshold(threshold, card, model_path)
    tiles = load_split(data_path, split)
    step = 2**model.config.depth
    if tiles.images.shape[1] % step or tiles.images.shape[2] % step:
        raise DatasetError(
            f"tiles of {tiles.images.shape[1]}x{tiles.images.shape[2]} px cannot pass through "
            f"this U-Net (sides must be multiples of {step})",
            data_path,
        )
    out = check_output_dir(out_dir, inputs=[model_path, data_path])

    prob = predict_tiles(model.to(target), tiles.images, batch_size=batch_size)
    folder = model_path if model_path.is_dir() else model_path.parent
    name = folder.resolve().name
    if name in ("best", "last"):  # a training run's checkpoint: runs/NAME/best
        name = f"{folder.resolve().parent.name}/{name}"
    metrics = evaluate_predictions(prob, tiles, chosen, name=name)
    materials, counts = np.unique(tiles.materials.astype(str), return_counts=True)
    metrics.update(
        threshold_source=source,
        split=split,
        model={
            "path": str(model_path),
            "description": model.config.describe(),
            "card": {k: card[k] for k in _CARD_SUMMARY_KEYS if k in card},
        },
        data={
            "path": str(data_path),
            "tile": int(tiles.images.shape[1]),
            "tiles_per_material": dict(zip(materials.tolist(), counts.tolist(), strict=True)),
            **{
                k: tiles.attrs.get(k)
                for k in ("normalize", "median", "dataset_max", "pixel_size_nm", "seed")
            },
        },
        warnings=_preprocessing_warnings(card, tiles.attrs),
        files={key: str(out / key) for key in OUTPUT_FILES},
    )
    metrics = json_ready(metrics)

    with atomic_path(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    write_csv(out / "metrics.csv", _csv_rows(metrics), CSV_COLUMNS)
    title = f"{name} on {split} split, threshold {chosen:.2f}"
    matrices = {m: r["confusion_normalized"] for m, r in metrics["per_material"].items()}
    matrices["overall"] = metrics["overall"]["confusion_normalized"]
    confusion_figure(matrices, out / "confusion_matrices.png", title=title)
    shown = _overlay_choice(tiles, _OVERLAYS_PER_MATERIAL)
    pred = binarize(prob[shown], chosen)
    titles = []
    for i, tile_pred in zip(shown, pred, strict=True):
        dice = scores(_tile_counts(tile_pred[None], tiles.labels[i][None])[0])["dice"]
        titles.append(
            f"{tiles.materials[i]} · {tiles.sources[i]}\ntile {tiles.index[i]}, Dice {dice:.2f}"
        )
    overlay_figure(tiles.images[shown], tiles.labels[shown], pred, titles, out / "overlays.png")
    threshold_curve_figure(
        metrics["threshold_curve"], out / "threshold_curve.png", chosen=chosen, title=title
    )
    return metrics


def format_metrics(metrics: Mapping[str, Any]) -> list[str]:
    """One line per material and one overall: accuracy, Dice, IoU, precision, recall.

    Parameters
    ----------
    metrics : mapping
        As returned by :func:`evaluate_predictions` or :func:`evaluate_model`.

    Returns
    -------
    list of str
    """
    groups = [*metrics["per_material"].items(), ("overall", metrics["overall"])]
    width = max(len(name) for name, _ in groups)
    return [
        f"{name:<{width}}  {r['n_tiles']:>5} tiles  accuracy {r['pixel_accuracy']:.3f}  "
        f"Dice {r['dice']:.3f}  IoU {r['iou']:.3f}  precision {r['precision']:.3f}  "
        f"recall {r['recall']:.3f}"
        for name, r in groups
    ]
