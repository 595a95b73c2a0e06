"""Backbones from `keras.applications`, any Keras model, and KerasHub presets."""

from __future__ import annotations

import os

import keras

from tlkit._extras import require
from tlkit._handles import is_uri, keras_hub_preset
from tlkit.backbones.base import KerasBackbone
from tlkit.backbones.input_info import InputInfo

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CAFFE = dict(value_range=(0, 255), mean=(103.939, 116.779, 123.68), channel_order="bgr")

# What each keras.applications family expects at its input (from its `preprocess_input`).
_APP_INPUTS = {
    "MobileNet": dict(value_range=(-1, 1)),
    "MobileNetV2": dict(value_range=(-1, 1)),
    "MobileNetV3Small": dict(value_range=(0, 255)),
    "MobileNetV3Large": dict(value_range=(0, 255)),
    "Xception": dict(value_range=(-1, 1), size=299),
    "InceptionV3": dict(value_range=(-1, 1), size=299),
    "InceptionResNetV2": dict(value_range=(-1, 1), size=299),
    "ResNet50V2": dict(value_range=(-1, 1)),
    "ResNet101V2": dict(value_range=(-1, 1)),
    "ResNet152V2": dict(value_range=(-1, 1)),
    "ResNet50": _CAFFE,
    "ResNet101": _CAFFE,
    "ResNet152": _CAFFE,
    "VGG16": _CAFFE,
    "VGG19": _CAFFE,
    "DenseNet121": dict(value_range=(0, 1), mean=_IMAGENET_MEAN, std=_IMAGENET_STD),
    "DenseNet169": dict(value_range=(0, 1), mean=_IMAGENET_MEAN, std=_IMAGENET_STD),
    "DenseNet201": dict(value_range=(0, 1), mean=_IMAGENET_MEAN, std=_IMAGENET_STD),
    "NASNetMobile": dict(value_range=(-1, 1)),
}
# EfficientNet(V2) and ConvNeXt rescale inside the model: they take [0, 255].
for _prefix in ("EfficientNet", "ConvNeXt"):
    for _name in dir(keras.applications):
        if _name.startswith(_prefix):
            _APP_INPUTS.setdefault(_name, dict(value_range=(0, 255)))


class WeightsUnavailableError(OSError):
    """Pretrained weights could not be loaded (typically: no network to download them)."""


def application_names() -> list[str]:
    return sorted(_APP_INPUTS)


def _app_constructor(name: str):
    lookup = {n.lower(): n for n in _APP_INPUTS}
    canonical = lookup.get(name.lower().replace("-", "").replace("_", ""))
    if canonical is None:
        canonical = lookup.get(name.lower())
    if canonical is None or not hasattr(keras.applications, canonical):
        raise ValueError(
            f"Unknown Keras application {name!r}. Known: {', '.join(application_names())}."
        )
    return canonical, getattr(keras.applications, canonical)


def from_keras(
    name_or_model,
    weights="imagenet",
    input_shape=None,
    input_info=None,
    group_rules=None,
    trainable=False,
) -> KerasBackbone:
    """A backbone from a `keras.applications` name or any Keras model.

    Args:
        name_or_model: an application name such as `"MobileNetV2"` (built with
            `include_top=False`), or a Keras model mapping images to features.
        weights: for applications: `"imagenet"` (Keras downloads it once into `~/.keras/models`;
            offline this fails with a clear `WeightsUnavailableError`), a local weights file, or
            `None` (random init). Ignored for a model.
        input_shape: `(height, width, channels)`; default: the application's native size.
        input_info: overrides the `InputInfo` (required to be right for your own models; default
            for a model: images taken as they come, values `[0, 255]`).
        group_rules: see `Backbone`.
        trainable: whether the backbone starts trainable.

    Example:
    ```python
    backbone = tlkit.backbones.from_keras("MobileNetV2", weights="mobilenet_v2_notop.h5",
                                          input_shape=(160, 160, 3))
    ```
    """
    if isinstance(name_or_model, keras.Model) or isinstance(name_or_model, keras.layers.Layer):
        model = name_or_model
        if input_info is None:
            shape = getattr(model, "input_shape", None)
            kind = "image" if shape is not None and len(shape) == 4 else "features"
            input_info = InputInfo(kind=kind, value_range=(0, 255))
        backbone = KerasBackbone(model, input_info=input_info, group_rules=group_rules)
    elif isinstance(name_or_model, str):
        canonical, constructor = _app_constructor(name_or_model)
        spec = dict(_APP_INPUTS[canonical])
        size = spec.pop("size", 224)
        input_shape = tuple(input_shape) if input_shape else (size, size, 3)
        if isinstance(weights, str) and weights != "imagenet" and not os.path.exists(weights):
            raise FileNotFoundError(
                f"Weights file not found: {weights!r}. Pass an existing `.h5`/`.weights.h5` file, "
                "'imagenet', or None."
            )
        try:
            model = constructor(include_top=False, weights=weights, input_shape=input_shape)
        except Exception as err:  # download errors come as many types (URLError, HTTPError, ...)
            if weights != "imagenet":
                raise
            raise WeightsUnavailableError(
                f"Could not get ImageNet weights for {canonical} ({type(err).__name__}: "
                f"{str(err)[:200]}). This machine may be offline. Download the `_notop` weights "
                "file where there is network and pass `weights='path/to/file.h5'`, place it in "
                "~/.keras/models/, or use weights=None to start from random weights."
            ) from None
        if input_info is None:
            input_info = InputInfo(image_size=input_shape[:2], channels=input_shape[2], **spec)
        backbone = KerasBackbone(model, input_info=input_info, group_rules=group_rules)
    else:
        raise TypeError(
            "Expected a keras.applications name or a Keras model. "
            f"Received: {type(name_or_model).__name__}"
        )
    backbone.trainable = trainable
    return backbone


def from_keras_hub(
    preset, input_info=None, output_key=None, load_weights=True, sequence_length=None, **kwargs
):
    """A backbone from a KerasHub preset name or local preset folder.

    For text presets the preset's `TextClassifierPreprocessor` (tokenizer + packer) is attached
    as `backbone.preprocessor`, so `tlkit.build_model` makes a model that takes raw strings.

    Args:
        preset: a KerasHub preset name or URI (`"bert_tiny_en_uncased"`,
            `"kaggle://keras/bert/keras/bert_tiny_en_uncased/2"`, `"hf://owner/repo"`;
            downloaded by KerasHub, needs network, or read from its cache), or a local preset
            folder (`config.json`, `model.weights.h5`, `tokenizer.json`, ...). A leading
            `keras_hub:` (the recipe form) is dropped.
        input_info: overrides the `InputInfo` (default: text for token-id models, else images).
        output_key: output to use when the backbone returns a dict (default `pooled_output`).
        load_weights: load the preset's weights (False: random init, e.g. from-scratch runs).
        sequence_length: tokenizer output length (default: the preset's).
        **kwargs: passed to `keras_hub.models.Backbone.from_preset`.

    Example:
    ```python
    backbone = tlkit.backbones.from_keras_hub("path/to/bert_preset")
    model = tlkit.build_model(backbone, num_classes=2)   # strings in
    ```
    """
    if isinstance(preset, str):
        preset = keras_hub_preset(preset)
        # A path (not a kaggle:// / hf:// URI, not a preset name) must be an existing folder.
        if not is_uri(preset) and os.sep in preset and not os.path.isdir(preset):
            raise FileNotFoundError(f"KerasHub preset folder not found: {preset!r}")
    keras_hub = require("keras_hub", "A KerasHub backbone")
    model = keras_hub.models.Backbone.from_preset(preset, load_weights=load_weights, **kwargs)
    text = "token_ids" in {t.name.split(":")[0] for t in _flat_inputs(model)}
    if input_info is None:
        input_info = InputInfo(kind="text", dtype="string") if text else InputInfo()
    backbone = KerasBackbone(model, input_info=input_info, output_key=output_key)
    if text:
        from tlkit.backbones.text_preprocessing import TextPreprocessing

        options = {"sequence_length": sequence_length} if sequence_length else {}
        tokenizer = keras_hub.models.TextClassifierPreprocessor.from_preset(preset, **options)
        backbone.preprocessor = TextPreprocessing(
            tokenizer, tokenizer.sequence_length, name="preprocessor"
        )
    backbone.trainable = False
    return backbone


def _flat_inputs(model):
    inputs = model.inputs if hasattr(model, "inputs") else []
    return list(inputs)
