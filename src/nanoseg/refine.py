"""Move particle outlines to the micrograph's own contrast edge.

The network decides *where* the particles are; its outline of each one is then placed where
the particle's local contrast has fallen to a given fraction (half, by default) of the way
from the particle's interior to the carbon around it. That is how microscopists draw and
size particles by hand (the edge at half contrast), and it removes the few-pixel halo a
network trained on simulated micrographs puts around real particles, whose edges and carbon
look a little different from the simulated ones (see the README's figures on the real
development sets).

Each particle is refined on its own, inside a box around it (particles whose box is at most
256 px many at a time, their boxes stacked, with the same arithmetic):

1. the image is smoothed with a Gaussian of about a twentieth of the typical particle
   diameter (noise and lattice fringes must not decide the edge);
2. the particle's interior level is the median of the smoothed image over its core (the
   mask eroded by half the band), the carbon's level the median over a ring
   ``band < d <= 2 band`` px outside the mask, clear of other particles;
3. where the particle is clearly darker than its ring (by more than `min_contrast` times the
   ring's standard deviation), its new outline is the set of pixels within `band` px of the
   old outline, nearer to it than to any other particle, and darker than
   ``carbon - level * (carbon - interior)``; of those, the connected pieces that overlap the
   old outline and are at least :data:`MIN_PIECE` of the largest such piece, or of the
   micrograph's median particle if that is smaller, are kept (so particles the network
   merged may come apart, a dense monolayer into all of its particles, but noise does not
   shatter one), holes filled;
4. otherwise (weak or reversed contrast, as for small phase-contrast particles in HRTEM), and
   for particles under :data:`MIN_DIAMETER_PX` across, the network's outline is kept.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from scipy import ndimage

from nanoseg.measure import EIGHT_CONNECTED, padded_box, touches_edge

__all__ = ["EDGES", "refine_outlines"]

#: How particle outlines are placed: at the half-contrast edge, or as the network drew them.
EDGES = ("contrast", "network")
#: Pieces of a refined particle smaller than this fraction of its largest piece (or of the
#: micrograph's median particle area, if smaller) are dropped.
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
#: Particles whose box fits a window of one of these sides (px) are refined together, a stack
#: of windows at a time, with the same arithmetic: in dense micrographs (thousands of
#: particles 10-100 px across) the few dozen NumPy calls per particle took the time, not the
#: pixels. Larger particles are refined one by one.
STACK_SIDES = (24, 32, 48, 64, 96, 128, 192, 256)
#: Pixels per stack of windows (bounds the memory: about 20 bytes each).
STACK_PIXELS = 2**21
# Connectivity within each window of a stack, none across windows.
_IN_PLANE_8 = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE_8[1] = True
_IN_PLANE_4 = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE_4[1] = ndimage.generate_binary_structure(2, 1)

Job = tuple[int, tuple[slice, slice], tuple[slice, slice]]


def _area(box: tuple[slice, slice]) -> int:
    return (box[0].stop - box[0].start) * (box[1].stop - box[1].start)


def refine_outlines(
    image: np.ndarray,
    mask: np.ndarray,
    level: float = 0.5,
    min_contrast: float = 2.0,
    min_area_px: float = 0.0,
    threads: int = 1,
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
    threads : int
        Threads: particles refined at once (most of the work runs outside Python's lock);
        the result does not depend on it.

    Returns
    -------
    numpy.ndarray
        bool ``(height, width)``.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, not {level}")
    mask = np.asarray(mask, dtype=bool)
    labels, n = ndimage.label(mask, structure=EIGHT_CONNECTED)
    if n == 0:
        return mask
    areas = np.bincount(labels.ravel())[1:]
    diameter = float(np.median(2 * np.sqrt(areas / np.pi)))
    # A blob the network made of a dense monolayer splits into a large group and single
    # particles far below a fifth of it: pieces the size of the median particle are kept.
    typical_area = float(np.median(areas))
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
            box = padded_box(found, 2 * band + 1, mask.shape)
            jobs.append((index, box, padded_box(box, reach, mask.shape)))
    threads = max(1, threads)
    out = mask.copy()
    with ThreadPoolExecutor(threads) as pool:
        # Where particles are sparse, smoothing only each widened box (the values inside its
        # box then equal those of the whole smoothed image) is far cheaper than smoothing the
        # whole image; where their boxes cover much of it, the whole image is smoothed once.
        smooth_all = None
        if sum(_area(wide) for _, _, wide in jobs) > BOX_SMOOTHING_LIMIT * mask.size:
            smooth_all = _smooth(image, sigma, reach, pool, threads)

        def box_smooth(job: Job) -> np.ndarray:
            """The smoothed image over the job's box."""
            _, box, wide = job
            if smooth_all is not None:
                return smooth_all[box]
            inner = tuple(
                slice(b.start - w.start, b.stop - w.start) for b, w in zip(box, wide, strict=True)
            )
            return ndimage.gaussian_filter(image[wide], sigma, truncate=TRUNCATE)[inner]

        def refine(job: Job) -> np.ndarray | None:
            index, box, _ = job
            near = labels[box]
            particle = near == index
            # The core: the particle less everything within band / 2 (chessboard) of its edge.
            core = ~_grow(~particle, band // 2)
            return _refine_one(
                box_smooth(job), near, particle, core, band, level, min_contrast, min_area_px,
                typical_area,
            )  # fmt: skip

        def refine_stack(stack: tuple[int, list[Job]]) -> list[np.ndarray | None]:
            side, members = stack
            return _refine_stack(
                members, side, labels, box_smooth, band, level, min_contrast, min_area_px,
                typical_area,
            )  # fmt: skip

        stacks, alone = _stacks(jobs)
        refined: dict[int, np.ndarray | None] = {}
        for (_, members), results in zip(stacks, pool.map(refine_stack, stacks), strict=True):
            refined.update((job[0], r) for job, r in zip(members, results, strict=True))
        refined.update((job[0], r) for job, r in zip(alone, pool.map(refine, alone), strict=True))
        # Outlines are computed in parallel but written in particle order, as one thread would.
        for index, box, _ in jobs:
            if refined[index] is not None:
                view = out[box]
                view &= labels[box] != index
                view |= refined[index]
    return out


def _stacks(jobs: list[Job]) -> tuple[list[tuple[int, list[Job]]], list[Job]]:
    """The jobs whose boxes fit a window of :data:`STACK_SIDES`, as (side, jobs) stacks of at
    most :data:`STACK_PIXELS` pixels, and the jobs left to refine one by one."""
    by_side: dict[int, list[Job]] = {}
    alone = []
    for job in jobs:
        box = job[1]
        extent = max(box[0].stop - box[0].start, box[1].stop - box[1].start)
        side = next((s for s in STACK_SIDES if s >= extent), None)
        if side is None:
            alone.append(job)
        else:
            by_side.setdefault(side, []).append(job)
    stacks = []
    for side, members in sorted(by_side.items()):
        step = max(1, STACK_PIXELS // side**2)
        stacks += [(side, members[i : i + step]) for i in range(0, len(members), step)]
    return stacks, alone


def _refine_stack(
    jobs: list[Job],
    side: int,
    labels: np.ndarray,
    box_smooth: Callable[[Job], np.ndarray],
    band: int,
    level: float,
    min_contrast: float,
    min_area_px: float,
    typical_area: float,
) -> list[np.ndarray | None]:
    """:func:`_refine_one` for many particles at once: each in a `side` px window that starts
    at its box's corner, the windows stacked along a first axis.

    The window holds the box and more; what lies beyond the box cannot change the result
    (everything the steps reach is within the box's margin of ``2 * band + 1`` px), and
    pixels beyond the image are marked and left out. Returns, per job, the refined mask over
    its box, or None to keep the network's outline.
    """
    n = len(jobs)
    height, width = labels.shape
    near = np.zeros((n, side, side), labels.dtype)
    inside = np.zeros((n, side, side), dtype=bool)
    smooth = np.zeros((n, side, side), dtype=np.float32)
    for k, job in enumerate(jobs):
        box = job[1]
        top, left = box[0].start, box[1].start
        rows, cols = min(side, height - top), min(side, width - left)
        near[k, :rows, :cols] = labels[top : top + rows, left : left + cols]
        inside[k, :rows, :cols] = True
        values = box_smooth(job)
        smooth[k, : values.shape[0], : values.shape[1]] = values
    index = np.array([job[0] for job in jobs], dtype=labels.dtype)
    particle = near == index[:, None, None]
    # Beyond the image nothing is grown from, and nothing is core.
    core = particle & ~_grow(~particle & inside, band // 2)
    territory = _grow(particle, band) & inside
    ring = _grow(particle, 2 * band) & ~territory & (near == 0) & inside
    ring_count = np.count_nonzero(ring, axis=(1, 2))
    too_thin = np.count_nonzero(core, axis=(1, 2)) < 5
    core[too_thin] = particle[too_thin]
    flat, flat_ring = smooth.reshape(n, -1), ring.reshape(n, -1)
    interior = _row_medians(flat, core.reshape(n, -1)).astype(np.float64)
    carbon = _row_medians(flat, flat_ring).astype(np.float64)
    contrast = carbon - interior
    with np.errstate(invalid="ignore"):
        ok = (ring_count >= 5) & (contrast > min_contrast * _row_std(flat, flat_ring))
    out: list[np.ndarray | None] = [None] * n
    rows_ok = np.flatnonzero(ok)
    if rows_ok.size == 0:
        return out
    near, particle, territory, smooth = (
        near[rows_ok],
        particle[rows_ok],
        territory[rows_ok],
        smooth[rows_ok],
    )
    others = (near != 0) & ~particle
    territory &= particle | ~_grow(others, band + 1)
    # The comparison with a Python float rounds it to float32: the same here.
    threshold = (carbon - level * contrast)[rows_ok].astype(np.float32)
    refined = territory & (smooth < threshold[:, None, None])
    pieces, count = ndimage.label(refined, structure=_IN_PLANE_8)
    sizes = np.bincount(pieces.ravel(), minlength=count + 1)
    sizes[0] = 0
    sizes[np.bincount(pieces[refined & particle], minlength=count + 1) == 0] = 0
    # The window (row of the stack) each piece lies in, and the largest piece of each window.
    owner = np.zeros(count + 1, dtype=np.intp)
    owner[pieces.ravel()] = np.repeat(np.arange(rows_ok.size), side * side)
    largest = np.zeros(rows_ok.size, dtype=sizes.dtype)
    np.maximum.at(largest, owner[1:], sizes[1:])
    floor = MIN_PIECE * np.minimum(largest, typical_area)
    keep = (sizes >= floor[owner]) & (sizes >= min_area_px)
    keep[0] = False
    kept_any = np.zeros(rows_ok.size, dtype=bool)
    kept_any[owner[keep]] = True
    filled = _fill_holes(keep[pieces])
    for k, row in enumerate(rows_ok):
        if largest[k] > 0 and kept_any[k]:
            box = jobs[row][1]
            out[row] = filled[k, : box[0].stop - box[0].start, : box[1].stop - box[1].start]
    return out


def _row_medians(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``np.median(values[k][mask[k]])`` for every row k (float32 ``(n, m)`` values, bool
    mask; any value for a row with none selected), with the same rounding."""
    counts = np.count_nonzero(mask, axis=1)
    # The selected values moved to the front of each row (a row of a window's pixels holds
    # a particle's core or ring, a fraction of them), then sorted: sorting whole rows cost more.
    ordered = np.full((len(values), max(1, int(counts.max()))), np.inf, dtype=np.float32)
    rows, cols = np.nonzero(mask)
    ordered[rows, np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)] = values[
        rows, cols
    ]
    ordered.sort(axis=1)
    rows = np.arange(len(ordered))
    low = ordered[rows, np.maximum(counts - 1, 0) // 2]
    high = ordered[rows, counts // 2]
    with np.errstate(invalid="ignore"):
        return np.where(counts % 2 == 1, low, (low + high) / np.float32(2))


def _row_std(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Standard deviation of each row's selected values, in float64 (NaN for none)."""
    counts = np.count_nonzero(mask, axis=1)
    selected = np.where(mask, values, 0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = selected.sum(axis=1) / counts
        deviation = np.where(mask, selected - mean[:, None], 0.0)
        return np.sqrt((deviation * deviation).sum(axis=1) / counts)


def _smooth(
    image: np.ndarray, sigma: float, reach: int, pool: ThreadPoolExecutor, parts: int
) -> np.ndarray:
    """`image` smoothed by a Gaussian, in `parts` strips of rows at once; each strip is
    widened by the kernel's `reach`, so the result equals one call on the whole image."""
    height = image.shape[0]
    cuts = np.linspace(0, height, parts + 1).astype(int)

    def strip(rows: tuple[int, int]) -> np.ndarray:
        start, stop = max(rows[0] - reach, 0), min(rows[1] + reach, height)
        smooth = ndimage.gaussian_filter(image[start:stop], sigma, truncate=TRUNCATE)
        return smooth[rows[0] - start : rows[1] - start]

    return np.concatenate(list(pool.map(strip, itertools.pairwise(cuts))))


def _grow(mask: np.ndarray, reach: int) -> np.ndarray:
    """Pixels within chessboard distance `reach` of bool `mask`, inside its bounds, in the
    plane of its last two axes (a 2-D mask, or a stack of them).

    The same as a maximum filter of size ``2 * reach + 1``, by a few shifted ORs per axis
    (each doubling the window), several times cheaper on the small boxes refined here.
    """
    for axis in (-2, -1):
        mask = _grow_along(mask, reach, axis)
    return mask


def _grow_along(mask: np.ndarray, reach: int, axis: int) -> np.ndarray:
    """Pixels within `reach` of `mask` along one axis."""
    length = mask.shape[axis]
    shape = list(mask.shape)
    shape[axis] += 2 * reach
    grown = np.zeros(shape, dtype=bool)
    grown[_along(axis, reach, reach + length)] = mask
    # grown[i] holds whether any of the `window` pixels up to i is set; each OR with a copy
    # shifted by `step` lengthens the window by `step` (NumPy buffers the overlapping operands).
    window, total = 1, 2 * reach + 1
    while window < total:
        step = min(window, total - window)
        grown[_along(axis, step, None)] |= grown[_along(axis, None, -step)]
        window += step
    return grown[_along(axis, 2 * reach, 2 * reach + length)]


def _along(axis: int, start: int | None, stop: int | None) -> tuple[Any, ...]:
    """The index ``[start:stop]`` along `axis` (-2 or -1) of an array of 2 or more dims."""
    index: list[Any] = [Ellipsis, slice(None), slice(None)]
    index[axis] = slice(start, stop)
    return tuple(index)


def _refine_one(
    smooth: np.ndarray,
    labels: np.ndarray,
    particle: np.ndarray,
    core: np.ndarray,
    band: int,
    level: float,
    min_contrast: float,
    min_area_px: float,
    typical_area: float,
) -> np.ndarray | None:
    """The refined mask of one particle inside its box, or None to keep the network's."""
    # Square neighbourhoods (chessboard distance, :func:`_grow`): exact enough for bands of a
    # few pixels and far cheaper than Euclidean distance transforms, which matters with
    # thousands of particles per micrograph.
    territory = _grow(particle, band)
    ring = _grow(particle, 2 * band) & ~territory & (labels == 0)
    if np.count_nonzero(ring) < 5:
        return None
    if np.count_nonzero(core) < 5:
        core = particle
    interior = float(np.median(smooth[core]))
    carbon = float(np.median(smooth[ring]))
    contrast = carbon - interior
    # In float64, as the stacked path (_refine_stack) computes it.
    if not contrast > min_contrast * float(smooth[ring].std(dtype=np.float64)):
        return None
    # Outlines grow only where no other particle is within reach, so neighbours never merge.
    others = (labels != 0) & ~particle
    if others.any():
        territory &= particle | ~_grow(others, band + 1)
    refined = territory & (smooth < carbon - level * contrast)
    # The network decides what is a particle; this step moves outlines and may split particles
    # the network merged, but noise must not shatter one: pieces that overlap the old mask
    # are kept when at least a fifth of the largest such piece, or of the median particle.
    pieces, _ = ndimage.label(refined, structure=EIGHT_CONNECTED)
    sizes = np.bincount(pieces.ravel())
    sizes[0] = 0
    overlap = np.bincount(pieces[refined & particle], minlength=sizes.size)
    sizes[overlap == 0] = 0
    if not sizes.any():
        return None
    floor = MIN_PIECE * min(float(sizes.max()), typical_area)
    keep = (sizes >= floor) & (sizes >= min_area_px)  # never the background
    if not keep.any():
        return None
    return _fill_holes(keep[pieces])


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """`mask` with every background region that does not reach the box's edge filled; for a
    stack of boxes (3-D), each box on its own.

    The same as :func:`scipy.ndimage.binary_fill_holes` (background 4-connected), by one
    labelling instead of a dilation repeated until nothing changes.
    """
    background, count = ndimage.label(~mask, structure=_IN_PLANE_4 if mask.ndim == 3 else None)
    if count == 0:
        return mask
    edge = touches_edge(background, count)
    edge[0] = True
    return mask | ~edge[background]
