"""Optimizers for fine-tuning: discriminative (layer-wise) learning rates; their learning-rate
and momentum schedules (`tlkit.optimizers.schedules`)."""

from tlkit.optimizers.factory import NO_DECAY, from_config
from tlkit.optimizers.layerwise import (
    LayerwiseAdagrad,
    LayerwiseAdam,
    LayerwiseAdamax,
    LayerwiseAdamW,
    LayerwiseLion,
    LayerwiseMixin,
    LayerwiseNadam,
    LayerwiseRMSprop,
    LayerwiseSGD,
    group_lr_multipliers,
    layerwise,
    layerwise_class,
    variable_lr_multipliers,
)
from tlkit.optimizers.util import clone_optimizer, current_step

__all__ = [
    "NO_DECAY",
    "LayerwiseAdagrad",
    "LayerwiseAdam",
    "LayerwiseAdamW",
    "LayerwiseAdamax",
    "LayerwiseLion",
    "LayerwiseMixin",
    "LayerwiseNadam",
    "LayerwiseRMSprop",
    "LayerwiseSGD",
    "clone_optimizer",
    "current_step",
    "from_config",
    "group_lr_multipliers",
    "layerwise",
    "layerwise_class",
    "variable_lr_multipliers",
]
