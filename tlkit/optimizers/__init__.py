"""Optimizers for fine-tuning: discriminative (layer-wise) learning rates."""

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
    "group_lr_multipliers",
    "layerwise",
    "layerwise_class",
    "variable_lr_multipliers",
]
