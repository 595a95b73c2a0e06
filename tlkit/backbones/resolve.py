"""One entry point from "anything that names a backbone" to a tlkit `Backbone`."""

from __future__ import annotations

import os
import re

import keras

from tlkit import registry
from tlkit.backbones.base import Backbone
from tlkit.backbones.hub import from_hub
from tlkit.backbones.keras_apps import _APP_INPUTS, from_keras


def get(spec, **kwargs) -> Backbone:
    """Resolves `spec` to a `Backbone`.

    Args:
        spec: a `Backbone`; a Keras model; a tlkit pretrained name (`"efficientnet_lite0"`,
            `"minilm_l6"`, ...); a `keras.applications` name (`"MobileNetV2"`); a
            `keras_hub:<preset>`; or a TF-Hub / Kaggle handle or SavedModel folder.
        **kwargs: passed to the backbone's constructor.
    """
    if isinstance(spec, Backbone):
        return spec
    if isinstance(spec, keras.layers.Layer):
        return from_keras(spec, **kwargs)
    if not isinstance(spec, str):
        raise TypeError(f"Cannot make a backbone from {type(spec).__name__}: {spec!r}")
    if spec.startswith("keras_hub:"):
        from tlkit.backbones.keras_apps import from_keras_hub

        return from_keras_hub(spec[len("keras_hub:") :], **kwargs)
    if spec in registry.BACKBONES:
        return registry.BACKBONES.get(spec).load()(**kwargs)
    if spec.lower() in {n.lower() for n in _APP_INPUTS}:
        return from_keras(spec, **kwargs)
    if re.match(r"^[a-z]+://", spec) or "/" in spec or os.path.exists(spec):
        return from_hub(spec, **kwargs)
    raise ValueError(
        f"Unknown backbone {spec!r}. Use a registered name ({', '.join(registry.BACKBONES.names())}), "
        "a keras.applications name (e.g. 'MobileNetV2'), 'keras_hub:<preset>', a TF-Hub handle, "
        "or a SavedModel folder."
    )


def _pretrained_names() -> list[str]:
    """The registered backbone names (`tlkit.registry.BACKBONES`)."""
    return list(registry.BACKBONES.names())
