"""`lr_find`: the learning-rate range test (Smith 2017; fastai's `Learner.lr_find`).

Keras has no LR finder, hence this one. It reuses Keras' machinery: one `model.fit()` over
`num_steps` batches with a callback that records each batch's loss and stops on divergence, and
an exponential LR sweep as a `LearningRateSchedule` of the optimizer step. The sweep runs on a
*copy* of the optimizer (same class and config, layer-wise multipliers included), so the model's
own optimizer is never touched; the model's variables (weights, BatchNorm statistics, RNG
seeds) are saved before and assigned back after, so the model is bit-identical afterwards.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tlkit.optimizers.util import clone_optimizer

logger = logging.getLogger("tlkit.lr_finder")

SUGGESTIONS = ("steepest", "min/10")


@dataclasses.dataclass
class LRFinderResult:
    """What `lr_find` measured.

    Attributes:
        lrs: learning rate of each step.
        losses: training loss of each step (that batch only).
        smoothed_losses: bias-corrected exponential moving average of `losses`.
        suggestion: the suggested learning rate (see `method`).
        method: `"steepest"`: where the smoothed loss falls fastest (the most negative slope
            against log10(lr)), searched before the loss minimum; `"min/10"`: a tenth of the LR at
            the minimum smoothed loss (used as fallback when there are too few points).
        lr_at_min_loss: learning rate at the minimum smoothed loss.
        diverged: whether the sweep stopped early because the loss diverged.
        plot_path: where the plot was saved, if anywhere.
    """

    lrs: list
    losses: list
    smoothed_losses: list
    suggestion: float
    method: str
    lr_at_min_loss: float
    diverged: bool
    plot_path: str | None = None

    def plot(self, path=None):
        """Plots smoothed loss against LR (log scale); saves a PNG when `path` is given.

        Uses matplotlib's object API (`matplotlib.figure.Figure`), so it never changes the
        global pyplot backend.

        Returns:
            The `matplotlib.figure.Figure`.
        """
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 4), dpi=100)
        ax = fig.subplots()
        ax.plot(self.lrs, self.losses, color="0.8", linewidth=1, label="loss")
        ax.plot(self.lrs, self.smoothed_losses, color="C0", label="smoothed loss")
        ax.axvline(self.suggestion, color="C3", linestyle="--",
                   label=f"suggestion ({self.method}): {self.suggestion:.2e}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        finite = [v for v in self.smoothed_losses if math.isfinite(v)]
        if finite:
            low, high = min(finite), min(max(finite), 4 * max(finite[0], min(finite)))
            pad = 0.05 * max(high - low, 1e-8)
            ax.set_ylim(low - pad, high + pad)
        ax.legend(loc="best")
        fig.tight_layout()
        if path is not None:
            fig.savefig(str(path))
            self.plot_path = str(path)
        return fig


@keras.saving.register_keras_serializable(package="tlkit")
class ExponentialSweep(keras.optimizers.schedules.LearningRateSchedule):
    """`min_lr * (max_lr / min_lr) ** ((step - start_step) / (num_steps - 1))`: the LR-finder sweep."""

    def __init__(self, min_lr, max_lr, num_steps, start_step=0):
        super().__init__()
        self.min_lr = float(min_lr)
        self.max_lr = float(max_lr)
        self.num_steps = int(num_steps)
        self.start_step = int(start_step)

    def value(self, i) -> float:
        """LR of the `i`-th sweep step (Python float)."""
        return self.min_lr * (self.max_lr / self.min_lr) ** (i / max(self.num_steps - 1, 1))

    def __call__(self, step):
        i = ops.cast(step, "float32") - float(self.start_step)
        ratio = math.log(self.max_lr / self.min_lr) / max(self.num_steps - 1, 1)
        return self.min_lr * ops.exp(i * ratio)

    def get_config(self):
        return {
            "min_lr": self.min_lr,
            "max_lr": self.max_lr,
            "num_steps": self.num_steps,
            "start_step": self.start_step,
        }


class _LossRecorder(keras.callbacks.Callback):
    """Records each batch's own loss and stops `fit` when the smoothed loss diverges."""

    def __init__(self, sweep, smooth, stop_factor):
        super().__init__()
        self.sweep = sweep
        self.smooth = smooth
        self.stop_factor = stop_factor
        self.lrs, self.losses, self.smoothed = [], [], []
        self.diverged = False
        self._avg = 0.0
        self._best = math.inf

    def on_train_batch_begin(self, batch, logs=None):
        # Keras logs running means over the epoch; reset them to get this batch's loss alone.
        self.model.reset_metrics()

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", math.nan))
        i = len(self.losses)
        self.lrs.append(self.sweep.value(i))
        self.losses.append(loss)
        if not math.isfinite(loss):
            self.smoothed.append(math.nan)
            self.diverged = True
            self.model.stop_training = True
            return
        self._avg = self.smooth * self._avg + (1 - self.smooth) * loss
        smoothed = self._avg / (1 - self.smooth ** (i + 1))
        self.smoothed.append(smoothed)
        self._best = min(self._best, smoothed)
        if self.stop_factor is not None and i > 0 and smoothed > self.stop_factor * self._best:
            self.diverged = True
            self.model.stop_training = True


def suggest(lrs, smoothed_losses, method="steepest", skip_start=None) -> tuple[float, str]:
    """The suggested LR from a sweep; see `LRFinderResult.method`.

    Returns:
        `(learning_rate, method actually used)`.
    """
    if method not in SUGGESTIONS:
        raise ValueError(f"Expected `method` in {SUGGESTIONS}. Received: method={method!r}")
    lrs = np.asarray(lrs, dtype="float64")
    losses = np.asarray(smoothed_losses, dtype="float64")
    finite = np.isfinite(losses)
    if not finite.any():
        raise ValueError("The LR sweep produced no finite loss; lower `min_lr`.")
    lrs, losses = lrs[finite], losses[finite]
    i_min = int(np.argmin(losses))
    at_min = float(lrs[i_min])
    if method == "steepest":
        skip = max(1, len(losses) // 10) if skip_start is None else int(skip_start)
        if i_min - skip >= 2:
            slopes = np.gradient(losses[: i_min + 1], np.log10(lrs[: i_min + 1]))
            i = skip + int(np.argmin(slopes[skip:]))
            return float(lrs[i]), "steepest"
    return at_min / 10.0, "min/10"


def _as_repeated_dataset(data, batch_size):
    if isinstance(data, tf.data.Dataset):
        return data.repeat()
    if isinstance(data, (tuple, list)) and len(data) in (2, 3):
        dataset = tf.data.Dataset.from_tensor_slices(tuple(data))
        return dataset.batch(batch_size).repeat()
    return data  # a PyDataset / generator: used as it comes


def lr_find(
    model,
    data,
    min_lr=1e-7,
    max_lr=10.0,
    num_steps=100,
    plot_path=None,
    stop_factor=4.0,
    smooth=0.98,
    suggestion="steepest",
    batch_size=32,
    verbose=0,
) -> LRFinderResult:
    """Learning-rate range test: trains with an exponentially growing LR and records the loss.

    The LR goes from `min_lr` to `max_lr` over `num_steps` batches (one `fit` with a copy of the
    model's optimizer). The sweep stops early when the smoothed loss exceeds `stop_factor` times
    its minimum, or is not finite. Afterwards the model's variables are restored bit-identically
    and its optimizer is the original object with its state untouched. With layer-wise
    multipliers, the swept LR is the base LR (each group gets it times its multiplier); frozen
    groups stay frozen.

    Args:
        model: a compiled Keras model.
        data: a batched `tf.data.Dataset` of `(x, y)` (repeated as needed), a tuple
            `(x, y)` of arrays (batched with `batch_size`), or a `keras.utils.PyDataset`.
        min_lr, max_lr: the sweep's range.
        num_steps: number of batches (LR values).
        plot_path: save a PNG plot of loss against LR there.
        stop_factor: stop when the smoothed loss exceeds this multiple of its best (None: never).
        smooth: EMA factor of the smoothed loss (bias corrected).
        suggestion: `"steepest"` (default) or `"min/10"`; see `LRFinderResult.method`.
        batch_size: for array data.
        verbose: verbosity of the underlying `fit`.

    Returns:
        An `LRFinderResult` with `lrs`, `losses`, `smoothed_losses`, `suggestion`.

    Example:
    ```python
    result = tlkit.lr_find(model, train_ds, plot_path="lr_find.png")
    model.optimizer.learning_rate = result.suggestion
    ```
    """
    if not 0 < min_lr < max_lr:
        raise ValueError(
            f"Expected 0 < min_lr < max_lr. Received: min_lr={min_lr}, max_lr={max_lr}"
        )
    if int(num_steps) < 2:
        raise ValueError(f"Expected `num_steps` >= 2. Received: num_steps={num_steps}")
    if not 0 <= smooth < 1:
        raise ValueError(f"Expected 0 <= smooth < 1. Received: smooth={smooth}")
    if getattr(model, "optimizer", None) is None:
        raise ValueError("The model is not compiled. Call `model.compile(...)` before `lr_find`.")

    original_optimizer = model.optimizer
    saved_variables = [(v, np.array(v.numpy(), copy=True)) for v in model.variables]
    saved_history = getattr(model, "history", None)
    saved_steps_per_execution = model.steps_per_execution
    saved_initial_epoch = getattr(model, "_initial_epoch", None)

    sweep = ExponentialSweep(min_lr, max_lr, int(num_steps))
    recorder = _LossRecorder(sweep, float(smooth), stop_factor)
    try:
        with model.distribute_strategy.scope():
            model.optimizer = clone_optimizer(original_optimizer, learning_rate=sweep)
        model.steps_per_execution = 1
        model._initial_epoch = None
        model.make_train_function(force=True)
        model.fit(
            _as_repeated_dataset(data, batch_size),
            epochs=1,
            steps_per_epoch=int(num_steps),
            callbacks=[recorder],
            shuffle=False,
            verbose=verbose,
        )
    finally:
        model.optimizer = original_optimizer
        model.steps_per_execution = saved_steps_per_execution
        model._initial_epoch = saved_initial_epoch
        for variable, value in saved_variables:
            variable.assign(value)
        model.reset_metrics()
        model.history = saved_history
        model.stop_training = False
        model.make_train_function(force=True)

    if not recorder.losses:
        raise ValueError("The LR sweep ran no step: is `data` empty?")
    value, method = suggest(recorder.lrs, recorder.smoothed, suggestion)
    finite = [(s, lr) for s, lr in zip(recorder.smoothed, recorder.lrs) if math.isfinite(s)]
    result = LRFinderResult(
        lrs=recorder.lrs,
        losses=recorder.losses,
        smoothed_losses=recorder.smoothed,
        suggestion=value,
        method=method,
        lr_at_min_loss=min(finite)[1] if finite else math.nan,
        diverged=recorder.diverged,
    )
    logger.info(
        "lr_find: %d steps from %.1e to %.1e%s; suggestion (%s) %.2e",
        len(result.lrs), result.lrs[0], result.lrs[-1],
        " (stopped: loss diverged)" if result.diverged else "", method, value,
    )
    if plot_path is not None:
        result.plot(plot_path)
    return result
