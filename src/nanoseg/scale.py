"""How big are the particles, in pixels? Scale estimation for micrographs without a pixel size.

Many exported micrographs (PNG, 8-bit TIFF) carry no pixel size, and the particles in them may be
3 px or 300 px wide. :func:`estimate_scale` measures the typical particle diameter in pixels from
the image alone with a scale-normalised Laplacian-of-Gaussian (LoG) scale space: a dark disc of
diameter ``D`` gives its strongest normalised response at ``sigma = D / (2 sqrt 2)`` (Lindeberg's
automatic scale selection). Each scale's response is measured against that scale's own noise
level, so carbon speckle and lattice fringes, which are strong only at small scales, do not pull
the answer down.

The scale space is a pyramid (the image halved per octave, three scales per octave), so the cost
is that of a few Gaussian filters of the image whatever the particle size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from nanoseg.errors import InvalidDataError

__all__ = ["ScaleEstimate", "estimate_scale"]

#: Sigmas (px of each pyramid level) of the scales within one octave.
_OCTAVE_SIGMAS = (1.6, 1.6 * 2 ** (1 / 3), 1.6 * 2 ** (2 / 3))
#: A scale-space maximum counts as a particle when its response is this many robust standard
#: deviations (MAD) above its scale's median; pure noise almost never gets there.
_SIGNIFICANCE = 6.0
#: Smallest image side that can be measured (px).
MIN_SIDE = 32
#: Diameter = this many sigmas at the best scale (a disc's LoG response peaks at D / 2 sqrt 2).
_DIAMETER_PER_SIGMA = 2 * math.sqrt(2)


@dataclass(frozen=True)
class ScaleEstimate:
    """The typical particle diameter found in an image.

    Attributes
    ----------
    diameter_px : float
        Median diameter of the significant dark blobs, px.
    n_blobs : int
        How many significant blobs it is the median of.
    method : str
        How it was obtained, for logs and ``summary.csv``.
    """

    diameter_px: float
    n_blobs: int
    method: str = "LoG scale space"


def _robust_z(response: np.ndarray) -> np.ndarray:
    median = float(np.median(response))
    mad = float(np.median(np.abs(response - median))) * 1.4826
    return (response - median) / max(mad, 1e-12)


def _downsample(image: np.ndarray) -> np.ndarray:
    rows, cols = (image.shape[0] // 2) * 2, (image.shape[1] // 2) * 2
    view = image[:rows, :cols]
    return 0.25 * (view[0::2, 0::2] + view[1::2, 0::2] + view[0::2, 1::2] + view[1::2, 1::2])


def _blobs(image: np.ndarray, max_diameter: float) -> tuple[np.ndarray, np.ndarray]:
    """Significant scale-space maxima of dark blobs: (diameters px, z-scores)."""
    diameters: list[np.ndarray] = []
    strengths: list[np.ndarray] = []
    centres: list[np.ndarray] = []
    level, factor = image, 1
    while min(level.shape) >= MIN_SIDE // 2:
        # Within an octave: stack the normalised responses, keep maxima over space and scale.
        raw = np.stack(
            [s**2 * ndimage.gaussian_laplace(level, s, mode="reflect") for s in _OCTAVE_SIGMAS]
        )
        z = np.stack([_robust_z(r) for r in raw])
        peaks = raw == ndimage.maximum_filter(raw, size=(3, 5, 5), mode="nearest")
        peaks &= z > _SIGNIFICANCE
        # Responses within a blob of the border see a reflected copy: leave them out.
        margin = math.ceil(2 * _OCTAVE_SIGMAS[-1])
        peaks[:, :margin] = peaks[:, -margin:] = False
        peaks[:, :, :margin] = peaks[:, :, -margin:] = False
        which, rows, cols = np.nonzero(peaks)
        d = np.asarray(_OCTAVE_SIGMAS)[which] * factor * _DIAMETER_PER_SIGMA
        keep = d <= max_diameter
        diameters.append(d[keep])
        strengths.append(z[which, rows, cols][keep])
        centres.append(np.stack([rows, cols], axis=1)[keep] * factor + (factor - 1) / 2)
        level, factor = _downsample(level), factor * 2
    return _prune(np.concatenate(centres), np.concatenate(diameters), np.concatenate(strengths))


def _prune(
    centres: np.ndarray, diameters: np.ndarray, strengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Drop maxima that lie inside a stronger blob (a disc's rim, fringes within a particle)."""
    order = np.argsort(-strengths)
    kept: list[int] = []
    for i in order:
        if kept:
            k = np.asarray(kept)
            inside = np.hypot(*(centres[k] - centres[i]).T) < diameters[k] / 2
            if inside.any():
                continue
        kept.append(int(i))
    index = np.asarray(kept, dtype=int)
    return diameters[index], strengths[index]


def estimate_scale(
    image: np.ndarray, *, polarity: str = "dark", name: str | None = None
) -> ScaleEstimate:
    """Estimate the typical particle diameter in pixels.

    Parameters
    ----------
    image : numpy.ndarray
        ``(height, width)`` micrograph, any real dtype.
    polarity : {"dark", "bright"}
        Particles darker than the support (bright-field TEM) or brighter (dark-field, HAADF).
    name : str, optional
        File name for error messages.

    Returns
    -------
    ScaleEstimate

    Raises
    ------
    InvalidDataError
        An image too small, constant, or with no particle-like blobs standing out of the noise:
        then no scale can be told, and a pixel size must be given.
    """
    data = np.asarray(image, dtype=np.float32)
    if data.ndim != 2:
        raise InvalidDataError(f"expected a 2-D image, got shape {data.shape}", name)
    if min(data.shape) < MIN_SIDE:
        raise InvalidDataError(
            f"{data.shape[1]}x{data.shape[0]} px is too small to estimate the particle size "
            f"(at least {MIN_SIDE} px a side); give the pixel size",
            name,
        )
    finite = data[np.isfinite(data)]
    if finite.size < data.size or float(finite.max() - finite.min()) == 0.0:
        what = "is constant" if finite.size == data.size else "contains NaN or infinite values"
        raise InvalidDataError(f"image {what}: no particle size can be estimated", name)
    if polarity not in ("dark", "bright"):
        raise InvalidDataError(f"polarity must be 'dark' or 'bright', not '{polarity}'", name)
    signal = -data if polarity == "bright" else data
    # Particles span at most a third of the field: larger "blobs" are illumination.
    diameters, strengths = _blobs(signal, min(data.shape) / 3)
    if diameters.size == 0:
        raise InvalidDataError(
            "no particles stand out of the noise at any scale: cannot estimate their size; "
            "give the pixel size",
            name,
        )
    # The strongest blobs decide: weak maxima are mostly texture of the support.
    # Particles stand out most at their own scale; support texture, fringes and edges give
    # many weaker maxima. Keep those at least half as strong as the second strongest (not the
    # strongest: one dark contaminant must not decide alone).
    reference = np.sort(strengths)[-min(2, strengths.size)]
    strong = strengths >= 0.5 * reference
    diameter = float(np.exp(np.median(np.log(diameters[strong]))))
    return ScaleEstimate(diameter_px=diameter, n_blobs=int(strong.sum()))
