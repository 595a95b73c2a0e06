"""`fine_tune`: head first, then (gradual) unfreezing with a lower LR, in ONE `fit()`.

The analogue of fastai's `Learner.fine_tune`, built from tlkit's mid-level pieces, each usable on
its own: `UnfreezeSchedule` + `GradualUnfreezing` (which groups train when), a
`CombinedSchedule` learning rate (the head LR, then the lower fine-tuning LR, constant, cosine or
one-cycle), optional layer-wise LR decay (`tlkit.optimizers.layerwise`), the BatchNorm policy,
early stopping with best-weight restore, and `BackupAndRestore` for preemption.

Everything happens inside a single `model.fit()`, so the optimizer state, the callbacks (early
stopping, TensorBoard, your own) and the History continue across the phase switch, and a killed
run resumes from `checkpoint_dir` with the same groups trainable and the same LR.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import keras
import tensorflow as tf

from tlkit import groups as groups_lib
from tlkit import heads as heads_lib
from tlkit import schedules as schedules_lib
from tlkit.checkpoint import AtomicBackupAndRestore
from tlkit.optimizers.layerwise import layerwise
from tlkit.optimizers.util import clone_optimizer
from tlkit.unfreeze import schedule as unfreeze_lib
from tlkit.unfreeze.callback import GradualUnfreezing, prepare_optimizer

logger = logging.getLogger("tlkit.training")

LR_SCHEDULES = ("cosine", "constant", "one_cycle")


@dataclasses.dataclass
class FineTuneResult:
    """What `fine_tune` did.

    Attributes:
        model: the fine-tuned model (best weights when early stopping restored them).
        history: the Keras `History` of the one `fit()` (all phases). Its `history` dict also has
            `"unfrozen_groups"`: the number of trainable backbone groups at each epoch.
        unfreeze_events: the changes `GradualUnfreezing` applied (`epoch`, `step`,
            `num_unfrozen`, `trainable_groups`, `trainable_params`), the starting state first.
        head_epochs, fine_epochs: the two phases' lengths.
        schedule: the `UnfreezeSchedule` used.
        best_epoch: the epoch (0-based) whose weights early stopping restored, else `None`.
        stopped_epoch: the epoch where early stopping stopped the run, else `None`.
    """

    model: keras.Model
    history: keras.callbacks.History
    unfreeze_events: list
    head_epochs: int
    fine_epochs: int
    schedule: unfreeze_lib.UnfreezeSchedule
    best_epoch: int | None = None
    stopped_epoch: int | None = None

    @property
    def unfreeze_epochs(self) -> list[int]:
        """Epochs (0-based) at whose start more groups became trainable."""
        return [e["epoch"] for e in self.unfreeze_events[1:]]


class _PhaseAwareEarlyStopping(keras.callbacks.EarlyStopping):
    """`EarlyStopping` that never stops during the head phase and restarts its patience when
    fine-tuning begins, but keeps the best weights from *any* epoch (a head-only epoch can be the
    best one when fine-tuning overfits). Keras' `start_from_epoch` would ignore head epochs for
    the best weights too, hence this small subclass."""

    def __init__(self, head_epochs, **kwargs):
        super().__init__(**kwargs)
        self.head_epochs = int(head_epochs)

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.head_epochs:
            self.wait = 0

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if epoch < self.head_epochs and self.stopped_epoch == epoch and epoch > 0:
            self.stopped_epoch = 0
            self.model.stop_training = False


def _split_epochs(epochs):
    if isinstance(epochs, dict):
        unknown = set(epochs) - {"head", "fine"}
        if unknown:
            raise ValueError(f"Expected `epochs` keys 'head' and 'fine'. Received: {sorted(epochs)}")
        head, fine = epochs.get("head", 1), epochs.get("fine", 1)
    elif isinstance(epochs, (tuple, list)):
        if len(epochs) != 2:
            raise ValueError(
                f"Expected `epochs` as (head_epochs, fine_epochs). Received: epochs={epochs!r}"
            )
        head, fine = epochs
    elif isinstance(epochs, int) and not isinstance(epochs, bool):
        head, fine = 1, epochs
    else:
        raise TypeError(
            "Expected `epochs` as an int (fine-tuning epochs after 1 head epoch), a tuple "
            f"(head_epochs, fine_epochs) or a dict. Received: {epochs!r}"
        )
    head, fine = int(head), int(fine)
    if head < 0 or fine < 0 or head + fine == 0:
        raise ValueError(
            f"Expected head_epochs >= 0, fine_epochs >= 0, and some epochs. Received: {head}, {fine}"
        )
    return head, fine


def _steps_per_epoch(train, steps_per_epoch, batch_size):
    if steps_per_epoch is not None:
        return int(steps_per_epoch)
    if isinstance(train, tf.data.Dataset):
        n = int(train.cardinality())
        if n > 0:
            return n
        raise ValueError(
            "The training dataset's length is unknown or infinite (cardinality "
            f"{n}); pass `steps_per_epoch=` so the LR schedule can switch at the right step."
        )
    if isinstance(train, (tuple, list)) and len(train) in (2, 3):
        return math.ceil(len(train[0]) / int(batch_size))
    try:
        return len(train)
    except TypeError:
        raise ValueError("Could not tell the number of batches per epoch; pass `steps_per_epoch=`.") from None


def _unfreeze_schedule(unfreeze, head_epochs, fine_epochs, num_groups):
    if isinstance(unfreeze, unfreeze_lib.UnfreezeSchedule):
        return unfreeze
    if unfreeze == "gradual":
        # Spread the groups over the fine-tuning epochs so that all train in the last one.
        per_epoch = max(1, math.ceil(num_groups / max(fine_epochs, 1)))
        return unfreeze_lib.UnfreezeSchedule.gradual(
            head_epochs=head_epochs, first=per_epoch, every=1, per_step=per_epoch
        )
    if unfreeze == "all" or (isinstance(unfreeze, int) and not isinstance(unfreeze, bool)):
        return unfreeze_lib.UnfreezeSchedule.table({0: 0, head_epochs: unfreeze})
    raise ValueError(
        "Expected `unfreeze` 'gradual', 'all', a number of top groups, or an UnfreezeSchedule. "
        f"Received: unfreeze={unfreeze!r}"
    )


def _learning_rate(head_lr, lr, schedule, head_steps, fine_steps):
    if schedule == "constant" or fine_steps == 0:
        fine = float(lr)
    elif schedule == "cosine":
        fine = keras.optimizers.schedules.CosineDecay(float(lr), fine_steps, alpha=0.01)
    else:
        fine = schedules_lib.OneCycle(float(lr), max(fine_steps, 2), pct_start=0.3, div_factor=5)
    if head_steps == 0:
        return fine
    return schedules_lib.CombinedSchedule([head_steps], [float(head_lr), fine])


def _compile_args(model, loss, metrics):
    config = getattr(getattr(model, "_compile_config", None), "config", None) or {}
    args = {
        key: config[key]
        for key in ("loss_weights", "weighted_metrics", "steps_per_execution", "jit_compile")
        if config.get(key) is not None
    }
    args["loss"] = loss if loss is not None else config.get("loss")
    args["metrics"] = metrics if metrics is not None else config.get("metrics")
    if args["loss"] is None:
        head = heads_lib.find_head(model)
        if head is None:
            raise ValueError("The model has no tlkit head and was not compiled; pass `loss=`.")
        args["loss"] = head.default_loss()
        if args["metrics"] is None:
            args["metrics"] = head.default_metrics()
    return args


def fine_tune(
    model,
    train,
    validation=None,
    epochs=(1, 3),
    head_lr=1e-3,
    lr=1e-4,
    unfreeze="gradual",
    layerwise_decay=None,
    bn_policy="frozen",
    early_stopping_patience=3,
    callbacks=None,
    checkpoint_dir=None,
    optimizer="adam",
    lr_schedule="cosine",
    loss=None,
    metrics=None,
    steps_per_epoch=None,
    batch_size=32,
    shuffle=True,
    verbose="auto",
    jit_compile=None,
    steps_per_execution=None,
) -> FineTuneResult:
    """Fine-tunes `model`: head only, then gradual or full unfreezing at a lower LR.

    One `model.fit()` runs `head_epochs + fine_epochs` epochs. During the head phase only the
    head trains at `head_lr`; then `GradualUnfreezing` unfreezes backbone groups from the top
    (without recompiling) and the LR drops to `lr` (constant, cosine-decayed to `lr / 100`, or a
    one-cycle). The model is recompiled once, before `fit`, with a fresh optimizer (the class
    of `optimizer`, the model's own loss and metrics), built over every variable that may train.

    Args:
        model: a model from `tlkit.build_model` (or any Keras model with layer groups).
        train: training data: a batched `tf.data.Dataset`, a `(x, y)` tuple of arrays
            (batched with `batch_size`), or a `keras.utils.PyDataset`.
        validation: validation data (evaluated each epoch), or `None`.
        epochs: `(head_epochs, fine_epochs)`, a dict `{"head": .., "fine": ..}`, or an int
            (fine epochs after one head epoch).
        head_lr: learning rate of the head phase.
        lr: peak learning rate once the backbone trains (of the top group with layer-wise LR).
        unfreeze: `"gradual"` (the groups spread evenly over the fine epochs: all train in the
            last one), `"all"`, an int (that many top groups), or an `UnfreezeSchedule`.
        layerwise_decay: e.g. 2.6: each group below the top one gets `1/decay` of the LR of the
            one above (ULMFiT discriminative fine-tuning). `None`: one LR for all.
        bn_policy: `"frozen"` (default), `"train_affine"` or `"update"`; see
            `tlkit.groups.set_trainable`.
        early_stopping_patience: epochs without improvement of `val_loss` (`loss` without
            validation) before stopping; counted from the start of fine-tuning, never stops in
            the head phase. The best epoch's weights are restored at the end. `None`: off.
        callbacks: more Keras callbacks.
        checkpoint_dir: enables `tlkit.checkpoint.AtomicBackupAndRestore(checkpoint_dir)` (Keras's
            `BackupAndRestore`, with atomic commits and per-worker folders): a rerun of
            the same call after an interruption resumes from the last finished epoch (same
            weights, optimizer state, LR and trainable groups). Early stopping's own counters
            are not part of the backup (a Keras limitation).
        optimizer: optimizer name (`"adam"`, `"adamw"`, `"sgd"`, ...) or an unbuilt instance whose
            class and config are used (its learning rate is replaced by the phase schedule).
        lr_schedule: fine-phase LR shape: `"cosine"` (default), `"constant"` or `"one_cycle"`
            (with momentum cycling through `tlkit.callbacks.MomentumScheduler`).
        loss, metrics: override the model's compiled (or its head's default) loss and metrics.
        steps_per_epoch: batches per epoch, needed when `train`'s length is unknown.
        batch_size, shuffle: for array data (a dataset is used as it comes).
        verbose: verbosity of `fit` (the unfreezing log lines print when it is not 0).
        jit_compile: XLA-compile the train step: `True`, `False` or `"auto"` (Keras decides:
            on for a GPU without tf.distribute). Default `None`: as the model was compiled.
        steps_per_execution: steps per `tf.function` call (e.g. 32 on a TPU, see
            `tlkit.distribute.plan`). Default `None`: as the model was compiled.

    Returns:
        A `FineTuneResult` (model, history, unfreeze events, best / stopped epoch).

    Example:
    ```python
    model = tlkit.build_model(backbone, num_classes=5)
    result = tlkit.fine_tune(model, train_ds, val_ds, epochs=(2, 4), layerwise_decay=2.6,
                             checkpoint_dir="runs/flowers/backup")
    result.history.history["val_accuracy"], result.unfreeze_epochs
    ```
    """
    head_epochs, fine_epochs = _split_epochs(epochs)
    if bn_policy not in groups_lib.BN_POLICIES:
        raise ValueError(
            f"Expected `bn_policy` in {groups_lib.BN_POLICIES}. Received: bn_policy={bn_policy!r}"
        )
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"Expected `lr_schedule` in {LR_SCHEDULES}. Received: {lr_schedule!r}")
    if not model.built:
        raise ValueError("Build the model (e.g. with `tlkit.build_model`) before `fine_tune`.")
    num_groups = sum(1 for g in groups_lib.layer_groups(model) if g.name != groups_lib.HEAD_GROUP)
    schedule = _unfreeze_schedule(unfreeze, head_epochs, fine_epochs, num_groups)

    steps = _steps_per_epoch(train, steps_per_epoch, batch_size)
    head_steps, fine_steps = head_epochs * steps, fine_epochs * steps
    learning_rate = _learning_rate(head_lr, lr, lr_schedule, head_steps, fine_steps)

    compile_args = _compile_args(model, loss, metrics)
    if jit_compile is not None:
        compile_args["jit_compile"] = jit_compile
    if steps_per_execution is not None:
        compile_args["steps_per_execution"] = int(steps_per_execution)
    with model.distribute_strategy.scope():
        base = keras.optimizers.get(optimizer) if isinstance(optimizer, str) else optimizer
        new_optimizer = clone_optimizer(base, learning_rate=learning_rate)
        if layerwise_decay is not None:
            new_optimizer = layerwise(new_optimizer, model, decay=layerwise_decay)
        model.compile(optimizer=new_optimizer, **compile_args)
    # Builds the optimizer over every variable that may train, before any backup is loaded.
    prepare_optimizer(model, bn_policy=bn_policy)

    verbose_callbacks = 0 if verbose == 0 else 1
    unfreezing = GradualUnfreezing(schedule, bn_policy=bn_policy, verbose=verbose_callbacks)
    all_callbacks = [unfreezing]
    if lr_schedule == "one_cycle" and fine_steps:
        one_cycle = learning_rate.schedules[-1] if head_steps else learning_rate
        all_callbacks.append(
            schedules_lib.MomentumScheduler(_PhaseMomentum(one_cycle, head_steps))
        )
    if checkpoint_dir is not None:
        all_callbacks.append(AtomicBackupAndRestore(str(checkpoint_dir)))
    stopper = None
    if early_stopping_patience is not None:
        stopper = _PhaseAwareEarlyStopping(
            head_epochs,
            monitor="val_loss" if validation is not None else "loss",
            patience=int(early_stopping_patience),
            restore_best_weights=True,
            verbose=verbose_callbacks,
        )
        all_callbacks.append(stopper)
    all_callbacks.extend(callbacks or [])

    fit_kwargs = {}
    if isinstance(train, (tuple, list)):
        x, y = train[0], train[1]
        fit_kwargs["batch_size"] = batch_size
        fit_kwargs["shuffle"] = shuffle
        if len(train) == 3:
            fit_kwargs["sample_weight"] = train[2]
    else:
        x, y = train, None
        fit_kwargs["shuffle"] = False  # datasets come shuffled (or not) as the user made them
    if steps_per_epoch is not None:
        fit_kwargs["steps_per_epoch"] = int(steps_per_epoch)
    history = model.fit(
        x,
        y,
        validation_data=validation,
        epochs=head_epochs + fine_epochs,
        callbacks=all_callbacks,
        verbose=verbose,
        **fit_kwargs,
    )
    history.history["unfrozen_groups"] = [
        schedule.num_unfrozen(epoch, num_groups) for epoch in history.epoch
    ]
    best_epoch = stopped_epoch = None
    if stopper is not None and stopper.best_weights is not None:
        best_epoch = int(stopper.best_epoch)
    if stopper is not None and stopper.stopped_epoch:
        stopped_epoch = int(stopper.stopped_epoch)
    result = FineTuneResult(
        model=model,
        history=history,
        unfreeze_events=list(unfreezing.changes),
        head_epochs=head_epochs,
        fine_epochs=fine_epochs,
        schedule=schedule,
        best_epoch=best_epoch,
        stopped_epoch=stopped_epoch,
    )
    logger.info(
        "fine_tune: %d head + %d fine epochs, unfreezing at epochs %s, best epoch %s",
        head_epochs, fine_epochs, result.unfreeze_epochs, best_epoch,
    )
    return result


class _PhaseMomentum:
    """Momentum of the one-cycle fine phase: its start value in the head phase."""

    def __init__(self, one_cycle, offset):
        self.one_cycle = one_cycle
        self.offset = int(offset)

    def __call__(self, step):
        return self.one_cycle.momentum(max(int(step) - self.offset, 0))
