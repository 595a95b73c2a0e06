"""Phase-aware early stopping: which epoch's weights `fine_tune` may hand back.

Early stopping in `fine_tune` never stops during the head phase and restarts its patience when
fine-tuning begins. Which epochs' weights it may restore is `FineTuneConfig.restore_head_epoch`:

- `"never"` (default): when fine-tuning epochs follow, the head-only epochs' weights are never
  restored; the best epoch is chosen among the fine-tuning epochs. On a validation split of a
  few examples the validation loss of the freshly unfrozen model often rises for an epoch or
  two while accuracy climbs, so restoring "the best epoch" handed back the head-only weights:
  Fashion-MNIST at 5 per class (10 validation images), `full` at the defaults, 0.352 test
  accuracy with the head epoch restored against 0.538 without (#36;
  docs/benchmarks/strategies.md). Where fine-tuning really loses to the head alone, `auto`
  already hands back its probe (`strategies.keep_probe_if_better`, beyond validation noise).
- `"always"`: the best epoch of the whole run, head-only epochs included (tlkit before #36).

With `fine_epochs=0` the head epochs are all there is, and the best of them is restored.

A validation split of fewer than `FineTuneConfig.restore_best_from` examples (default 100) is
too small to choose an epoch on: there the stopper neither stops nor restores, and the last
epoch's weights stay (`keep_last`). Only a diverged last epoch is replaced by the best one: a
monitored value that is NaN or inf, or more than `DIVERGED` times the best (noise on a small
split moves the loss by tens of percent, a blow-up by orders of magnitude).
`count_examples` counts the split (up to the threshold).

Example:
```python
stopper = PhaseAwareEarlyStopping(head_epochs=1, monitor="val_loss", patience=3,
                                  restore_best_weights=True)
model.fit(train, validation_data=val, epochs=4, callbacks=[stopper])
stopper.best_epoch  # >= 1: a fine-tuning epoch
```
"""

from __future__ import annotations

import math

import keras

from tlkit.config import HEAD_EPOCH_RESTORE

DIVERGED = 2.0
"""With `keep_last`, a last epoch whose monitored loss is more than this many times the best
epoch's counts as diverged, and the best epoch comes back instead."""


class PhaseAwareEarlyStopping(keras.callbacks.EarlyStopping):
    """`EarlyStopping` that never stops during the head phase, restarts its patience when
    fine-tuning begins and, unless `restore_head_epoch="always"`, forgets the head phase's best
    epoch there, so the weights restored at the end come from a fine-tuning epoch.

    Keras' `start_from_epoch` would also skip the head epochs, but it skips `fine_epochs=0`
    runs' only epochs too; this subclass keeps the head phase's best for those.

    Args:
        head_epochs: epochs of the head phase (fine-tuning starts at this 0-based epoch).
        restore_head_epoch: `"never"` or `"always"` (`FineTuneConfig.restore_head_epoch`).
        keep_last: never stop and keep the last epoch's weights unless it diverged (its
            monitored value not finite, or over `DIVERGED` x the best): a validation split
            too small to choose an epoch on.
        **kwargs: `keras.callbacks.EarlyStopping`'s (`monitor`, `patience`,
            `restore_best_weights`, ...).
    """

    def __init__(self, head_epochs, restore_head_epoch="never", keep_last=False, **kwargs):
        super().__init__(**kwargs)
        if restore_head_epoch not in HEAD_EPOCH_RESTORE:
            raise ValueError(f"restore_head_epoch={restore_head_epoch!r}: expected one of "
                             f"{HEAD_EPOCH_RESTORE}")
        self.head_epochs = int(head_epochs)
        self.restore_head_epoch = restore_head_epoch
        self.keep_last = bool(keep_last)
        self.forgot_head_epoch = None
        """The head-only best epoch set aside when fine-tuning began, else `None`."""
        self.kept_last_epoch = None
        """With `keep_last`: the last epoch, when its weights were kept (nothing restored)."""
        self._head_best = None
        self._last = None  # (epoch, monitored value) of the latest epoch that reported one

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.forgot_head_epoch, self._head_best, self.kept_last_epoch = None, None, None
        self._last = None

    def on_epoch_begin(self, epoch, logs=None):
        if epoch != self.head_epochs or epoch == 0:
            return
        self.wait = 0
        if self.restore_head_epoch == "never" and self.best is not None:
            # Kept only as the fallback for a fine-tuning phase with no finite score.
            self.forgot_head_epoch = int(self.best_epoch)
            self._head_best = (self.best, self.best_epoch, self.best_weights)
            self.best, self.best_weights, self.best_epoch = None, None, epoch

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if current is not None:
            self._last = (epoch, float(current))
        if current is not None and not math.isfinite(float(current)):
            # A diverged epoch (NaN / inf) is never the best one.
            self.wait += 1
            if self.wait >= self.patience and epoch >= self.head_epochs and epoch > 0:
                self.stopped_epoch = epoch
                self.model.stop_training = True
            return
        super().on_epoch_end(epoch, logs)
        if (self.keep_last or epoch < self.head_epochs) and self.stopped_epoch == epoch \
                and epoch > 0:
            self.stopped_epoch = 0
            self.model.stop_training = False

    def _diverged(self) -> bool:
        """Whether the last epoch's monitored value is not finite or beyond `DIVERGED` x the
        best (a loss; a monitor that grows, e.g. accuracy, is judged on finiteness only)."""
        last = self._last[1]
        if not math.isfinite(last):
            return True
        best = self.best
        if best is None or not math.isfinite(float(best)) or "loss" not in self.monitor:
            return False
        return float(best) > 0 and last > DIVERGED * float(best)

    def on_train_end(self, logs=None):
        if self.keep_last and self._last is not None and not self._diverged():
            # The last epoch did not diverge: its weights stay.
            self.kept_last_epoch = self._last[0]
            self.best_weights, self._head_best, self.forgot_head_epoch = None, None, None
            return
        if self.best_weights is None and self._head_best is not None:
            # No fine-tuning epoch scored a finite value: the head phase's best comes back.
            self.best, self.best_epoch, self.best_weights = self._head_best
            self.forgot_head_epoch = None
        super().on_train_end(logs)

def restore_record(stopper, config, val_examples=None) -> dict | None:
    """What early stopping handed back, for `FineTuneResult.budget["early_stopping"]` (and so
    metrics.json and the model card): the rule, the epoch restored (0-based) and the head-only
    best epoch it dropped when fine-tuning began, or the last epoch kept on a validation split
    below `restore_best_from` examples; `None` without early stopping.

    Args:
        stopper: the run's `PhaseAwareEarlyStopping`, or `None`.
        config: the run's `FineTuneConfig`.
        val_examples: the validation examples counted (`count_examples`), if counted.

    Example: `{"restore_head_epoch": "never", "restored_epoch": 3, "head_epoch_dropped": 0}`.
    """
    if stopper is None:
        return None
    restored = int(stopper.best_epoch) if stopper.best_weights is not None else None
    record = {"restore_head_epoch": config.restore_head_epoch, "restored_epoch": restored,
              "head_epoch_dropped": getattr(stopper, "forgot_head_epoch", None)}
    if getattr(stopper, "keep_last", False):
        record.update(kept_last_epoch=stopper.kept_last_epoch, val_examples=val_examples,
                      restore_best_from=int(config.restore_best_from))
    return record


def count_examples(data, at_most: int) -> int:
    """How many examples `data` holds, counted up to `at_most` (a dataset is read only until
    then): arrays / `(x, y)` tuples by length, a batched `tf.data.Dataset` by its batches'
    leading dimension.

    Args:
        data: `(x, y[, w])` arrays, or a batched `tf.data.Dataset` (what `fit` takes).
        at_most: stop counting here.

    Example: `count_examples((x_val, y_val), 100)` -> `min(len(x_val), 100)`.
    """
    import tensorflow as tf

    if isinstance(data, (tuple, list)):
        first = tf.nest.flatten(data[0])[0]
        return min(int(len(first)), int(at_most))
    count = 0
    for batch in data:
        first = tf.nest.flatten(batch)[0]
        count += int(first.shape[0]) if first.shape.rank else 1
        if count >= at_most:
            break
    return min(count, int(at_most))

