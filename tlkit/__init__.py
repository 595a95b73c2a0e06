"""tlkit: transfer learning and fine-tuning for Keras 3 / TensorFlow.

Importing tlkit configures nothing globally (no device, logging or dtype policy changes).
"""

from tlkit import backbones, groups, heads, pretrained  # pretrained: registers its layers
from tlkit.groups import (
    format_summary,
    freeze_backbone,
    layer_groups,
    set_trainable,
    trainable_summary,
    unfreeze_all,
    unfreeze_top,
)
from tlkit.model import build_model, compile_model

__version__ = "0.1.0"

__all__ = [
    "backbones",
    "build_model",
    "compile_model",
    "format_summary",
    "freeze_backbone",
    "groups",
    "heads",
    "pretrained",
    "layer_groups",
    "set_trainable",
    "trainable_summary",
    "unfreeze_all",
    "unfreeze_top",
]
