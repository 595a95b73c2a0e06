"""`GradualUnfreezing`: applies an `UnfreezeSchedule` inside one `model.fit()`.

Why this is hand-written: Keras has no callback for it, and changing `trainable` during
`fit()` is unreliable unless two Keras 3 mechanics are handled (keras#6405, #13368, #9477):

1. The TensorFlow trainer traces `train_step` once; the list `model.trainable_weights` it
   differentiates and updates is captured as a Python list at trace time. After changing which
   groups train, `model.make_train_function(force=True)` replaces the traced function (`fit`
   looks `model.train_function` up at every step), so frozen groups are not in the gradient list
   at all: they cost no backward compute and their weights stay bit-identical. No recompile,
   and the optimizer, its slots, the metrics and every callback keep their state.
2. A Keras 3 optimizer only accepts the variables it was built with
   (`_check_variables_are_known`). It must therefore be built over every variable that the
   schedule may ever train *before* the first step: `prepare_optimizer(model)` does that, and
   the callback calls it in `on_train_begin`.

The trainable set is derived from the epoch (or `optimizer.iterations`) at each epoch (step), never
from callback state, so `fit(initial_epoch=k)` and `keras.callbacks.BackupAndRestore` resume with
the same groups trainable as the uninterrupted run.
"""

from __future__ import annotations

import logging
import sys

import keras

from tlkit import groups as groups_lib
from tlkit import trainability
from tlkit.optimizers.util import clone_optimizer, current_step
from tlkit.unfreeze import schedule as schedule_lib

logger = logging.getLogger("tlkit.unfreeze")


def _print_msg(message: str) -> None:
    """Prints like Keras' progress output (`keras.src.utils.io_utils.print_msg`, not public).

    Writes to stdout when Keras interactive logging is on (the default); otherwise the message
    only goes to the `logging` record the caller already emitted.
    """
    if keras.config.is_interactive_logging_enabled():
        sys.stdout.write(f"{message}\n")
        sys.stdout.flush()


# -- optimizer preparation ---------------------------------------------------------------------
def _snapshot_trainable(model):
    layers = [(layer, layer.trainable) for layer in model._flatten_layers(include_self=True)]
    variables = [(v, v.trainable) for v in model.variables]
    backbone = trainability.find_backbone(model)
    bn_policy = getattr(backbone, "bn_policy", None)
    return layers, variables, backbone, bn_policy


def _restore_trainable(snapshot):
    layers, variables, backbone, bn_policy = snapshot
    # Parents come first and their setter recurses, so children are set after their parents.
    # The property setter is called directly: Keras skips `layer.trainable = x` when x is already
    # the value, which would leave the sublayers of a layer with an unchanged flag as they are.
    for layer, flag in layers:
        type(layer).trainable.fset(layer, flag)
    for variable, flag in variables:
        variable.trainable = flag
    if bn_policy is not None:
        backbone.bn_policy = bn_policy


def trainable_candidates(model, bn_policy: str = "frozen") -> list:
    """Every variable that some unfreezing state of `model` trains, in model order.

    That is the trainable variables with all groups unfrozen under `bn_policy`, plus the ones
    trainable now. The model's trainable state is left as it was.

    Args:
        model: a model built by `tlkit.build_model` (or any Keras model with layer groups).
        bn_policy: the BatchNorm policy the training will use (see `tlkit.trainability.set_trainable`).

    Returns:
        A list of variables.
    """
    current = list(model.trainable_variables)
    snapshot = _snapshot_trainable(model)
    try:
        trainability.unfreeze_all(model, bn_policy=bn_policy)
        everything = list(model.trainable_variables)
    finally:
        _restore_trainable(snapshot)
    seen = {id(v) for v in everything}
    return everything + [v for v in current if id(v) not in seen]


def _inner(optimizer):
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer.inner_optimizer
    return optimizer


def _unknown_variables(optimizer, variables) -> list:
    inner = _inner(optimizer)
    known = inner._trainable_variables_indices
    return [v for v in variables if inner._var_key(v) not in known]


def _fresh_optimizer(model):
    """A new, unbuilt copy of `model.optimizer` (same class and config) set on the model."""
    old = model.optimizer
    try:
        with model.distribute_strategy.scope():
            new = clone_optimizer(old)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"Could not rebuild the optimizer {type(old).__name__} from its config ({err}). "
            "Call `tlkit.unfreeze.prepare_optimizer(model)` after `compile()` instead."
        ) from err
    model.optimizer = new
    return new


def prepare_optimizer(model, bn_policy: str = "frozen", reset: bool = False):
    """Builds `model.optimizer` over every variable that unfreezing may ever train.

    Call it after `compile()` and before the first `fit()` when you apply an unfreezing schedule
    (`GradualUnfreezing` does it itself when the optimizer has not taken a step yet). The
    optimizer's slots (Adam moments, momentum, ...) then exist for frozen groups too; they stay
    zero and untouched until their group trains. Works through `LossScaleOptimizer` (mixed
    precision) and under a `tf.distribute` strategy (the model's strategy scope is used).

    Args:
        model: a compiled, built model.
        bn_policy: the BatchNorm policy the training will use.
        reset: when the optimizer was already built over fewer variables, replace it with a fresh
            copy (same class and config; its state — step count, slots — is lost). Without
            `reset`, such an optimizer is kept when it has taken no step yet and an error is
            raised otherwise.

    Returns:
        The (possibly new) `model.optimizer`, built.

    Example:
    ```python
    model = tlkit.build_model(backbone, num_classes=5)  # compiled, backbone frozen
    tlkit.unfreeze.prepare_optimizer(model)
    model.fit(train, epochs=6, callbacks=[tlkit.callbacks.GradualUnfreezing(schedule)])
    ```
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        raise ValueError(
            "The model has no optimizer. Call `model.compile(optimizer=...)` (or "
            "`tlkit.compile_model(model)`) before preparing it for unfreezing."
        )
    if not model.built:
        raise ValueError(
            "The model is not built. Build it (call it on a batch, or create it with an `Input`) "
            "before preparing its optimizer for unfreezing."
        )
    candidates = trainable_candidates(model, bn_policy=bn_policy)
    if optimizer.built:
        missing = _unknown_variables(optimizer, candidates)
        if not missing:
            return optimizer
        if not reset and current_step(optimizer) > 0:
            raise ValueError(
                f"The optimizer {type(_inner(optimizer)).__name__} was built over "
                f"{len(_inner(optimizer)._trainable_variables)} variables and has taken "
                f"{current_step(optimizer)} steps, but unfreezing can train {len(missing)} "
                f"more (e.g. {missing[0].path!r}). A Keras optimizer cannot learn new variables. "
                "Call `tlkit.unfreeze.prepare_optimizer(model)` after `compile()` and before the "
                "first `fit()`, or `prepare_optimizer(model, reset=True)` to start the optimizer "
                "afresh (its state is lost)."
            )
        optimizer = _fresh_optimizer(model)
        logger.info("Replaced the optimizer by a fresh copy built over all unfreezable variables.")
    with model.distribute_strategy.scope():
        optimizer.build(candidates)
    return optimizer


# -- callback ----------------------------------------------------------------------------------
def _num_backbone_groups(groups) -> int:
    return sum(1 for g in groups if g.name != groups_lib.HEAD_GROUP)


@keras.saving.register_keras_serializable(package="tlkit")
class GradualUnfreezing(keras.callbacks.Callback):
    """Unfreezes layer groups during one `fit()` according to an `UnfreezeSchedule`.

    At each epoch start (and, for step schedules, each batch) the callback derives the number of
    top backbone groups to train from the epoch or `optimizer.iterations`; when it changes, it
    calls `tlkit.trainability.unfreeze_top(model, n, bn_policy)` and `model.make_train_function(
    force=True)`: no recompile, optimizer and callback state continue. Frozen groups are left out
    of the gradient computation and keep bit-identical weights. Each change is logged (logger
    `tlkit.unfreeze`, and printed when `verbose`) with the per-group trainable parameter counts.

    The optimizer must know every variable that may train: in `on_train_begin` the callback
    builds it over all of them (`prepare_optimizer`), or raises a clear error when the optimizer
    has already stepped over fewer variables. With `keras.callbacks.BackupAndRestore`, put this
    callback *before* it (or call `prepare_optimizer` before `fit`), so the optimizer exists in
    its full shape when the backup is loaded.

    Args:
        schedule: an `UnfreezeSchedule`, a `{epoch: num_groups or "all"}` dict, or an int.
        bn_policy: BatchNorm policy while unfreezing: `"frozen"` (default: BN layers stay in
            inference mode with frozen statistics, keras#20285), `"train_affine"` or `"update"`;
            see `tlkit.trainability.set_trainable`.
        verbose: 1 prints each change; 0 only logs it.

    Attributes:
        changes: one dict per applied change, with `epoch`, `step`, `num_unfrozen`,
            `trainable_groups` and `trainable_params`.

    Example:
    ```python
    schedule = tlkit.unfreeze.UnfreezeSchedule.gradual(head_epochs=2, first=2, every=1)
    model.fit(train, validation_data=val, epochs=6,
              callbacks=[tlkit.callbacks.GradualUnfreezing(schedule)])
    ```
    """

    def __init__(self, schedule, bn_policy: str = "frozen", verbose: int = 1):
        super().__init__()
        if bn_policy not in groups_lib.BN_POLICIES:
            raise ValueError(
                f"Expected `bn_policy` in {groups_lib.BN_POLICIES}. Received: bn_policy={bn_policy!r}"
            )
        self.schedule = schedule_lib.get(schedule)
        self.bn_policy = bn_policy
        self.verbose = verbose
        self.changes: list[dict] = []
        self._applied = None
        self._applied_groups = None
        self._epoch = 0
        self._num_groups = None
        self._group_names = None

    # -- lifecycle -----------------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        self._applied = None  # re-derive the state in this fit() from the epoch / step
        self._applied_groups = None
        model = self.model
        optimizer = model.optimizer
        restored = bool(getattr(model, "_initial_epoch", None))
        if optimizer is not None and optimizer.built and restored:
            unknown = _unknown_variables(optimizer, trainable_candidates(model, self.bn_policy))
            if unknown:
                raise ValueError(
                    "A backup was restored (BackupAndRestore) into an optimizer built over the "
                    "currently trainable variables only, so its state could not be loaded. Put "
                    "`GradualUnfreezing` before `BackupAndRestore` in `callbacks`, or call "
                    "`tlkit.unfreeze.prepare_optimizer(model)` before `fit()`."
                )
        prepare_optimizer(model, bn_policy=self.bn_policy)
        # The groups are fixed for the fit: walked once here, not at every (step schedule) batch
        # (a walk over EfficientNet-Lite0's layers costs ~3 ms, 5% of a 64 px CPU step).
        groups = trainability.layer_groups(model)
        self._group_names = [g.name for g in groups]
        self._num_groups = _num_backbone_groups(groups)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = int(epoch)
        self._maybe_apply()

    def on_train_batch_begin(self, batch, logs=None):
        if self.schedule.unit == "step":
            self._maybe_apply()

    # -- applying ------------------------------------------------------------------------------
    def _position(self) -> tuple[int, int]:
        step = current_step(self.model.optimizer)
        t = step if self.schedule.unit == "step" else self._epoch
        return t, step

    def _maybe_apply(self):
        t, step = self._position()
        total = self._num_groups
        n = self.schedule.num_unfrozen(t, total)
        # Which groups, by name: the top `n` for most schedules, one chosen group for surgical.
        wanted = self.schedule.trainable_groups(t, self._group_names)
        if (n, wanted) == (self._applied, self._applied_groups):
            return
        self._applied_groups = wanted
        groups = trainability.set_trainable(self.model, wanted, bn_policy=self.bn_policy)
        # The traced train step holds the old list of trainable variables: trace a new one.
        self.model.make_train_function(force=True)
        previous, self._applied = self._applied, n
        self._record(n, total, groups, step, previous)

    def _record(self, n, total, groups, step, previous):
        trainable = [g.name for g in groups if g.trainable]
        params = int(sum(g.num_trainable_params for g in groups))
        self.changes.append(
            {
                "epoch": self._epoch,
                "step": step,
                "num_unfrozen": n,
                "trainable_groups": trainable,
                "trainable_params": params,
            }
        )
        if previous is None:
            verb = "Starting with"
        else:
            verb = "Unfreezing:" if n > previous else "Freezing again:"
        message = (
            f"{verb} head + top {n} of {total} backbone groups trainable at epoch "
            f"{self._epoch + 1} (step {step}), bn_policy={self.bn_policy!r}: {trainable}; "
            f"{params:,} trainable parameters."
        )
        logger.info(message)
        # The per-group table goes to the log (the run's log file, `--verbose`), not the console.
        logger.debug("trainable parameters per group:\n%s", trainability.format_summary(self.model))
        # Print unless tlkit's own logger already has a console handler (the CLI's): no doubles.
        shown = logger.isEnabledFor(logging.INFO) and any(
            isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
            and h.level <= logging.INFO  # a console that shows INFO (a run's train.log is not)
            for h in logging.getLogger("tlkit").handlers
        )
        if self.verbose and not shown:
            _print_msg(message)

    def get_config(self):
        return {
            "schedule": keras.saving.serialize_keras_object(self.schedule),
            "bn_policy": self.bn_policy,
            "verbose": self.verbose,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["schedule"] = schedule_lib.get(config["schedule"])
        return cls(**config)
