"""Independent reference for the Keras import: the paper's network in Keras 3, and Keras 2 files.

Test-only. Nothing here uses nanoseg: the network is a transliteration of ``get_unet_1024`` from
the paper's released training script (ScottLabUCB/HTTEM, ``pyNanoFind/unet_training_files``),
built with the Keras 3 functional API on Keras's torch backend, and weights go in by layer name
with ``set_weights`` straight from the HDF5 file, the way Keras 2 ``load_weights`` did.

Two parts:

* :func:`paper_keras_layers`, :func:`random_paper_weights` and :func:`write_keras2_h5` write a
  weights file in the exact layout Keras 2.2 ``save_weights`` produced (h5py only, no Keras).
* :func:`build_keras_unet`, :func:`load_keras2_h5` and :func:`keras_predict` need Keras 3
  (``pip install keras``); they import it lazily, so this module imports without it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

#: (weight short name, ...) per Keras layer kind, in Keras's ``weights`` order.
_CONV_WEIGHTS = ("kernel", "bias")
_BN_WEIGHTS = ("gamma", "beta", "moving_mean", "moving_variance")


def paper_keras_layers(
    widths: Sequence[int] = (4, 8, 16, 32), in_channels: int = 1, n_classes: int = 2
) -> list[tuple[str, list[tuple[str, tuple[int, ...]]]]]:
    """Layers of ``get_unet_1024`` in Keras 2 creation order, with their weight shapes.

    Returns
    -------
    list of (layer name, [(weight short name, shape), ...])
        Layer names as Keras 2 numbered them when the network was built once
        (``input_1``, ``conv2d_1``, ``batch_normalization_1``, ``activation_1``, ...);
        weightless layers have an empty list.
    """
    counters: dict[str, int] = {}
    layers: list[tuple[str, list[tuple[str, tuple[int, ...]]]]] = []

    def add(kind: str, weights: list[tuple[str, tuple[int, ...]]] | None = None) -> None:
        counters[kind] = counters.get(kind, 0) + 1
        layers.append((f"{kind}_{counters[kind]}", weights or []))

    def conv(cin: int, cout: int) -> None:
        add("conv2d", [("kernel", (3, 3, cin, cout)), ("bias", (cout,))])
        add("batch_normalization", [(w, (cout,)) for w in _BN_WEIGHTS])
        add("activation")

    add("input")
    channels = in_channels
    for width in widths:  # down(): conv, bn, activation (skip), max-pool of the bn output
        conv(channels, width)
        add("max_pooling2d")
        channels = width
    conv(channels, widths[-1])  # centre
    conv(widths[-1], widths[-1])
    channels = widths[-1]
    for width in reversed(widths):  # up(): upsample, concatenate, conv, bn, relu, dropout, ...
        add("up_sampling2d")
        add("concatenate")
        conv(width + channels, width)
        add("dropout")
        conv(width, width)
        channels = width
    layers.append(
        ("final_layer", [("kernel", (1, 1, widths[0], n_classes)), ("bias", (n_classes,))])
    )
    return layers


def random_paper_weights(
    widths: Sequence[int] = (4, 8, 16, 32),
    in_channels: int = 1,
    n_classes: int = 2,
    seed: int = 0,
) -> dict[str, list[tuple[str, np.ndarray]]]:
    """Random float32 weights for :func:`paper_keras_layers` (He-normal kernels, random
    BatchNorm parameters and moving statistics; the tests refit the statistics to data).

    Returns
    -------
    dict
        Layer name -> [(weight short name, array)], only layers with weights.
    """
    rng = np.random.default_rng(seed)
    out: dict[str, list[tuple[str, np.ndarray]]] = {}
    for name, weights in paper_keras_layers(widths, in_channels, n_classes):
        if not weights:
            continue
        arrays = []
        for short, shape in weights:
            if short == "kernel":
                fan_in = int(np.prod(shape[:3]))
                value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
            elif short == "gamma":
                value = rng.uniform(0.5, 1.5, shape)
            elif short == "moving_variance":
                value = rng.uniform(0.3, 1.0, shape)
            else:  # bias, beta, moving_mean
                value = rng.normal(0.0, 0.2, shape)
            arrays.append((short, value.astype(np.float32)))
        out[name] = arrays
    return out


def write_keras2_h5(
    path: str | os.PathLike[str],
    weights: dict[str, list[tuple[str, np.ndarray]]],
    layer_names: Sequence[str] | None = None,
) -> Path:
    """Write weights the way Keras 2.2 ``Model.save_weights`` wrote HDF5 files.

    Root attributes ``layer_names`` (every layer, weightless ones too), ``backend`` and
    ``keras_version``; one group per layer with attribute ``weight_names``
    (``b"<layer>/<weight>:0"``, an empty float64 array for weightless layers) and the datasets
    at ``<layer>/<layer>/<weight>:0``.

    Parameters
    ----------
    path : path-like
        Output ``.h5`` file.
    weights : dict
        Layer name -> [(weight short name, array)].
    layer_names : sequence of str, optional
        All layer names in order; by default the keys of `weights`.
    """
    path = Path(path)
    names = list(weights) if layer_names is None else list(layer_names)
    with h5py.File(path, "w") as handle:
        handle.attrs["layer_names"] = np.array([n.encode() for n in names])
        handle.attrs["backend"] = b"tensorflow"
        handle.attrs["keras_version"] = b"2.2.2"
        for name in names:
            group = handle.create_group(name)
            items = weights.get(name, [])
            weight_names = [f"{name}/{short}:0" for short, _ in items]
            if weight_names:
                group.attrs["weight_names"] = np.array([w.encode() for w in weight_names])
            else:
                group.attrs["weight_names"] = np.array([], dtype=np.float64)
            for weight_name, (_, value) in zip(weight_names, items, strict=True):
                group.create_dataset(weight_name, data=np.asarray(value, dtype=np.float32))
    return path


def _keras() -> Any:
    os.environ["KERAS_BACKEND"] = "torch"
    import keras

    if keras.backend.backend() != "torch":
        raise RuntimeError(f"Keras runs on {keras.backend.backend()}, the reference needs torch")
    return keras


def build_keras_unet(
    widths: Sequence[int] = (4, 8, 16, 32),
    in_channels: int = 1,
    n_classes: int = 2,
    dtype: str = "float32",
) -> Any:
    """The paper's ``get_unet_1024`` in Keras 3, layers named as Keras 2 named them.

    Parameters
    ----------
    dtype : str
        Keras dtype of every layer: ``"float32"`` (as trained) or ``"float64"`` (to compare
        the layer graph without rounding).

    Returns
    -------
    keras.Model
        Input (N, H, W, in_channels) with H, W multiples of ``2**len(widths)``, output softmax
        (N, H, W, n_classes).
    """
    keras = _keras()
    layers = keras.layers
    counters: dict[str, int] = {}

    def name(kind: str) -> str:
        counters[kind] = counters.get(kind, 0) + 1
        return f"{kind}_{counters[kind]}"

    def conv_bn_relu(filters: int, x: Any) -> tuple[Any, Any]:
        x = layers.Conv2D(filters, (3, 3), padding="same", name=name("conv2d"), dtype=dtype)(x)
        bn = layers.BatchNormalization(epsilon=1e-4, name=name("batch_normalization"), dtype=dtype)(
            x
        )
        return bn, layers.Activation("relu", name=name("activation"), dtype=dtype)(bn)

    def down(filters: int, x: Any) -> tuple[Any, Any]:
        bn, res = conv_bn_relu(filters, x)
        pool = layers.MaxPooling2D((2, 2), strides=(2, 2), name=name("max_pooling2d"), dtype=dtype)(
            bn
        )
        return pool, res

    def up(filters: int, x: Any, skip: Any) -> Any:
        x = layers.UpSampling2D((2, 2), name=name("up_sampling2d"), dtype=dtype)(x)
        x = layers.Concatenate(axis=3, name=name("concatenate"), dtype=dtype)([skip, x])
        _, x = conv_bn_relu(filters, x)
        x = layers.Dropout(0.2, name=name("dropout"), dtype=dtype)(x)
        _, x = conv_bn_relu(filters, x)
        return x

    inputs = keras.Input(shape=(None, None, in_channels), name=name("input"), dtype=dtype)
    x = inputs
    skips = []
    for width in widths:
        x, res = down(width, x)
        skips.append(res)
    _, x = conv_bn_relu(widths[-1], x)
    _, x = conv_bn_relu(widths[-1], x)
    for width, skip in zip(reversed(widths), reversed(skips), strict=True):
        x = up(width, x, skip)
    outputs = layers.Conv2D(
        n_classes, (1, 1), activation="softmax", name="final_layer", dtype=dtype
    )(x)
    return keras.Model(inputs=inputs, outputs=outputs)


def load_keras2_h5(model: Any, path: str | os.PathLike[str]) -> None:
    """Load a Keras 2 HDF5 weights file into `model` by layer name (``set_weights``)."""
    with h5py.File(path, "r") as handle:
        for layer in model.layers:
            if not layer.weights:
                continue
            group = handle[layer.name]
            names = [n.decode() for n in group.attrs["weight_names"]]
            layer.set_weights([group[n][()] for n in names])


def keras_predict(
    path: str | os.PathLike[str], images: np.ndarray, dtype: str = "float32"
) -> np.ndarray:
    """Particle probability of the Keras reference for images (N, H, W).

    The architecture is read from the file's kernel shapes (encoder widths = output channels
    of the first ``depth`` convolutions, ``depth = (n_conv - 2) / 3``).

    Parameters
    ----------
    dtype : str
        ``"float32"`` or ``"float64"``: precision of the whole computation.

    Returns
    -------
    numpy.ndarray
        (N, H, W) of `dtype`, softmax channel 1.
    """
    with h5py.File(path, "r") as handle:
        convs = sorted(
            (k for k in handle if k.startswith("conv2d_")), key=lambda k: int(k.split("_")[1])
        )
        kernels = [handle[k][f"{k}/kernel:0"].shape for k in convs]
        final = handle["final_layer"]["final_layer/kernel:0"].shape
    depth = (len(convs) - 2) // 3
    widths = [k[3] for k in kernels[:depth]]
    model = build_keras_unet(widths, kernels[0][2], final[3], dtype=dtype)
    load_keras2_h5(model, path)
    x = np.asarray(images, dtype=dtype)[..., None]
    probs = model.predict(x, batch_size=4, verbose=0)
    return np.asarray(probs[..., 1], dtype=dtype)
