"""What the network looks at: activation maps of chosen U-Net layers, as in the paper's Fig. 6.

The paper shows the activations after an early convolution (they separate particle texture
from carbon) and after the first concatenation of the decoder (they light up atomic
columns). :func:`explain` runs a model once on a micrograph, prepared exactly as ``segment``
prepares it (resampled to the model's pixel-size range, median filtered and normalised as in
training), records the outputs of the requested layers with forward hooks
(:meth:`nanoseg.model.UNet.activations`), and writes one PNG per layer (a grid of its
channels, each stretched on its own) and ``probability.png`` (the input beside the particle
probability). Large micrographs are explained on a centred crop (512 px by default) of the
prepared image: a layer of the deepest level has a 64th of its pixels, and a whole 4k
micrograph would give unreadable maps.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nanoseg.errors import InvalidDataError, NanosegError
from nanoseg.io import Micrograph
from nanoseg.model import UNet

__all__ = ["DEFAULT_CROP", "DEFAULT_LAYERS", "explain", "layer_file_name"]

#: The paper's two layers: an early convolution and the first concatenation of the decoder.
DEFAULT_LAYERS = (UNet.EARLY_CONV, UNet.FIRST_CONCAT)
#: Side of the centred crop of the prepared image that is explained, px.
DEFAULT_CROP = 512


def layer_file_name(layer: str) -> str:
    """The PNG name of a layer's activation grid: ``encoder.0.conv`` -> ``encoder.0.conv.png``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", layer) + ".png"


def _check_layers(model: UNet, layers: Sequence[str]) -> list[str]:
    """The requested layer names, checked; NanosegError listing the valid ones otherwise."""
    known = set(model.activation_layers()) | set(model.keras_layer_names())
    known |= {name for name, _ in model.named_modules() if name}
    wanted = list(dict.fromkeys(layers))
    if not wanted:
        raise NanosegError("no layer requested")
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise NanosegError(
            f"unknown layer '{unknown[0]}'; layers: {', '.join(model.activation_layers())}"
        )
    return wanted


def _centre_crop(image: np.ndarray, side: int, multiple: int) -> tuple[np.ndarray, tuple]:
    """The centred crop of at most `side` px whose sides are multiples of `multiple`, and its
    box ``(row, col, height, width)``."""
    height, width = (min(n, side) // multiple * multiple for n in image.shape)
    if not height or not width:
        raise InvalidDataError(
            f"image of {image.shape[1]}x{image.shape[0]} px (after resampling) is smaller than "
            f"the network's {multiple} px step"
        )
    row, col = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
    return image[row : row + height, col : col + width], (row, col, height, width)


def explain(
    model: str | os.PathLike[str],
    image: str | os.PathLike[str] | np.ndarray | Micrograph,
    out_dir: str | os.PathLike[str],
    *,
    layers: Sequence[str] | None = None,
    pixel_size: float | None = None,
    crop: int = DEFAULT_CROP,
) -> dict[str, Any]:
    """Write activation grids of `layers` and the probability map of one micrograph.

    Parameters
    ----------
    model : str or os.PathLike
        ``"builtin"`` or a model folder (as for :meth:`nanoseg.segment.Segmenter.load`).
    image : path, numpy.ndarray or Micrograph
        The micrograph (any format :func:`nanoseg.read_micrograph` reads, or a 2-D array).
    out_dir : str or os.PathLike
        Output folder (created).
    layers : sequence of str, optional
        Module names (:meth:`nanoseg.model.UNet.activation_layers`) or the paper's Keras
        names; default :data:`DEFAULT_LAYERS`.
    pixel_size : float, optional
        nm per pixel; overrides the file's. Without one the scale is chosen from the image
        as ``segment`` does.
    crop : int
        Side of the centred crop of the prepared image that is explained, px.

    Returns
    -------
    dict
        ``files`` (layer name or ``"probability"`` -> path of its PNG), ``shapes`` (layer ->
        ``(channels, height, width)``), ``crop`` (``row, col, height, width`` in the prepared
        image), ``prepared_shape`` (its ``(height, width)``), ``image_shape`` (the
        micrograph's), ``scale_factor`` (resampling applied, > 1 enlarges), ``pixel_size``
        (nm, or None) and ``cropped`` (True when only part of the image was explained).

    Raises
    ------
    NanosegError
        An unknown layer (the message lists the available ones), a bad model or image, an
        unwritable output folder.
    """
    from skimage.transform import rescale

    from nanoseg.io import check_output_dir
    from nanoseg.predict import model_scale, preprocess
    from nanoseg.report import activation_figure, probability_figure
    from nanoseg.segment import Segmenter, as_micrograph, resolve_pixel_size

    if not crop >= 16:
        raise NanosegError(f"--crop must be at least 16 px, not {crop}")
    segmenter = Segmenter.load(model)
    network = segmenter.model
    wanted = _check_layers(network, DEFAULT_LAYERS if layers is None else layers)
    mic = as_micrograph(image)
    if not np.isfinite(mic.data).all():
        raise InvalidDataError("the image contains NaN or infinite values", mic.path)
    size, _ = resolve_pixel_size(
        mic, pixel_size, "the scale is chosen from the image, as segment does"
    )
    try:
        if size is not None:
            factor = model_scale(segmenter.card, size)[0]
        else:
            factor = segmenter.auto_scale(mic.data)[1]
        scaled = mic.data
        if abs(factor - 1) > 1e-3:
            scaled = rescale(
                mic.data, factor, order=1, anti_aliasing=factor < 1, preserve_range=True
            ).astype(np.float32)
        prepared = preprocess(scaled, segmenter.card)
        window, box = _centre_crop(prepared, crop, 2**network.config.depth)
    except InvalidDataError as error:
        raise InvalidDataError(error.problem, mic.path) from None
    out = check_output_dir(out_dir, [mic.path] if mic.path is not None else ())
    x = torch.from_numpy(np.ascontiguousarray(window))[None, None]
    maps = network.activations(x, [*wanted, "final"])
    probability = torch.softmax(maps["final"], dim=1)[0, 1].numpy()
    cropped = box[2:] != prepared.shape
    where = (
        f"centred {box[3]}x{box[2]} px crop of the {prepared.shape[1]}x{prepared.shape[0]} px "
        f"prepared image" if cropped else f"whole {box[3]}x{box[2]} px prepared image"
    )  # fmt: skip
    if abs(factor - 1) > 1e-3:
        where += f" (micrograph resampled x{factor:.3g})"
    descriptions = network.activation_layers()
    keras = network.keras_layer_names()
    files: dict[str, Path] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    for name in wanted:
        values = maps[name][0].numpy()
        shapes[name] = tuple(values.shape)
        about = descriptions.get(keras.get(name, name), "")
        title = f"{name}{': ' + about if about else ''}\n{len(values)} maps, {where}"
        files[name] = activation_figure(values, out / layer_file_name(name), title=title)
    files["probability"] = probability_figure(
        window, probability, out / "probability.png", title=f"{where}"
    )
    return {
        "files": files,
        "shapes": shapes,
        "crop": box,
        "prepared_shape": prepared.shape,
        "image_shape": mic.data.shape,
        "scale_factor": float(factor),
        "pixel_size": size,
        "cropped": bool(cropped),
        "where": where,
    }
