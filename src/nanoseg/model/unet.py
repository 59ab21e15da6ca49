"""The paper's U-Net (configurable widths, depth, normalisation and dropout)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

NormKind = Literal["batch", "instance", "group"]
_NORMS = ("batch", "instance", "group")


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------


def _inputs_read(pixel: int, depth: int) -> tuple[int, int]:
    """First and last input pixel (along one axis) that output `pixel` of a depth-`depth`
    :class:`UNet` reads, with the pooling grid at multiples of ``2**depth`` from 0."""

    def encoder_input(level: int, low: int, high: int) -> tuple[int, int]:
        # Level l's input at i is the max-pool of level l-1's 3x3 convolution at 2i and 2i+1.
        for _ in range(level):
            low, high = 2 * low - 1, 2 * high + 2
        return low, high

    def decoder(level: int, low: int, high: int) -> tuple[int, int]:
        if level == depth:  # the centre: two 3x3 convolutions
            return encoder_input(depth, low - 2, high + 2)
        low, high = low - 2, high + 2  # two 3x3 convolutions of [skip, upsampled]
        skip = encoder_input(level, low - 1, high + 1)  # the skip is a 3x3 convolution
        up = decoder(level + 1, low // 2, high // 2)  # nearest upsampling
        return min(skip[0], up[0]), max(skip[1], up[1])

    return decoder(0, pixel, pixel)


@functools.cache
def _tile_margin(depth: int, bound: int) -> int:
    """:attr:`UNetConfig.tile_margin` for a depth whose receptive radius is at most `bound`
    (a few hundred dependency traces: computed once, not for every micrograph)."""
    period = 2**depth
    # A pixel's dependencies shift with it by whole periods, so one period past the upper
    # bound covers every case; the right edge is checked as the left one mirrored.
    far = bound + period
    needed = 0
    for p in range(far):
        low, _ = _inputs_read(p, depth)
        _, high = _inputs_read(far * period - 1 - p, depth)
        if low < 0 or high > far * period - 1:
            needed = p + 1
    return needed


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

    @property
    def receptive_radius(self) -> int:
        """Input pixels on either side of an output pixel that can change it (an upper bound).

        Per level at scale ``s = 2**level``: the encoder's 3x3 convolution and 2x2 max-pool
        reach ``s`` each, the decoder's nearest upsampling ``s`` and its two convolutions
        ``2 s``; the centre's two convolutions reach ``2 * 2**depth``: ``7 * 2**depth - 5``
        in all (107 px for depth 4). Tiled prediction keeps outputs this far from a tile's
        edge, where the convolutions see no zero padding.
        """
        return 7 * 2**self.depth - 5

    @property
    def tile_margin(self) -> int:
        """Pixels an output must lie from a tile's edge to equal the output of one pass over
        the whole image, when the tile's edges lie on the pooling grid (multiples of
        ``2**depth`` px from the image's origin, as :func:`nanoseg.predict.predict_image`
        places them).

        Tighter than :attr:`receptive_radius`, which must also allow for the worst
        alignment of the pooling grid: 78 px instead of 107 for depth 4. Found by following
        each output pixel's dependencies back through the layers (:func:`_inputs_read`).
        """
        return _tile_margin(self.depth, self.receptive_radius)

    def describe(self) -> str:
        """One line, e.g. ``"U-Net widths 4-8-16-32, batch norm, dropout 0.2"``."""
        widths = "-".join(str(w) for w in self.widths)
        return f"U-Net widths {widths}, {self.norm} norm, dropout {self.dropout:g}"

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
    #: The first concatenation in data-flow order (Keras ``concatenate_1``: the deepest
    #: decoder level, [skip, upsampled] at 1/2**(depth-1) resolution). The paper's Fig. 6 shows
    #: activations "from the first concatenation layer".
    FIRST_CONCAT = "decoder.0.concat"

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
            # softmax in float32 even for a bfloat16 network: probabilities near 0 and 1 keep
            # their resolution.
            proba = torch.softmax(self(tensor).float(), dim=1)[:, 1]
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


def fuse_for_inference(model: UNet) -> UNet:
    """A copy of `model` in eval mode with each BatchNorm folded into the convolution before it.

    In eval mode BatchNorm is an affine map per channel, so it can be merged into the
    preceding convolution's weights and bias: the outputs agree to float rounding and each
    layer's output is read and written once less. Other normalisations are left as they are.

    Parameters
    ----------
    model : UNet

    Returns
    -------
    UNet
        A new network for inference only (its BatchNorm modules are ``nn.Identity``).
    """
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fused = copy.deepcopy(model).eval()
    pairs = [(level, "conv", "norm") for level in fused.encoder]
    pairs += [(block, "conv", "norm") for block in fused.centre]
    pairs += [(level, f"conv{i}", f"norm{i}") for level in fused.decoder for i in (1, 2)]
    for module, conv_name, norm_name in pairs:
        norm = getattr(module, norm_name)
        if isinstance(norm, nn.BatchNorm2d):
            setattr(module, conv_name, fuse_conv_bn_eval(getattr(module, conv_name), norm))
            setattr(module, norm_name, nn.Identity())
    return fused


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
