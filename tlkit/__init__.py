"""tlkit: transfer learning and fine-tuning for Keras 3 / TensorFlow.

Importing tlkit configures nothing globally (no device, logging or dtype policy changes), and
imports nothing heavy: its names load on first use (PEP 562 `__getattr__`), so `tlkit --help`
answers without importing TensorFlow, and every submodule (`tlkit.export`, `tlkit.runner`, ...)
is reachable as an attribute after `import tlkit`.
"""

from __future__ import annotations

import importlib
import sys


def _version() -> str:
    """tlkit's version, from the installed distribution's metadata (written once, in
    pyproject.toml). A source tree on `PYTHONPATH` that was never installed reads
    pyproject.toml itself."""
    from importlib import metadata

    try:
        return metadata.version("tlkit")
    except metadata.PackageNotFoundError:
        import os
        import tomllib

        pyproject = os.path.join(os.path.dirname(os.path.dirname(__file__)), "pyproject.toml")
        try:
            with open(pyproject, "rb") as f:
                return tomllib.load(f)["project"]["version"]
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "0+unknown"


# Public names defined in a submodule: name -> module.
_ATTRIBUTES = {
    "ConfigError": "tlkit.config",
    "FineTuneConfig": "tlkit.config",
    "FineTunePlan": "tlkit.training.plan",
    "fine_tune_plan": "tlkit.training.plan",
    "FineTuneResult": "tlkit.training.fine_tuning",
    "fine_tune": "tlkit.training.fine_tuning",
    "train_head_on_features": "tlkit.head_training",
    "fit_linear_probe": "tlkit.head_training",
    "wise_ft": "tlkit.training.weight_interpolation",
    "load": "tlkit.saving",
    "predict": "tlkit.inference",
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
    "select_to_label": "tlkit.active",
}

# Modules that moved, reachable under their old names for one more release, with a
# DeprecationWarning (`tlkit.schedules`: use `tlkit.optimizers.schedules`).
_ALIASES = {"schedules": "tlkit.optimizers.schedules"}

# Names that need no TensorFlow (no layer registration on access).
_LIGHT = ("ConfigError", "FineTuneConfig")

# Submodules reachable as attributes (imported on first access).
_SUBMODULES = (
    "active",
    "backbones",
    "callbacks",
    "checkpoint",
    "config",
    "data",
    "distribute",
    "export",
    "groups",
    "heads",
    "inference",
    "lr_finder",
    "optimizers",
    "peft",
    "preprocessing",
    "pretrained",
    "recipes",
    "registry",
    "reports",
    "runner",
    "temperature",
    "testing",
    "trainability",
    "training",
    "tuning",
    "unfreeze",
)


# Modules that register tlkit's serializable Keras classes (layers, backbones, heads, optimizers,
# schedules), so `keras.models.load_model("model.keras")` finds them.
_SERIALIZABLE = (
    "tlkit.model",
    "tlkit.backbones.hub",
    "tlkit.backbones.text_preprocessing",
    "tlkit.data.preprocess",
    "tlkit.optimizers",
    "tlkit.optimizers.schedules",
    "tlkit.unfreeze",
    "tlkit.lr_finder",
    "tlkit.pretrained",
    "tlkit.temperature",
)


def register_serializables() -> None:
    """Registers tlkit's serializable Keras classes for `keras.models.load_model` (imports
    TensorFlow). `import tlkit` does it by itself when keras or tensorflow is already imported,
    and so does the first use of a model-level name (`tlkit.build_model`, ...)."""
    for module in _SERIALIZABLE:
        importlib.import_module(module)


def __getattr__(name: str):
    if name == "__version__":
        value = _version()
    elif name in _LIGHT:
        value = getattr(importlib.import_module(_ATTRIBUTES[name]), name)
    elif name in _ATTRIBUTES:
        value = getattr(importlib.import_module(_ATTRIBUTES[name]), name)
        # Model-level names also register the serializable classes for
        # `keras.models.load_model`, as the eager `import tlkit` did. (Not on submodule access:
        # tlkit's own modules reach each other that way while they are still loading.)
        register_serializables()
    elif name in _ALIASES:
        import warnings

        warnings.warn(f"tlkit.{name} is deprecated and will be removed in the next release: use "
                      f"{_ALIASES[name]}", DeprecationWarning, stacklevel=2)
        return importlib.import_module(_ALIASES[name])  # not cached: each use warns
    elif name in _SUBMODULES:
        value = importlib.import_module(f"tlkit.{name}")
    else:
        raise AttributeError(f"module 'tlkit' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_ATTRIBUTES) | set(_SUBMODULES))


__all__ = sorted(set(_ATTRIBUTES) | set(_SUBMODULES) | {"register_serializables"})


# `import keras, tlkit; keras.models.load_model(...)`: with Keras already loaded, registering is
# cheap; without it, `import tlkit` stays light (`tlkit --help` imports no TensorFlow).
if "keras" in sys.modules or "tensorflow" in sys.modules:
    register_serializables()
