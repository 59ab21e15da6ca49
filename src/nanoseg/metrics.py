"""Segmentation metrics: pixel counts and scores, threshold curves, and particle-level matching.

Everything here is plain numpy (plus :func:`skimage.measure.label` for particles) and works on
any method's output, network or not.

Conventions
-----------
* Class 1 is *particle*, class 0 is *background*. Confusion matrices are laid out as the paper
  plots them, rows the true class and columns the predicted class::

      [[tn, fp],
       [fn, tp]]

* A probability map becomes a mask with :func:`binarize`: particle where ``prob >= threshold``,
  compared in float64 (so a float32 map and a threshold such as 0.7 give the same answer here,
  in :func:`threshold_curve` and in :mod:`nanoseg.evaluate`).
* A score whose denominator is zero (nothing to count) is never NaN, so results always go into
  JSON: it is **1.0 when prediction and truth agree that the class in question is absent, else
  0.0**. So a tile with no particle and no predicted particle has Dice, IoU, precision and recall
  1.0; a prediction of nothing where there are particles has precision 0.0 (and recall 0.0); any
  prediction where there are no particles has recall 0.0 (and precision 0.0). Rows of the
  normalised confusion matrix for a class with no pixel at all are ``None`` (JSON ``null``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from nanoseg.measure import touches_edge

__all__ = [
    "CURVE_METRICS",
    "DEFAULT_THRESHOLDS",
    "best_threshold",
    "binarize",
    "confusion",
    "drop_border_objects",
    "object_scores",
    "scores",
    "threshold_curve",
]

#: Thresholds of :func:`threshold_curve` unless others are given: 0.01, 0.02, ..., 0.99.
DEFAULT_THRESHOLDS = np.linspace(0.01, 0.99, 99)
#: Scores :func:`best_threshold` can maximise.
CURVE_METRICS = ("pixel_accuracy", "dice", "iou")
#: Pixels handled at once by :func:`threshold_curve` (bounds its memory to ~100 MB).
_CHUNK = 1 << 22


def _as_mask(array: Any, name: str) -> np.ndarray:
    mask = np.asarray(array)
    if mask.dtype == bool:
        return mask
    if mask.dtype.kind in "iu":
        return mask != 0
    raise TypeError(
        f"{name} must be a bool (or integer 0/1) mask, not {mask.dtype}; "
        "threshold probabilities with binarize() first"
    )


def binarize(prob: np.ndarray, threshold: float) -> np.ndarray:
    """Particle mask of a probability map: ``prob >= threshold``, compared in float64.

    Parameters
    ----------
    prob : numpy.ndarray
        Any shape, float (probabilities) or bool (a mask is returned unchanged for any
        threshold in (0, 1]).
    threshold : float

    Returns
    -------
    numpy.ndarray
        bool, shape of `prob`.
    """
    return np.asarray(prob) >= np.float64(threshold)


def confusion(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Pixel counts of the two-class confusion matrix.

    Parameters
    ----------
    pred, truth : numpy.ndarray
        bool (or integer 0/1) masks of the same, any, shape; True is particle.

    Returns
    -------
    numpy.ndarray
        int64 ``(2, 2)``: ``[[tn, fp], [fn, tp]]`` (rows true class, columns predicted).

    Raises
    ------
    ValueError
        The shapes differ.
    TypeError
        A float array (probabilities must go through :func:`binarize` first).
    """
    pred, truth = _as_mask(pred, "pred"), _as_mask(truth, "truth")
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and truth {truth.shape} differ in shape")
    n = truth.size
    n_true = int(np.count_nonzero(truth))
    n_pred = int(np.count_nonzero(pred))
    tp = int(np.count_nonzero(pred & truth))
    fp, fn = n_pred - tp, n_true - tp
    tn = n - tp - fp - fn
    return np.array([[tn, fp], [fn, tp]], dtype=np.int64)


def _ratio(num: np.ndarray, den: np.ndarray, absent: np.ndarray) -> np.ndarray:
    """num / den where den > 0; where den == 0, 1.0 if `absent` (both agree) else 0.0."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    shape = np.broadcast_shapes(num.shape, den.shape, np.shape(absent))
    out = np.broadcast_to(np.where(absent, 1.0, 0.0), shape).astype(np.float64)
    return np.divide(num, den, out=out, where=den > 0)


def _from_counts(tn: Any, fp: Any, fn: Any, tp: Any) -> dict[str, np.ndarray]:
    """Scores from counts (scalars or arrays of the same shape), with the module's conventions."""
    tn, fp, fn, tp = (np.asarray(v, np.int64) for v in (tn, fp, fn, tp))
    n = tn + fp + fn + tp
    return {
        "pixel_accuracy": _ratio(tp + tn, n, True),
        "dice": _ratio(2 * tp, 2 * tp + fp + fn, True),
        "iou": _ratio(tp, tp + fp + fn, True),
        "precision": _ratio(tp, tp + fp, fn == 0),
        "recall": _ratio(tp, tp + fn, fp == 0),
        "specificity": _ratio(tn, tn + fp, fn == 0),
    }


def scores(confusion: np.ndarray) -> dict[str, Any]:
    """Pixel scores of a confusion matrix, as plain Python numbers (ready for JSON).

    Parameters
    ----------
    confusion : numpy.ndarray
        int ``(2, 2)`` ``[[tn, fp], [fn, tp]]``, as :func:`confusion` returns (sums of
        several are fine).

    Returns
    -------
    dict
        ``pixel_accuracy`` (tp + tn) / n; ``dice`` 2 tp / (2 tp + fp + fn); ``iou``
        tp / (tp + fp + fn); ``precision`` tp / (tp + fp); ``recall`` tp / (tp + fn);
        ``specificity`` tn / (tn + fp) (floats; zero denominators as in the module notes);
        ``confusion_normalized`` 2x2 nested list, each row divided by its true-class total
        (``[[tn, fp] / (tn + fp), [fn, tp] / (fn + tp)]``, a row with no pixel is ``None``);
        the counts ``tn``, ``fp``, ``fn``, ``tp``, ``n_pixels`` (int); and
        ``true_particle_fraction``, ``predicted_particle_fraction`` (float, 0.0 when empty).
    """
    matrix = np.asarray(confusion)
    if matrix.shape != (2, 2):
        raise ValueError(f"a confusion matrix is 2x2, not {matrix.shape}")
    (tn, fp), (fn, tp) = (int(v) for v in matrix[0]), (int(v) for v in matrix[1])
    if min(tn, fp, fn, tp) < 0:
        raise ValueError("confusion counts cannot be negative")
    n = tn + fp + fn + tp
    out: dict[str, Any] = {k: float(v) for k, v in _from_counts(tn, fp, fn, tp).items()}
    rows = []
    for a, b in ((tn, fp), (fn, tp)):
        rows.append([a / (a + b), b / (a + b)] if a + b else None)
    out["confusion_normalized"] = rows
    out.update(tn=tn, fp=fp, fn=fn, tp=tp, n_pixels=n)
    out["true_particle_fraction"] = (fn + tp) / n if n else 0.0
    out["predicted_particle_fraction"] = (fp + tp) / n if n else 0.0
    return out


def threshold_curve(
    prob: np.ndarray,
    truth: np.ndarray,
    thresholds: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Scores at many thresholds in one pass, exactly and in bounded memory.

    Each pixel's probability is placed, by binary search, among the sorted thresholds; counting
    these positions separately for particle and background pixels (a histogram whose bin edges
    are the thresholds) and summing from the top gives the exact confusion counts of
    ``binarize(prob, t)`` for every ``t`` at once. The data are read in chunks of 4 M pixels, so
    100 tiles of 512x512 take about two seconds and ~100 MB.

    Parameters
    ----------
    prob : numpy.ndarray
        Float probabilities (or a bool mask), any shape, no NaN.
    truth : numpy.ndarray
        bool (or integer 0/1) mask, shape of `prob`.
    thresholds : numpy.ndarray, optional
        1-D, strictly increasing; default :data:`DEFAULT_THRESHOLDS` (0.01 ... 0.99).

    Returns
    -------
    dict of numpy.ndarray
        Each ``(len(thresholds),)``: ``threshold`` (float64); ``pixel_accuracy``, ``dice``,
        ``iou``, ``precision``, ``recall``, ``specificity`` (float64, conventions as in
        :func:`scores`); ``tn``, ``fp``, ``fn``, ``tp`` (int64).

    Raises
    ------
    ValueError
        Shapes differ, `prob` holds NaN, or bad thresholds.
    """
    t = np.asarray(DEFAULT_THRESHOLDS if thresholds is None else thresholds, dtype=np.float64)
    if t.ndim != 1 or not len(t) or not np.isfinite(t).all() or np.any(np.diff(t) <= 0):
        raise ValueError("thresholds must be a non-empty, finite, strictly increasing 1-D array")
    prob = np.asarray(prob)
    truth = _as_mask(truth, "truth")
    if prob.shape != truth.shape:
        raise ValueError(f"probabilities {prob.shape} and truth {truth.shape} differ in shape")
    flat_prob, flat_truth = prob.reshape(-1), truth.reshape(-1)
    every = np.zeros(len(t) + 1, np.int64)  # every[k]: pixels above exactly k thresholds
    positive = np.zeros(len(t) + 1, np.int64)
    for start in range(0, flat_prob.size, _CHUNK):
        chunk = flat_prob[start : start + _CHUNK]
        if chunk.dtype.kind == "f" and np.isnan(chunk).any():
            raise ValueError("probabilities contain NaN")
        # Number of thresholds <= p: the pixel is particle for t[0] ... t[k - 1].
        k = np.searchsorted(t, chunk, side="right")
        every += np.bincount(k, minlength=len(t) + 1)
        positive += np.bincount(k[flat_truth[start : start + _CHUNK]], minlength=len(t) + 1)
    # Predicted particle at t[j] <=> k > j: sums over k = j+1 ... len(t).
    tp = np.cumsum(positive[::-1])[::-1][1:]
    predicted = np.cumsum(every[::-1])[::-1][1:]
    n_true, n = int(positive.sum()), int(every.sum())
    fp = predicted - tp
    fn = n_true - tp
    tn = n - tp - fp - fn
    curve: dict[str, np.ndarray] = {"threshold": t.copy()}
    curve.update(_from_counts(tn, fp, fn, tp))
    curve.update(tn=tn, fp=fp, fn=fn, tp=tp)
    return curve


def best_threshold(curve: Mapping[str, Any], metric: str = "pixel_accuracy") -> float:
    """The threshold of a curve that maximises a score.

    Ties (a plateau, as when classes separate perfectly) go to the threshold nearest 0.5, the
    two-class softmax's natural decision point; remaining ties to the lower threshold.

    Parameters
    ----------
    curve : mapping
        As returned by :func:`threshold_curve` (arrays or lists).
    metric : str
        One of :data:`CURVE_METRICS`: ``"pixel_accuracy"`` (the paper's choice), ``"dice"``
        or ``"iou"``.

    Returns
    -------
    float
    """
    if metric not in CURVE_METRICS:
        raise ValueError(f"metric must be one of {', '.join(CURVE_METRICS)}, not '{metric}'")
    t = np.asarray(curve["threshold"], dtype=np.float64)
    values = np.asarray(curve[metric], dtype=np.float64)
    candidates = np.flatnonzero(values >= values.max() - 1e-12)
    distance = np.abs(t[candidates] - 0.5)
    return float(t[candidates[np.argmin(distance)]])


# --------------------------------------------------------------------------------------------
# particles
# --------------------------------------------------------------------------------------------


def _stack(mask: np.ndarray, name: str) -> np.ndarray:
    mask = _as_mask(mask, name)
    if mask.ndim == 2:
        return mask[None]
    if mask.ndim == 3:
        return mask
    raise ValueError(f"{name} must be one image (H, W) or a stack (n, H, W), not {mask.shape}")


def _label_stack(masks: np.ndarray, connectivity: int) -> tuple[np.ndarray, int]:
    """Label each image on its own; labels are unique across the stack. Returns (labels, n)."""
    from skimage.measure import label

    labels = np.zeros(masks.shape, dtype=np.int64)
    total = 0
    for i, mask in enumerate(masks):
        lab, count = label(mask, connectivity=connectivity, return_num=True)
        labels[i] = np.where(lab > 0, lab + total, 0)
        total += count
    return labels, total


def drop_border_objects(mask: np.ndarray, *, connectivity: int = 2) -> np.ndarray:
    """Remove the particles (connected components) that touch the image border.

    The rule of the ``real-dev`` hand-labelled set: its labellers left out particles cut by the
    image edge, so before scoring, predicted particles touching the edge are dropped too.

    Parameters
    ----------
    mask : numpy.ndarray
        bool ``(H, W)``, or ``(n, H, W)`` (each image on its own: the stack axis is no border).
    connectivity : int
        1 (4-neighbours) or 2 (8-neighbours, the default).

    Returns
    -------
    numpy.ndarray
        bool, shape of `mask`.
    """
    masks = _stack(mask, "mask")
    out = np.zeros_like(masks)
    for i, image in enumerate(masks):
        labels, count = _label_stack(image[None], connectivity)
        drop = touches_edge(labels[0], count)
        drop[0] = True  # the background
        out[i] = ~drop[labels[0]]
    return out.reshape(np.shape(mask))


def object_scores(
    pred_mask: np.ndarray,
    true_mask: np.ndarray,
    iou: float = 0.5,
    *,
    connectivity: int = 2,
) -> dict[str, Any]:
    """Particle-level precision, recall and F1 by one-to-one matching of connected components.

    Predicted and true particles are the connected components of the masks. A pair matches when
    its IoU (shared pixels over the pixels of either) is at least `iou`; pairs are accepted
    greedily from the highest IoU down, each particle in at most one pair. (With ``iou > 0.5``
    a particle can only ever overlap one partner that much, so the matching is unique.) A
    predicted particle that splits a true one in two, or one that merges two true ones, matches
    nothing unless a piece covers enough of its partner.

    Parameters
    ----------
    pred_mask, true_mask : numpy.ndarray
        bool ``(H, W)`` or ``(n, H, W)`` of the same shape; images of a stack are matched
        separately and the counts summed.
    iou : float
        Matching threshold in (0, 1]; 0.5 by default.
    connectivity : int
        1 (4-neighbours) or 2 (8-neighbours, the default).

    Returns
    -------
    dict
        ``n_true``, ``n_pred``, ``tp`` (matched pairs), ``fp`` (unmatched predictions),
        ``fn`` (unmatched true particles) as int; ``precision`` tp / n_pred, ``recall``
        tp / n_true, ``f1`` (floats; 1.0 when there is no particle in either, 0.0 for the
        side with none when the other has some); ``mean_matched_iou`` (float, ``None`` without
        a match); ``iou_threshold``.
    """
    if not 0 < iou <= 1:
        raise ValueError(f"iou must be in (0, 1], not {iou}")
    pred, truth = _stack(pred_mask, "pred_mask"), _stack(true_mask, "true_mask")
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and truth {truth.shape} differ in shape")
    pred_labels, n_pred = _label_stack(pred, connectivity)
    true_labels, n_true = _label_stack(truth, connectivity)
    pred_area = np.bincount(pred_labels.ravel(), minlength=n_pred + 1)
    true_area = np.bincount(true_labels.ravel(), minlength=n_true + 1)
    both = (pred_labels > 0) & (true_labels > 0)
    key = true_labels[both] * (n_pred + 1) + pred_labels[both]
    pairs, shared = np.unique(key, return_counts=True)
    t_id, p_id = pairs // (n_pred + 1), pairs % (n_pred + 1)
    pair_iou = shared / (true_area[t_id] + pred_area[p_id] - shared)
    order = np.lexsort((p_id, t_id, -pair_iou))  # highest IoU first, ties by label
    used_true, used_pred, matched = set(), set(), []
    for j in order:
        if pair_iou[j] < iou:
            break
        if t_id[j] in used_true or p_id[j] in used_pred:
            continue
        used_true.add(t_id[j])
        used_pred.add(p_id[j])
        matched.append(float(pair_iou[j]))
    tp = len(matched)
    fp, fn = n_pred - tp, n_true - tp
    counts = _from_counts(0, fp, fn, tp)
    precision, recall = float(counts["precision"]), float(counts["recall"])
    return {
        "n_true": int(n_true),
        "n_pred": int(n_pred),
        "tp": tp,
        "fp": int(fp),
        "fn": int(fn),
        "precision": precision,
        "recall": recall,
        "f1": float(counts["dice"]),  # F1 = 2 tp / (2 tp + fp + fn), as Dice for pixels
        "mean_matched_iou": float(np.mean(matched)) if matched else None,
        "iou_threshold": float(iou),
    }
