"""tlkit: transfer learning and fine-tuning for Keras 3 / TensorFlow.

Importing tlkit configures nothing globally (no device, logging or dtype policy changes).
"""

from tlkit import (  # noqa: I001  (pretrained registers its layers for loading)
    backbones,
    callbacks,
    data,
    distribute,
    groups,
    heads,
    optimizers,
    pretrained,
    schedules,
    temperature,
    unfreeze,
)
from tlkit.fine_tune import FineTuneResult, fine_tune
from tlkit.head_training import train_head_on_features
from tlkit.lr_finder import LRFinderResult, lr_find
from tlkit.unfreeze import GradualUnfreezing, UnfreezeSchedule, prepare_optimizer
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
    "FineTuneResult",
    "GradualUnfreezing",
    "LRFinderResult",
    "UnfreezeSchedule",
    "backbones",
    "callbacks",
    "data",
    "distribute",
    "fine_tune",
    "lr_find",
    "optimizers",
    "prepare_optimizer",
    "schedules",
    "temperature",
    "train_head_on_features",
    "unfreeze",
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
