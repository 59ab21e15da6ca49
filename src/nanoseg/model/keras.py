"""Import the paper's released Keras 2 HDF5 weight files with h5py (no TensorFlow)."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nanoseg.errors import CorruptFileError, InvalidDataError, NanosegError
from nanoseg.io import sha256_file
from nanoseg.model.unet import UNet, UNetConfig

# --------------------------------------------------------------------------------------------
# Keras 2 HDF5 import
# --------------------------------------------------------------------------------------------

_CONV_RE = re.compile(r"conv2d_(\d+)")
_BN_RE = re.compile(r"batch_normalization_(\d+)")
_BN_WEIGHTS = ("gamma", "beta", "moving_mean", "moving_variance")


@dataclass
class _KerasLayer:
    name: str
    weights: dict[str, np.ndarray]
    number: int = 0


def _read_keras_layers(path: Path) -> tuple[dict[str, _KerasLayer], dict[str, str]]:
    """Read every layer with weights: (name -> layer, root attributes as strings)."""
    import h5py

    if not path.exists():
        raise CorruptFileError("no such file", path)
    if not path.is_file():
        raise CorruptFileError("not a file", path)
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise CorruptFileError(
            "not an HDF5 file, or truncated (h5py cannot open it)", path
        ) from err
    layers: dict[str, _KerasLayer] = {}
    attrs: dict[str, str] = {}
    try:
        with handle:
            root = handle["model_weights"] if "model_weights" in handle else handle
            for key in ("keras_version", "backend"):
                if key in root.attrs:
                    value = root.attrs[key]
                    attrs[key] = value.decode() if isinstance(value, bytes) else str(value)
            for name, group in root.items():
                if not isinstance(group, h5py.Group):
                    continue
                weights = _read_layer_weights(group)
                if weights:
                    layers[name] = _KerasLayer(name, weights)
    except NanosegError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CorruptFileError(f"unreadable Keras weights ({reason})", path) from err
    if not layers:
        raise InvalidDataError("no layer weights found: not a Keras weights file", path)
    return layers, attrs


def _read_layer_weights(group: Any) -> dict[str, np.ndarray]:
    """Short weight name ('kernel', 'gamma', ...) -> array, the way Keras 2 stores them."""
    import h5py

    names: list[str] = []
    if "weight_names" in group.attrs:
        names = [
            n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs["weight_names"]
        ]
        names = [n for n in names if n in group]
    if not names:  # files without the attribute: every dataset below the group
        found: list[str] = []
        group.visititems(lambda n, obj: found.append(n) if isinstance(obj, h5py.Dataset) else None)
        names = found
    out = {}
    for name in names:
        short = re.sub(r":\d+$", "", name.rsplit("/", 1)[-1])
        out[short] = np.asarray(group[name][()], dtype=np.float32)
    return out


def _numbered(layers: Mapping[str, _KerasLayer], pattern: re.Pattern[str]) -> list[_KerasLayer]:
    """Layers whose name matches `pattern` (``<kind>_<k>``), sorted by k (creation order)."""
    found = []
    for name, layer in layers.items():
        if match := pattern.fullmatch(name):
            found.append(dataclasses.replace(layer, number=int(match.group(1))))
    return sorted(found, key=lambda layer: layer.number)


def _paper_layers(
    layers: Mapping[str, _KerasLayer], path: Path
) -> tuple[list[_KerasLayer], list[_KerasLayer], _KerasLayer]:
    """The file's convolutions and BatchNorms in creation order, and the final layer."""
    convs = _numbered(layers, _CONV_RE)
    norms = _numbered(layers, _BN_RE)
    if "final_layer" in layers:
        final = layers["final_layer"]
    elif convs and convs[-1].weights.get("kernel", np.empty(0)).shape[:2] == (1, 1):
        final = convs.pop()
    else:
        raise InvalidDataError("missing layer final_layer (the 1x1 output convolution)", path)
    if len(convs) != len(norms):
        conv_nums = {layer.number for layer in convs}
        norm_nums = {layer.number for layer in norms}
        missing = [f"batch_normalization_{k}" for k in sorted(conv_nums - norm_nums)]
        missing += [f"conv2d_{k}" for k in sorted(norm_nums - conv_nums)]
        detail = ", ".join(missing) if missing else "numbering differs"
        raise InvalidDataError(
            f"{len(convs)} conv2d but {len(norms)} batch_normalization layers; missing: {detail}",
            path,
        )
    for kind, found in (("conv2d", convs), ("batch_normalization", norms)):
        numbers = {layer.number for layer in found}
        gaps = [f"{kind}_{k}" for k in range(min(numbers, default=1), max(numbers, default=0))]
        gaps = [name for name in gaps if int(name.rsplit("_", 1)[1]) not in numbers]
        if gaps:
            raise InvalidDataError(f"missing layers: {', '.join(gaps)}", path)
    if len(convs) < 5 or (len(convs) - 2) % 3:
        raise InvalidDataError(
            f"{len(convs)} conv2d layers found; the paper's U-Net has 3*depth+2 "
            "(14 for depth 4): layers are missing",
            path,
        )
    return convs, norms, final


def _infer_config(path: Path, convs: Sequence[_KerasLayer], final: _KerasLayer) -> UNetConfig:
    depth = (len(convs) - 2) // 3
    kernels = []
    for layer in [*convs[:depth], final]:
        kernel = layer.weights.get("kernel")
        if kernel is None or kernel.ndim != 4:
            raise InvalidDataError(f"layer {layer.name} has no 4-D kernel", path)
        kernels.append(kernel)
    try:
        return UNetConfig(
            widths=tuple(int(k.shape[3]) for k in kernels[:-1]),
            in_channels=int(kernels[0].shape[2]),
            n_classes=int(kernels[-1].shape[3]),
        )
    except ValueError as err:
        raise InvalidDataError(f"does not describe a U-Net: {err}", path) from err


def load_keras_weights(model: UNet, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a Keras 2 HDF5 weights file of the paper's network into `model` (in place).

    Keras names are matched by creation order (``conv2d_k`` and ``batch_normalization_k``
    sorted by number, so files whose numbering does not start at 1 load too), ``final_layer``
    is the output convolution. Kernels go from HWIO to OIHW; BatchNorm ``gamma``, ``beta``,
    ``moving_mean`` and ``moving_variance`` become ``weight``, ``bias``, ``running_mean`` and
    ``running_var``. Only h5py is used; no TensorFlow, no code from the file.

    Parameters
    ----------
    model : UNet
        A network with BatchNorm (``config.norm == "batch"``) of the file's architecture.
    path : str or os.PathLike
        ``.h5`` file written by Keras 2 ``save_weights`` (or ``save``: ``model_weights`` group).

    Returns
    -------
    dict
        ``source`` (path), ``sha256`` (of the file), ``keras_version`` and ``backend`` (when
        the file records them), ``layers`` (Keras name -> module name).

    Raises
    ------
    CorruptFileError
        Missing file, not an HDF5 file, unreadable datasets.
    InvalidDataError
        Missing layers or weights, shapes that do not fit `model`, non-finite values.
    """
    path = Path(path)
    if model.config.norm != "batch":
        raise ValueError("Keras weights need a UNet with norm='batch'")
    layers, attrs = _read_keras_layers(path)
    convs, norms, final = _paper_layers(layers, path)
    depth = model.config.depth
    if len(convs) != 3 * depth + 2:
        raise InvalidDataError(
            f"{len(convs)} conv2d layers, the network has {3 * depth + 2} (depth {depth})", path
        )
    modules = dict(model.named_modules())
    keras_names = model.keras_layer_names()
    mapping: dict[str, str] = {}
    new_state: dict[str, torch.Tensor] = {}
    for k, (conv, norm) in enumerate(zip(convs, norms, strict=True), start=1):
        conv_module = keras_names[f"conv2d_{k}"]
        norm_module = keras_names[f"batch_normalization_{k}"]
        _take_conv(conv, modules[conv_module], conv_module, new_state, path)
        _take_norm(norm, modules[norm_module], norm_module, new_state, path)
        mapping[conv.name] = conv_module
        mapping[norm.name] = norm_module
    _take_conv(final, model.final, "final", new_state, path)
    mapping[final.name] = "final"
    state = model.state_dict()
    with torch.no_grad():
        for key, value in new_state.items():
            state[key].copy_(value)
    return {
        "source": str(path),
        "sha256": sha256_file(path),
        **attrs,
        "layers": mapping,
    }


def _take_conv(
    layer: _KerasLayer,
    module: nn.Module,
    name: str,
    out: dict[str, torch.Tensor],
    path: Path,
) -> None:
    assert isinstance(module, nn.Conv2d)
    weight = module.weight
    expected = (weight.shape[2], weight.shape[3], weight.shape[1], weight.shape[0])  # HWIO
    kernel = _weight(layer, "kernel", expected, path)
    bias = _weight(layer, "bias", (weight.shape[0],), path)
    out[f"{name}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
    out[f"{name}.bias"] = torch.from_numpy(bias)


def _take_norm(
    layer: _KerasLayer,
    module: nn.Module,
    name: str,
    out: dict[str, torch.Tensor],
    path: Path,
) -> None:
    assert isinstance(module, nn.BatchNorm2d)
    shape = (module.num_features,)
    values = {key: _weight(layer, key, shape, path) for key in _BN_WEIGHTS}
    if (values["moving_variance"] < 0).any():
        raise InvalidDataError(f"layer {layer.name}: negative moving_variance", path)
    out[f"{name}.weight"] = torch.from_numpy(values["gamma"])
    out[f"{name}.bias"] = torch.from_numpy(values["beta"])
    out[f"{name}.running_mean"] = torch.from_numpy(values["moving_mean"])
    out[f"{name}.running_var"] = torch.from_numpy(values["moving_variance"])


def _weight(layer: _KerasLayer, key: str, shape: tuple[int, ...], path: Path) -> np.ndarray:
    if key not in layer.weights:
        raise InvalidDataError(f"layer {layer.name} has no {key} weights", path)
    value = layer.weights[key]
    if value.shape != tuple(shape):
        raise InvalidDataError(
            f"layer {layer.name}: {key} has shape {value.shape}, the U-Net needs {tuple(shape)}",
            path,
        )
    if not np.isfinite(value).all():
        raise InvalidDataError(f"layer {layer.name}: {key} holds NaN or infinite values", path)
    return value


def import_keras(path: str | os.PathLike[str]) -> tuple[UNet, dict[str, Any]]:
    """Build the network a Keras 2 weights file describes and load it (eval mode).

    The widths, input channels and classes are read from the kernel shapes, so the three
    released files of the paper (all widths 4, 8, 16, 32) and other depths or widths load.

    Parameters
    ----------
    path : str or os.PathLike
        Keras 2 HDF5 weights file.

    Returns
    -------
    model : UNet
        The network in eval mode.
    info : dict
        As :func:`load_keras_weights`, plus ``config`` (the architecture as a dict).

    Raises
    ------
    CorruptFileError, InvalidDataError
        As :func:`load_keras_weights`.
    """
    path = Path(path)
    layers, _ = _read_keras_layers(path)
    convs, _, final = _paper_layers(layers, path)
    model = UNet(_infer_config(path, convs, final))
    info = load_keras_weights(model, path)
    info["config"] = model.config.to_dict()
    model.eval()
    return model, info
