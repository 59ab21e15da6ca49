"""The same U-Net, rearranged for fast inference on CPUs.

Every step below is an exact identity (outputs agree to float rounding); each saves passes
over memory, which is what a network with 4-32 channels mostly spends its time on:

- **BatchNorm folded** into the convolution before it (:func:`~nanoseg.model.fuse_for_inference`).
- **No concatenation, no upsampled copy.** A decoder level's first convolution of
  ``[skip, upsample(x)]`` is the sum of one convolution of `skip` and one of ``upsample(x)``.
  A 3x3 convolution of a nearest-upsampled (x2) image is a 4x4 transposed convolution of
  stride 2 of the image itself (:func:`transposed_upsample_kernel`): 4 multiply-adds per
  output pixel and input channel instead of 9, and the upsampled copy is never made. The sum,
  the bias and the ReLU run inside the skip's convolution (oneDNN post-ops).
- **ReLU fused** into the convolutions whose pre-activation output nothing else reads.
- **2x2 max pool** as the maximum of four strided views: several times faster than
  ``max_pool2d`` on channels-last maps with few channels.
- **Two-class softmax** as a sigmoid of the logit difference: a 1x1 convolution with one
  output map instead of two, and no softmax.

On the bundled model (bfloat16, 1616x1616 tiles, 2 cores) a tile takes about half the time
of the fused :class:`~nanoseg.model.UNet` (see BENCHMARKS.md). Only networks with BatchNorm
can be folded; :func:`inference_network` returns the plain fused network for the others.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from nanoseg.model.unet import UNet, UNetConfig, fuse_for_inference

__all__ = ["InferenceUNet", "inference_network", "transposed_upsample_kernel"]

_CHANNELS_LAST = torch.channels_last
# For a nearest x2 upsampling followed by a 3x3 convolution: tap t (0-3) of the equivalent
# stride-2 transposed kernel gathers these taps (0-2) of the 3x3 kernel, per axis.
_TAPS = ((2,), (1, 2), (0, 1), (0,))


def transposed_upsample_kernel(weight: torch.Tensor) -> torch.Tensor:
    """The transposed-convolution kernel equal to nearest x2 upsampling then a 3x3 convolution.

    Along one axis, output pixel ``2i`` of the convolution of the upsampled signal reads input
    ``i - 1`` with tap 0 and input ``i`` with taps 1 + 2; output ``2i + 1`` reads input ``i``
    with taps 0 + 1 and input ``i + 1`` with tap 2. That is a transposed convolution of stride
    2, padding 1, whose 4 taps are the sums in ``_TAPS``.

    Parameters
    ----------
    weight : torch.Tensor
        ``(out, in, 3, 3)`` convolution kernel.

    Returns
    -------
    torch.Tensor
        ``(in, out, 4, 4)`` kernel for ``conv_transpose2d(x, k, stride=2, padding=1)``, same
        dtype as `weight` (summed in float64).
    """
    w = weight.detach().double()
    rows = torch.stack([w[:, :, list(taps)].sum(dim=2) for taps in _TAPS], dim=2)
    kernel = torch.stack([rows[..., list(taps)].sum(dim=-1) for taps in _TAPS], dim=-1)
    return kernel.transpose(0, 1).to(weight.dtype)


class InferenceUNet:
    """A trained :class:`UNet` with BatchNorm, rearranged for inference (see the module notes).

    Parameters
    ----------
    model : UNet
        With ``norm="batch"``; not modified.
    dtype : torch.dtype
        Arithmetic of the convolutions (float32 or bfloat16); weights are combined in float64
        first and rounded once.

    Attributes
    ----------
    config : UNetConfig
        The network's architecture (tiling reads its depth and receptive radius).
    """

    def __init__(self, model: UNet, dtype: torch.dtype = torch.float32) -> None:
        if model.config.norm != "batch":
            raise ValueError(f"only BatchNorm networks can be folded, not {model.config.norm}")
        fused = fuse_for_inference(model).double()
        self.config: UNetConfig = model.config
        self.dtype = dtype
        self._device = next(model.parameters()).device
        # oneDNN's fused convolutions where torch has them (CPU); plain ones elsewhere.
        self._onednn = self._device.type == "cpu" and torch.backends.mkldnn.is_available()

        def prepare(tensor: torch.Tensor | None) -> torch.Tensor | None:
            if tensor is None:
                return None
            tensor = tensor.detach().to(dtype)
            return tensor.contiguous(memory_format=_CHANNELS_LAST) if tensor.ndim == 4 else tensor

        self._encoder = [(prepare(lv.conv.weight), prepare(lv.conv.bias)) for lv in fused.encoder]
        self._centre = [(prepare(b.conv.weight), prepare(b.conv.bias)) for b in fused.centre]
        self._decoder = []
        for level, width in zip(fused.decoder, reversed(model.config.widths), strict=True):
            weight = level.conv1.weight  # input channels: [skip (width), upsampled]
            self._decoder.append(
                (
                    prepare(weight[:, :width]),
                    prepare(level.conv1.bias),
                    prepare(transposed_upsample_kernel(weight[:, width:])),
                    prepare(level.conv2.weight),
                    prepare(level.conv2.bias),
                )
            )
        weight, bias = fused.final.weight.detach(), fused.final.bias.detach()
        if model.config.n_classes == 2:
            weight, bias = weight[1:] - weight[:1], bias[1:] - bias[:1]
        self._final = (prepare(weight), prepare(bias))

    def _conv(
        self,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        *,
        relu: bool = False,
        add: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """3x3 (or 1x1) convolution, 'same' padding, plus `add`, then ReLU if asked."""
        padding = [weight.shape[-1] // 2] * 2
        if self._onednn:
            ops = torch.ops.mkldnn._convolution_pointwise
            unary = "relu" if relu else "none"
            if add is None:
                return ops(x, weight, bias, padding, [1, 1], [1, 1], 1, unary, [], "")
            return ops.binary(
                x, add, weight, bias, padding, [1, 1], [1, 1], 1, "add", 1.0,
                unary if relu else None, [], "",
            )  # fmt: skip
        y = F.conv2d(x, weight, bias, padding=padding)
        if add is not None:
            y = y + add
        return torch.relu(y) if relu else y

    @staticmethod
    def _pool(x: torch.Tensor) -> torch.Tensor:
        """2x2 max pool, stride 2 (sides even)."""
        return torch.maximum(
            torch.maximum(x[..., ::2, ::2], x[..., 1::2, ::2]),
            torch.maximum(x[..., ::2, 1::2], x[..., 1::2, 1::2]),
        )

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits, or the particle-minus-background logit for two classes.

        Parameters
        ----------
        x : torch.Tensor
            ``(N, in_channels, H, W)``; H and W multiples of ``2**depth``.

        Returns
        -------
        torch.Tensor
            ``(N, 1, H, W)`` for two classes, else ``(N, n_classes, H, W)``; in `dtype`.
        """
        x = x.to(device=self._device, dtype=self.dtype).contiguous(memory_format=_CHANNELS_LAST)
        before_relu = self.config.pool_before_relu
        skips = []
        for weight, bias in self._encoder:
            normed = self._conv(x, weight, bias)
            skip = torch.relu(normed)
            skips.append(skip)
            x = self._pool(normed if before_relu else skip)
        for weight, bias in self._centre:
            x = self._conv(x, weight, bias, relu=True)
        for (w_skip, bias, w_up, w2, b2), skip in zip(self._decoder, reversed(skips), strict=True):
            up = F.conv_transpose2d(x, w_up, None, stride=2, padding=1)
            y = self._conv(skip, w_skip, bias, relu=True, add=up)
            x = self._conv(y, w2, b2, relu=True)
        return self._conv(x, *self._final)

    def predict_proba(self, x: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """Particle probability, as :meth:`UNet.predict_proba`.

        Parameters
        ----------
        x : torch.Tensor or numpy.ndarray
            ``(N, in_channels, H, W)`` float32.

        Returns
        -------
        torch.Tensor or numpy.ndarray
            float32 ``(N, H, W)`` in [0, 1], the same kind as `x`.
        """
        as_numpy = isinstance(x, np.ndarray)
        with torch.no_grad():
            logits = self.logits(torch.as_tensor(x)).float()
            if self.config.n_classes == 2:
                proba = torch.sigmoid(logits[:, 0])
            else:
                proba = torch.softmax(logits, dim=1)[:, 1]
        return proba.cpu().numpy() if as_numpy else proba


def inference_network(model: UNet, dtype: torch.dtype = torch.float32) -> InferenceUNet | UNet:
    """The fastest equivalent of `model` for inference.

    Parameters
    ----------
    model : UNet
    dtype : torch.dtype

    Returns
    -------
    InferenceUNet or UNet
        An :class:`InferenceUNet` for BatchNorm networks; otherwise the network itself in
        eval mode, in `dtype` and channels-last layout. Either has ``config`` and
        ``predict_proba``.
    """
    if model.config.norm == "batch":
        return InferenceUNet(model, dtype)
    return fuse_for_inference(model).to(dtype=dtype, memory_format=_CHANNELS_LAST)
