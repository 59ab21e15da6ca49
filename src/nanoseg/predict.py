"""Run a network on tiles (and, later, on whole micrographs)."""

from __future__ import annotations

import numpy as np
import torch

from nanoseg.model import UNet

__all__ = ["predict_tiles"]


def predict_tiles(model: UNet, tiles: np.ndarray, *, batch_size: int = 8) -> np.ndarray:
    """Particle probability of each pixel of already-normalised tiles.

    Parameters
    ----------
    model : UNet
        Run in eval mode (restored afterwards).
    tiles : numpy.ndarray
        float32 ``(n, height, width)``; sides must be multiples of ``2**depth``.
    batch_size : int

    Returns
    -------
    numpy.ndarray
        float32 ``(n, height, width)`` in [0, 1].
    """
    out = np.empty(tiles.shape, dtype=np.float32)
    for start in range(0, len(tiles), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(tiles[start : start + batch_size]))[:, None]
        out[start : start + batch_size] = model.predict_proba(batch).numpy()
    return out
