"""Learning-rate and momentum schedules for fine-tuning.

- `warmup_cosine`: linear warmup then cosine decay. Keras 3's `CosineDecay(warmup_target=,
  warmup_steps=)` already does exactly this, so this is only a convenience that fills it in.
- `OneCycle`: the one-cycle policy (Smith 2018; fastai's `fit_one_cycle`) as a serializable
  `LearningRateSchedule`. Keras has none, hence hand-written.
- `CombinedSchedule`: schedules one after the other (fastai's `combine_scheds`), e.g. a constant
  head-phase LR, then a lower, decaying LR once the backbone is unfrozen. Keras'
  `PiecewiseConstantDecay` only switches between constants, hence hand-written.
- `MomentumScheduler`: a callback that sets the optimizer's momentum (`beta_1` of Adam-like
  optimizers, `momentum` of SGD / RMSprop) at every step, e.g. `OneCycle.momentum`. Keras has no
  momentum schedules.

All schedules are functions of the optimizer step (`optimizer.iterations`), so they resume
exactly with `keras.callbacks.BackupAndRestore`, and they compose with gradual unfreezing (which
changes *which* variables train) and layer-wise multipliers (which scale the schedule's value
per group).
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf
from keras import ops

from tlkit.optimizers.util import current_step


def warmup_cosine(peak_lr, total_steps, warmup_steps=0, initial_lr=0.0, final_lr=0.0):
    """Linear warmup from `initial_lr` to `peak_lr`, then cosine decay to `final_lr`.

    Keras' own `keras.optimizers.schedules.CosineDecay` with `warmup_target` / `warmup_steps`
    (serializable as such); this function only translates the arguments.

    Args:
        peak_lr: learning rate at the end of the warmup.
        total_steps: warmup + decay steps; after them the LR stays at `final_lr`.
        warmup_steps: steps of linear warmup (0: start at `peak_lr`).
        initial_lr: learning rate at step 0 when warming up.
        final_lr: learning rate at the end of the decay.

    Returns:
        A `keras.optimizers.schedules.CosineDecay`.

    Example:
    ```python
    lr = tlkit.optimizers.schedules.warmup_cosine(1e-3, total_steps=1000, warmup_steps=100)
    model.compile(optimizer=keras.optimizers.AdamW(lr), loss="sparse_categorical_crossentropy")
    ```
    """
    total_steps, warmup_steps = int(total_steps), int(warmup_steps)
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(
            "Expected 0 <= warmup_steps < total_steps. "
            f"Received: warmup_steps={warmup_steps}, total_steps={total_steps}"
        )
    if peak_lr <= 0:
        raise ValueError(f"Expected `peak_lr` > 0. Received: peak_lr={peak_lr}")
    alpha = float(final_lr) / float(peak_lr)
    if warmup_steps == 0:
        return keras.optimizers.schedules.CosineDecay(
            float(peak_lr), decay_steps=total_steps, alpha=alpha
        )
    return keras.optimizers.schedules.CosineDecay(
        float(initial_lr),
        decay_steps=total_steps - warmup_steps,
        alpha=alpha,
        warmup_target=float(peak_lr),
        warmup_steps=warmup_steps,
    )


def _cos_anneal(start, end, fraction):
    """`start` -> `end` along half a cosine; `fraction` in [0, 1] (python or tensor)."""
    if isinstance(fraction, float):
        return end + (start - end) * (1.0 + math.cos(math.pi * fraction)) / 2.0
    return end + (start - end) * (1.0 + ops.cos(math.pi * fraction)) / 2.0


@keras.saving.register_keras_serializable(package="tlkit")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """The one-cycle learning rate (and momentum) policy, as in fastai's `fit_one_cycle`.

    The LR rises from `max_lr / div_factor` to `max_lr` over the first `pct_start` of
    `total_steps` and then anneals to `max_lr / final_div_factor`, both along cosines. The
    momentum does the opposite, from `moms[0]` down to `moms[1]` and back to `moms[2]`: give
    `schedule.momentum` to `MomentumScheduler` to apply it.

    Args:
        max_lr: peak learning rate.
        total_steps: length of the cycle in optimizer steps; the LR stays at its final value after.
        pct_start: fraction of the cycle spent warming up.
        div_factor: the LR starts at `max_lr / div_factor`.
        final_div_factor: the LR ends at `max_lr / final_div_factor` (fastai: 1e5).
        moms: momentum at the start, at the peak LR and at the end.

    Example:
    ```python
    one_cycle = tlkit.optimizers.schedules.OneCycle(1e-3, total_steps=epochs * steps_per_epoch)
    model.compile(optimizer=keras.optimizers.Adam(one_cycle), loss=...)
    model.fit(..., callbacks=[tlkit.callbacks.MomentumScheduler(one_cycle.momentum)])
    ```
    """

    def __init__(
        self,
        max_lr,
        total_steps,
        pct_start=0.25,
        div_factor=25.0,
        final_div_factor=1e5,
        moms=(0.95, 0.85, 0.95),
        name="OneCycle",
    ):
        super().__init__()
        if int(total_steps) < 2:
            raise ValueError(f"Expected `total_steps` >= 2. Received: total_steps={total_steps}")
        if not 0.0 < float(pct_start) < 1.0:
            raise ValueError(f"Expected 0 < pct_start < 1. Received: pct_start={pct_start}")
        if len(moms) != 3:
            raise ValueError(f"Expected 3 momentum values (start, mid, end). Received: {moms}")
        self.max_lr = float(max_lr)
        self.total_steps = int(total_steps)
        self.pct_start = float(pct_start)
        self.div_factor = float(div_factor)
        self.final_div_factor = float(final_div_factor)
        self.moms = tuple(float(m) for m in moms)
        self.name = name
        self._warm = max(1, int(round(self.total_steps * self.pct_start)))

    def _phases(self, step, start, mid, end):
        warm, total = float(self._warm), float(self.total_steps)
        if isinstance(step, float):
            step = min(max(step, 0.0), total)
            if step < warm:
                return _cos_anneal(start, mid, step / warm)
            return _cos_anneal(mid, end, (step - warm) / max(total - warm, 1.0))
        step = ops.clip(step, 0.0, total)
        up = _cos_anneal(start, mid, ops.minimum(step / warm, 1.0))
        down = _cos_anneal(mid, end, ops.maximum(step - warm, 0.0) / max(total - warm, 1.0))
        return ops.where(step < warm, up, down)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        return self._phases(
            step,
            self.max_lr / self.div_factor,
            self.max_lr,
            self.max_lr / self.final_div_factor,
        )

    def momentum(self, step) -> float:
        """Momentum at optimizer step `step` (a Python float; for `MomentumScheduler`)."""
        return float(self._phases(float(step), *self.moms))

    def get_config(self):
        return {
            "max_lr": self.max_lr,
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
            "moms": list(self.moms),
            "name": self.name,
        }


@keras.saving.register_keras_serializable(package="tlkit")
class CombinedSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Learning-rate schedules one after the other, each restarted at its own step 0.

    Args:
        boundaries: increasing optimizer steps where the next schedule takes over
            (`len(schedules) - 1` of them).
        schedules: floats (constant LRs) or `LearningRateSchedule`s; schedule `i` is called with
            `step - boundaries[i - 1]`.

    Example:
    ```python
    # head phase: 1e-3 for 2 epochs; then cosine from 1e-4 over 3 epochs
    lr = tlkit.optimizers.schedules.CombinedSchedule(
        [2 * steps], [1e-3, keras.optimizers.schedules.CosineDecay(1e-4, 3 * steps)])
    ```
    """

    def __init__(self, boundaries, schedules, name="CombinedSchedule"):
        super().__init__()
        boundaries = [int(b) for b in boundaries]
        if len(schedules) != len(boundaries) + 1:
            raise ValueError(
                "Expected one more schedule than boundaries. Received: "
                f"{len(schedules)} schedules, {len(boundaries)} boundaries."
            )
        if any(b <= a for a, b in zip(boundaries, boundaries[1:])) or any(b < 0 for b in boundaries):
            raise ValueError(f"Expected increasing boundaries >= 0. Received: {boundaries}")
        resolved = []
        for s in schedules:
            if isinstance(s, dict):
                s = keras.optimizers.schedules.deserialize(s)
            if not isinstance(s, keras.optimizers.schedules.LearningRateSchedule):
                s = float(s)
            resolved.append(s)
        self.boundaries = boundaries
        self.schedules = resolved
        self.name = name

    @staticmethod
    def _value(schedule, step):
        if isinstance(schedule, float):
            return ops.convert_to_tensor(schedule, "float32")
        return ops.cast(schedule(step), "float32")

    def __call__(self, step):
        step = ops.cast(step, "float32")
        starts = [0] + self.boundaries
        lr = self._value(self.schedules[-1], step - float(starts[-1]))
        for schedule, start, end in reversed(
            list(zip(self.schedules[:-1], starts[:-1], self.boundaries))
        ):
            lr = ops.where(step < float(end), self._value(schedule, step - float(start)), lr)
        return lr

    def get_config(self):
        return {
            "boundaries": list(self.boundaries),
            "schedules": [
                s
                if isinstance(s, float)
                else keras.optimizers.schedules.serialize(s)
                for s in self.schedules
            ],
            "name": self.name,
        }


# -- momentum -----------------------------------------------------------------------------------
class _ScheduledFloat(float):
    """A float hyperparameter whose value in the traced train step comes from a variable.

    Keras optimizers read `beta_1` / `momentum` as Python floats when `train_step` is traced, so
    assigning a new float later changes nothing until a retrace. This float subclass converts to
    the variable's value inside TensorFlow ops (`__tf_tensor__`) and in arithmetic, while Python
    checks (`momentum != 0` in SGD, `momentum > 0` in RMSprop) and JSON configs see the float it
    was created with.
    """

    def __new__(cls, value, variable):
        obj = super().__new__(cls, value)
        obj.variable = variable
        return obj

    def __tf_tensor__(self, dtype=None, name=None):
        value = self.variable.value()
        return tf.cast(value, dtype) if dtype is not None else value

    def _v(self):
        return self.variable.value()

    def __add__(self, other):
        return self._v() + other

    def __radd__(self, other):
        return other + self._v()

    def __sub__(self, other):
        return self._v() - other

    def __rsub__(self, other):
        return other - self._v()

    def __mul__(self, other):
        return self._v() * other

    def __rmul__(self, other):
        return other * self._v()

    def __truediv__(self, other):
        return self._v() / other

    def __rtruediv__(self, other):
        return other / self._v()

    def __pow__(self, other):
        return self._v() ** other

    def __rpow__(self, other):
        return other ** self._v()

    def __neg__(self):
        return -self._v()

    def __reduce__(self):  # copies / pickles are plain floats
        return (float, (float(self),))


def _momentum_attribute(optimizer) -> str:
    for name in ("beta_1", "momentum"):
        if hasattr(optimizer, name):
            return name
    raise ValueError(
        f"{type(optimizer).__name__} has no momentum hyperparameter (`beta_1` or `momentum`) "
        "for `MomentumScheduler` to schedule."
    )


class MomentumScheduler(keras.callbacks.Callback):
    """Sets the optimizer's momentum from `schedule(optimizer.iterations)` before every step.

    Schedules `beta_1` of Adam, AdamW, Nadam, Adamax, Lion and `momentum` of SGD and RMSprop
    (SGD / RMSprop need a momentum > 0 at construction, otherwise they keep no momentum state).
    The value lives in a variable read by the traced train step, so no retrace is needed; at the
    end of training the optimizer gets its original float back.

    Args:
        schedule: callable `step -> momentum`, e.g. `OneCycle(...).momentum`.

    Example:
    ```python
    one_cycle = tlkit.optimizers.schedules.OneCycle(1e-3, total_steps=600)
    model.fit(..., callbacks=[tlkit.callbacks.MomentumScheduler(one_cycle.momentum)])
    ```
    """

    def __init__(self, schedule):
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"Expected a callable `schedule(step)`. Received: {schedule!r}")
        self.schedule = schedule
        self._target = None
        self._attribute = None
        self._original = None

    def _optimizer(self):
        optimizer = self.model.optimizer
        if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            optimizer = optimizer.inner_optimizer
        return optimizer

    def on_train_begin(self, logs=None):
        optimizer = self._optimizer()
        attribute = _momentum_attribute(optimizer)
        original = float(getattr(optimizer, attribute))
        if attribute == "momentum" and original == 0.0:
            raise ValueError(
                f"{type(optimizer).__name__} was created with momentum=0, so it keeps no "
                "momentum state to schedule. Create it with momentum > 0 (e.g. 0.9)."
            )
        step = current_step(optimizer)
        value = float(self.schedule(step))
        # A plain (not Keras-tracked) variable: it is not part of the optimizer's saved state.
        variable = tf.Variable(value, trainable=False, dtype="float32", name="momentum")
        setattr(optimizer, attribute, _ScheduledFloat(original, variable))
        self._target, self._attribute, self._original = optimizer, attribute, original
        self.model.make_train_function(force=True)

    def on_train_batch_begin(self, batch, logs=None):
        step = current_step(self._target)
        getattr(self._target, self._attribute).variable.assign(float(self.schedule(step)))

    def on_train_end(self, logs=None):
        if self._target is not None:
            setattr(self._target, self._attribute, self._original)
            self.model.make_train_function(force=True)
        self._target = None


def describe(config) -> dict:
    """What `from_config` (and the optimizer around it) does, in words, per phase:
    `{"head": ..., "fine": ...}` (a phase of 0 epochs is left out), for model cards.

    Example:
    ```python
    describe(tlkit.FineTuneConfig(head_epochs=2, fine_epochs=5, lr=3e-4, head_lr=3e-3))
    # {"head": "constant 0.003 for 2 epochs", "fine": "cosine 0.0003 -> 3e-06 over 5 epochs"}
    ```
    """
    def epochs(n):
        return f"{n} epoch{'s' * (n != 1)}"

    phases = {}
    if config.head_epochs:
        phases["head"] = f"constant {config.resolved_head_lr:g} for {epochs(config.head_epochs)}"
    if config.fine_epochs:
        lr = float(config.lr)
        if config.lr_schedule == "constant":
            text = f"constant {lr:g}"
        elif config.lr_schedule == "cosine":
            text = f"cosine {lr:g} -> {lr * 0.01:g}"  # CosineDecay(alpha=0.01) below
        elif config.lr_schedule == "one_cycle":
            text = f"one-cycle {lr / 5:g} -> {lr:g} (first 30%) -> {lr / 1e5:g}"  # OneCycle below
        else:
            text = f"{config.lr_schedule} from {lr:g}"
        text += f" over {epochs(config.fine_epochs)}"
        if config.layer_decay is not None:
            text += f", x{config.layer_decay:g} per group below the top"
        elif config.layerwise_decay is not None:
            text += f", /{config.layerwise_decay:g} per group below the top"
        phases["fine"] = text
    return phases


def from_config(config, steps_per_epoch: int):
    """The learning rate of a `tlkit.FineTuneConfig` over its epochs, per optimizer step.

    The head phase trains at `config.resolved_head_lr` (constant); fine-tuning at `config.lr`,
    constant, cosine-decayed to `lr / 100`, or a one-cycle (`config.lr_schedule`).

    A head-only run (`fine_epochs=0`) trains at the head LR throughout: a float, as plain
    `fit` would, not a switch to `lr` at a step the run never reaches (#32).

    Returns:
        A float (constant) or a `LearningRateSchedule`.
    """
    head_steps = config.head_epochs * int(steps_per_epoch)
    fine_steps = config.fine_epochs * int(steps_per_epoch)
    if fine_steps == 0:
        return float(config.resolved_head_lr)
    if config.lr_schedule == "constant":
        fine = float(config.lr)
    elif config.lr_schedule == "cosine":
        fine = keras.optimizers.schedules.CosineDecay(float(config.lr), fine_steps, alpha=0.01)
    else:
        fine = OneCycle(float(config.lr), max(fine_steps, 2), pct_start=0.3, div_factor=5)
    if head_steps == 0:
        return fine
    return CombinedSchedule([head_steps], [config.resolved_head_lr, fine])
