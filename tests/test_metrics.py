"""Metrics: pixel counts and scores, threshold curves, particle matching, border particles."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nanoseg.metrics import (
    best_threshold,
    binarize,
    confusion,
    drop_border_objects,
    object_scores,
    scores,
    threshold_curve,
)


def _known_masks() -> tuple[np.ndarray, np.ndarray]:
    """A 10x10 case with tp 12, fp 8, fn 4, tn 76."""
    truth = np.zeros((10, 10), bool)
    pred = np.zeros((10, 10), bool)
    truth[0:4, 0:4] = True  # 16 true particle pixels
    pred[0:4, 1:4] = True  # 12 of them found, 4 missed
    pred[6:8, 0:4] = True  # 8 false particle pixels
    return pred, truth


def test_confusion_counts_known_masks():
    pred, truth = _known_masks()
    np.testing.assert_array_equal(confusion(pred, truth), [[76, 8], [4, 12]])
    assert confusion(pred, truth).dtype == np.int64
    # Any shape, integer 0/1 masks too.
    stack = np.stack([pred, truth, pred])
    counts = confusion(stack.astype(np.uint8), np.stack([truth, truth, truth]))
    np.testing.assert_array_equal(counts, [[76 + 84 + 76, 16], [8, 12 + 16 + 12]])


def test_confusion_refuses_probabilities_and_shape_mismatch():
    with pytest.raises(TypeError, match="binarize"):
        confusion(np.zeros((3, 3)), np.zeros((3, 3), bool))
    with pytest.raises(ValueError, match="shape"):
        confusion(np.zeros((3, 3), bool), np.zeros((3, 4), bool))


def test_scores_known_values():
    result = scores(confusion(*_known_masks()))
    tn, fp, fn, tp = 76, 8, 4, 12
    assert result["pixel_accuracy"] == pytest.approx(88 / 100)
    assert result["dice"] == pytest.approx(2 * tp / (2 * tp + fp + fn))  # 24 / 36
    assert result["iou"] == pytest.approx(tp / (tp + fp + fn))  # 12 / 24
    assert result["precision"] == pytest.approx(12 / 20)
    assert result["recall"] == pytest.approx(12 / 16)
    assert result["specificity"] == pytest.approx(76 / 84)
    np.testing.assert_allclose(result["confusion_normalized"], [[76 / 84, 8 / 84], [0.25, 0.75]])
    assert (result["tn"], result["fp"], result["fn"], result["tp"]) == (tn, fp, fn, tp)
    assert result["n_pixels"] == 100
    assert result["true_particle_fraction"] == pytest.approx(0.16)
    assert result["predicted_particle_fraction"] == pytest.approx(0.20)
    json.dumps(result, allow_nan=False)  # plain Python numbers


def test_scores_edge_cases_are_never_nan():
    empty = np.zeros((4, 4), bool)
    full = np.ones((4, 4), bool)
    # No particle anywhere, none predicted: perfect agreement.
    both_empty = scores(confusion(empty, empty))
    for key in ("pixel_accuracy", "dice", "iou", "precision", "recall", "specificity"):
        assert both_empty[key] == 1.0
    assert both_empty["confusion_normalized"] == [[1.0, 0.0], None]
    # Particles missed entirely: precision and recall 0.
    missed = scores(confusion(empty, full))
    assert (missed["dice"], missed["precision"], missed["recall"]) == (0.0, 0.0, 0.0)
    assert missed["confusion_normalized"] == [None, [1.0, 0.0]]
    assert missed["specificity"] == 0.0
    # Everything called particle where there is none.
    false_alarm = scores(confusion(full, empty))
    assert (false_alarm["precision"], false_alarm["recall"]) == (0.0, 0.0)
    assert false_alarm["specificity"] == 0.0
    # Everything particle, correctly: the background rate is vacuously perfect.
    all_particle = scores(confusion(full, full))
    assert all_particle["specificity"] == 1.0 and all_particle["dice"] == 1.0
    json.dumps([both_empty, missed, false_alarm, all_particle], allow_nan=False)


def test_binarize_compares_in_float64():
    prob = np.array([0.7, 0.69], dtype=np.float32)  # float32(0.7) < 0.7 in float64
    np.testing.assert_array_equal(binarize(prob, 0.7), [False, False])
    np.testing.assert_array_equal(binarize(np.array([True, False]), 0.5), [True, False])


def _brute_force(prob: np.ndarray, truth: np.ndarray, thresholds: np.ndarray) -> dict:
    rows = {k: [] for k in ("pixel_accuracy", "dice", "precision", "recall", "tp", "fp")}
    for t in thresholds:
        pred = prob.astype(np.float64) >= t
        result = scores(confusion(pred, truth))
        for key in rows:
            rows[key].append(result[key])
    return {k: np.array(v) for k, v in rows.items()}


def test_threshold_curve_matches_brute_force():
    rng = np.random.default_rng(1)
    truth = rng.random((6, 40, 40)) < 0.3
    # Particle pixels score higher on average; exact grid values test the >= boundary.
    prob = np.clip(rng.normal(0.35 + 0.3 * truth, 0.2), 0, 1).astype(np.float32)
    prob[0, 0, :5] = [0.5, 0.25, 0.7, 0.01, 0.99]
    thresholds = np.linspace(0.01, 0.99, 99)
    curve = threshold_curve(prob, truth)
    expected = _brute_force(prob, truth, thresholds)
    np.testing.assert_array_equal(curve["threshold"], thresholds)
    for key, values in expected.items():
        np.testing.assert_allclose(curve[key], values, rtol=0, atol=1e-12, err_msg=key)
    # The same on a custom grid, and with chunking across tile boundaries.
    import nanoseg.metrics as metrics

    custom = np.array([0.05, 0.3, 0.31, 0.5, 0.9])
    original = metrics._CHUNK
    metrics._CHUNK = 777
    try:
        chunked = threshold_curve(prob, truth, custom)
    finally:
        metrics._CHUNK = original
    expected = _brute_force(prob, truth, custom)
    for key, values in expected.items():
        np.testing.assert_allclose(chunked[key], values, rtol=0, atol=1e-12, err_msg=key)


def test_threshold_curve_refuses_bad_input():
    truth = np.zeros((4, 4), bool)
    with pytest.raises(ValueError, match="NaN"):
        threshold_curve(np.full((4, 4), np.nan), truth)
    with pytest.raises(ValueError, match="increasing"):
        threshold_curve(np.zeros((4, 4)), truth, [0.5, 0.2])
    with pytest.raises(ValueError, match="shape"):
        threshold_curve(np.zeros((4, 5)), truth)


def test_best_threshold_and_ties():
    curve = {
        "threshold": np.array([0.1, 0.3, 0.5, 0.7, 0.9]),
        "pixel_accuracy": np.array([0.5, 0.9, 0.8, 0.6, 0.4]),
        "dice": np.array([0.6, 0.7, 0.7, 0.7, 0.2]),
        "iou": np.array([0.1, 0.2, 0.3, 0.4, 0.5]),
    }
    assert best_threshold(curve) == 0.3
    assert best_threshold(curve, "dice") == 0.5  # plateau 0.3-0.7: nearest 0.5
    assert best_threshold(curve, "iou") == 0.9
    with pytest.raises(ValueError, match="metric"):
        best_threshold(curve, "recall")
    # Perfectly separable data: any threshold in (0.2, 0.8] is perfect; 0.5 is picked.
    truth = np.array([False, True] * 50)
    prob = np.where(truth, 0.8, 0.2)
    assert best_threshold(threshold_curve(prob, truth)) == pytest.approx(0.5)


def _square(mask: np.ndarray, r0: int, r1: int, c0: int, c1: int) -> None:
    mask[r0 : r1 + 1, c0 : c1 + 1] = True


def _particles() -> tuple[np.ndarray, np.ndarray]:
    """Truth: A (10x10), B and C (8x8, side by side), D (6x6). Prediction: A split in two
    halves of 40 px (IoU 0.4 each), B and C merged into one blob (IoU 64/144 each), D exact,
    and a false particle E."""
    truth = np.zeros((64, 64), bool)
    pred = np.zeros((64, 64), bool)
    _square(truth, 5, 14, 5, 14)  # A
    _square(pred, 5, 14, 5, 8)  # A, left piece
    _square(pred, 5, 14, 11, 14)  # A, right piece
    _square(truth, 30, 37, 5, 12)  # B
    _square(truth, 30, 37, 15, 22)  # C
    _square(pred, 30, 37, 5, 22)  # B + C merged
    _square(truth, 50, 55, 50, 55)  # D
    _square(pred, 50, 55, 50, 55)  # D
    _square(pred, 5, 9, 50, 54)  # E, nothing there
    return pred, truth


def test_object_scores_split_and_merged_particles():
    pred, truth = _particles()
    result = object_scores(pred, truth)
    assert (result["n_true"], result["n_pred"]) == (4, 5)
    assert (result["tp"], result["fp"], result["fn"]) == (1, 4, 3)  # only D matches
    assert result["precision"] == pytest.approx(1 / 5)
    assert result["recall"] == pytest.approx(1 / 4)
    assert result["f1"] == pytest.approx(2 * 0.2 * 0.25 / 0.45)
    assert result["mean_matched_iou"] == pytest.approx(1.0)
    # At IoU 0.3 one half of A and the merged blob match, one to one: a piece of A and one of
    # B/C each; the other half of A and the other of B/C stay unmatched.
    loose = object_scores(pred, truth, iou=0.3)
    assert (loose["tp"], loose["fp"], loose["fn"]) == (3, 2, 1)
    assert loose["mean_matched_iou"] == pytest.approx((1.0 + 0.4 + 64 / 144) / 3)
    json.dumps([result, loose], allow_nan=False)


def test_object_scores_stack_empty_and_diagonal_neighbours():
    pred, truth = _particles()
    stack = object_scores(np.stack([pred, truth]), np.stack([truth, truth]))
    assert (stack["n_true"], stack["n_pred"], stack["tp"]) == (8, 9, 5)
    empty = np.zeros((8, 8), bool)
    nothing = object_scores(empty, empty)
    assert (nothing["precision"], nothing["recall"], nothing["f1"]) == (1.0, 1.0, 1.0)
    assert nothing["mean_matched_iou"] is None
    missed = object_scores(empty, ~empty)
    assert (missed["precision"], missed["recall"], missed["f1"]) == (0.0, 0.0, 0.0)
    diagonal = np.eye(4, dtype=bool)
    assert object_scores(diagonal, diagonal)["n_true"] == 1  # 8-connectivity by default
    assert object_scores(diagonal, diagonal, connectivity=1)["n_true"] == 4
    with pytest.raises(ValueError, match="iou"):
        object_scores(empty, empty, iou=0)


def test_drop_border_objects():
    mask = np.zeros((12, 12), bool)
    _square(mask, 0, 2, 4, 6)  # touches the top edge
    _square(mask, 9, 11, 9, 11)  # in the bottom-right corner
    _square(mask, 4, 6, 4, 6)  # inside
    _square(mask, 5, 6, 0, 1)  # touches the left edge
    mask[8, 8] = True  # joined diagonally to the corner particle: dropped with it
    kept = drop_border_objects(mask)
    expected = np.zeros_like(mask)
    _square(expected, 4, 6, 4, 6)
    np.testing.assert_array_equal(kept, expected)
    # 4-connectivity keeps the diagonal neighbour; a stack is handled image by image.
    expected4 = expected.copy()
    expected4[8, 8] = True
    np.testing.assert_array_equal(drop_border_objects(mask, connectivity=1), expected4)
    stack = drop_border_objects(np.stack([mask, np.zeros_like(mask)]))
    assert stack.shape == (2, 12, 12)
    np.testing.assert_array_equal(stack[0], expected)
    assert not stack[1].any()
