"""Figures: turning arrays into pictures a microscopist can look at or put in a paper."""

from __future__ import annotations

import numpy as np

__all__ = ["to_display"]


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
