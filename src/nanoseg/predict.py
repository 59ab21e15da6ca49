"""Run a network on tiles and on whole micrographs of any size.

A whole micrograph is cut into overlapping tiles whose probability maps are blended into one.
Near a tile's edge a convolutional network sees zero padding instead of image, and its output
there differs from what it gives with the image around (by up to 0.6 in probability for the
bundled model). Tiles start at multiples of ``2**depth`` pixels, the shifts the network's
pooling grid keeps, so the padding reaches a known distance into a tile
(:attr:`nanoseg.model.UNetConfig.tile_margin`, 78 px for the paper's depth). Each tile's
outputs that near an edge shared with another tile get no weight; beyond that a
raised-cosine ramp of `overlap` pixels hands over to the neighbour, whose outputs there are
equally free of padding. The blended map therefore equals, up to rounding, the map of one
pass over the whole micrograph: no seams. The micrograph is first extended by reflection by
the same margin, so its own edges are predicted with image-like context as well. The
blending weights are separable, so each tile's weights are divided by the summed weight
before blending, as two 1-D arrays: no full-size array of weights, no division afterwards.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np
import torch

from nanoseg.dataset import median_filter, normalize, tile_origins
from nanoseg.errors import InvalidDataError
from nanoseg.model import UNet

__all__ = [
    "TTA_MODES",
    "blend_window",
    "model_scale",
    "predict_image",
    "predict_tiles",
    "preprocess",
]

TTA = Literal["none", "flip", "d4"]
#: Test-time augmentation: the image symmetries whose predictions are averaged.
TTA_MODES: dict[str, int] = {"none": 1, "flip": 4, "d4": 8}


def _float32_convolutions() -> contextlib.AbstractContextManager:
    """cuDNN's convolutions in float32 proper for the block: by default torch lets them round
    inputs to TensorFloat-32 (10-bit mantissa), which moves a map by up to ~3e-4 with the tile
    shape, so tiles would no longer blend exactly. On a CPU this changes nothing."""
    cudnn = torch.backends.cudnn
    return cudnn.flags(
        enabled=cudnn.enabled, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic,
        allow_tf32=False,
    )  # fmt: skip


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
    with _float32_convolutions():
        for start in range(0, len(tiles), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(tiles[start : start + batch_size]))
            out[start : start + batch_size] = model.predict_proba(batch[:, None]).cpu().numpy()
    return out


def _symmetry(x: torch.Tensor, k: int, inverse: bool = False) -> torch.Tensor:
    """Element `k` (0-7) of the square's symmetry group on the last two axes.

    Bit 2 transposes, bit 0 mirrors left-right, bit 1 mirrors up-down; the transpose comes
    first going forward and last going back, so ``inverse`` undoes the forward map.
    """
    flips = [d for bit, d in ((1, -1), (2, -2)) if k & bit]
    if not inverse and k & 4:
        x = x.transpose(-1, -2)
    if flips:
        x = torch.flip(x, flips)
    if inverse and k & 4:
        x = x.transpose(-1, -2)
    return x


def _predict_batch(model: UNet, batch: np.ndarray, tta: str) -> np.ndarray:
    """Probability of ``(n, h, w)`` tiles averaged over the TTA symmetries. The network is
    fully convolutional and both sides are multiples of its pooling grid, so a transposed
    tile (``w x h``, for d4) needs no padding and keeps the grid."""
    # channels-last runs the narrow convolutions of this network ~1.5x faster on CPUs.
    x = torch.from_numpy(np.ascontiguousarray(batch))[:, None]
    x = x.contiguous(memory_format=torch.channels_last)
    total = None
    with _float32_convolutions():
        for k in range(TTA_MODES[tta]):
            proba = model.predict_proba(_symmetry(x, k))
            proba = _symmetry(proba, k, inverse=True)
            total = proba if total is None else total + proba
    assert total is not None
    return (total / TTA_MODES[tta]).cpu().numpy()


def blend_window(
    tile: int, overlap: int, margin: int = 0, *, start: bool = True, end: bool = True
) -> np.ndarray:
    """1-D blending weights of one tile.

    Parameters
    ----------
    tile : int
        Tile side in pixels.
    overlap : int
        Length in pixels of the raised-cosine ramp at each blended end.
    margin : int
        Pixels of zero weight before each ramp, at the tile's very ends.
    start, end : bool
        Whether the first / last end is blended with a neighbouring tile; an end that is not
        keeps weight 1 up to the edge.

    Returns
    -------
    numpy.ndarray
        float64 ``(tile,)`` in [0, 1]; the ramps of two neighbours that overlap by
        ``2 * margin + overlap`` pixels sum to 1.
    """
    weights = np.ones(tile)
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(overlap) + 0.5) / overlap)
    if start:
        weights[:margin] = 0
        weights[margin : margin + overlap] = ramp
    if end:
        weights[tile - margin - overlap : tile - margin] = ramp[::-1]
        weights[tile - margin :] = 0
    return weights


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _tile_size(length: int, largest: int, span: int, multiple: int) -> int:
    """The smallest tile side (a multiple of `multiple`, at most `largest`) that covers
    `length` with as few tiles, overlapping by `span`, as `largest` would: little work is
    wasted in the overlaps."""
    if length <= largest:
        return length
    count = math.ceil((length - span) / (largest - span))
    return min(largest, _round_up(math.ceil((length + span * (count - 1)) / count), multiple))


def predict_image(
    model: UNet,
    image: np.ndarray,
    *,
    tile: int = 2048,
    overlap: int = 32,
    tta: TTA = "none",
    batch_size: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Particle probability of a whole (already normalised) micrograph of any size.

    Parameters
    ----------
    model : UNet
    image : numpy.ndarray
        float32 ``(height, width)``, preprocessed like the model's training tiles.
    tile : int
        Largest tile side in pixels (rounded up to a multiple of ``2**depth``, and to at least
        twice the overlap between tiles, ``2 * tile_margin + overlap``); larger tiles
        waste less work in the overlaps but need more memory (about 0.2 GB per million
        pixels for the paper's widths).
    overlap : int
        Length in pixels of the ramp over which neighbouring tiles are blended.
    tta : {"none", "flip", "d4"}
        Average over 1, 4 (mirrors) or 8 (mirrors and transposes) symmetric copies.
    batch_size : int
        Tiles per forward pass.
    progress : callable, optional
        Called as ``progress(done, total)`` after each batch of tiles.

    Returns
    -------
    numpy.ndarray
        float32 ``(height, width)`` in [0, 1].
    """
    if image.ndim != 2:
        raise InvalidDataError(f"expected a 2-D image, got shape {image.shape}")
    if tta not in TTA_MODES:
        raise ValueError(f"tta must be one of {', '.join(TTA_MODES)}, not {tta!r}")
    multiple = 2**model.config.depth
    margin = model.config.tile_margin
    # Tiles overlap by `span`, a multiple of the pooling grid; what the rounding adds
    # lengthens the ramp.
    span = _round_up(2 * margin + overlap, multiple)
    ramp = span - 2 * margin
    height, width = image.shape
    # Extend by reflection by at least the margin, to a field whose sides are
    # multiples of the network's; as evenly as possible on both sides, so that a mirrored
    # micrograph lies on the pooling grid as the original does (for TTA).
    pads = []
    for n in image.shape:
        extra = _round_up(n + 2 * margin, multiple) - n
        pads.append((extra // 2, extra - extra // 2))
    padded = np.pad(image.astype(np.float32, copy=False), pads, mode="reflect")
    shape = padded.shape
    largest = max(_round_up(tile, multiple), 2 * span)
    tiles = tuple(_tile_size(s, largest, span, multiple) for s in shape)
    origins = [
        tile_origins(n, t, max(multiple, t - span)) for n, t in zip(shape, tiles, strict=True)
    ]
    # Per axis: each tile's window (blended only towards its neighbours) divided by the sum
    # of all windows, cut to the micrograph (the padding is not kept): where it starts in the
    # tile and in the micrograph, and the weights.
    placed: list[list[tuple[int, int, np.ndarray]]] = []
    for n, t, starts, inside, (before, _) in zip(
        shape, tiles, origins, image.shape, pads, strict=True
    ):
        axis = [
            blend_window(t, ramp, margin, start=i > 0, end=i < len(starts) - 1)
            for i in range(len(starts))
        ]
        total = np.zeros(n)
        for o, w in zip(starts, axis, strict=True):
            total[o : o + t] += w
        cuts = []
        for o, w in zip(starts, axis, strict=True):
            lo, hi = max(o, before), min(o + t, before + inside)
            weight = (w[lo - o : hi - o] / total[lo:hi]).astype(np.float32)
            cuts.append((lo - o, lo - before, weight))
        placed.append(cuts)
    probability = np.zeros((height, width), dtype=np.float32)
    positions = [(r, c, i, j) for i, r in enumerate(origins[0]) for j, c in enumerate(origins[1])]
    for first in range(0, len(positions), batch_size):
        chunk = positions[first : first + batch_size]
        batch = np.stack([padded[r : r + tiles[0], c : c + tiles[1]] for r, c, _, _ in chunk])
        proba = _predict_batch(model, batch, tta)
        for (_, _, i, j), p in zip(chunk, proba, strict=True):
            (row, top, rows), (col, left, cols) = placed[0][i], placed[1][j]
            part = p[row : row + rows.size, col : col + cols.size]
            part *= rows[:, None]
            part *= cols[None, :]
            probability[top : top + rows.size, left : left + cols.size] += part
        if progress is not None:
            progress(min(first + batch_size, len(positions)), len(positions))
    # In place: np.clip on float32 costs up to 5x more on this scale.
    np.maximum(probability, 0, out=probability)
    return np.minimum(probability, 1, out=probability)


# --------------------------------------------------------------------------------------------
# preprocessing and scale, as the model card says
# --------------------------------------------------------------------------------------------


def preprocess(image: np.ndarray, card: Mapping[str, Any]) -> np.ndarray:
    """Median filter and normalise a micrograph as the model's training tiles were.

    Parameters
    ----------
    image : numpy.ndarray
        float32 ``(height, width)`` at the model's pixel size.
    card : mapping
        The model card (its ``preprocessing`` entry: ``median``, ``normalize``,
        ``dataset_max``). A card without one gets the paper's recipe with ``image-max``.

    Returns
    -------
    numpy.ndarray
        float32 ``(height, width)``.
    """
    if not np.isfinite(image).all():
        raise InvalidDataError("the image contains NaN or infinite values")
    prep = card.get("preprocessing") or {}
    median = int(prep.get("median", 3))
    mode = str(prep.get("normalize", "image-max"))
    scale = prep.get("dataset_max")
    image = median_filter(image, median)
    if mode == "dataset-max" and (scale is None or not math.isfinite(scale)):
        mode = "image-max"
    return normalize(image.astype(np.float32, copy=False), mode, scale=scale)[0]  # type: ignore[arg-type]


def model_scale(card: Mapping[str, Any], pixel_size: float | None) -> tuple[float, float | None]:
    """How much to enlarge a micrograph so its pixel size lies in the model's training range.

    Parameters
    ----------
    card : mapping
        Model card; ``pixel_size_range_nm`` is ``[low, high]`` in nm (a single
        ``pixel_size_nm`` is a range of one value).
    pixel_size : float or None
        The micrograph's pixel size in nm.

    Returns
    -------
    factor : float
        Resampling factor (> 1 enlarges); 1 when the pixel size or the model's range is unknown,
        or when the pixel size is already inside the range.
    target : float or None
        The pixel size the model will see, nm.
    """
    if pixel_size is None:
        return 1.0, None
    span = card.get("pixel_size_range_nm") or (
        [card["pixel_size_nm"]] * 2 if card.get("pixel_size_nm") else None
    )
    if not span:
        return 1.0, pixel_size
    target = float(min(max(pixel_size, span[0]), span[1]))
    return pixel_size / target, target
