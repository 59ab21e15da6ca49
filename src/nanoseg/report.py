"""Figures: turning arrays into pictures a microscopist can look at or put in a paper."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "OVERLAY_PALETTE",
    "activation_figure",
    "confusion_figure",
    "confusion_grid_figure",
    "overlay_figure",
    "overlay_image",
    "overlay_indexed",
    "probability_figure",
    "size_histogram_figure",
    "threshold_curve_figure",
    "to_display",
]


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
    from nanoseg.dataset import tail_percentiles

    data = np.asarray(image)
    lo, hi = tail_percentiles(data, [low, high])
    if not hi > lo:
        return np.zeros(data.shape, dtype=np.uint8)
    # In float32, in place: a 4096^2 micrograph is 64 MB a copy, and 8 bits need no more.
    scaled = np.clip(data, lo, hi, dtype=np.float32)
    scaled -= np.float32(lo)
    scaled *= np.float32(255 / (hi - lo))
    return np.rint(scaled, out=scaled).astype(np.uint8)


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
    for ax, name in zip(axes, names, strict=False):
        image = _draw_confusion(ax, matrices[name], name)
    if image is not None:
        figure.colorbar(image, ax=list(axes), shrink=0.8, label="fraction of true class")
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def _draw_confusion(ax: Any, rows: Sequence[Sequence[float] | None] | None, title: str) -> Any:
    """One normalised 2x2 confusion matrix on `ax` (None: no data, drawn empty)."""
    classes = ["background", "particle"]
    values = np.full((2, 2), np.nan)
    for r, row in enumerate(rows or [None, None]):
        if row is not None:
            values[r] = [float(v) for v in row]
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
    ax.set_title(title, fontsize=10)
    return image


def confusion_grid_figure(
    grid: Mapping[str, Mapping[str, Sequence[Sequence[float] | None] | None]],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> Path:
    """Normalised confusion matrices in a grid: one row per method, one column per test set.

    Parameters
    ----------
    grid : mapping of str to mapping of str to 2x2 nested sequence
        Row name (a method) -> column name (a test set) -> matrix as in
        :func:`confusion_figure`; a missing or None entry is drawn empty.
    path : str or os.PathLike
        PNG to write (atomically).
    title : str, optional

    Returns
    -------
    pathlib.Path
    """
    rows = list(grid)
    columns = list(dict.fromkeys(c for row in grid.values() for c in row))
    figure = _new_figure(2.6 * max(len(columns), 1) + 0.9, 2.6 * max(len(rows), 1) + 0.4)
    axes = figure.subplots(max(len(rows), 1), max(len(columns), 1), squeeze=False)
    image = None
    for i, row in enumerate(rows):
        for j, column in enumerate(columns):
            image = _draw_confusion(axes[i, j], grid[row].get(column), f"{row} on {column}")
    if image is not None:
        figure.colorbar(image, ax=axes.ravel().tolist(), shrink=0.6, label="fraction of true class")
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def activation_figure(
    maps: np.ndarray,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    cmap: str = "viridis",
) -> Path:
    """A grid of a layer's activation maps, each channel stretched on its own.

    Parameters
    ----------
    maps : numpy.ndarray
        float ``(channels, height, width)``.
    path : str or os.PathLike
        PNG to write (atomically).
    title : str, optional
    cmap : str
        Matplotlib colour map.

    Returns
    -------
    pathlib.Path
    """
    maps = np.asarray(maps, dtype=np.float64)
    count = len(maps)
    cols = max(1, math.ceil(math.sqrt(count)))
    rows = max(1, math.ceil(count / cols))
    panel = 1.6 if count > 16 else 2.4
    figure = _new_figure(panel * cols + 0.2, panel * rows + 0.5)
    axes = figure.subplots(rows, cols, squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= count:
            ax.axis("off")
            continue
        ax.imshow(to_display(maps[k], 1, 99), cmap=cmap, interpolation="nearest")
        ax.set_title(f"{k}", fontsize=7, pad=2)
    if title:
        figure.suptitle(title, fontsize=9)
    return _save(figure, path)


def probability_figure(
    image: np.ndarray,
    probability: np.ndarray,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> Path:
    """The network's input beside its particle probability map (with a colour bar).

    Parameters
    ----------
    image : numpy.ndarray
        float ``(height, width)``, shown stretched in grey.
    probability : numpy.ndarray
        float ``(height, width)`` in [0, 1].
    path : str or os.PathLike
        PNG to write (atomically).
    title : str, optional

    Returns
    -------
    pathlib.Path
    """
    figure = _new_figure(8.4, 4.3)
    axes = figure.subplots(1, 2)
    axes[0].imshow(to_display(image), cmap="gray", interpolation="nearest")
    axes[0].set_title("input (preprocessed)", fontsize=9)
    shown = axes[1].imshow(probability, cmap="magma", vmin=0, vmax=1, interpolation="nearest")
    axes[1].set_title("particle probability", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    figure.colorbar(shown, ax=axes[1], shrink=0.8)
    if title:
        figure.suptitle(title, fontsize=9)
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


# --------------------------------------------------------------------------------------------
# segmentation outputs (PIL for the full-resolution overlay: matplotlib is slow on 8k images)
# --------------------------------------------------------------------------------------------

#: Outline colour of particles in overlays (RGB).
OUTLINE_COLOUR = (255, 200, 0)


def _nice_length(target: float) -> float:
    """The largest 1, 2 or 5 x 10^k not above `target` (> 0)."""
    exponent = math.floor(math.log10(target))
    for step in (5, 2, 1):
        if step * 10**exponent <= target:
            return step * 10**exponent
    return 10**exponent


#: Overlays are indexed images: entries 0-254 of the palette are grey levels, 255 the outline.
OVERLAY_PALETTE = np.array([(g, g, g) for g in range(255)] + [OUTLINE_COLOUR], dtype=np.uint8)
_OUTLINE_INDEX = 255


def overlay_indexed(
    image: np.ndarray, mask: np.ndarray, pixel_size: float | None = None
) -> np.ndarray:
    """The micrograph in grey with particle outlines, and a scale bar when the pixel size is
    known, as indices into :data:`OVERLAY_PALETTE` (:func:`overlay_image` gives the colours).

    A third of the RGB image's bytes: written as a palette PNG, a 4096^2 overlay takes 0.35 s
    and 15 MB instead of 1.0 s and 25 MB. The price is one grey level: white is shown as 254.

    Parameters
    ----------
    image : numpy.ndarray
        ``(height, width)``, any real dtype (stretched with :func:`to_display`).
    mask : numpy.ndarray
        bool ``(height, width)``.
    pixel_size : float, optional
        nm per pixel.

    Returns
    -------
    numpy.ndarray
        uint8 ``(height, width)``.
    """
    from PIL import Image, ImageDraw, ImageFont
    from scipy import ndimage

    height, width = mask.shape
    indexed = np.minimum(to_display(image), _OUTLINE_INDEX - 1)
    mask = np.asarray(mask, bool)
    # Outlines `thickness` px wide inside each particle: the particle pixels within that many
    # steps (4-connected) of the background, which is what skimage's inner boundaries widened
    # by thickness - 1 steps are, in one erosion. The image's edge does not count as background.
    thickness = max(1, round(max(height, width) / 1200))
    indexed[mask & ~ndimage.binary_erosion(mask, iterations=thickness, border_value=1)] = (
        _OUTLINE_INDEX
    )
    if pixel_size is None:
        return indexed
    length_nm = _nice_length(0.2 * width * pixel_size)
    bar = max(1, round(length_nm / pixel_size))
    font_size = max(10, round(min(height, width) / 25))
    font = ImageFont.load_default(size=font_size)
    margin = max(4, font_size // 2)
    bar_height = max(3, font_size // 3)
    x0, y1 = margin, height - margin
    label = f"{length_nm:g} nm"
    text_box = font.getbbox(label)
    text_h = text_box[3] - text_box[1]
    left, top = max(0, x0 - margin // 2), max(0, y1 - bar_height - text_h - margin)
    right = min(width, x0 + max(bar, text_box[2]) + margin // 2 + 1)
    bottom = min(height, y1 + margin // 2 + 1)
    # Drawn in grey on the corner it covers only: a copy of the whole image costs more than
    # the drawing.
    white = _OUTLINE_INDEX - 1
    corner = Image.new("L", (right - left, bottom - top), 0)
    draw = ImageDraw.Draw(corner)
    draw.rectangle(
        (x0 - left, y1 - bar_height - top, x0 + bar - 1 - left, y1 - 1 - top), fill=white
    )
    draw.text(
        (x0 - left, y1 - bar_height - text_h - margin // 2 - text_box[1] - top),
        label,
        fill=white,
        font=font,
    )
    indexed[top:bottom, left:right] = np.asarray(corner)  # drawn no brighter than `white`
    return indexed


def overlay_image(
    image: np.ndarray, mask: np.ndarray, pixel_size: float | None = None
) -> np.ndarray:
    """The micrograph in grey with particle outlines, and a scale bar when the pixel size is
    known: uint8 RGB ``(height, width, 3)``, the colours of :func:`overlay_indexed` (same
    parameters) in :data:`OVERLAY_PALETTE`."""
    return OVERLAY_PALETTE[overlay_indexed(image, mask, pixel_size)]


def size_histogram_figure(
    diameters: np.ndarray, unit: str, path: str | os.PathLike[str], *, title: str = ""
) -> Path:
    """Histogram of particle equivalent diameters.

    Parameters
    ----------
    diameters : numpy.ndarray
        float ``(n,)``.
    unit : str
        ``"nm"`` or ``"px"``, for the axis label.
    path : str or os.PathLike
        PNG to write (atomically).
    title : str
        Figure title (e.g. the number of micrographs).

    Returns
    -------
    pathlib.Path
    """
    figure = _new_figure(5.0, 3.5)
    ax = figure.subplots()
    values = np.asarray(diameters, float)
    values = values[np.isfinite(values)]
    if len(values):
        ax.hist(values, bins=min(50, max(5, int(np.sqrt(len(values))))), color="0.35")
        median = float(np.median(values))
        ax.axvline(median, color="tab:orange", label=f"median {median:.3g} {unit}")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no particles", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(f"equivalent diameter ({unit})")
    ax.set_ylabel("particles")
    ax.set_title(title or f"{len(values)} particles", fontsize=9)
    return _save(figure, path)
