"""One entry point from "anything that names a backbone" to a tlkit `Backbone`."""

from __future__ import annotations

import inspect
import os

import keras

from tlkit import registry
from tlkit._handles import is_hub_handle, is_keras_hub_handle, is_uri, keras_hub_preset
from tlkit.backbones.base import Backbone
from tlkit.backbones.hub import from_hub
from tlkit.backbones.keras_apps import _APP_INPUTS, from_keras


def get(spec, **kwargs) -> Backbone:
    """Resolves `spec` to a `Backbone`.

    Args:
        spec: a `Backbone`; a Keras model; a tlkit pretrained name (`"efficientnet_lite0"`,
            `"minilm_l6"`, ...); a `keras.applications` name (`"MobileNetV2"`); a KerasHub
            preset (`keras_hub:<preset>`, `kaggle://keras/bert/keras/bert_tiny_en_uncased`,
            `hf://owner/repo`), loaded by KerasHub; or a TF-Hub / Kaggle model handle
            (`https://tfhub.dev/...`, `https://www.kaggle.com/models/...`) or SavedModel
            folder, loaded as a `HubBackbone`. (`tlkit._handles` tells them apart.)
        **kwargs: passed to the backbone's constructor.
    """
    if isinstance(spec, Backbone):
        return spec
    if isinstance(spec, keras.layers.Layer):
        return _call(from_keras, spec, spec, **kwargs)
    if not isinstance(spec, str):
        raise TypeError(f"Cannot make a backbone from {type(spec).__name__}: {spec!r}")
    if is_keras_hub_handle(spec):  # keras_hub:<preset>, kaggle://..., hf://...
        from tlkit.backbones.keras_apps import from_keras_hub

        return _call(from_keras_hub, spec, keras_hub_preset(spec), **kwargs)
    if spec in registry.BACKBONES:
        return _call(registry.BACKBONES.get(spec).load(), spec, **kwargs)
    if spec.lower() in {n.lower() for n in _APP_INPUTS}:
        return _call(from_keras, spec, spec, **kwargs)
    if is_hub_handle(spec) or is_uri(spec) or "/" in spec or os.path.exists(spec):
        return _call(from_hub, spec, spec, **kwargs)
    raise ValueError(
        f"Unknown backbone {spec!r}.{registry.did_you_mean(spec, registry.BACKBONES.names())} "
        f"Use a registered name ({', '.join(registry.BACKBONES.names())}), "
        "a keras.applications name (e.g. 'MobileNetV2'), 'keras_hub:<preset>' (or a kaggle:// / "
        "hf:// KerasHub preset), a TF-Hub handle, "
        "or a SavedModel folder."
    )


class BackboneOptionError(ValueError):
    """An option the backbone's constructor does not take (names the accepted ones)."""


def _call(factory, spec, *args, **kwargs):
    """`factory(*args, **kwargs)`, after checking that it takes every keyword: a misspelt or
    misplaced option is one clear error naming the accepted ones, not a `TypeError` from inside."""
    params = inspect.signature(factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [k for k in kwargs if k not in params] if not takes_any else []
    if unknown:
        accepted = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
        accepted = accepted[len(args):]
        raise BackboneOptionError(
            f"Backbone {str(spec)!r} takes no option {unknown[0]!r}. "
            f"Its options: {', '.join(accepted)}."
        )
    return factory(*args, **kwargs)


def _pretrained_names() -> list[str]:
    """The registered backbone names (`tlkit.registry.BACKBONES`)."""
    return list(registry.BACKBONES.names())
