"""Pretrained backbones: TF-Hub / SavedModel, Keras applications and models, KerasHub."""

from tlkit.backbones.base import Backbone, KerasBackbone
from tlkit.backbones.hub import HubBackbone, HubHandleError, from_hub
from tlkit.backbones.input_info import InputInfo
from tlkit.backbones.keras_apps import WeightsUnavailableError, from_keras, from_keras_hub
from tlkit.backbones.resolve import get

__all__ = [
    "Backbone",
    "HubBackbone",
    "HubHandleError",
    "InputInfo",
    "KerasBackbone",
    "WeightsUnavailableError",
    "from_hub",
    "from_keras",
    "from_keras_hub",
    "get",
]
