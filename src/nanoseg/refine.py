"""Move particle outlines to the micrograph's own contrast edge.

The network decides *where* the particles are; its outline of each one is then placed where
the particle's local contrast has fallen to a given fraction (half, by default) of the way
from the particle's interior to the carbon around it. That is how microscopists draw and
size particles by hand (the edge at half contrast), and it removes the few-pixel halo a
network trained on simulated micrographs puts around real particles, whose edges and carbon
look a little different from the simulated ones (see the README's figures on the real
development sets).

Each particle is refined on its own, inside a box around it:

1. the image is smoothed with a Gaussian of about a twentieth of the typical particle
   diameter (noise and lattice fringes must not decide the edge);
2. the particle's interior level is the median of the smoothed image over its core (the
   mask eroded by half the band), the carbon's level the median over a ring
   ``band < d <= 2 band`` px outside the mask, clear of other particles;
3. where the particle is clearly darker than its ring (by more than `min_contrast` times the
   ring's standard deviation), its new outline is the set of pixels within `band` px of the
   old outline, nearer to it than to any other particle, and darker than
   ``carbon - level * (carbon - interior)``; of those, the connected pieces that overlap the
   old outline and are at least :data:`MIN_PIECE` of the largest such piece are kept (so
   particles the network merged may come apart, but noise does not shatter one), holes filled;
4. otherwise (weak or reversed contrast, as for small phase-contrast particles in HRTEM), and
   for particles under :data:`MIN_DIAMETER_PX` across, the network's outline is kept.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["EDGES", "refine_outlines"]

#: How particle outlines are placed: at the half-contrast edge, or as the network drew them.
EDGES = ("contrast", "network")
#: Pieces of a refined particle smaller than this fraction of its largest piece are dropped.
MIN_PIECE = 0.2
#: Particles narrower than this (equivalent diameter, px) keep the network's outline: the blur
#: of their edges spans much of the particle, so its darkest level understates the contrast
#: and the half-contrast outline would understate its size.
MIN_DIAMETER_PX = 12.0
#: Gaussian kernels are cut at this many standard deviations.
TRUNCATE = 3.0
#: When the particles' boxes cover more than this fraction of the image, the whole image is
#: smoothed once rather than box by box (a box costs about twice as much per pixel).
BOX_SMOOTHING_LIMIT = 0.5


def _box(sl: tuple[slice, slice], pad: int, shape: tuple[int, ...]) -> tuple[slice, slice]:
    return tuple(
        slice(max(s.start - pad, 0), min(s.stop + pad, n)) for s, n in zip(sl, shape, strict=True)
    )  # type: ignore[return-value]


def _area(box: tuple[slice, slice]) -> int:
    return (box[0].stop - box[0].start) * (box[1].stop - box[1].start)


def refine_outlines(
    image: np.ndarray,
    mask: np.ndarray,
    level: float = 0.5,
    min_contrast: float = 2.0,
    min_area_px: float = 0.0,
) -> np.ndarray:
    """Snap each particle's outline to the point where its contrast falls to `level`.

    Parameters
    ----------
    image : numpy.ndarray
        ``(height, width)`` micrograph, any real dtype, particles darker than the carbon
        (bright field).
    mask : numpy.ndarray
        bool ``(height, width)``, the particles found (8-connected).
    level : float
        Where the outline goes, as a fraction of the way from the carbon's level (0) to the
        particle's interior level (1); 0.5 is the half-contrast edge.
    min_contrast : float
        Refine a particle only when its interior is darker than its surroundings by more than
        this many standard deviations of the surroundings.
    min_area_px : float
        Pieces of a refined particle smaller than this are dropped.

    Returns
    -------
    numpy.ndarray
        bool ``(height, width)``.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, not {level}")
    mask = np.asarray(mask, dtype=bool)
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    if n == 0:
        return mask
    areas = np.bincount(labels.ravel())[1:]
    diameter = float(np.median(2 * np.sqrt(areas / np.pi)))
    band = max(2, round(diameter / 8))
    sigma = max(1.0, diameter / 20)
    reach = int(TRUNCATE * sigma + 0.5)  # the Gaussian kernel's half-width, px
    image = np.asarray(image, dtype=np.float32)
    small = areas < np.pi * (MIN_DIAMETER_PX / 2) ** 2
    # Particles to refine: label, box (with room for the ring), and the box widened by the
    # smoothing kernel's reach.
    jobs = []
    for index, found in enumerate(ndimage.find_objects(labels), start=1):
        if not small[index - 1]:
            box = _box(found, 2 * band + 1, mask.shape)
            jobs.append((index, box, _box(box, reach, mask.shape)))
    # Where particles are sparse, smoothing only each widened box (the values inside its box
    # then equal those of the whole smoothed image) is far cheaper than smoothing the whole
    # image; where their boxes cover much of it, the whole image is smoothed once.
    smooth_all = None
    if sum(_area(wide) for _, _, wide in jobs) > BOX_SMOOTHING_LIMIT * mask.size:
        smooth_all = ndimage.gaussian_filter(image, sigma, truncate=TRUNCATE)
    # The core is the particle less everything within band / 2 (chessboard) of its edge.
    core_size = 2 * (band // 2) + 1
    out = mask.copy()
    for index, box, wide in jobs:
        if smooth_all is None:
            inner = tuple(
                slice(b.start - w.start, b.stop - w.start) for b, w in zip(box, wide, strict=True)
            )
            smooth = ndimage.gaussian_filter(image[wide], sigma, truncate=TRUNCATE)[inner]
        else:
            smooth = smooth_all[box]
        near = labels[box]
        particle = near == index
        core = ndimage.minimum_filter(particle.view(np.uint8), size=core_size).view(bool)
        refined = _refine_one(smooth, near, particle, core, band, level, min_contrast, min_area_px)
        if refined is not None:
            view = out[box]
            view &= ~particle
            view |= refined
    return out


def _grow(mask: np.ndarray, reach: int) -> np.ndarray:
    """Pixels within chessboard distance `reach` of `mask`."""
    return ndimage.maximum_filter(mask.view(np.uint8), size=2 * reach + 1).view(bool)


def _refine_one(
    smooth: np.ndarray,
    labels: np.ndarray,
    particle: np.ndarray,
    core: np.ndarray,
    band: int,
    level: float,
    min_contrast: float,
    min_area_px: float,
) -> np.ndarray | None:
    """The refined mask of one particle inside its box, or None to keep the network's."""
    # Square neighbourhoods (chessboard distance) by separable maximum filters: exact enough
    # for bands of a few pixels and far cheaper than Euclidean distance transforms, which
    # matters with thousands of particles per micrograph.
    territory = _grow(particle, band)
    ring = _grow(particle, 2 * band) & ~territory & (labels == 0)
    if np.count_nonzero(ring) < 5:
        return None
    if np.count_nonzero(core) < 5:
        core = particle
    interior = float(np.median(smooth[core]))
    carbon = float(np.median(smooth[ring]))
    contrast = carbon - interior
    if not contrast > min_contrast * float(smooth[ring].std()):
        return None
    # Outlines grow only where no other particle is within reach, so neighbours never merge.
    others = (labels != 0) & ~particle
    if others.any():
        territory &= particle | ~_grow(others, band + 1)
    refined = territory & (smooth < carbon - level * contrast)
    # The network decides what is a particle; this step moves outlines and may split particles
    # the network merged, but noise must not shatter one: pieces that overlap the old mask
    # are kept when at least a fifth of the largest such piece.
    pieces, _ = ndimage.label(refined, structure=np.ones((3, 3)))
    sizes = np.bincount(pieces.ravel())
    sizes[0] = 0
    overlap = np.bincount(pieces[refined & particle], minlength=sizes.size)
    sizes[overlap == 0] = 0
    if not sizes.any():
        return None
    kept = np.flatnonzero((sizes >= MIN_PIECE * sizes.max()) & (sizes >= min_area_px))
    if kept.size == 0:
        return None
    return _fill_holes(np.isin(pieces, kept))


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """`mask` with every background region that does not reach the box's edge filled.

    The same as :func:`scipy.ndimage.binary_fill_holes` (background 4-connected), by one
    labelling instead of a dilation repeated until nothing changes.
    """
    background, count = ndimage.label(~mask)
    if count == 0:
        return mask
    edge = np.zeros(count + 1, dtype=bool)
    for side in (background[0], background[-1], background[:, 0], background[:, -1]):
        edge[side] = True
    edge[0] = True
    return mask | ~edge[background]
