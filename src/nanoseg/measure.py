"""Measure every particle of a mask: position, size and shape, in pixels and nanometres.

The measurements are scikit-image's ``regionprops`` definitions on 8-connected particles (tested
to agree with it), computed per particle box more cheaply; the columns and
units are listed in :data:`PARTICLE_COLUMNS`. Lengths in nm are the pixel lengths times the
pixel size and are left empty (NaN) when the pixel size is unknown.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import ndimage

__all__ = [
    "PARTICLE_COLUMNS",
    "clean_mask",
    "interior_diameters",
    "measure_particles",
    "padded_box",
    "touches_edge",
    "typical_diameter",
]

#: Columns of a particle table, with their units.
PARTICLE_COLUMNS: dict[str, str] = {
    "id": "label number in the mask (1, 2, ...)",
    "centroid_x_px": "px from the left edge",
    "centroid_y_px": "px from the top edge",
    "centroid_x_nm": "nm from the left edge",
    "centroid_y_nm": "nm from the top edge",
    "area_px": "px^2",
    "area_nm2": "nm^2",
    "equivalent_diameter_nm": "diameter of the circle of the same area, nm",
    "major_axis_nm": "major axis of the ellipse with the same second moments, nm",
    "minor_axis_nm": "minor axis of that ellipse, nm",
    "eccentricity": "of that ellipse, 0 (circle) to 1",
    "circularity": "4 pi area / perimeter^2, 1 for a disc (Crofton perimeter)",
    "solidity": "area / convex hull area",
    "mean_probability": "mean particle probability over the particle's pixels",
    "touches_border": "the particle reaches the image edge, or a scale bar or label burned into "
    "the image (its size is then a lower bound)",
}

#: 8-connectivity, how particles are defined throughout.
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
#: Crofton perimeter weight of each 2x2 configuration (4 directions), scikit-image's table.
_CROFTON = np.array(
    [
        0,
        np.pi / 4 * (1 + 1 / np.sqrt(2)),
        np.pi / (4 * np.sqrt(2)),
        np.pi / (2 * np.sqrt(2)),
        0,
        np.pi / 4 * (1 + 1 / np.sqrt(2)),
        0,
        np.pi / (4 * np.sqrt(2)),
        np.pi / 4,
        np.pi / 2,
        np.pi / (4 * np.sqrt(2)),
        np.pi / (4 * np.sqrt(2)),
        np.pi / 4,
        np.pi / 2,
        0,
        0,
    ]
)


def clean_mask(
    mask: np.ndarray, min_area_px: float = 0, min_relative_diameter: float = 0.0
) -> np.ndarray:
    """Drop particles smaller than `min_area_px` pixels and fill holes smaller than that.

    Parameters
    ----------
    mask : numpy.ndarray
        bool ``(height, width)``.
    min_area_px : float
    min_relative_diameter : float
        Also drop particles whose equivalent diameter is below this fraction of the mask's
        typical diameter, unless they touch the image border (there a real particle may show
        only a sliver). The typical diameter is the smaller of :func:`typical_diameter` and
        the plain median diameter of the particles left. 0 keeps them all.

    Returns
    -------
    numpy.ndarray
        bool ``(height, width)``.
    """
    mask = np.asarray(mask, dtype=bool)
    if min_area_px <= 1 and min_relative_diameter <= 0:
        return mask
    size = max(1, math.ceil(min_area_px))
    # scikit-image's remove_small_objects and remove_small_holes, by one labelling each.
    particles, _ = ndimage.label(mask, structure=EIGHT_CONNECTED)
    areas = np.bincount(particles.ravel())
    keep = areas >= size
    keep[0] = False
    if min_relative_diameter > 0 and keep.any():
        diameters = np.sqrt(4 * areas / np.pi)
        # The smaller of the typical particle (by area) and the median detection (by count):
        # where the network merged neighbours into large clusters, the clusters carry most of
        # the area, and single particles must not count as specks beside them.
        kept = diameters[keep]
        smallest = min_relative_diameter * min(typical_diameter(kept), float(np.median(kept)))
        keep &= (diameters >= smallest) | touches_edge(particles, keep.size - 1)
        keep[0] = False
    mask = keep[particles]
    holes, _ = ndimage.label(~mask)  # holes are 4-connected, as in remove_small_holes
    fill = np.bincount(holes.ravel()) < size
    fill[0] = False
    return mask | fill[holes]


def padded_box(box: tuple[slice, ...], pad: int, shape: tuple[int, ...]) -> tuple[slice, ...]:
    """`box` (slices, as from :func:`scipy.ndimage.find_objects`) widened by `pad` px on
    every side, clipped to an array of `shape`."""
    return tuple(
        slice(max(s.start - pad, 0), min(s.stop + pad, n)) for s, n in zip(box, shape, strict=True)
    )


def touches_edge(labels: np.ndarray, count: int) -> np.ndarray:
    """Which labels of a label image reach its edge (of a stack of images, each one's edge).

    Parameters
    ----------
    labels : numpy.ndarray
        int ``(height, width)`` or ``(n, height, width)``, labels 0..`count`.
    count : int

    Returns
    -------
    numpy.ndarray
        bool ``(count + 1,)``, indexed by label (entry 0 for label 0 too).
    """
    edge = np.zeros(count + 1, dtype=bool)
    for line in (labels[..., 0, :], labels[..., -1, :], labels[..., 0], labels[..., -1]):
        edge[line] = True
    return edge


def typical_diameter(diameters: np.ndarray) -> float:
    """The area-weighted median of particle diameters: the size of the particle that the
    median pixel of particle belongs to, so a crowd of small specks does not decide it.

    Parameters
    ----------
    diameters : numpy.ndarray
        float ``(n,)`` equivalent diameters, any unit, n >= 1.

    Returns
    -------
    float
        In the unit of `diameters`.
    """
    diameters = np.asarray(diameters, dtype=float)
    order = np.argsort(diameters)
    cumulative = np.cumsum(diameters[order] ** 2)  # the area, by the equivalent diameter
    return float(diameters[order][np.searchsorted(cumulative, cumulative[-1] / 2)])


def interior_diameters(mask: np.ndarray) -> np.ndarray:
    """Equivalent diameters of the particles that do not touch the image border.

    Parameters
    ----------
    mask : numpy.ndarray
        bool ``(height, width)``.

    Returns
    -------
    numpy.ndarray
        float ``(n,)``, px, in label order.
    """
    labels, count = ndimage.label(np.asarray(mask, dtype=bool), structure=EIGHT_CONNECTED)
    if count == 0:
        return np.empty(0)
    runs = _row_runs(labels, count)
    area = np.add.reduceat(runs.last - runs.first + 1, runs.bounds[:-1])
    interior = ~_touches_border(_boxes(runs), labels.shape)
    return np.sqrt(4 * area[interior] / np.pi)


class _Runs(NamedTuple):
    """The runs of equal labels along the rows of a label image, sorted by label, then row.

    Attributes are int64 ``(n_runs,)`` arrays: the run's particle `label`, its `row`, its
    `first` and `last` column (inclusive); `bounds` is ``(count + 1,)``: the runs of particle
    ``k`` are ``bounds[k - 1]:bounds[k]``.
    """

    label: np.ndarray
    row: np.ndarray
    first: np.ndarray
    last: np.ndarray
    bounds: np.ndarray


def _row_runs(labels: np.ndarray, count: int) -> _Runs:
    """Every particle as runs of pixels along rows: a few per row instead of every pixel, so
    that hundreds of particles are measured at once, with exact integer sums."""
    height, width = labels.shape
    change = np.ones((height, width + 1), dtype=bool)
    np.not_equal(labels[:, 1:], labels[:, :-1], out=change[:, 1:-1])
    inside = labels != 0
    starts = np.flatnonzero(change[:, :-1] & inside)  # row-major, so runs pair up in order
    ends = np.flatnonzero(change[:, 1:] & inside)
    label = labels.ravel()[starts].astype(np.int64)
    order = np.argsort(label, kind="stable")  # stable: rows stay in order within a particle
    starts, ends, label = starts[order], ends[order], label[order]
    row, first = np.divmod(starts, width)
    bounds = np.searchsorted(label, np.arange(1, count + 2))
    return _Runs(label, row, first, ends - row * width, bounds)


def _boxes(runs: _Runs) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each particle's bounding box: int64 ``(count,)`` arrays of its top and bottom row and
    its leftmost and rightmost column (inclusive)."""
    starts = runs.bounds[:-1]
    return (
        np.minimum.reduceat(runs.row, starts),
        np.maximum.reduceat(runs.row, starts),
        np.minimum.reduceat(runs.first, starts),
        np.maximum.reduceat(runs.last, starts),
    )


def _touches_border(
    boxes: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], shape: tuple[int, ...]
) -> np.ndarray:
    """Whether each particle's box (from :func:`_boxes`) reaches the edge of an image of
    `shape`: bool ``(count,)``."""
    top, bottom, left, right = boxes
    return (top == 0) | (left == 0) | (bottom == shape[0] - 1) | (right == shape[1] - 1)


def _crofton_perimeters(labels: np.ndarray, count: int) -> np.ndarray:
    """scikit-image's ``perimeter_crofton(..., 4)`` of every particle, float ``(count,)``, px.

    The Crofton perimeter weighs each 2x2 window by its configuration of particle pixels. Any
    2x2 window holds pixels of at most one particle (its pixels are mutually 8-adjacent), so
    one pass over the whole label image gives every particle's histogram of configurations.
    """
    padded = np.pad(labels, 1)
    inside = (padded > 0).view(np.uint8)
    # The code of the window whose bottom-right pixel is (i, j), numbered as scikit-image does.
    code = inside[1:, 1:] | (inside[1:, :-1] << 2)
    code |= inside[:-1, 1:] << 1
    code |= inside[:-1, :-1] << 3
    code = code.ravel()
    edge = np.flatnonzero((code != 0) & (code != 15))  # only mixed windows have a weight
    # The window's top-left pixel, as a flat index into `padded` (one more column per row).
    width = padded.shape[1]
    corner = edge + edge // (width - 1)
    flat = padded.ravel()
    owner = np.maximum.reduce([flat.take(corner + shift) for shift in (0, 1, width, width + 1)])
    histogram = np.bincount(
        owner.astype(np.int64) * 16 + code[edge], minlength=(count + 1) * 16
    ).reshape(count + 1, 16)
    return histogram[1:] @ _CROFTON


def _convex_areas(runs: _Runs, count: int) -> np.ndarray:
    """Area (px^2) of the convex hull of each particle's pixel squares, float ``(count,)``.

    A particle (8-connected) covers consecutive rows, and a horizontal line through its hull
    cuts it between a left and a right boundary: the hull is bounded by the lower convex
    envelope of its left edges and the upper concave envelope of its right edges, taken at
    each row edge (:func:`_envelope_integrals`), and its area is the integral of their
    difference. Exact (integer corners), every particle at once; scikit-image's ``solidity``
    rasterises the hull and a Qhull call per particle took 0.8 s for 8,000 particles.
    """
    # One entry per (particle, row): the left edge of its leftmost and the right edge of its
    # rightmost pixel.
    new = np.flatnonzero(
        np.r_[True, (runs.label[1:] != runs.label[:-1]) | (runs.row[1:] != runs.row[:-1])]
    )
    label, row = runs.label[new], runs.row[new]
    left = np.minimum.reduceat(runs.first, new).astype(float)
    right = np.maximum.reduceat(runs.last, new).astype(float) + 1
    # Points at each row's top edge (the wider of the two rows meeting there), plus each
    # particle's bottom edge, after its last row.
    first_row = np.r_[True, label[1:] != label[:-1]]
    last_row = np.r_[first_row[1:], True]
    left_top = np.where(first_row, left, np.minimum(left, np.roll(left, 1)))
    right_top = np.where(first_row, right, np.maximum(right, np.roll(right, 1)))
    after = np.flatnonzero(last_row) + 1
    y = np.insert(row.astype(float), after, row[last_row] + 1.0)
    owner = np.insert(label, after, label[last_row]) - 1
    lower = _envelope_integrals(y, np.insert(left_top, after, left[last_row]), owner, count)
    upper = _envelope_integrals(y, -np.insert(right_top, after, right[last_row]), owner, count)
    return -upper - lower


def _envelope_integrals(y: np.ndarray, x: np.ndarray, owner: np.ndarray, count: int) -> np.ndarray:
    """Integral over y of the lower convex envelope of each chain of points ``(y, x)``.

    Points are float ``(n,)``, grouped in chains by `owner` (int, 0..`count` - 1, each chain
    consecutive, y increasing along it). A point on or above the chord between its neighbours
    is not a vertex of the envelope; all such points go at once, and again among those left,
    until every chain is convex. Returns float ``(count,)``.
    """
    ends = np.r_[True, owner[1:] != owner[:-1]] | np.r_[owner[:-1] != owner[1:], True]
    while True:
        # A chain's first and last points always stay, so interior points' neighbours are
        # in the same chain.
        dy_prev, dx_prev = y[1:-1] - y[:-2], x[1:-1] - x[:-2]
        dy_next, dx_next = y[2:] - y[:-2], x[2:] - x[:-2]
        drop = np.r_[False, (dx_prev * dy_next >= dx_next * dy_prev) & ~ends[1:-1], False]
        if not drop.any():
            break
        keep = ~drop
        y, x, owner, ends = y[keep], x[keep], owner[keep], ends[keep]
    same = owner[1:] == owner[:-1]
    trapezoids = (y[1:] - y[:-1]) * (x[1:] + x[:-1]) / 2
    return np.bincount(owner[:-1][same], weights=trapezoids[same], minlength=count)


def _ellipses(
    syy: np.ndarray, sxx: np.ndarray, sxy: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Major and minor axis (px) and eccentricity of the ellipses with these second moments.

    The values of scikit-image's ``axis_major_length``, ``axis_minor_length`` and
    ``eccentricity`` (a test checks they agree), for float ``(n,)`` central moments.
    """
    half_sum, root = (syy + sxx) / 2, np.hypot((syy - sxx) / 2, sxy)
    large, small = half_sum + root, np.maximum(half_sum - root, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        eccentricity = np.where(large > 0, np.sqrt(1 - small / large), 0.0)
    return 4 * np.sqrt(large), 4 * np.sqrt(small), eccentricity


def _sum_of_squares(n: np.ndarray) -> np.ndarray:
    """``0^2 + 1^2 + ... + n^2`` for int64 `n` (0 for n = -1)."""
    return n * (n + 1) * (2 * n + 1) // 6


def measure_particles(
    mask: np.ndarray,
    probability: np.ndarray | None = None,
    pixel_size: float | None = None,
) -> pd.DataFrame:
    """One row per particle (8-connected component) of `mask`.

    Parameters
    ----------
    mask : numpy.ndarray
        bool ``(height, width)``.
    probability : numpy.ndarray, optional
        float ``(height, width)`` particle probability, for ``mean_probability``.
    pixel_size : float, optional
        nm per pixel; without it the ``*_nm`` columns are NaN.

    Returns
    -------
    pandas.DataFrame
        The columns of :data:`PARTICLE_COLUMNS`, in that order.
    """
    mask = np.asarray(mask, dtype=bool)
    labels, count = ndimage.label(mask, structure=EIGHT_CONNECTED)
    if count == 0:
        return pd.DataFrame(columns=list(PARTICLE_COLUMNS))
    nm = float("nan") if pixel_size is None else float(pixel_size)
    runs = _row_runs(labels, count)
    starts = runs.bounds[:-1]

    def total(values: np.ndarray) -> np.ndarray:
        return np.add.reduceat(values, starts)

    # Coordinates from each particle's box corner, as regionprops measures (and exact sums).
    boxes = _boxes(runs)
    top, _, left, _ = boxes
    y = runs.row - top[runs.label - 1]
    a, b = runs.first - left[runs.label - 1], runs.last - left[runs.label - 1]
    n = b - a + 1
    sum_x = (a + b) * n // 2
    area = total(n)
    sy, sx = total(n * y), total(sum_x)
    syy, sxx = total(n * y * y), total(_sum_of_squares(b) - _sum_of_squares(a - 1))
    sxy = total(y * sum_x)
    mean_y, mean_x = sy / area, sx / area
    major, minor, eccentricity = _ellipses(
        syy / area - mean_y**2, sxx / area - mean_x**2, sxy / area - mean_x * mean_y
    )
    perimeter = _crofton_perimeters(labels, count)
    if probability is None:
        mean_probability = np.full(count, np.nan)
    else:
        # Each run's sum by one reduceat over the run boundaries, in the image's order.
        flat = np.append(np.asarray(probability, dtype=np.float32).ravel(), np.float32(0))
        begin = runs.row * labels.shape[1] + runs.first
        order = np.argsort(begin)
        edges = np.stack([begin[order], begin[order] + n[order]], axis=1).ravel()
        run_sums = np.empty(n.size)
        run_sums[order] = np.add.reduceat(flat, edges, dtype=np.float64)[::2]
        mean_probability = total(run_sums) / area
    y_px, x_px = top + mean_y, left + mean_x
    with np.errstate(divide="ignore"):
        circularity = np.minimum(1.0, 4 * np.pi * area / perimeter**2)
    table = {
        "id": np.arange(1, count + 1),
        "centroid_x_px": x_px,
        "centroid_y_px": y_px,
        "centroid_x_nm": x_px * nm,
        "centroid_y_nm": y_px * nm,
        "area_px": area,
        "area_nm2": area * nm**2,
        "equivalent_diameter_nm": np.sqrt(4 * area / np.pi) * nm,
        "major_axis_nm": major * nm,
        "minor_axis_nm": minor * nm,
        "eccentricity": eccentricity,
        "circularity": np.where(perimeter > 0, circularity, 1.0),
        "solidity": np.minimum(1.0, area / _convex_areas(runs, count)),
        "mean_probability": mean_probability,
        "touches_border": _touches_border(boxes, labels.shape),
    }
    return pd.DataFrame(table, columns=list(PARTICLE_COLUMNS))
