"""Segment whole micrographs: the Python API (:class:`Segmenter`) and the per-file outputs.

``Segmenter.load()`` gives the bundled model; calling it on a file or an array returns a
:class:`SegmentResult` with the particle mask, the probability map and the particle table.
The steps, in order: read the file, resample to the model's pixel-size range (when the pixel
size is known), median filter and normalise as in training, predict over blended tiles,
resample the probability back, threshold, drop specks below the minimum area, measure.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from nanoseg.errors import InvalidDataError, NanosegError
from nanoseg.io import (
    Micrograph,
    read_micrograph,
    write_csv,
    write_mask,
    write_png,
    write_tiff,
)
from nanoseg.measure import PARTICLE_COLUMNS, clean_mask, measure_particles
from nanoseg.model import UNet, fuse_for_inference, load_model
from nanoseg.predict import TTA_MODES, model_scale, predict_image, preprocess

__all__ = [
    "BUILTIN",
    "SegmentResult",
    "Segmenter",
    "as_micrograph",
    "builtin_model_path",
    "output_paths",
    "particle_result",
    "resolve_pixel_size",
    "write_outputs",
]

#: Name that selects the model shipped inside the package.
BUILTIN = "builtin"
#: Particles smaller than this are dropped when the pixel size is unknown (px).
MIN_AREA_PX_UNKNOWN_SCALE = 12


class NoPixelSizeWarning(UserWarning):
    """The micrograph has no pixel size: it is segmented at its own scale."""


def builtin_model_path() -> Path:
    """Folder of the model shipped inside the package."""
    return Path(str(resources.files("nanoseg") / "models" / "builtin"))


@dataclass
class SegmentResult:
    """What segmenting one micrograph gives.

    Attributes
    ----------
    mask : numpy.ndarray
        bool ``(height, width)``, True on particles.
    probability : numpy.ndarray
        float32 ``(height, width)`` particle probability in [0, 1].
    particles : pandas.DataFrame
        One row per particle, columns :data:`nanoseg.measure.PARTICLE_COLUMNS`.
    pixel_size : float or None
        nm per pixel of the micrograph (not of the model's input).
    pixel_size_source : str
        ``"file"``, ``"given"`` or ``"unknown"``.
    scale_factor : float
        How much the micrograph was enlarged for the model (1: native scale).
    threshold : float
        Probability above which a pixel is particle.
    image : numpy.ndarray
        float32 ``(height, width)``: the micrograph as read.
    source : pathlib.Path or None
        The file, when segmenting a file.
    """

    mask: np.ndarray
    probability: np.ndarray
    particles: pd.DataFrame
    pixel_size: float | None
    pixel_size_source: str
    scale_factor: float
    threshold: float
    image: np.ndarray = field(repr=False)
    source: Path | None = None

    def summary(self) -> dict[str, Any]:
        """One row for ``summary.csv``: counts and size statistics (interior particles)."""
        table = self.particles
        interior = table[~table["touches_border"]] if len(table) else table
        height, width = self.mask.shape
        unit = "nm" if self.pixel_size is not None else "px"
        if unit == "nm":
            diameters = interior["equivalent_diameter_nm"].to_numpy(float)
        else:
            diameters = 2 * np.sqrt(interior["area_px"].to_numpy(float) / np.pi)
        stats = (
            {
                f"mean_diameter_{unit}": float(np.mean(diameters)),
                f"median_diameter_{unit}": float(np.median(diameters)),
                f"std_diameter_{unit}": float(np.std(diameters)),
            }
            if len(diameters)
            else {}
        )
        return {
            "width_px": width,
            "height_px": height,
            "pixel_size_nm": self.pixel_size,
            "pixel_size_source": self.pixel_size_source,
            "scale_factor": round(self.scale_factor, 6),
            "threshold": self.threshold,
            "n_particles": len(table),
            "n_interior": len(interior),
            "particle_fraction": float(self.mask.mean()),
            **stats,
        }


def as_micrograph(image: str | os.PathLike[str] | np.ndarray | Micrograph) -> Micrograph:
    """A :class:`Micrograph` from a file path, a 2-D array or a Micrograph (returned as is).

    Raises
    ------
    InvalidDataError
        An array that is not 2-D.
    """
    if isinstance(image, Micrograph):
        return image
    if isinstance(image, np.ndarray):
        if image.ndim != 2:
            raise InvalidDataError(f"expected a 2-D image, got shape {image.shape}")
        return Micrograph(np.asarray(image, dtype=np.float32), None)
    return read_micrograph(image)


def resolve_pixel_size(
    mic: Micrograph, pixel_size: float | None, without: str
) -> tuple[float | None, str]:
    """The pixel size to use (nm) and where it came from: ``"given"``, ``"file"`` or
    ``"unknown"``; warns (:class:`NoPixelSizeWarning`) with `without`, what happens then.

    Raises
    ------
    InvalidDataError
        A given pixel size that is not positive.
    """
    if pixel_size is not None:
        if not pixel_size > 0:
            raise InvalidDataError(f"pixel size must be positive, not {pixel_size}", mic.path)
        return float(pixel_size), "given"
    if mic.pixel_size is not None:
        return mic.pixel_size, "file"
    where = f"{mic.path}: " if mic.path is not None else ""
    warnings.warn(
        f"{where}no pixel size in the file and none given: {without}",
        NoPixelSizeWarning,
        stacklevel=3,
    )
    return None, "unknown"


def particle_result(
    mic: Micrograph,
    probability: np.ndarray,
    threshold: float,
    pixel_size: float | None,
    pixel_size_source: str,
    scale_factor: float,
    min_area_nm2: float | None,
) -> SegmentResult:
    """Threshold a probability map, drop specks, measure: the end of every segmenter.

    Parameters
    ----------
    mic : Micrograph
        The micrograph segmented.
    probability : numpy.ndarray
        float32 ``(height, width)`` in [0, 1].
    threshold : float
    pixel_size : float or None
        nm per pixel.
    pixel_size_source : str
    scale_factor : float
    min_area_nm2 : float or None
        Default 1 nm^2, or :data:`MIN_AREA_PX_UNKNOWN_SCALE` px without a pixel size.
    """
    if pixel_size is not None:
        min_area_px = (1.0 if min_area_nm2 is None else min_area_nm2) / pixel_size**2
    else:
        min_area_px = MIN_AREA_PX_UNKNOWN_SCALE
    mask = clean_mask(probability > threshold, min_area_px)
    return SegmentResult(
        mask=mask,
        probability=probability,
        particles=measure_particles(mask, probability, pixel_size),
        pixel_size=pixel_size,
        pixel_size_source=pixel_size_source,
        scale_factor=scale_factor,
        threshold=threshold,
        image=mic.data,
        source=mic.path,
    )


class Segmenter:
    """A model with everything needed to segment micrographs the way it was trained.

    Parameters
    ----------
    model : UNet
    card : dict
        The model card (preprocessing, pixel-size range, threshold).
    tta : {"none", "flip", "d4"}
        Test-time augmentation.
    threshold : float, optional
        Probability threshold; default the card's (0.5 if it has none).
    min_area_nm2 : float, optional
        Particles smaller than this are dropped (and holes smaller than this filled); default
        1 nm^2, or :data:`MIN_AREA_PX_UNKNOWN_SCALE` px when the pixel size is unknown.
    tile, overlap : int
        Tiling of large micrographs (see :func:`nanoseg.predict.predict_image`).

    Examples
    --------
    >>> from nanoseg import Segmenter
    >>> seg = Segmenter.load()                              # doctest: +SKIP
    >>> result = seg("sample.dm4")                          # doctest: +SKIP
    >>> result.particles["equivalent_diameter_nm"].median()  # doctest: +SKIP
    """

    def __init__(
        self,
        model: UNet,
        card: dict[str, Any],
        *,
        tta: str = "none",
        threshold: float | None = None,
        min_area_nm2: float | None = None,
        tile: int = 1024,
        overlap: int = 64,
    ) -> None:
        if tta not in TTA_MODES:
            raise NanosegError(f"--tta must be one of {', '.join(TTA_MODES)}, not '{tta}'")
        if threshold is not None and not 0 < threshold < 1:
            raise NanosegError(f"--threshold must be between 0 and 1, not {threshold}")
        if min_area_nm2 is not None and min_area_nm2 < 0:
            raise NanosegError(f"--min-area must not be negative, not {min_area_nm2}")
        if overlap < 0 or 2 * overlap >= tile:
            raise NanosegError(f"overlap {overlap} must be less than half the tile ({tile})")
        self.model = model.eval()
        # The same maps with fewer memory passes: BatchNorm folded, channels-last layout.
        self._fast = fuse_for_inference(model).to(memory_format=torch.channels_last)
        self.card = card
        self.tta = tta
        self.threshold = float(card.get("threshold") or 0.5) if threshold is None else threshold
        self.min_area_nm2 = min_area_nm2
        self.tile = tile
        self.overlap = overlap

    @classmethod
    def load(cls, model: str | os.PathLike[str] = BUILTIN, **options: Any) -> Segmenter:
        """A segmenter from a model folder, or the bundled model (``"builtin"``).

        Parameters
        ----------
        model : str or os.PathLike
            ``"builtin"`` or a model folder written by ``nanoseg train`` / ``import-keras``.
        **options
            Keyword arguments of :class:`Segmenter`.
        """
        path = builtin_model_path() if str(model) == BUILTIN else Path(model)
        network, card = load_model(path)
        return cls(network, card, **options)

    @property
    def settings(self) -> dict[str, Any]:
        """What decides the outputs besides the input file (for resuming batch runs)."""
        return {
            "model_weights_sha256": self.card.get("weights_sha256"),
            "tta": self.tta,
            "threshold": self.threshold,
            "min_area_nm2": self.min_area_nm2,
            "tile": self.tile,
            "overlap": self.overlap,
        }

    def __call__(
        self,
        image: str | os.PathLike[str] | np.ndarray | Micrograph,
        pixel_size: float | None = None,
    ) -> SegmentResult:
        """Segment one micrograph.

        Parameters
        ----------
        image : path, numpy.ndarray or Micrograph
            A micrograph file (any format :func:`nanoseg.read_micrograph` reads), a 2-D array,
            or a :class:`Micrograph`.
        pixel_size : float, optional
            nm per pixel; overrides the file's.

        Returns
        -------
        SegmentResult
        """
        mic = as_micrograph(image)
        size, source = resolve_pixel_size(
            mic,
            pixel_size,
            "segmented at the image's own scale (give --pixel-size for the "
            "model to see particles at its training scale)",
        )
        try:
            probability, factor = self._probability(mic.data, size)
        except InvalidDataError as error:
            raise InvalidDataError(str(error.args[0]), mic.path) from None
        return particle_result(
            mic, probability, self.threshold, size, source, factor, self.min_area_nm2
        )

    def _probability(self, image: np.ndarray, pixel_size: float | None) -> tuple[np.ndarray, float]:
        from skimage.transform import rescale, resize

        if min(image.shape) < 8:
            raise InvalidDataError(f"image of {image.shape[1]}x{image.shape[0]} px is too small")
        factor, _ = model_scale(self.card, pixel_size)
        scaled = image
        if abs(factor - 1) > 1e-3:
            scaled = rescale(
                image, factor, order=1, anti_aliasing=factor < 1, preserve_range=True
            ).astype(np.float32)
        prob = predict_image(
            self._fast,
            preprocess(scaled, self.card),
            tile=self.tile,
            overlap=self.overlap,
            tta=self.tta,  # type: ignore[arg-type]
        )
        if prob.shape != image.shape:
            prob = resize(prob, image.shape, order=1, anti_aliasing=factor > 1).astype(np.float32)
        return prob, factor


# --------------------------------------------------------------------------------------------
# writing one micrograph's outputs
# --------------------------------------------------------------------------------------------


def output_paths(out_dir: Path, stem: str) -> dict[str, Path]:
    """The files written for micrograph `stem` in `out_dir`."""
    return {
        "mask": out_dir / f"{stem}_mask.png",
        "probability": out_dir / f"{stem}_prob.tif",
        "overlay": out_dir / f"{stem}_overlay.png",
        "particles": out_dir / f"{stem}_particles.csv",
    }


def write_outputs(result: SegmentResult, out_dir: Path, stem: str) -> dict[str, Path]:
    """Write the mask, probability map, overlay and particle table of one micrograph.

    Each file is written atomically (a killed run leaves whole files or none).
    """
    from nanoseg.report import overlay_image

    paths = output_paths(out_dir, stem)
    write_mask(paths["mask"], result.mask, result.pixel_size)
    write_tiff(paths["probability"], result.probability.astype(np.float32), result.pixel_size)
    write_png(
        paths["overlay"],
        overlay_image(result.image, result.mask, result.pixel_size),
        result.pixel_size,
    )
    table = result.particles.astype(object).where(result.particles.notna(), "")
    write_csv(paths["particles"], table.to_dict("records"), list(PARTICLE_COLUMNS))
    return paths
