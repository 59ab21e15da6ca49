"""Classical baselines that segment without a network, with the same results as the network.

:class:`ThresholdSegmenter` is the method users compare nanoseg with first: Gaussian smoothing,
subtraction of a much smoother copy (uneven illumination and carbon thickness), and a global
(Otsu, Li) or local threshold. It returns a :class:`~nanoseg.segment.SegmentResult` like
:class:`~nanoseg.segment.Segmenter`, so ``segment``'s outputs, ``evaluate`` and the benchmarks
treat both alike.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from nanoseg.errors import InvalidDataError, NanosegError
from nanoseg.io import Micrograph
from nanoseg.segment import (
    SegmentResult,
    as_micrograph,
    particle_result,
    resolve_pixel_size,
    without_annotations,
)

__all__ = ["THRESHOLD_METHODS", "ThresholdSegmenter", "threshold_map"]

THRESHOLD_METHODS = ("otsu", "li", "local")
#: ``--sigma auto``: the smoothing is the estimated particle diameter over this.
DIAMETER_PER_SIGMA = 16.0


def threshold_map(
    image: np.ndarray,
    *,
    sigma: float = 2.0,
    background: float | None = None,
    polarity: str = "dark",
) -> np.ndarray:
    """Smoothed, background-subtracted image in which particles are high.

    Parameters
    ----------
    image : numpy.ndarray
        float ``(height, width)``.
    sigma : float
        Gaussian smoothing, px (suppresses shot noise and lattice fringes).
    background : float, optional
        Gaussian sigma of the background estimate, px; default ``25 * sigma``.
    polarity : {"dark", "bright"}
        Particles darker than the support (bright-field TEM, the usual case) or brighter
        (dark-field, HAADF).

    Returns
    -------
    numpy.ndarray
        float32 ``(height, width)``, in the image's units, particles positive.
    """
    if polarity not in ("dark", "bright"):
        raise NanosegError(f"polarity must be 'dark' or 'bright', not '{polarity}'")
    if not sigma > 0:
        raise NanosegError(f"--sigma must be positive, not {sigma}")
    data = np.asarray(image, dtype=np.float32)
    smooth = ndimage.gaussian_filter(data, sigma, mode="reflect")
    back = ndimage.gaussian_filter(data, background or 25 * sigma, mode="reflect")
    signal = back - smooth if polarity == "dark" else smooth - back
    return signal.astype(np.float32)


@dataclass
class ThresholdSegmenter:
    """Smoothing, background subtraction and a threshold; called like a :class:`Segmenter`.

    Parameters
    ----------
    method : {"otsu", "li", "local"}
        scikit-image's ``threshold_otsu`` or ``threshold_li`` over the whole image, or
        a local one (Gaussian-weighted mean over about 2 x `background`, plus half the global
        Otsu margin).
    sigma : float
        Gaussian smoothing, px.
    background : float, optional
        Background sigma, px (default ``25 * sigma``).
    polarity : {"dark", "bright"}
    min_area_nm2 : float, optional
        As for :class:`Segmenter`.
    mask_annotations : bool
        As for :class:`Segmenter`: scale bars and text burned into the image are left out.
    """

    method: str = "otsu"
    sigma: float | str = "auto"
    background: float | None = None
    polarity: str = "dark"
    min_area_nm2: float | None = None
    mask_annotations: bool = True

    def __post_init__(self) -> None:
        if self.method not in THRESHOLD_METHODS:
            raise NanosegError(
                f"--method must be one of {', '.join(THRESHOLD_METHODS)}, not '{self.method}'"
            )
        if self.sigma != "auto" and not (isinstance(self.sigma, int | float) and self.sigma > 0):
            raise NanosegError(f"--sigma must be positive or 'auto', not {self.sigma}")

    @property
    def settings(self) -> dict[str, Any]:
        """What decides the outputs besides the input file (for resuming batch runs)."""
        return {"baseline": "threshold", **self.__dict__}

    def __call__(
        self,
        image: str | os.PathLike[str] | np.ndarray | Micrograph,
        pixel_size: float | str | None = None,
    ) -> SegmentResult:
        """Segment one micrograph (a path, an array or a :class:`Micrograph`)."""
        from skimage import filters

        mic = as_micrograph(image)
        if not np.isfinite(mic.data).all():
            raise InvalidDataError("the image contains NaN or infinite values", mic.path)
        size, source = resolve_pixel_size(mic, pixel_size, "sizes are given in px")
        data, annotations = without_annotations(mic, self.mask_annotations)
        sigma, estimate, scale_method = self._sigma(data, mic.path)
        background = self.background or 25 * sigma
        signal = threshold_map(data, sigma=sigma, background=background, polarity=self.polarity)
        low, high = np.percentile(signal, [0.5, 99.5])
        if not high > low:
            raise InvalidDataError("the image is flat: nothing to threshold", mic.path)
        if self.method == "local":
            # The Gaussian-weighted mean over about twice the background scale, raised by half
            # the global Otsu margin so that flat background does not split at its own mean.
            block = int(2 * background) | 1
            margin = filters.threshold_otsu(signal) - float(np.median(signal))
            cut = filters.threshold_local(
                signal, block_size=block, method="gaussian", offset=-0.5 * margin
            )
        else:
            cut = {"otsu": filters.threshold_otsu, "li": filters.threshold_li}[self.method](signal)
        # A [0, 1] map for the probability output: the signal stretched, 0.5 at the threshold.
        spread = (high - low) / 8
        score = (1 / (1 + np.exp(-(signal - cut) / spread))).astype(np.float32)
        result = particle_result(
            mic,
            score,
            0.5,
            size,
            source,
            1.0,
            self.min_area_nm2,
            annotations=annotations,
            data=data,
        )
        result.scale_estimate_px, result.scale_method = estimate, scale_method
        return result

    def _sigma(self, data: np.ndarray, path: Path | None) -> tuple[float, float | None, str]:
        """The smoothing (px), the particle diameter it came from (px) and how it was found."""
        if self.sigma != "auto":
            return float(self.sigma), None, "given sigma"
        from nanoseg.scale import estimate_scale

        try:
            estimate = estimate_scale(data, polarity=self.polarity)
        except InvalidDataError as error:
            raise InvalidDataError(str(error.args[0]), path) from None
        # Tuned once on real-dev-hrtem (sigma 4 px for ~60 px particles), then fixed.
        return (
            max(1.0, estimate.diameter_px / DIAMETER_PER_SIGMA),
            estimate.diameter_px,
            estimate.method,
        )
