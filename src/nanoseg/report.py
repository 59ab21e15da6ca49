"""Figures: turning arrays into pictures a microscopist can look at or put in a paper."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["confusion_figure", "overlay_figure", "threshold_curve_figure", "to_display"]


def to_display(image: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Stretch an image to 8 bit for display, clipping the darkest and brightest tails.

    Parameters
    ----------
    image : numpy.ndarray
        Shape ``(height, width)``, any real dtype.
    low, high : float
        Percentiles mapped to 0 and 255; the tails clip so a few X-ray spikes do not
        flatten the picture.

    Returns
    -------
    numpy.ndarray
        Shape ``(height, width)``, dtype uint8.
    """
    data = np.asarray(image, dtype=np.float64)
    lo, hi = np.percentile(data, [low, high])
    if hi <= lo:
        return np.zeros(data.shape, dtype=np.uint8)
    scaled = (np.clip(data, lo, hi) - lo) / (hi - lo)
    return np.round(scaled * 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# evaluation figures (matplotlib's Agg canvas directly: no pyplot, no global backend change)
# --------------------------------------------------------------------------------------------

#: Resolution of the evaluation figures (small files, still readable).
FIGURE_DPI = 100


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=FIGURE_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: str | os.PathLike[str]) -> Path:
    from nanoseg.io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=FIGURE_DPI)
    return path


def confusion_figure(
    matrices: Mapping[str, Sequence[Sequence[float] | None]],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> Path:
    """Draw normalised 2x2 confusion matrices side by side, values written in each cell.

    As in the paper's figures: rows are the true class (background, particle), columns the
    predicted class, each row sums to 1 (a row of ``None`` is drawn empty, marked "n/a").

    Parameters
    ----------
    matrices : mapping of str to 2x2 nested sequence
        Panel title (e.g. material, "overall") to matrix, e.g. ``scores["confusion_normalized"]``.
    path : str or os.PathLike
        PNG to write (atomically).
    title : str, optional
        Figure title.

    Returns
    -------
    pathlib.Path
    """
    names = list(matrices)
    figure = _new_figure(2.6 * max(len(names), 1) + 0.6, 2.9)
    axes = figure.subplots(1, max(len(names), 1), squeeze=False)[0]
    image = None
    classes = ["background", "particle"]
    for ax, name in zip(axes, names, strict=False):
        rows = matrices[name]
        values = np.array(
            [[np.nan, np.nan] if row is None else [float(v) for v in row] for row in rows]
        )
        image = ax.imshow(values, cmap="Blues", vmin=0, vmax=1)
        for r in range(2):
            for c in range(2):
                value = values[r, c]
                text = "n/a" if np.isnan(value) else f"{value:.2f}"
                colour = "white" if not np.isnan(value) and value > 0.6 else "black"
                ax.text(c, r, text, ha="center", va="center", color=colour, fontsize=12)
        ax.set_xticks([0, 1], classes)
        ax.set_yticks([0, 1], classes, rotation=90, va="center")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(name)
    if image is not None:
        figure.colorbar(image, ax=list(axes), shrink=0.8, label="fraction of true class")
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def overlay_figure(
    images: np.ndarray,
    truths: np.ndarray,
    predictions: np.ndarray,
    titles: Sequence[str],
    path: str | os.PathLike[str],
) -> Path:
    """A grid with one row per tile: the image, the true mask and the predicted mask.

    The prediction panel colours agreement and errors: white particle found, red false
    particle, blue missed particle, black background.

    Parameters
    ----------
    images : numpy.ndarray
        ``(n, H, W)`` float, shown stretched with :func:`to_display`.
    truths, predictions : numpy.ndarray
        bool ``(n, H, W)``.
    titles : sequence of str
        One label per row (e.g. material, source, tile Dice).
    path : str or os.PathLike
        PNG to write (atomically).

    Returns
    -------
    pathlib.Path
    """
    n = len(images)
    figure = _new_figure(7.2, 2.3 * max(n, 1) + 0.3)
    axes = figure.subplots(max(n, 1), 3, squeeze=False)
    for row in range(n):
        truth, pred = np.asarray(truths[row], bool), np.asarray(predictions[row], bool)
        errors = np.zeros((*truth.shape, 3), np.uint8)
        errors[truth & pred] = (255, 255, 255)
        errors[~truth & pred] = (230, 40, 40)
        errors[truth & ~pred] = (40, 110, 255)
        panels = [
            (to_display(images[row]), {"cmap": "gray", "vmin": 0, "vmax": 255}),
            (truth, {"cmap": "gray", "vmin": 0, "vmax": 1}),
            (errors, {}),
        ]
        for col, (data, style) in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(data, interpolation="nearest", **style)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row, 0].set_ylabel(titles[row], fontsize=8)
    for col, name in enumerate(["image", "truth", "prediction (red false, blue missed)"]):
        axes[0, col].set_title(name, fontsize=9)
    return _save(figure, path)


def threshold_curve_figure(
    curve: Mapping[str, Any],
    path: str | os.PathLike[str],
    *,
    chosen: float | None = None,
    title: str | None = None,
) -> Path:
    """Pixel accuracy and Dice against the threshold, the threshold in use marked.

    Parameters
    ----------
    curve : mapping
        ``threshold``, ``pixel_accuracy`` and ``dice`` sequences (see
        :func:`nanoseg.metrics.threshold_curve`).
    path : str or os.PathLike
        PNG to write (atomically).
    chosen : float, optional
        Threshold to mark with a vertical line.
    title : str, optional

    Returns
    -------
    pathlib.Path
    """
    figure = _new_figure(5.0, 3.4)
    ax = figure.subplots()
    t = np.asarray(curve["threshold"], dtype=np.float64)
    for key, label in (("pixel_accuracy", "pixel accuracy"), ("dice", "Dice")):
        ax.plot(t, np.asarray(curve[key], dtype=np.float64), label=label)
    if chosen is not None:
        ax.axvline(chosen, color="black", linestyle="--", linewidth=1, label=f"used {chosen:.2f}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("threshold on particle probability")
    ax.set_ylabel("score")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    if title:
        ax.set_title(title)
    return _save(figure, path)
