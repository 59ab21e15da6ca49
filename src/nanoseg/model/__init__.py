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

from nanoseg.model.files import (
    CARD_FORMAT_VERSION,
    MODEL_CARD_NAME,
    MODEL_WEIGHTS_NAME,
    load_model,
    save_model,
)
from nanoseg.model.inference import (
    InferenceUNet,
    inference_network,
    transposed_upsample_kernel,
)
from nanoseg.model.keras import import_keras, load_keras_weights
from nanoseg.model.unet import (
    Concat,
    ConvBlock,
    DecoderLevel,
    EncoderLevel,
    UNet,
    UNetConfig,
    count_parameters,
    fuse_for_inference,
    paper_unet,
)

__all__ = [
    "CARD_FORMAT_VERSION",
    "MODEL_CARD_NAME",
    "MODEL_WEIGHTS_NAME",
    "Concat",
    "ConvBlock",
    "DecoderLevel",
    "EncoderLevel",
    "InferenceUNet",
    "UNet",
    "UNetConfig",
    "count_parameters",
    "fuse_for_inference",
    "import_keras",
    "inference_network",
    "load_keras_weights",
    "load_model",
    "paper_unet",
    "save_model",
    "transposed_upsample_kernel",
]
