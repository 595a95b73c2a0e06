"""Gradual unfreezing: schedules of trainable layer groups, applied inside one `fit()`."""

from tlkit.unfreeze.callback import GradualUnfreezing, prepare_optimizer, trainable_candidates
from tlkit.unfreeze.schedule import GradualUnfreeze, TableUnfreeze, UnfreezeSchedule, get

__all__ = [
    "GradualUnfreeze",
    "GradualUnfreezing",
    "TableUnfreeze",
    "UnfreezeSchedule",
    "get",
    "prepare_optimizer",
    "trainable_candidates",
]
