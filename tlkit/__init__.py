"""tlkit: transfer learning and fine-tuning for Keras 3 / TensorFlow.

Importing tlkit configures nothing globally (no device, logging or dtype policy changes), and
imports nothing heavy: its names load on first use (PEP 562 `__getattr__`), so `tlkit --help`
answers without importing TensorFlow, and every submodule (`tlkit.export`, `tlkit.runner`, ...)
is reachable as an attribute after `import tlkit`.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Public names defined in a submodule: name -> module.
_ATTRIBUTES = {
    "ConfigError": "tlkit.config",
    "FineTuneConfig": "tlkit.config",
    "FineTunePlan": "tlkit.training.plan",
    "fine_tune_plan": "tlkit.training.plan",
    "FineTuneResult": "tlkit.training.fine_tuning",
    "fine_tune": "tlkit.training.fine_tuning",
    "train_head_on_features": "tlkit.head_training",
    "LRFinderResult": "tlkit.lr_finder",
    "lr_find": "tlkit.lr_finder",
    "GradualUnfreezing": "tlkit.unfreeze",
    "UnfreezeSchedule": "tlkit.unfreeze",
    "prepare_optimizer": "tlkit.unfreeze",
    "format_summary": "tlkit.trainability",
    "freeze_backbone": "tlkit.trainability",
    "layer_groups": "tlkit.trainability",
    "set_trainable": "tlkit.trainability",
    "trainable_summary": "tlkit.trainability",
    "unfreeze_all": "tlkit.trainability",
    "unfreeze_top": "tlkit.trainability",
    "build_model": "tlkit.model",
    "compile_model": "tlkit.model",
}

# Names that need no TensorFlow (no layer registration on access).
_LIGHT = ("ConfigError", "FineTuneConfig")

# Submodules reachable as attributes (imported on first access).
_SUBMODULES = (
    "backbones",
    "callbacks",
    "checkpoint",
    "config",
    "data",
    "distribute",
    "export",
    "groups",
    "heads",
    "lr_finder",
    "optimizers",
    "predict",
    "preprocessing",
    "pretrained",
    "recipes",
    "registry",
    "reports",
    "runner",
    "schedules",
    "temperature",
    "testing",
    "trainability",
    "training",
    "tuning",
    "unfreeze",
)


def __getattr__(name: str):
    if name in _LIGHT:
        value = getattr(importlib.import_module(_ATTRIBUTES[name]), name)
    elif name in _ATTRIBUTES:
        value = getattr(importlib.import_module(_ATTRIBUTES[name]), name)
        # Model-level names also register the pretrained backbones for
        # `keras.models.load_model`, as the eager `import tlkit` did. (Not on submodule access:
        # tlkit's own modules reach each other that way while they are still loading.)
        importlib.import_module("tlkit.pretrained")
        importlib.import_module("tlkit.temperature")  # TemperatureScaling, for calibrated models
    elif name in _SUBMODULES:
        value = importlib.import_module(f"tlkit.{name}")
    else:
        raise AttributeError(f"module 'tlkit' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_ATTRIBUTES) | set(_SUBMODULES))


__all__ = sorted(set(_ATTRIBUTES) | set(_SUBMODULES))
