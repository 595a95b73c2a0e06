"""`fine_tune_plan`: tlkit's fine-tuning schedule as pieces for your own `model.fit`.

The middle layer under `tlkit.fine_tune` (as fastai's schedulers sit under its five-line
`fine_tune`): from a `tlkit.FineTuneConfig` and the number of batches per epoch, the optimizer
(with the phase learning rate, layer-wise multipliers), the `UnfreezeSchedule` and the callbacks
(`GradualUnfreezing`, one-cycle momentum, phase-aware early stopping). `fine_tune` is this plan,
a `compile`, `prepare_optimizer` and one `fit`.
"""

from __future__ import annotations

import dataclasses

import keras

from tlkit import groups as groups_lib
from tlkit import optimizers as optimizers_lib
from tlkit import trainability
from tlkit.optimizers import schedules as schedules_lib
from tlkit.training.early_stopping import PhaseAwareEarlyStopping
from tlkit.unfreeze.callback import GradualUnfreezing
from tlkit.unfreeze.schedule import UnfreezeSchedule


@dataclasses.dataclass
class FineTunePlan:
    """What `fine_tune_plan` returns.

    Attributes:
        optimizer: an unbuilt optimizer with the phase learning rate (compile the model with it
            inside `model.distribute_strategy.scope()`).
        learning_rate: the learning rate (float or `LearningRateSchedule`), per optimizer step.
        schedule: the `UnfreezeSchedule`.
        callbacks: `GradualUnfreezing` first, then momentum (one-cycle) and early stopping.
        epochs: `head_epochs + fine_epochs`, the `fit` epochs.
        early_stopping: the early-stopping callback in `callbacks`, or `None`.
        unfreezing: the `GradualUnfreezing` callback in `callbacks`.
    """

    optimizer: keras.optimizers.Optimizer
    learning_rate: object
    schedule: UnfreezeSchedule
    callbacks: list
    epochs: int
    unfreezing: GradualUnfreezing
    early_stopping: keras.callbacks.EarlyStopping | None = None


class _PhaseMomentum:
    """Momentum of the one-cycle fine phase: its start value in the head phase."""

    def __init__(self, one_cycle, offset):
        self.one_cycle = one_cycle
        self.offset = int(offset)

    def __call__(self, step):
        return self.one_cycle.momentum(max(int(step) - self.offset, 0))


def num_backbone_groups(model) -> int:
    return sum(1 for g in trainability.layer_groups(model) if g.name != groups_lib.HEAD_GROUP)


def fine_tune_plan(model, config, steps_per_epoch, *, monitor="val_loss", optimizer=None,
                   schedule=None, verbose=1, val_examples=None) -> FineTunePlan:
    """tlkit's fine-tuning schedule for `model`, to run inside your own `model.fit`.

    Args:
        model: a built model with layer groups (`tlkit.build_model`).
        config: a `tlkit.FineTuneConfig` (or its `get_config()` dict).
        steps_per_epoch: batches per epoch (the LR switches phase after `head_epochs` of them).
        monitor: what early stopping watches (`"loss"` without validation data).
        optimizer: an unbuilt optimizer instance whose class and config replace
            `config.optimizer`'s (its learning rate is replaced by the phase schedule).
        schedule: an `UnfreezeSchedule` replacing the config's.
        verbose: 0 silences the unfreezing and early-stopping log lines.
        val_examples: the validation split's size, when known; below
            `config.restore_best_from` early stopping keeps the last epoch (`None`: the split
            is taken as large enough).

    Returns:
        A `FineTunePlan`.

    Example:
    ```python
    config = tlkit.FineTuneConfig(head_epochs=1, fine_epochs=3)
    plan = tlkit.fine_tune_plan(model, config, steps_per_epoch=len(train_ds))
    model.compile(optimizer=plan.optimizer, loss="sparse_categorical_crossentropy")
    tlkit.prepare_optimizer(model, bn_policy=config.bn_policy)
    model.fit(train_ds, validation_data=val_ds, epochs=plan.epochs, callbacks=plan.callbacks)
    ```
    """
    from tlkit.config import FineTuneConfig

    config = FineTuneConfig.from_config(config)
    if schedule is None:
        schedule = UnfreezeSchedule.from_fine_tune_config(config, num_backbone_groups(model))
    learning_rate = schedules_lib.from_config(config, steps_per_epoch)
    with model.distribute_strategy.scope():
        new_optimizer = optimizers_lib.from_config(config, learning_rate, model, optimizer)
    verbose = 0 if verbose == 0 else 1
    unfreezing = GradualUnfreezing(schedule, bn_policy=config.bn_policy, verbose=verbose)
    callbacks = [unfreezing]
    head_steps = config.head_epochs * int(steps_per_epoch)
    if config.lr_schedule == "one_cycle" and config.fine_epochs:
        one_cycle = learning_rate.schedules[-1] if head_steps else learning_rate
        callbacks.append(schedules_lib.MomentumScheduler(_PhaseMomentum(one_cycle, head_steps)))
    if config.ema_momentum is not None:
        # Before the stopper: validation runs on the EMA weights and the stopper keeps those.
        callbacks.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    stopper = None
    if config.patience is not None:
        stopper = PhaseAwareEarlyStopping(
            config.head_epochs, restore_head_epoch=config.restore_head_epoch, monitor=monitor,
            keep_last=val_examples is not None and val_examples < config.restore_best_from,
            patience=int(config.patience),
            restore_best_weights=True, verbose=verbose,
        )
        callbacks.append(stopper)
    return FineTunePlan(
        optimizer=new_optimizer, learning_rate=learning_rate, schedule=schedule,
        callbacks=callbacks, epochs=config.epochs, unfreezing=unfreezing, early_stopping=stopper,
    )
