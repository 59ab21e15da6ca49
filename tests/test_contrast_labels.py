"""scripts/contrast_labels.py: simulated labels moved to the half-contrast edge, smoothed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from test_refine import _disc

_SPEC = importlib.util.spec_from_file_location(
    "contrast_labels", Path(__file__).parents[1] / "scripts" / "contrast_labels.py"
)
contrast_labels = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(contrast_labels)


def test_smoothing_removes_ragged_edges_and_keeps_size() -> None:
    disc = _disc((128, 128), (64, 64), 30)
    ragged = disc.copy()
    ragged[64, 94:99] = True  # a one-pixel spur
    ragged[34:39, 64] = False  # a one-pixel-wide notch, 5 px deep
    smooth = contrast_labels.smooth_outlines(ragged)
    assert not smooth[64, 96:99].any() and smooth[36:39, 64].all()
    assert abs(int(smooth.sum()) - int(disc.sum())) < 0.03 * disc.sum()


def test_smoothing_keeps_neighbours_apart_and_small_particles_unchanged() -> None:
    left, right = _disc((96, 160), (48, 48), 30), _disc((96, 160), (48, 111), 30)  # 2 px gap
    speck = _disc((96, 160), (10, 150), 3)
    smooth = contrast_labels.smooth_outlines(left | right | speck)
    assert not smooth[:, 78:81].any()  # the gap between the two discs stays empty
    np.testing.assert_array_equal(smooth[:20, 140:], speck[:20, 140:])
