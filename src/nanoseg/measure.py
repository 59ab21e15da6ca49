"""Measure every particle of a mask: position, size and shape, in pixels and nanometres.

The measurements are scikit-image's ``regionprops`` definitions on 8-connected particles (tested
to agree with it), computed per particle box more cheaply; the columns and
units are listed in :data:`PARTICLE_COLUMNS`. Lengths in nm are the pixel lengths times the
pixel size and are left empty (NaN) when the pixel size is unknown.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import ndimage
from skimage import measure

__all__ = ["PARTICLE_COLUMNS", "clean_mask", "interior_diameters", "measure_particles"]

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
    "touches_border": "the particle reaches the image edge (its size is then a lower bound)",
}


def clean_mask(mask: np.ndarray, min_area_px: float = 0) -> np.ndarray:
    """Drop particles smaller than `min_area_px` pixels and fill holes smaller than that.

    Parameters
    ----------
    mask : numpy.ndarray
        bool ``(height, width)``.
    min_area_px : float

    Returns
    -------
    numpy.ndarray
        bool ``(height, width)``.
    """
    mask = np.asarray(mask, dtype=bool)
    if min_area_px <= 1:
        return mask
    size = math.ceil(min_area_px)
    # scikit-image's remove_small_objects and remove_small_holes, by one labelling each.
    particles, _ = ndimage.label(mask, structure=np.ones((3, 3)))
    keep = np.bincount(particles.ravel()) >= size
    keep[0] = False
    mask = keep[particles]
    holes, _ = ndimage.label(~mask)  # holes are 4-connected, as in remove_small_holes
    fill = np.bincount(holes.ravel()) < size
    fill[0] = False
    return mask | fill[holes]


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
    labels, _ = ndimage.label(np.asarray(mask, dtype=bool), structure=np.ones((3, 3)))
    areas = np.bincount(labels.ravel())[1:]
    interior = [not _touches_border(box, labels.shape) for box in ndimage.find_objects(labels)]
    return np.sqrt(4 * areas[np.asarray(interior, dtype=bool)] / np.pi)


def _touches_border(box: tuple[slice, ...], shape: tuple[int, ...]) -> bool:
    """Whether a particle's bounding box (from :func:`scipy.ndimage.find_objects`) reaches
    the edge of an image of `shape`."""
    return any(s.start == 0 or s.stop == n for s, n in zip(box, shape, strict=True))


def _convex_area(image: np.ndarray) -> float:
    """Area (px^2) of the convex hull of the pixel squares of a region's bool `image`.

    scikit-image's ``solidity`` rasterises the hull, which took 2 of the 3 s needed to measure
    a 4096^2 micrograph. The hull of a set of pixel squares is the hull of the outer corners of
    each row's leftmost and rightmost pixel, so only those (at most 4 per row) go to Qhull.
    """
    from scipy.spatial import ConvexHull, QhullError

    filled = image.any(axis=1)
    rows = np.flatnonzero(filled).astype(float)
    left = np.argmax(image[filled], axis=1).astype(float)
    right = image.shape[1] - np.argmax(image[filled][:, ::-1], axis=1).astype(float)
    corners = np.concatenate(
        [np.stack([rows + dr, col], axis=1) for dr in (0, 1) for col in (left, right)]
    )
    try:
        return float(ConvexHull(corners).volume)  # a 2-D hull's "volume" is its area
    except QhullError:  # all corners on one line: a single row or column of pixels
        return float(image.sum())


def _ellipse(ys: np.ndarray, xs: np.ndarray) -> tuple[float, float, float]:
    """Major and minor axis (px) and eccentricity of the ellipse with the same second moments.

    The values of scikit-image's ``axis_major_length``, ``axis_minor_length`` and
    ``eccentricity`` (a test checks they agree), from the pixel coordinates' covariance:
    its general n-D moments cost ~1 ms per particle, this ~20 us.
    """
    dy, dx = ys - ys.mean(), xs - xs.mean()
    syy, sxx, sxy = float(np.mean(dy * dy)), float(np.mean(dx * dx)), float(np.mean(dx * dy))
    half_sum, root = (syy + sxx) / 2, math.hypot((syy - sxx) / 2, sxy)
    large, small = half_sum + root, max(half_sum - root, 0.0)
    eccentricity = math.sqrt(1 - small / large) if large > 0 else 0.0
    return 4 * math.sqrt(large), 4 * math.sqrt(small), eccentricity


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
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3)))
    if probability is not None:
        probability = np.asarray(probability, dtype=np.float32)
    nm = float("nan") if pixel_size is None else float(pixel_size)
    rows = []
    # Each particle is measured inside its bounding box, as regionprops does, without the
    # cost of its generic machinery (a third of the time with ~700 particles).
    for label, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        image = labels[box] == label
        ys, xs = np.nonzero(image)
        area = ys.size
        y, x = box[0].start + ys.mean(), box[1].start + xs.mean()
        perimeter = measure.perimeter_crofton(image, 4)
        major, minor, eccentricity = _ellipse(ys, xs)
        mean_probability = float("nan") if probability is None else np.mean(probability[box][image])
        rows.append(
            {
                "id": label,
                "centroid_x_px": x,
                "centroid_y_px": y,
                "centroid_x_nm": x * nm,
                "centroid_y_nm": y * nm,
                "area_px": int(area),
                "area_nm2": area * nm**2,
                "equivalent_diameter_nm": math.sqrt(4 * area / math.pi) * nm,
                "major_axis_nm": major * nm,
                "minor_axis_nm": minor * nm,
                "eccentricity": eccentricity,
                "circularity": min(1.0, 4 * math.pi * area / perimeter**2) if perimeter else 1.0,
                "solidity": min(1.0, area / _convex_area(image)),
                "mean_probability": mean_probability,
                "touches_border": _touches_border(box, mask.shape),
            }
        )
    return pd.DataFrame(rows, columns=list(PARTICLE_COLUMNS))
