"""tlkit's Keras callbacks, in one namespace (like `keras.callbacks`).

- `GradualUnfreezing`: applies an `UnfreezeSchedule` inside one `fit()` (`tlkit.unfreeze`).
- `MomentumScheduler`: sets the optimizer's momentum / `beta_1` every step (`tlkit.schedules`).
"""

from tlkit.schedules import MomentumScheduler
from tlkit.unfreeze.callback import GradualUnfreezing

__all__ = ["GradualUnfreezing", "MomentumScheduler"]
