"""The U-Net of Groschner, Choi & Scott, its Keras 2 weight import, and pickle-free model files.

The paper's network (released code, 65,002 trainable parameters) for one-channel 512x512 tiles:

=========  ===========================================================================
part       layers (widths 4, 8, 16, 32 by default)
=========  ===========================================================================
encoder    per level: 3x3 conv -> BatchNorm; skip = ReLU(BN); 2x2 max-pool of the BN
           output *before* the ReLU (the released code's quirk, ``pool_before_relu``)
centre     two times 3x3 conv (widths[-1]) -> BatchNorm -> ReLU
decoder    per level, deepest first: nearest upsample x2 -> concatenate [skip, upsampled]
           -> 3x3 conv -> BN -> ReLU -> dropout 0.2 -> 3x3 conv -> BN -> ReLU
final      1x1 conv to ``n_classes`` maps (0 background, 1 particle); softmax by callers
=========  ===========================================================================

Module names are stable because other code hooks them (:meth:`UNet.activation_layers` lists
them): ``encoder.<i>.{conv,norm,act,pool}``, ``centre.<j>.{conv,norm,act}``,
``decoder.<i>.{up,concat,conv1,norm1,act1,dropout,conv2,norm2,act2}`` and ``final``; level
``i = 0`` is the full-resolution encoder level and the *deepest* decoder level (decoder levels
run in data-flow order, like Keras's ``concatenate_1`` .. ``concatenate_4``).

Model files hold no pickle: a folder ``MODEL/`` with ``model.safetensors`` (the state dict) and
``model.json`` (the model card: architecture, preprocessing, threshold, provenance, metrics).
See :func:`save_model` and :func:`load_model`. :func:`import_keras` reads the paper's released
Keras 2 HDF5 weight files with h5py (no TensorFlow).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from nanoseg.errors import CorruptFileError, InvalidDataError, NanosegError

__all__ = [
    "CARD_FORMAT_VERSION",
    "MODEL_CARD_NAME",
    "MODEL_WEIGHTS_NAME",
    "Concat",
    "ConvBlock",
    "DecoderLevel",
    "EncoderLevel",
    "UNet",
    "UNetConfig",
    "count_parameters",
    "import_keras",
    "load_keras_weights",
    "load_model",
    "paper_unet",
    "save_model",
]

#: Version of the model card layout written by :func:`save_model`; :func:`load_model` refuses
#: cards of any other version.
CARD_FORMAT_VERSION = 1
#: File names inside a model folder.
MODEL_WEIGHTS_NAME = "model.safetensors"
MODEL_CARD_NAME = "model.json"

NormKind = Literal["batch", "instance", "group"]
_NORMS = ("batch", "instance", "group")
#: Card keys that :func:`save_model` sets itself (a caller's values for them are replaced).
_RESERVED_CARD_KEYS = ("format_version", "nanoseg_version", "architecture", "weights_sha256")


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of a :class:`UNet`; everything needed to rebuild it, JSON-serialisable.

    Parameters
    ----------
    widths : tuple of int
        Encoder widths, shallowest first. ``depth = len(widths)``; the centre has
        ``widths[-1]`` channels; the decoder levels have the widths reversed.
    in_channels : int
        Channels of the input image (1 for a micrograph).
    n_classes : int
        Output maps (at least 2); channel 0 is background, channel 1 particle.
    norm : {"batch", "instance", "group"}
        Normalisation after every 3x3 convolution. ``"group"`` uses GroupNorm with the largest
        number of groups up to 4 that divides the channel count (4 for widths 4..32).
    dropout : float
        Dropout probability after the first convolution of each decoder level.
    bn_eps : float
        Epsilon of the normalisation layers (the paper: 1e-4).
    bn_momentum : float
        BatchNorm running-statistics momentum, torch convention (0.01 equals Keras's 0.99).
    pool_before_relu : bool
        True (the paper): the max-pool takes the BatchNorm output before the ReLU. False: the
        textbook U-Net, which pools the ReLU output.
    """

    widths: tuple[int, ...] = (4, 8, 16, 32)
    in_channels: int = 1
    n_classes: int = 2
    norm: NormKind = "batch"
    dropout: float = 0.2
    bn_eps: float = 1e-4
    bn_momentum: float = 0.01
    pool_before_relu: bool = True

    def __post_init__(self) -> None:
        widths = self.widths
        if isinstance(widths, str) or not isinstance(widths, Sequence) or len(widths) == 0:
            raise ValueError(f"widths must be a non-empty sequence of ints, not {widths!r}")
        if not all(_is_int(w) and w >= 1 for w in widths):
            raise ValueError(f"widths must be positive ints, not {list(widths)!r}")
        object.__setattr__(self, "widths", tuple(int(w) for w in widths))
        if not (_is_int(self.in_channels) and self.in_channels >= 1):
            raise ValueError(f"in_channels must be a positive int, not {self.in_channels!r}")
        if not (_is_int(self.n_classes) and self.n_classes >= 2):
            raise ValueError(f"n_classes must be an int >= 2, not {self.n_classes!r}")
        if self.norm not in _NORMS:
            raise ValueError(f"norm must be one of {', '.join(_NORMS)}, not {self.norm!r}")
        if not (_is_real(self.dropout) and 0.0 <= self.dropout < 1.0):
            raise ValueError(f"dropout must be a number in [0, 1), not {self.dropout!r}")
        if not (_is_real(self.bn_eps) and 0.0 < self.bn_eps < 1.0):
            raise ValueError(f"bn_eps must be a number in (0, 1), not {self.bn_eps!r}")
        if not (_is_real(self.bn_momentum) and 0.0 < self.bn_momentum <= 1.0):
            raise ValueError(f"bn_momentum must be a number in (0, 1], not {self.bn_momentum!r}")
        if not isinstance(self.pool_before_relu, bool):
            raise ValueError(
                f"pool_before_relu must be true or false, not {self.pool_before_relu!r}"
            )

    @property
    def depth(self) -> int:
        """Number of encoder (and decoder) levels; input sides must be multiples of 2**depth."""
        return len(self.widths)

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as a JSON-ready dict (``widths`` as a list).

        Returns
        -------
        dict
            ``{"name": "unet", "widths": [...], "in_channels": ..., ...}``.
        """
        out: dict[str, Any] = {"name": "unet"}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            out[item.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UNetConfig:
        """Build a configuration from :meth:`to_dict` output (e.g. a model card).

        Missing keys take the defaults; unknown keys are refused so that a card written by a
        newer nanoseg is never silently misread.

        Parameters
        ----------
        data : mapping
            Keys of :class:`UNetConfig`, plus an optional ``"name": "unet"``.

        Returns
        -------
        UNetConfig

        Raises
        ------
        ValueError
            Unknown keys, another network name, or values of the wrong type or range.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"architecture must be a JSON object, not {type(data).__name__}")
        values = dict(data)
        name = values.pop("name", "unet")
        if name != "unet":
            raise ValueError(f"unknown network {name!r} (this nanoseg knows 'unet')")
        known = {item.name for item in dataclasses.fields(cls)}
        unknown = sorted(str(key) for key in values if key not in known)
        if unknown:
            raise ValueError(f"unknown architecture keys: {', '.join(unknown)}")
        if "widths" in values and isinstance(values["widths"], list):
            values["widths"] = tuple(values["widths"])
        return cls(**values)


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return (
        isinstance(value, int | float | np.integer | np.floating)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


# --------------------------------------------------------------------------------------------
# network
# --------------------------------------------------------------------------------------------


def _norm_layer(config: UNetConfig, channels: int) -> nn.Module:
    if config.norm == "batch":
        return nn.BatchNorm2d(channels, eps=config.bn_eps, momentum=config.bn_momentum)
    if config.norm == "instance":
        return nn.InstanceNorm2d(channels, eps=config.bn_eps, affine=True)
    groups = max(g for g in range(1, min(4, channels) + 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels, eps=config.bn_eps)


def _conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)


class Concat(nn.Module):
    """Concatenate ``[skip, upsampled]`` along channels (skip first, as in the paper).

    A module of its own so that its output (the input of the decoder level's first
    convolution) can be hooked like any layer.
    """

    def forward(self, skip: torch.Tensor, upsampled: torch.Tensor) -> torch.Tensor:
        """Return ``torch.cat([skip, upsampled], dim=1)``: (N, Cs + Cu, H, W) float32."""
        return torch.cat([skip, upsampled], dim=1)


class ConvBlock(nn.Module):
    """3x3 conv -> normalisation -> ReLU (the centre's layers): ``conv``, ``norm``, ``act``."""

    def __init__(self, config: UNetConfig, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = _conv3x3(in_channels, out_channels)
        self.norm = _norm_layer(config, out_channels)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in, H, W) -> (N, out, H, W)."""
        return self.act(self.norm(self.conv(x)))


class EncoderLevel(nn.Module):
    """One encoder level: ``conv`` -> ``norm``; skip = ``act`` (ReLU); ``pool`` (2x2 max).

    With ``pool_before_relu`` (the paper) the pool takes the normalised output before the
    ReLU, so the next level sees negative values too; otherwise it pools the skip.
    """

    def __init__(self, config: UNetConfig, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.pool_before_relu = config.pool_before_relu
        self.conv = _conv3x3(in_channels, out_channels)
        self.norm = _norm_layer(config, out_channels)
        self.act = nn.ReLU()
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, in, H, W) -> (pooled (N, out, H/2, W/2), skip (N, out, H, W))."""
        normed = self.norm(self.conv(x))
        skip = self.act(normed)
        pooled = self.pool(normed if self.pool_before_relu else skip)
        return pooled, skip


class DecoderLevel(nn.Module):
    """One decoder level: ``up`` -> ``concat`` -> ``conv1/norm1/act1`` -> ``dropout`` ->
    ``conv2/norm2/act2``."""

    def __init__(
        self, config: UNetConfig, in_channels: int, skip_channels: int, out_channels: int
    ) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.concat = Concat()
        self.conv1 = _conv3x3(skip_channels + in_channels, out_channels)
        self.norm1 = _norm_layer(config, out_channels)
        self.act1 = nn.ReLU()
        self.dropout = nn.Dropout(config.dropout)
        self.conv2 = _conv3x3(out_channels, out_channels)
        self.norm2 = _norm_layer(config, out_channels)
        self.act2 = nn.ReLU()

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """x (N, in, H/2, W/2) and skip (N, skip, H, W) -> (N, out, H, W)."""
        y = self.concat(skip, self.up(x))
        y = self.dropout(self.act1(self.norm1(self.conv1(y))))
        return self.act2(self.norm2(self.conv2(y)))


class UNet(nn.Module):
    """The paper's U-Net, built from a :class:`UNetConfig`.

    Parameters
    ----------
    config : UNetConfig, optional
        Architecture; the default is the paper's network (:func:`paper_unet`).

    Attributes
    ----------
    config : UNetConfig
    encoder : torch.nn.ModuleList of EncoderLevel
        ``encoder[0]`` works at full resolution.
    centre : torch.nn.Sequential of ConvBlock
        Two blocks at 1/2**depth resolution.
    decoder : torch.nn.ModuleList of DecoderLevel
        Data-flow order: ``decoder[0]`` is the deepest level, ``decoder[-1]`` full resolution.
    final : torch.nn.Conv2d
        1x1 convolution to the class logits.
    """

    #: The early convolution whose activations separate particle texture from carbon (paper).
    EARLY_CONV = "encoder.0.conv"

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config if config is not None else UNetConfig()
        widths = config.widths
        self.encoder = nn.ModuleList()
        in_channels = config.in_channels
        for width in widths:
            self.encoder.append(EncoderLevel(config, in_channels, width))
            in_channels = width
        self.centre = nn.Sequential(
            ConvBlock(config, widths[-1], widths[-1]), ConvBlock(config, widths[-1], widths[-1])
        )
        self.decoder = nn.ModuleList()
        in_channels = widths[-1]
        for width in reversed(widths):
            self.decoder.append(DecoderLevel(config, in_channels, width, width))
            in_channels = width
        self.final = nn.Conv2d(widths[0], config.n_classes, kernel_size=1)

    @property
    def first_concat(self) -> str:
        """Name of the first concatenation in data-flow order (Keras ``concatenate_1``).

        The paper's Fig. 6 shows activations "from the first concatenation layer"; this is the
        deepest decoder level's :class:`Concat` (``decoder.0.concat``).
        """
        return "decoder.0.concat"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Compute class logits.

        Parameters
        ----------
        x : torch.Tensor
            (N, in_channels, H, W) float32; H and W multiples of ``2**depth`` (16 for the paper).

        Returns
        -------
        torch.Tensor
            (N, n_classes, H, W) float32 logits; ``softmax(dim=1)`` gives the class
            probabilities (channel 1: particle).
        """
        self._check_input(x)
        skips = []
        for level in self.encoder:
            x, skip = level(x)
            skips.append(skip)
        x = self.centre(x)
        for level, skip in zip(self.decoder, reversed(skips), strict=True):
            x = level(x, skip)
        return self.final(x)

    def _check_input(self, x: torch.Tensor) -> None:
        step = 2**self.config.depth
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"expected input (N, {self.config.in_channels}, H, W), got {tuple(x.shape)}"
            )
        if x.shape[2] % step or x.shape[3] % step:
            raise ValueError(
                f"input height and width must be multiples of {step}, got {tuple(x.shape[2:])}"
            )

    def predict_proba(self, x: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """Particle probability (softmax channel 1), in eval mode and without gradients.

        The module is switched to eval mode for the call and back to its previous mode after.

        Parameters
        ----------
        x : torch.Tensor or numpy.ndarray
            (N, in_channels, H, W) float32, as for :meth:`forward`.

        Returns
        -------
        torch.Tensor or numpy.ndarray
            (N, H, W) float32 in [0, 1], the same kind as `x`.
        """
        as_numpy = isinstance(x, np.ndarray)
        param = next(self.parameters())
        tensor = torch.as_tensor(x, dtype=param.dtype, device=param.device)
        with _eval_mode(self), torch.no_grad():
            proba = torch.softmax(self(tensor), dim=1)[:, 1]
        return proba.cpu().numpy() if as_numpy else proba

    # ---------------------------------------------------------------- layers and activations

    def activation_layers(self) -> dict[str, str]:
        """Layers whose outputs can be asked for with :meth:`activations` (or hooked).

        Returns
        -------
        dict of str to str
            Module name -> one-line description, in data-flow order. Keras names of the
            paper's network (``concatenate_1``, ``conv2d_1``...) are accepted too, see
            :meth:`keras_layer_names`.
        """
        cfg = self.config
        out: dict[str, str] = {}
        for i, width in enumerate(cfg.widths):
            scale = f"1/{2**i}" if i else "full"
            out[f"encoder.{i}.conv"] = f"encoder level {i}: 3x3 conv, {width} maps, {scale} res"
            pooled = " (what the pool takes)" if cfg.pool_before_relu else ""
            out[f"encoder.{i}.norm"] = f"encoder level {i}: normalised conv output{pooled}"
            out[f"encoder.{i}.act"] = f"encoder level {i}: ReLU, the skip connection"
        centre = cfg.widths[-1]
        for j in range(2):
            out[f"centre.{j}.conv"] = f"centre block {j}: 3x3 conv, {centre} maps"
            out[f"centre.{j}.act"] = f"centre block {j}: ReLU output"
        for i, width in enumerate(reversed(cfg.widths)):
            level = cfg.depth - 1 - i
            scale = f"1/{2**level}" if level else "full"
            what = "first concatenation, " if i == 0 else ""
            out[f"decoder.{i}.concat"] = (
                f"decoder level {i}: {what}[skip, upsampled], {2 * width} maps, {scale} res"
            )
            out[f"decoder.{i}.conv1"] = f"decoder level {i}: first 3x3 conv, {width} maps"
            out[f"decoder.{i}.act1"] = f"decoder level {i}: ReLU after the first conv"
            out[f"decoder.{i}.act2"] = f"decoder level {i}: ReLU output of the level"
        out["final"] = f"final 1x1 conv: {cfg.n_classes} class logits"
        return out

    def keras_layer_names(self) -> dict[str, str]:
        """Keras layer name in the paper's code -> module name here.

        Returns
        -------
        dict of str to str
            ``conv2d_k``, ``batch_normalization_k``, ``activation_k``, ``max_pooling2d_i``,
            ``up_sampling2d_i``, ``concatenate_i``, ``dropout_i`` and ``final_layer``, numbered
            the way Keras 2 numbered them when the network was built once.
        """
        depth = self.config.depth
        names: dict[str, str] = {}

        def add(k: int, module: str, suffix: str = "") -> None:
            names[f"conv2d_{k}"] = f"{module}.conv{suffix}"
            names[f"batch_normalization_{k}"] = f"{module}.norm{suffix}"
            names[f"activation_{k}"] = f"{module}.act{suffix}"

        for i in range(depth):
            add(i + 1, f"encoder.{i}")
            names[f"max_pooling2d_{i + 1}"] = f"encoder.{i}.pool"
        for j in range(2):
            add(depth + 1 + j, f"centre.{j}")
        for i in range(depth):
            add(depth + 3 + 2 * i, f"decoder.{i}", "1")
            add(depth + 4 + 2 * i, f"decoder.{i}", "2")
            names[f"up_sampling2d_{i + 1}"] = f"decoder.{i}.up"
            names[f"concatenate_{i + 1}"] = f"decoder.{i}.concat"
            names[f"dropout_{i + 1}"] = f"decoder.{i}.dropout"
        names["final_layer"] = "final"
        return names

    def activations(
        self, x: torch.Tensor, layers: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Run the network once (eval mode, no gradients) and return the outputs of `layers`.

        Parameters
        ----------
        x : torch.Tensor
            (N, in_channels, H, W) float32.
        layers : sequence of str, optional
            Module names (see :meth:`activation_layers`; any submodule name works) or Keras
            names of the paper's network; all of :meth:`activation_layers` by default.

        Returns
        -------
        dict of str to torch.Tensor
            Requested name -> (N, C, h, w) float32 output of that layer (for an encoder level's
            ``pool``: the pooled map).

        Raises
        ------
        KeyError
            A name that is not a layer of this network.
        """
        requested = list(self.activation_layers() if layers is None else layers)
        modules = dict(self.named_modules())
        keras = self.keras_layer_names()
        targets = {}
        for name in requested:
            module_name = keras.get(name, name)
            if module_name not in modules or module_name == "":
                raise KeyError(f"no layer named {name!r}; see UNet.activation_layers()")
            targets[name] = modules[module_name]
        captured: dict[str, torch.Tensor] = {}
        handles = []
        for name, module in targets.items():

            def hook(_m: nn.Module, _i: Any, output: Any, name: str = name) -> None:
                captured[name] = output.detach()

            handles.append(module.register_forward_hook(hook))
        try:
            with _eval_mode(self), torch.no_grad():
                self(x)
        finally:
            for handle in handles:
                handle.remove()
        return {name: captured[name] for name in requested}


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def paper_unet() -> UNet:
    """Return the paper's network (widths 4, 8, 16, 32; 65,002 trainable parameters).

    Returns
    -------
    UNet
        Freshly initialised, in training mode.
    """
    return UNet(UNetConfig())


def count_parameters(model: nn.Module) -> int:
    """Return the number of trainable parameters (65,002 for :func:`paper_unet`)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


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
        raise CorruptFileError("not an HDF5 file (cannot open it with h5py)", path) from err
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
        raise CorruptFileError(f"unreadable Keras weights ({err})", path) from err
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
        "sha256": _sha256(path),
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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# model files: safetensors + JSON card
# --------------------------------------------------------------------------------------------


def _json_ready(value: Any) -> Any:
    """Make a card JSON-safe: numpy scalars/arrays to Python, paths to str, NaN/inf to None."""
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_ready(value.tolist())
    if isinstance(value, np.generic):
        return _json_ready(value.item())
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"model card value of type {type(value).__name__} cannot be stored as JSON")


def save_model(
    path: str | os.PathLike[str], model: UNet, card: Mapping[str, Any] | None = None
) -> Path:
    """Write `model` as a folder with ``model.safetensors`` and ``model.json``, atomically.

    Each file is written under a temporary name and renamed into place (weights first, then
    the card). The card records the weights' SHA-256, so a folder left with a new weights file
    and an old card (a run killed between the two renames) is refused by :func:`load_model`.

    Parameters
    ----------
    path : str or os.PathLike
        The model folder; created if needed (existing model files in it are replaced).
    model : UNet
        The network; its state dict is stored as float32 (BatchNorm's counter as int64).
    card : mapping, optional
        Everything else the model needs or documents, stored as given (JSON; numpy values
        become plain numbers and NaN/inf become null): e.g. ``pixel_size_nm``,
        ``preprocessing`` / normalisation constants, ``threshold``, ``training_data_sha256``,
        ``metrics``. ``format_version``, ``nanoseg_version``, ``architecture`` (the model's
        config) and ``weights_sha256`` are set here and replace any given values.

    Returns
    -------
    pathlib.Path
        The model folder.

    Raises
    ------
    OutputError
        The folder cannot be created or written.
    TypeError
        A card value that cannot be stored as JSON.
    """
    import safetensors.torch

    from nanoseg import __version__
    from nanoseg.io import atomic_path, check_output_dir

    folder = check_output_dir(path)
    user = {k: v for k, v in dict(card or {}).items() if k not in _RESERVED_CARD_KEYS}
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    weights = safetensors.torch.save(tensors, metadata={"format": "pt"})
    full = {
        "format_version": CARD_FORMAT_VERSION,
        "nanoseg_version": __version__,
        "architecture": model.config.to_dict(),
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
        **_json_ready(user),
    }
    text = json.dumps(full, indent=2, allow_nan=False) + "\n"  # fails before anything is written
    with atomic_path(folder / MODEL_WEIGHTS_NAME) as tmp:
        tmp.write_bytes(weights)
    with atomic_path(folder / MODEL_CARD_NAME) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return folder


def _model_files(path: Path) -> tuple[Path, Path]:
    if path.is_dir():
        weights, card = path / MODEL_WEIGHTS_NAME, path / MODEL_CARD_NAME
    elif path.suffix in (".safetensors", ".json"):
        weights, card = path.with_suffix(".safetensors"), path.with_suffix(".json")
    elif not path.exists():
        raise CorruptFileError(
            f"no such model (a folder with {MODEL_WEIGHTS_NAME} and {MODEL_CARD_NAME})", path
        )
    else:
        raise CorruptFileError(
            f"not a model: give the model folder, its {MODEL_WEIGHTS_NAME} or {MODEL_CARD_NAME}",
            path,
        )
    for item in (weights, card):
        if not item.is_file():
            raise CorruptFileError("model file missing", item)
    return weights, card


def load_model(path: str | os.PathLike[str]) -> tuple[UNet, dict[str, Any]]:
    """Load a model written by :func:`save_model`, executing nothing from the files.

    Only JSON (the card) and safetensors (raw tensors) are parsed; no pickle, no
    ``torch.load``. The card's architecture is built and must have exactly the state-dict keys
    and shapes of the weights file.

    Parameters
    ----------
    path : str or os.PathLike
        The model folder, or its ``model.safetensors`` or ``model.json`` (a pair
        ``NAME.safetensors`` + ``NAME.json`` in one folder works too).

    Returns
    -------
    model : UNet
        The network, in eval mode.
    card : dict
        The model card as stored.

    Raises
    ------
    CorruptFileError
        A file is missing, the card is not JSON, the weights are not a readable safetensors
        file, or the weights are not those the card was written with (SHA-256 differs).
    InvalidDataError
        A card of an unknown ``format_version`` or with an invalid architecture, or weights of
        another architecture than the card describes.
    """
    import safetensors.torch

    weights_path, card_path = _model_files(Path(path))
    card = _read_card(card_path)
    try:
        config = UNetConfig.from_dict(card["architecture"])
    except KeyError:
        raise InvalidDataError("model card has no architecture", card_path) from None
    except (ValueError, TypeError) as err:
        raise InvalidDataError(
            f"invalid architecture in the model card: {err}", card_path
        ) from None
    data = weights_path.read_bytes()
    try:
        tensors = safetensors.torch.load(data)
    except Exception as err:  # the library raises several types for damaged files
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CorruptFileError(
            f"not a readable safetensors file ({message})", weights_path
        ) from err
    model = UNet(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    if expected != found:
        raise InvalidDataError(
            f"weights of another architecture than {card_path.name} describes "
            f"({_describe_difference(expected, found)})",
            weights_path,
        )
    for key, value in tensors.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise InvalidDataError(f"tensor {key} holds NaN or infinite values", weights_path)
    digest = card.get("weights_sha256")
    if digest is not None and digest != hashlib.sha256(data).hexdigest():
        raise CorruptFileError(
            f"weights differ from those {card_path.name} was written with (SHA-256 mismatch): "
            "damaged, or the two files come from different saves",
            weights_path,
        )
    model.load_state_dict(tensors, strict=True)
    model.eval()
    return model, card


def _read_card(path: Path) -> dict[str, Any]:
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise CorruptFileError("model card is not UTF-8 text", path) from err
    except json.JSONDecodeError as err:
        raise CorruptFileError(f"model card is not valid JSON (line {err.lineno})", path) from err
    except RecursionError as err:
        raise CorruptFileError("model card is nested too deeply", path) from err
    if not isinstance(card, dict):
        raise InvalidDataError("model card must be a JSON object", path)
    version = card.get("format_version")
    if not _is_int(version) or version != CARD_FORMAT_VERSION:
        raise InvalidDataError(
            f"unknown model card format_version {version!r} "
            f"(this nanoseg reads {CARD_FORMAT_VERSION}); a newer nanoseg may read it",
            path,
        )
    return card


def _describe_difference(expected: Mapping[str, tuple], found: Mapping[str, tuple]) -> str:
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing:
        return f"missing {missing[0]}" + (
            f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        )
    if extra:
        return f"unexpected {extra[0]}" + (f" and {len(extra) - 1} more" if len(extra) > 1 else "")
    key = next(k for k in expected if expected[k] != found[k])
    return f"{key} has shape {list(found[key])}, expected {list(expected[key])}"
