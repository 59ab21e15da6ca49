"""Segment whole micrographs: the Python API (:class:`Segmenter`) and the per-file outputs.

``Segmenter.load()`` gives the bundled model; calling it on a file or an array returns a
:class:`SegmentResult` with the particle mask, the probability map and the particle table.
The steps, in order: read the file, resample to the model's pixel-size range (when the pixel
size is known), median filter and normalise as in training, predict over blended tiles,
resample the probability back, threshold, drop specks below the minimum area, move each
particle's outline to the image's half-contrast edge (:mod:`nanoseg.refine`; ``edge="network"``
keeps the network's outline), measure.
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
from scipy import ndimage

from nanoseg.annotations import remove_annotations
from nanoseg.errors import InvalidDataError, NanosegError
from nanoseg.io import (
    Micrograph,
    read_micrograph,
    write_csv,
    write_mask,
    write_png,
    write_tiff,
)
from nanoseg.measure import (
    EIGHT_CONNECTED,
    PARTICLE_COLUMNS,
    clean_mask,
    interior_diameters,
    measure_particles,
    typical_diameter,
)
from nanoseg.model import UNet, inference_network, load_model
from nanoseg.predict import TTA_MODES, model_scale, predict_image, preprocess
from nanoseg.refine import EDGES, refine_outlines
from nanoseg.runtime import resolve_device

__all__ = [
    "BUILTIN",
    "SegmentResult",
    "Segmenter",
    "as_micrograph",
    "builtin_model_path",
    "output_paths",
    "particle_result",
    "resolve_pixel_size",
    "resolve_precision",
    "without_annotations",
    "write_outputs",
]

#: Name that selects the model shipped inside the package.
BUILTIN = "builtin"
#: Particles smaller than this are dropped when the pixel size is unknown (px).
MIN_AREA_PX_UNKNOWN_SCALE = 12
#: Detections narrower than this fraction of a micrograph's typical particle are dropped.
DEFAULT_MIN_RELATIVE_DIAMETER = 0.2
#: Particle diameters (px) a model without ``particle_px_range`` in its card is trusted on.
DEFAULT_PARTICLE_PX_RANGE = (12.0, 400.0)
#: Without a pixel size, the first network pass sees the image at most this wide (px).
PREVIEW_SIDE = 2048
#: Arithmetic of the network at inference: "auto" picks bfloat16 where the CPU computes it
#: natively (AVX512-BF16 or AMX), else float32; float32 on a GPU.
PRECISIONS = ("auto", "float32", "bfloat16")


def resolve_precision(precision: str, device: torch.device | None = None) -> str:
    """The arithmetic ``"auto"`` stands for on this machine.

    Parameters
    ----------
    precision : {"auto", "float32", "bfloat16"}
    device : torch.device, optional
        Where the network runs (default the CPU).

    Returns
    -------
    str
        ``"float32"`` or ``"bfloat16"``. On a CPU, ``"auto"`` gives bfloat16 only where oneDNN
        runs it natively: there this network is 2-3x faster and its probabilities differ from
        float32 by a few hundredths at most; elsewhere bfloat16 is emulated and slower. On a
        GPU it gives float32, which was as fast as bfloat16 there (BENCHMARKS.md): the
        network's few channels leave the GPU waiting on memory, not arithmetic.
    """
    if precision not in PRECISIONS:
        raise NanosegError(f"--precision must be one of {', '.join(PRECISIONS)}, not '{precision}'")
    if precision != "auto":
        return precision
    if device is not None and device.type != "cpu":
        return "float32"
    native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return "bfloat16" if native else "float32"


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
    scale_estimate_px : float or None
        Without a pixel size: the typical particle diameter estimated from the image, px.
    scale_method : str
        How the model's input scale was chosen (``"pixel size"``, ``"network detections"``,
        ``"LoG scale space"``, ``"none found"``).
    annotation_px : int
        Pixels of scale bars and text burned into the image, left out of the segmentation
        (:mod:`nanoseg.annotations`).
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
    scale_estimate_px: float | None = None
    scale_method: str = ""
    annotation_px: int = 0

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
            "scale_estimate_px": (
                None if self.scale_estimate_px is None else round(self.scale_estimate_px, 2)
            ),
            "scale_method": self.scale_method,
            "threshold": self.threshold,
            "annotation_px": self.annotation_px,
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
    mic: Micrograph, pixel_size: float | str | None, without: str
) -> tuple[float | None, str]:
    """The pixel size to use (nm) and where it came from: ``"given"``, ``"file"``,
    ``"unknown"`` (warns, :class:`NoPixelSizeWarning`, with `without`: what happens then) or
    ``"auto"`` (``pixel_size="auto"``: none, even if the file has one).

    Raises
    ------
    InvalidDataError
        A given pixel size that is not positive.
    """
    if isinstance(pixel_size, str):
        if pixel_size != "auto":
            raise InvalidDataError(f"pixel size must be a number or 'auto', not '{pixel_size}'")
        return None, "auto"
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


def without_annotations(mic: Micrograph, mask: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """The image a segmenter works on, and the annotations left out of it.

    Parameters
    ----------
    mic : Micrograph
    mask : bool
        Find the scale bars and text burned into `mic` (and its pixels drawn in colour) and
        fill them with the carbon's grey (:func:`nanoseg.annotations.remove_annotations`);
        False keeps every pixel.

    Returns
    -------
    data : numpy.ndarray
        float32 ``(height, width)``: ``mic.data`` itself when nothing was left out.
    annotations : numpy.ndarray or None
        bool ``(height, width)``, or None when nothing was left out.
    """
    if not mask:
        return mic.data, None
    return remove_annotations(mic.data, mic.coloured)


def particle_result(
    mic: Micrograph,
    probability: np.ndarray,
    threshold: float,
    pixel_size: float | None,
    pixel_size_source: str,
    scale_factor: float,
    min_area_nm2: float | None,
    edge_level: float | None = None,
    min_relative_diameter: float = 0.0,
    annotations: np.ndarray | None = None,
    data: np.ndarray | None = None,
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
    edge_level : float or None
        If given, each particle's outline is moved to where its contrast falls to this
        fraction (:func:`nanoseg.refine.refine_outlines`); None keeps the thresholded outline.
    min_relative_diameter : float
        Particles (clear of the border) narrower than this fraction of the micrograph's
        typical particle are dropped too (:func:`nanoseg.measure.clean_mask`); 0 keeps them.
    annotations, data : numpy.ndarray, optional
        What :func:`without_annotations` returns: the scale bars and text burned into the
        image (bool ``(height, width)``), and the image with them filled with the carbon's
        grey, which the outline step measures contrast on (default ``mic.data``). No particle
        is reported on an annotation, and particles next to one are marked ``touches_border``
        (partly hidden, like those cut by the image edge).
    """
    data = mic.data if data is None else data
    annotation_px = 0 if annotations is None else int(np.count_nonzero(annotations))
    if annotation_px:
        probability = np.where(annotations, np.float32(0), probability)
    if pixel_size is not None:
        min_area_px = (1.0 if min_area_nm2 is None else min_area_nm2) / pixel_size**2
    else:
        min_area_px = MIN_AREA_PX_UNKNOWN_SCALE
    mask = clean_mask(probability > threshold, min_area_px, min_relative_diameter)
    if edge_level is not None:
        # As many threads as the network uses: one setting decides how much of the CPU a
        # micrograph takes (batch workers set it to 1).
        threads = torch.get_num_threads()
        mask = refine_outlines(data, mask, edge_level, min_area_px=min_area_px, threads=threads)
    particles = measure_particles(mask, probability, pixel_size)
    if annotation_px and len(particles):
        # A particle partly hidden by a label is cut as one at the image edge is.
        labels, _ = ndimage.label(mask, structure=EIGHT_CONNECTED)
        cut = np.unique(labels[ndimage.binary_dilation(annotations, EIGHT_CONNECTED)])
        particles.loc[particles["id"].isin(cut[cut > 0]), "touches_border"] = True
    return SegmentResult(
        mask=mask,
        probability=probability,
        particles=particles,
        pixel_size=pixel_size,
        pixel_size_source=pixel_size_source,
        scale_factor=scale_factor,
        threshold=threshold,
        image=mic.data,
        source=mic.path,
        annotation_px=annotation_px,
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
    min_relative_diameter : float
        Detections clear of the image border whose equivalent diameter is below this fraction
        of the micrograph's typical particle diameter (the smaller of the area-weighted and the
        plain median, :func:`nanoseg.measure.clean_mask`) are dropped: the bundled model was
        trained on scenes whose particles are all at least half the typical size, and its
        detections far below that are specks of carbon or noise. 0 keeps every detection (for
        samples with very small particles beside large ones).
    tile, overlap : int
        Tiling of large micrographs (see :func:`nanoseg.predict.predict_image`).
    precision : {"auto", "float32", "bfloat16"}
        Arithmetic of the network (see :func:`resolve_precision`); the resolved value is in
        :attr:`settings` and so in each batch run's log.
    device : str
        Where the network runs: ``"auto"`` (a CUDA GPU when torch sees one, else the CPU),
        ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (:func:`nanoseg.runtime.resolve_device`). The
        steps around the network run on the CPU either way.
    edge : {"contrast", "network"}
        Where particle outlines go: ``"contrast"`` moves each one to the point where the
        particle's contrast against the carbon around it has fallen to `edge_level` (the
        half-contrast edge by default, as particles are drawn and sized by hand; see
        :mod:`nanoseg.refine`); ``"network"`` keeps the thresholded probability map's outline,
        which follows the simulated particles' geometric footprint the model was trained on.
    edge_level : float
        Fraction of the contrast, 0-1 exclusive, at which ``edge="contrast"`` places outlines.
    mask_annotations : bool
        Find scale bars and text burned into exported images (:mod:`nanoseg.annotations`),
        segment the image with them filled with the carbon's grey, and report no particle
        there. False segments the pixels as they are.

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
        min_relative_diameter: float = DEFAULT_MIN_RELATIVE_DIAMETER,
        tile: int = 2048,
        overlap: int = 32,
        precision: str = "auto",
        edge: str = "contrast",
        edge_level: float = 0.5,
        mask_annotations: bool = True,
        device: str = "auto",
    ) -> None:
        if tta not in TTA_MODES:
            raise NanosegError(f"--tta must be one of {', '.join(TTA_MODES)}, not '{tta}'")
        if threshold is not None and not 0 < threshold < 1:
            raise NanosegError(f"--threshold must be between 0 and 1, not {threshold}")
        if min_area_nm2 is not None and min_area_nm2 < 0:
            raise NanosegError(f"--min-area must not be negative, not {min_area_nm2}")
        if not 0 <= min_relative_diameter < 1:
            raise NanosegError(
                f"--min-relative-diameter must be in [0, 1), not {min_relative_diameter}"
            )
        if edge not in EDGES:
            raise NanosegError(f"--edge must be one of {', '.join(EDGES)}, not '{edge}'")
        if not 0 < edge_level < 1:
            raise NanosegError(f"--edge-level must be between 0 and 1, not {edge_level}")
        if overlap < 1 or tile < 1:
            raise NanosegError(f"tile ({tile}) and overlap ({overlap}) must be positive")
        self.device = resolve_device(device)
        self.model = model.eval().to(self.device)
        self.precision = resolve_precision(precision, self.device)
        # The same maps with fewer passes over memory (nanoseg.model.inference).
        self._fast = inference_network(self.model, getattr(torch, self.precision))
        self.card = card
        self.tta = tta
        self.threshold = float(card.get("threshold") or 0.5) if threshold is None else threshold
        self.min_area_nm2 = min_area_nm2
        self.min_relative_diameter = min_relative_diameter
        self.tile = tile
        self.overlap = overlap
        self.edge = edge
        self.edge_level = edge_level
        self.mask_annotations = mask_annotations

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
            "min_relative_diameter": self.min_relative_diameter,
            "tile": self.tile,
            "overlap": self.overlap,
            "precision": self.precision,
            "device": self.device.type,
            "edge": self.edge,
            "edge_level": self._refine_level,
            "mask_annotations": self.mask_annotations,
        }

    def __call__(
        self,
        image: str | os.PathLike[str] | np.ndarray | Micrograph,
        pixel_size: float | str | None = None,
    ) -> SegmentResult:
        """Segment one micrograph.

        Parameters
        ----------
        image : path, numpy.ndarray or Micrograph
            A micrograph file (any format :func:`nanoseg.read_micrograph` reads), a 2-D array,
            or a :class:`Micrograph`.
        pixel_size : float or "auto", optional
            nm per pixel; overrides the file's. Without one (or with ``"auto"``, which also
            ignores the file's), the particle scale is estimated from the image (see
            :meth:`auto_scale`) and sizes are measured in px.

        Returns
        -------
        SegmentResult
        """
        mic = as_micrograph(image)
        size, source = resolve_pixel_size(
            mic,
            pixel_size,
            "particle scale estimated from the image, sizes in px (give --pixel-size for nm)",
        )
        data, annotations = without_annotations(mic, self.mask_annotations)
        try:
            if size is None:
                probability, factor, estimate, method = self.auto_scale(data)
            else:
                probability, factor = self._probability(data, model_scale(self.card, size)[0])
                estimate, method = None, "pixel size"
        except InvalidDataError as error:
            raise InvalidDataError(str(error.args[0]), mic.path) from None
        result = particle_result(
            mic,
            probability,
            self.threshold,
            size,
            source,
            factor,
            self.min_area_nm2,
            self._refine_level,
            self.min_relative_diameter,
            annotations,
            data,
        )
        result.scale_estimate_px, result.scale_method = estimate, method
        return result

    @property
    def _refine_level(self) -> float | None:
        """The contrast level outlines are moved to, or None when the network's are kept."""
        return self.edge_level if self.edge == "contrast" else None

    @property
    def particle_px_range(self) -> tuple[float, float]:
        """Particle diameters (px of the model's input) the model was trained on."""
        low, high = self.card.get("particle_px_range") or DEFAULT_PARTICLE_PX_RANGE
        return float(low), float(high)

    def auto_scale(self, image: np.ndarray) -> tuple[np.ndarray, float, float | None, str]:
        """Probability map at a scale chosen from the image itself (no pixel size).

        A first pass of the network (on a copy at most :data:`PREVIEW_SIDE` px wide) finds the
        particles; the median diameter of those clear of the border is the particle scale.
        When the network finds fewer than three, a scale-normalised LoG blob analysis
        (:func:`nanoseg.scale.estimate_scale`) gives it instead. If that diameter lies outside
        the range the model was trained on, the image is resampled to bring it to the nearest
        end of the range and segmented again.

        Parameters
        ----------
        image : numpy.ndarray
            float32 ``(height, width)``.

        Returns
        -------
        probability : numpy.ndarray
            float32 ``(height, width)``.
        factor : float
            Resampling applied for the model (> 1 enlarges).
        diameter : float or None
            Estimated typical particle diameter, px of `image`.
        method : str
            How the scale was estimated.
        """
        from nanoseg.scale import estimate_scale

        preview = min(1.0, PREVIEW_SIDE / max(image.shape))
        probability, _ = self._probability(image, preview)
        sizes = interior_diameters(clean_mask(probability > self.threshold, 4))
        if len(sizes) >= 3:
            # The map is at the image's size, so this is in px of the image.
            diameter: float | None = typical_diameter(sizes)
            method = "network detections"
        else:
            try:
                diameter, method = estimate_scale(image).diameter_px, "LoG scale space"
            except InvalidDataError:
                diameter, method = None, "none found"
        low, high = self.particle_px_range
        factor = 1.0 if diameter is None else min(max(diameter, low), high) / diameter
        if abs(factor - preview) > 1e-3:
            probability, _ = self._probability(image, factor)
        return probability, factor, diameter, method

    def _probability(self, image: np.ndarray, factor: float) -> tuple[np.ndarray, float]:
        """The model's probability map of `image` resampled by `factor`, at `image`'s size."""
        from skimage.transform import rescale, resize

        if min(image.shape) < 8:
            raise InvalidDataError(f"image of {image.shape[1]}x{image.shape[0]} px is too small")
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
    from nanoseg.report import OVERLAY_PALETTE, overlay_indexed

    paths = output_paths(out_dir, stem)
    write_mask(paths["mask"], result.mask, result.pixel_size)
    write_tiff(paths["probability"], result.probability.astype(np.float32), result.pixel_size)
    write_png(
        paths["overlay"],
        overlay_indexed(result.image, result.mask, result.pixel_size),
        result.pixel_size,
        palette=OVERLAY_PALETTE,
    )
    table = result.particles.astype(object).where(result.particles.notna(), "")
    write_csv(paths["particles"], table.to_dict("records"), list(PARTICLE_COLUMNS))
    return paths
