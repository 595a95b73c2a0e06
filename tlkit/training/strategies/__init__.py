"""Fine-tuning strategies: what `FineTuneConfig.strategy` does around `fine_tune`'s one `fit`.

One registered object per strategy (`registry.STRATEGIES`; the interface: `base.Strategy`):

- `gradual`: the head phase, then the `unfreeze` schedule.
- `full`: the head phase, then every group at once.
- `lp_ft`: a converged linear probe initialises the head, then every group fine-tunes.
- `linear_probe`: the converged probe alone; no `fit`.
- `surgical`: the head phase, then only the head and one backbone group.
- `auto` (the default): LP-FT where the probe can run, else `gradual`.

Settings that apply to every strategy that fits: `lr`, `lr_schedule`, `optimizer`,
`weight_decay`, `layer_decay` / `layerwise_decay` (with `surgical` only the chosen group's
multiplier matters), `ema_momentum`, `label_smoothing`, `bn_policy`, `patience` (counted from
the start of fine-tuning; for `lp_ft` the probe itself is not among the epochs early stopping
can restore, `auto` checks it).

This package face imports nothing heavy; the names and classes are declared in
`tlkit.config.FINE_TUNE_STRATEGY_CLASSES`.

Example:
```python
from tlkit.training import strategies
strategies.get("auto").planned(tlkit.FineTuneConfig(), head)  # "lp_ft"
```
"""

from __future__ import annotations

import importlib

from tlkit.training.strategies.registry import NAMES, STRATEGIES, get

_ATTRIBUTES = {
    "Strategy": "base",
    "StrategyChoice": "base",
    "StrategyContext": "base",
    "prepare": "running",
    "finish": "running",
    "planned": "running",
    "segments": "running",
    "as_dataset": "probe",
}

__all__ = ["NAMES", "STRATEGIES", "get", *_ATTRIBUTES]


def __getattr__(name):
    if name in _ATTRIBUTES:
        return getattr(importlib.import_module(f"{__name__}.{_ATTRIBUTES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_ATTRIBUTES))
