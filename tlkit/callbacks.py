"""tlkit's Keras callbacks, in one namespace (like `keras.callbacks`).

- `GradualUnfreezing`: applies an `UnfreezeSchedule` inside one `fit()` (`tlkit.unfreeze`).
- `MomentumScheduler`: sets the optimizer's momentum / `beta_1` every step (`tlkit.optimizers.schedules`).
- `PhaseAwareEarlyStopping`: early stopping that waits for fine-tuning to start but keeps the
  best weights of any epoch (`tlkit.fine_tune_plan`).
- `AtomicBackupAndRestore`: Keras's `BackupAndRestore` with atomic commits and per-worker
  folders (`tlkit.checkpoint`).
- `FineTuneStartWeights`: keeps the weights at the start of fine-tuning, the pretrained end of
  WiSE-FT (`tlkit.training.weight_interpolation`).
- `StochasticWeightAveraging`: the mean of the weights over the last epochs, BatchNorm
  statistics recomputed (`tlkit.training.swa`).
"""

from tlkit.checkpoint import AtomicBackupAndRestore
from tlkit.optimizers.schedules import MomentumScheduler
from tlkit.training.plan import PhaseAwareEarlyStopping
from tlkit.training.swa import StochasticWeightAveraging
from tlkit.training.weight_interpolation import FineTuneStartWeights
from tlkit.unfreeze.callback import GradualUnfreezing

__all__ = [
    "AtomicBackupAndRestore",
    "FineTuneStartWeights",
    "GradualUnfreezing",
    "MomentumScheduler",
    "PhaseAwareEarlyStopping",
    "StochasticWeightAveraging",
]
