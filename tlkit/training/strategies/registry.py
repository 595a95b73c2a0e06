"""The fine-tuning strategies by name (TensorFlow-free).

The table is declared once, in `tlkit.config.FINE_TUNE_STRATEGY_CLASSES` (with the other
vocabularies): name -> `module:Class`, imported on first use.
"""

from __future__ import annotations

import importlib

from tlkit.config import FINE_TUNE_STRATEGY_CLASSES as STRATEGIES
from tlkit.config import ConfigError

NAMES = tuple(STRATEGIES)


def get(name: str):
    """The strategy object registered as `name` (a fresh instance).

    Args:
        name: a `FineTuneConfig.strategy` value (a key of `tlkit.config.FINE_TUNE_STRATEGY_CLASSES`).

    Example:
    ```python
    from tlkit.training.strategies import registry
    registry.get("lp_ft").uses_probe  # True
    ```
    """
    if name not in STRATEGIES:
        raise ConfigError(f"FineTuneConfig.strategy: expected one of {list(NAMES)}, "
                          f"got {name!r}")
    module, cls = STRATEGIES[name].split(":")
    return getattr(importlib.import_module(module), cls)()
