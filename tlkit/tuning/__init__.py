"""Hyperparameter search over tlkit's two-phase fine-tuning, with keras-tuner.

- `SearchSpace` (`space.py`): the space as data (`{"lr": {"min": .., "max": ..,
  "sampling": "log"}, ...}`), validated, turned into `hp.Float` / `hp.Int` / `hp.Choice`.
- `FineTuneHyperModel` (`hypermodel.py`): `build(hp)` a fresh model, `fit(hp, model, ...)` runs
  `tlkit.fine_tune` (head phase, then unfreezing); Hyperband rounds continue the same schedule.
- `tune` (`search.py`): build the tuner, search, resume, report. (The recipe front end,
  `tune_recipe`, is in `tlkit.runner`.)
- `report.py`: the trials table (Markdown, CSV), the best recipe (YAML), the objective-vs-LR plot.
"""

from tlkit.tuning.hypermodel import FineTuneHyperModel
from tlkit.tuning.search import SearchChangedError, TuneResult, tune
from tlkit.tuning.space import DEFAULTS, TUNABLE, SearchSpace

__all__ = [
    "DEFAULTS",
    "FineTuneHyperModel",
    "SearchChangedError",
    "SearchSpace",
    "TUNABLE",
    "TuneResult",
    "tune",
]
