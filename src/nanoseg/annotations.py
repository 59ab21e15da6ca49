"""Find and blank out annotations burned into exported micrographs: scale bars and text.

Micrographs exported from the microscope's software as PNG, TIFF or JPEG often carry a scale
bar and its label ("50 nm") drawn into the pixels. To a network that looks for dark blobs on
carbon, a black bar and black digits are large, very dark particles: they are counted,
measured, and they throw the particle-scale estimate off (a micrograph of 15 px particles with
a "100 nm" label looks like one of 100 px particles).

A region of the image is taken for an annotation when everything below holds:

1. flat: at least :data:`MIN_AREA_PX` connected pixels at the image's darkest (or brightest)
   value, most of them exactly (noise never is: a raw file's hot and dead pixels are single);
2. a drawn edge: the pixels just outside it (:data:`EDGE_PX`) are already
   :data:`MIN_EDGE_STEP` of the way to the image's median grey, and at least
   :data:`MIN_EDGE_LEVELS` grey levels from the extreme (a particle clipped to black by a
   contrast stretch has a blurred edge that is still dark; a step of a few counts is noise);
3. solid: eroded by one pixel it keeps :data:`MIN_SOLID` of its area (a scale bar, bold
   text), or it is a thinner stroke within :data:`GROUP_FRACTION` of the image's side of a
   solid one (the bar's label); the clusters of zeros in a low-dose image are threads and
   specks, and far from any bar;
4. in the outer :data:`BORDER_FRACTION` of the image, along an edge or in a corner, where
   every export puts its scale bar and labels (an opaque particle in the middle of the field
   is never touched).

In a colour file of a grey micrograph, every pixel drawn in colour is an annotation too
(:func:`nanoseg.io.read.coloured_pixels`), wherever it is. What is found is widened by
:data:`MARGIN_PX` (anti-aliased edges) and filled with the grey of the carbon around it, so
the network sees carbon there, and no particle is reported on it. Raw microscope files (MRC,
DM, SER, EMD) normally have none, and nothing is changed.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from nanoseg.measure import padded_box

__all__ = [
    "MARGIN_PX",
    "MIN_AREA_PX",
    "fill_annotations",
    "find_annotations",
    "remove_annotations",
]

#: Flat extreme-valued regions smaller than this (px) are never annotations.
MIN_AREA_PX = 20
#: Fraction of a region left after a one-pixel erosion (3 x 3) for it to count as solid.
MIN_SOLID = 0.6
#: Thinner regions count only within this fraction of the image's side of a solid one.
GROUP_FRACTION = 0.1
#: The edge step is measured over this many pixels around a region.
EDGE_PX = 2
#: How far (fraction of the way from the extreme value to the image's median) the pixels
#: touching a region must be for its edge to count as a drawn step.
MIN_EDGE_STEP = 0.5
#: The same step, in the image's own grey levels (the smallest gap between its values).
MIN_EDGE_LEVELS = 8
#: Values within this fraction of the image's 1-99 % range of its extreme count as the
#: extreme, for exports that were slightly compressed or rescaled.
TOLERANCE = 0.01
#: Annotations lie within this fraction of the image's height or width of one of its edges.
BORDER_FRACTION = 0.25
#: The found annotation is widened by this much (px) to cover anti-aliased edges.
MARGIN_PX = 2
#: Around each annotation, the carbon's grey is taken over a ring this wide (px).
RING_PX = 4

_SQUARE = np.ones((3, 3), dtype=bool)


def find_annotations(image: np.ndarray, coloured: np.ndarray | None = None) -> np.ndarray:
    """Pixels of scale bars and text burned into a micrograph.

    Parameters
    ----------
    image : numpy.ndarray
        ``(height, width)``, any real dtype.
    coloured : numpy.ndarray, optional
        bool ``(height, width)``: pixels drawn in colour over a grey micrograph
        (:attr:`nanoseg.io.Micrograph.coloured`); annotations wherever they are.

    Returns
    -------
    numpy.ndarray
        bool ``(height, width)``, True on annotations (widened by :data:`MARGIN_PX`); all
        False when there are none (the usual case for raw microscope files) or the image
        holds NaN.
    """
    image = np.asarray(image)
    found = np.zeros(image.shape, dtype=bool) if coloured is None else coloured.copy()
    for wide, region in _drawn_regions(image):
        found[wide] |= region
    if found.any():
        found = ndimage.binary_dilation(found, _SQUARE, iterations=MARGIN_PX)
    return found


def _drawn_regions(image: np.ndarray) -> list[tuple[tuple[slice, ...], np.ndarray]]:
    """The flat extreme-valued regions of `image` that pass the module's tests, each as a
    box and the region's mask inside it."""
    low, high = float(image.min()), float(image.max())
    if not high > low:  # also NaN
        return []
    # A strided sample gives the image's grey levels at a fraction of the cost; its 1-99 %
    # range is not stretched by the odd hot or dead pixel, as the full range would be.
    stride = max(1, int(np.sqrt(image.size / 250_000)))
    sample = image[::stride, ::stride]
    p1, median, p99 = (float(v) for v in np.percentile(sample, [1, 50, 99]))
    tolerance = TOLERANCE * (p99 - p1)
    level = None
    solid, thin = [], []  # (box, region) of the drawn-looking regions
    for extreme, flat in ((low, image <= low + tolerance), (high, image >= high - tolerance)):
        span = abs(median - extreme)
        if np.count_nonzero(flat) < MIN_AREA_PX or span == 0:
            continue
        if level is None:
            gaps = np.diff(np.unique(sample))
            level = float(gaps.min()) if gaps.size else 0.0
        min_step = max(MIN_EDGE_STEP * span, MIN_EDGE_LEVELS * level)
        labels, count = ndimage.label(flat, structure=_SQUARE)
        for index, box in _large_flat_regions(labels, count, flat, image, extreme):
            if not _near_border(box, image.shape):
                continue
            wide = padded_box(box, EDGE_PX, image.shape)
            region = labels[wide] == index
            kind = _drawn(image[wide], region, extreme, min_step)
            if kind is not None:
                (solid if kind == "solid" else thin).append((wide, region))
    # Thin strokes (small anti-aliased text) count only beside a solid one (its scale bar).
    reach = GROUP_FRACTION * max(image.shape)
    return solid + [t for t in thin if _near_any(t[0], solid, reach)]


def _large_flat_regions(
    labels: np.ndarray, count: int, flat: np.ndarray, image: np.ndarray, extreme: float
) -> list[tuple[int, tuple[slice, slice]]]:
    """(label, box) of the regions of `labels` (``0..count``, labelling the bool `flat`) that
    :func:`_drawn` could accept: at least :data:`MIN_AREA_PX` pixels, half of them exactly at
    `extreme`.

    An 8-bit export with clipped blacks has 10^5 flat specks; they are dropped here all at
    once, by counts over the flat pixels only, rather than one region at a time.
    """
    where = np.flatnonzero(flat)
    ids = labels.ravel()[where]
    areas = np.bincount(ids, minlength=count + 1)
    at_extreme = np.bincount(ids[image.ravel()[where] == extreme], minlength=count + 1)
    candidate = (areas >= MIN_AREA_PX) & (2 * at_extreme >= areas)
    candidate[0] = False
    keep = candidate[ids]
    if not keep.any():
        return []
    ids, where = ids[keep], where[keep]
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    rows, cols = np.divmod(where[order], image.shape[1])
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    top, bottom = np.minimum.reduceat(rows, starts), np.maximum.reduceat(rows, starts) + 1
    left, right = np.minimum.reduceat(cols, starts), np.maximum.reduceat(cols, starts) + 1
    return [
        (int(ids[s]), (slice(int(t), int(b)), slice(int(lo), int(hi))))
        for s, t, b, lo, hi in zip(starts, top, bottom, left, right, strict=True)
    ]


def _near_border(box: tuple[slice, ...], shape: tuple[int, ...]) -> bool:
    """Whether a region's box lies in the outer band of the image along some edge."""
    return any(
        s.stop <= BORDER_FRACTION * n or s.start >= (1 - BORDER_FRACTION) * n
        for s, n in zip(box, shape, strict=True)
    )


def _near_any(box: tuple[slice, ...], others: list, reach: float) -> bool:
    """Whether `box` comes within `reach` px (along both axes) of any of `others`' boxes."""
    return any(
        all(
            s.start - reach < o.stop and o.start - reach < s.stop
            for s, o in zip(box, other, strict=True)
        )
        for other, _ in others
    )


def _drawn(values: np.ndarray, region: np.ndarray, extreme: float, min_step: float) -> str | None:
    """``"solid"`` or ``"thin"`` when `region` of `values` (a box around it) is flat and has
    a drawn edge, by whether it survives a one-pixel erosion; else None."""
    area = np.count_nonzero(region)
    if area < MIN_AREA_PX or 2 * np.count_nonzero(values[region] == extreme) < area:
        return None
    # The edge over EDGE_PX pixels: one anti-aliased pixel must not hide the step.
    edge = ndimage.binary_dilation(region, _SQUARE, iterations=EDGE_PX) & ~region
    if not abs(float(np.median(values[edge])) - extreme) > min_step:
        return None
    eroded = np.count_nonzero(ndimage.binary_erosion(region, _SQUARE))
    return "solid" if eroded >= MIN_SOLID * area else "thin"


def fill_annotations(image: np.ndarray, annotations: np.ndarray) -> np.ndarray:
    """`image` with each annotation replaced by the median grey of the ring around it.

    Parameters
    ----------
    image : numpy.ndarray
        ``(height, width)``, any real dtype.
    annotations : numpy.ndarray
        bool ``(height, width)``, from :func:`find_annotations`.

    Returns
    -------
    numpy.ndarray
        float32 ``(height, width)``; a copy when anything was filled, else `image` as float32.
    """
    image = np.asarray(image, dtype=np.float32)
    if not annotations.any():
        return image
    out = image.copy()
    labels, _ = ndimage.label(annotations, structure=_SQUARE)
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        wide = padded_box(box, RING_PX, image.shape)
        region = labels[wide] == index
        ring = ndimage.binary_dilation(region, _SQUARE, iterations=RING_PX)
        ring &= ~annotations[wide]
        values = image[wide][ring]
        # An annotation covering the whole image has no ring: any grey will do.
        grey = float(np.median(values)) if values.size else float(np.median(image))
        out[wide][region] = grey
    return out


def remove_annotations(
    image: np.ndarray, coloured: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The image to segment, with any annotation filled, and where the annotations were.

    Parameters
    ----------
    image, coloured : numpy.ndarray
        The micrograph and its coloured pixels, as for :func:`find_annotations`.

    Returns
    -------
    image : numpy.ndarray
        float32 ``(height, width)``: `image` itself when it has no annotation.
    annotations : numpy.ndarray or None
        bool ``(height, width)`` (:func:`find_annotations`), or None when there are none.
    """
    found = find_annotations(image, coloured)
    if not found.any():
        return np.asarray(image, dtype=np.float32), None
    return fill_annotations(image, found), found
