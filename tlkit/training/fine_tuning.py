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
import difflib
import functools
import logging
import math
import os

import keras
import numpy as np
import tensorflow as tf

from tlkit import config as config_lib
from tlkit import heads as heads_lib
from tlkit._progress import fit_verbose
from tlkit.checkpoint import AtomicBackupAndRestore
from tlkit.label_check import check_labels, label_error
from tlkit.model import is_labeled_data
from tlkit.reports.model_card import restore_sentence
from tlkit.training import strategies
from tlkit.training.budget import repeated, step_budget
from tlkit.training.class_weights import resolve_class_weight
from tlkit.training.early_stopping import count_examples, restore_record
from tlkit.training.label_mixing import as_dataset, mix_batches, one_hot_labels
from tlkit.training.plan import fine_tune_plan, num_backbone_groups
from tlkit.training.step_build import build_before_fit
from tlkit.training.swa import StochasticWeightAveraging
from tlkit.training.training_loss import mixing_setting, training_loss
from tlkit.training.weight_interpolation import FineTuneStartWeights, wise_ft
from tlkit.unfreeze import schedule as unfreeze_lib
from tlkit.unfreeze.callback import prepare_optimizer

logger = logging.getLogger("tlkit.training")

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
        config: the `tlkit.FineTuneConfig` the run used (overrides applied).
        val_metrics: `model.evaluate` on the validation data with the weights returned
            (`{"loss": .., "accuracy": ..}`), else `None` (no validation data).
        test_metrics: `model.evaluate` on the test split (`{"loss": .., "accuracy": ..}`) when
            `fine_tune` was given a `LabeledData` with a test split, else `None`.
        wise_ft: with `wise_ft_alphas`, `{"alpha": chosen, "metric": "accuracy" (or "loss"
            without an accuracy metric), "scores": {alpha: validation score}}`
            (`tlkit.wise_ft`); the model holds the interpolated weights. Else `None`.
        strategy: what `config.strategy` did (`tlkit.training.strategies.StrategyChoice`
            `.to_record()`: the strategy that ran, the requested one, why, the probe's result).
        budget: the epochs and optimizer steps that ran per phase (`{"head": {"epochs",
            "steps"}, "fine": {...}, "steps_per_epoch", "batches_per_epoch",
            "min_steps_per_epoch", "passes_per_epoch"}`, `tlkit.training.budget`).
    """

    model: keras.Model
    history: keras.callbacks.History
    unfreeze_events: list
    head_epochs: int
    fine_epochs: int
    schedule: unfreeze_lib.UnfreezeSchedule
    best_epoch: int | None = None
    stopped_epoch: int | None = None
    config: config_lib.FineTuneConfig | None = None
    val_metrics: dict | None = None
    test_metrics: dict | None = None
    wise_ft: dict | None = None
    strategy: dict | None = None
    budget: dict | None = None

    @property
    def unfreeze_epochs(self) -> list[int]:
        """Epochs (0-based) at whose start more groups became trainable."""
        return [e["epoch"] for e in self.unfreeze_events[1:]]

    def outcome(self) -> str:
        """One line: the strategy that ran and why, the validation and test scores (what
        `fine_tune` prints at the end unless `verbose=0`)."""
        record = self.strategy or {}
        name = record.get("strategy", "gradual")
        why = record.get("reason")
        came = f" (from {record['requested']})" if record.get("requested") not in (None, name) \
            else ""
        parts = [f"fine_tune: strategy {name}{came}" + (f": {why}" if why else "")]
        for split, metrics in (("validation", self.val_metrics), ("test", self.test_metrics)):
            if metrics:
                parts.append(f"{split} {_format_metrics(_headline(metrics))}")
        return "; ".join(parts)


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


def batches_per_epoch(train, steps_per_epoch=None, batch_size=32) -> int:
    """Batches per epoch of `train` (a dataset of known length, `(x, y[, w])` arrays, or a
    sized sequence); `steps_per_epoch` wins when given."""
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


def split_overrides(overrides):
    """`fine_tune`'s keyword overrides as config fields, plus the two objects a config cannot
    hold: `epochs=(head, fine)` / `early_stopping_patience=` / `unfreeze=<int>` become fields,
    an optimizer instance and an `UnfreezeSchedule` are returned beside them.

    Returns `(fields, optimizer instance or None, UnfreezeSchedule or None)`.

    Example:
    ```python
    split_overrides({"epochs": (2, 4), "lr": 3e-4})  # ({"head_epochs": 2, "fine_epochs": 4, "lr": 3e-4}, None, None)
    ```
    """
    fields, optimizer, schedule = dict(overrides), None, None
    if "epochs" in fields:
        fields["head_epochs"], fields["fine_epochs"] = _split_epochs(fields.pop("epochs"))
    if "early_stopping_patience" in fields:
        fields["patience"] = fields.pop("early_stopping_patience")
    unfreeze = fields.get("unfreeze")
    if isinstance(unfreeze, unfreeze_lib.UnfreezeSchedule):
        schedule = fields.pop("unfreeze")
    elif isinstance(unfreeze, int) and not isinstance(unfreeze, bool):
        fields["unfreeze"], fields["table"] = "table", {0: unfreeze}
    elif unfreeze is not None and unfreeze not in config_lib.UNFREEZE_SCHEDULES:
        raise ValueError(
            "Expected `unfreeze` 'gradual', 'all', a number of top groups, or an UnfreezeSchedule. "
            f"Received: unfreeze={unfreeze!r}"
        )
    if fields.get("optimizer") is not None and not isinstance(fields["optimizer"], str):
        optimizer = fields.pop("optimizer")
    for key in fields:
        if key not in config_lib.FIELDS:
            names = list(config_lib.FIELDS) + ["epochs", "early_stopping_patience"]
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise TypeError(f"fine_tune() got an unexpected keyword argument {key!r}.{hint} "
                            f"Settings are the fields of tlkit.FineTuneConfig: {', '.join(names)}.")
    return fields, optimizer, schedule


def fine_tune(
    model,
    train,
    validation=None,
    config=None,
    *,
    callbacks=None,
    checkpoint_dir=None,
    loss=None,
    metrics=None,
    steps_per_epoch=None,
    batch_size=None,
    shuffle=True,
    verbose="auto",
    feature_cache=None,
    data_fingerprints=None,
    examples_per_class=None,
    unlabeled=None,
    **overrides,
) -> FineTuneResult:
    """Fine-tunes `model`: head only, then gradual or full unfreezing at a lower LR.

    `config.strategy` chooses the plan (`tlkit.training.strategies`: one object per strategy,
    what each does and which settings it ignores); the default, `auto`, runs LP-FT (a
    converged linear probe, then all groups) where the probe can run, else `gradual` (what
    the next paragraph describes), and says which ran and why in `result.strategy`.

    One `model.fit()` runs `head_epochs + fine_epochs` epochs. During the head phase only the
    head trains at `head_lr`; then `GradualUnfreezing` unfreezes backbone groups from the top
    (without recompiling) and the LR drops to `lr` (constant, cosine-decayed to `lr / 100`, or a
    one-cycle). The model is recompiled once, before `fit`, with a fresh optimizer (the class
    of `optimizer`, the model's own loss and metrics), built over every variable that may train.
    The pieces are public: `tlkit.fine_tune_plan` (optimizer, LR, callbacks), then
    `compile`, `tlkit.prepare_optimizer`, `fit`.

    Args:
        model: a model from `tlkit.build_model` (or any Keras model with layer groups).
        train: training data: a `tlkit.data.LabeledData` (its train split, shuffled with a
            seed, its val split for `validation`, its test split evaluated at the end, batches
            of `batch_size` per replica as `tlkit.distribute.distribution_plan` scales them), a batched
            `tf.data.Dataset`, a `(x, y)` tuple of arrays (batched with `batch_size`), or a
            `keras.utils.PyDataset`.
        validation: validation data (evaluated each epoch), or `None`.
        config: a `tlkit.FineTuneConfig` (or its dict); `None`: the defaults. Every setting
            is a field of `tlkit.FineTuneConfig`, documented there with its default, allowed
            values and recipe key (recipes/README.md lists them all, generated). With
            `mixup` / `cutmix` and tlkit's own loss, `fit` sees one-hot labels (validation
            too, unmixed) and the model is compiled back for integer labels afterwards.
        **overrides: config fields by name, e.g. `lr=3e-4`. Also accepted: `epochs=(head, fine)`
            (or a dict `{"head": .., "fine": ..}`, or an int: fine epochs after one head epoch),
            `early_stopping_patience=` (`patience`), `unfreeze=` an int (that many top groups)
            or an `UnfreezeSchedule`, `optimizer=` an unbuilt optimizer instance.
        callbacks: more Keras callbacks.
        checkpoint_dir: enables `tlkit.checkpoint.AtomicBackupAndRestore(checkpoint_dir)` (Keras's
            `BackupAndRestore`, with atomic commits and per-worker folders): a rerun of
            the same call after an interruption resumes from the last finished epoch (same
            weights, optimizer state, LR and trainable groups). Early stopping's own counters
            are not part of the backup (a Keras limitation).
        loss, metrics: override the model's compiled (or its head's default) loss and metrics.
        steps_per_epoch: batches per epoch, needed when `train`'s length is unknown.
        batch_size: per replica for a `LabeledData`, global for arrays; default (`None`):
            `tlkit.distribute.distribution_plan`'s for the model's device (32 on CPU, 64 on GPU, 128 per
            TPU core). A dataset is used as it comes.
        shuffle: for array data.
        verbose: verbosity of `fit` (the unfreezing log lines print when it is not 0); unless
            0, the end prints one line (`FineTuneResult.outcome()`): the strategy that ran and
            why, the validation and test scores.
        feature_cache, data_fingerprints: a folder where the linear probe (`lp_ft`,
            `linear_probe`, `auto`) keeps the frozen backbone's features, and
            `{"train": .., "val": ..}` strings that change with the data (as for
            `tlkit.train_head_on_features`, whose cache it shares); default: in memory.
        examples_per_class: the smallest class count of `train`, when known (`auto` compares
            it with `strategies.auto.FULL_FROM` when that is set); default: counted from the
            labels then.
        unlabeled: unlabelled inputs for semi-supervised strategies (`self_training`): an
            unbatched `tf.data.Dataset` of `x` or an array; default: a `LabeledData`'s own
            pool (`train.unlabeled`), else none.

    Returns:
        A `FineTuneResult` (model, history, unfreeze events, best / stopped epoch, the final
        `val_metrics` and `test_metrics`).

    Raises:
        tlkit.config.ConfigError: a setting with a bad value (the message names it).
        TypeError: an unknown keyword argument.

    Example:
    ```python
    model = tlkit.build_model(backbone, num_classes=5)
    result = tlkit.fine_tune(model, train_ds, val_ds, epochs=(2, 4), layerwise_decay=2.6,
                             checkpoint_dir="runs/flowers/backup")
    result.history.history["val_accuracy"], result.unfreeze_epochs
    ```
    """
    if isinstance(validation, config_lib.FineTuneConfig) and config is None:
        validation, config = None, validation  # fine_tune(model, train, config)
    data = None
    if is_labeled_data(train):
        if unlabeled is None:
            unlabeled = train.for_model(model).unlabeled
        data, train, validation, batch_size = _pipelines(model, train, validation, batch_size)
    elif batch_size is None:
        from tlkit import distribute

        batch_size = distribute.distribution_plan(model.distribute_strategy).global_batch
    fields, optimizer, schedule = split_overrides(overrides)
    config = config_lib.FineTuneConfig.from_config(
        {} if config is None else config).replace(**fields)
    if not model.built:
        raise ValueError("Build the model (e.g. with `tlkit.build_model`) before `fine_tune`.")
    num_groups = num_backbone_groups(model)
    steps = batches_per_epoch(train, steps_per_epoch, batch_size)
    compile_args = _compile_args(model, loss, metrics)
    objective = training_loss(compile_args["loss"], config,
                              owned=_tlkit_owns_loss(model, loss, compile_args["loss"]))
    compile_args["loss"] = objective.loss
    if config.wise_ft_alphas is not None and validation is None:
        raise config_lib.ConfigError(
            "FineTuneConfig.wise_ft_alphas: WiSE-FT chooses alpha on validation data; pass "
            "`validation=` (or a LabeledData with a val split), or set wise_ft_alphas to None.")
    num_classes = int(model.outputs[0].shape[-1])
    fit_train, fit_validation = _mixed_pipelines(train, validation, config, objective,
                                                 num_classes, batch_size, shuffle)
    if config.jit_compile != "auto" or "jit_compile" not in compile_args:
        compile_args["jit_compile"] = config.jit_compile
    if config.steps_per_execution is not None:
        compile_args["steps_per_execution"] = int(config.steps_per_execution)
    cache = None if feature_cache is None else {"dir": feature_cache,
                                                "fingerprints": data_fingerprints}
    choice = strategies.prepare(model, config, train, validation, compile_args,
                                batch_size=batch_size, explicit_schedule=schedule is not None,
                                feature_cache=cache, examples_per_class=examples_per_class,
                                unlabeled=_as_unbatched(unlabeled),
                                fine_tune=functools.partial(_inner_fine_tune, model, loss, metrics,
                                                            batch_size))
    config = choice.config
    if choice.train is not None:  # the strategy trains on other data (e.g. + pseudo-labels)
        train = choice.train
        steps = batches_per_epoch(train, None, batch_size)
        fit_train, fit_validation = _mixed_pipelines(train, validation, config, objective,
                                                     num_classes, batch_size, shuffle)
    if not choice.fit:
        # No fit, so no one-hot (MixUp / CutMix) training: compile for integer labels.
        probe_args = compile_args if objective.after_fit is None else {
            **compile_args, "loss": objective.after_fit}
        return _probe_only(model, config, choice, probe_args, data, batch_size, validation,
                           verbose)
    head = heads_lib.find_head(model)
    if (isinstance(fit_train, (tuple, list)) and objective.after_fit is None
            and getattr(head, "kind", None) == "classification"):
        # Class indices, before the data may be repeated into a dataset; regression targets and
        # multi-hot labels pass as given.
        check_labels(fit_train[1], num_classes)
    # Tiny data: each epoch repeats the training set up to `min_steps_per_epoch` steps (null:
    # the floor of the strategy that runs).
    budget = step_budget(config, steps, steps_per_epoch=steps_per_epoch,
                         default_floor=strategies.get(choice.name).min_steps_per_epoch(
                             choice.examples_per_class),
                         repeatable=isinstance(fit_train, (tf.data.Dataset, tuple, list)),
                         data_kind=type(fit_train).__name__)
    if budget.repeats:
        fit_train = repeated(as_dataset(fit_train, batch_size, shuffle, seed=0,
                                        setting="min_steps_per_epoch"), budget)
    # Early stopping chooses an epoch only on a validation split of restore_best_from examples.
    val_examples = None
    if config.patience is not None and config.restore_best_from and validation is not None:
        val_examples = count_examples(fit_validation, config.restore_best_from)
    plan = fine_tune_plan(
        model, config, budget.steps_per_epoch, monitor="val_loss" if validation is not None else "loss",
        optimizer=optimizer, schedule=schedule or choice.schedule, verbose=verbose,
        val_examples=val_examples,
    )
    with model.distribute_strategy.scope():
        model.compile(optimizer=plan.optimizer, **compile_args)
    # Builds the optimizer over every variable that may train, before any backup is loaded.
    prepare_optimizer(model, bn_policy=config.bn_policy)

    all_callbacks = list(plan.callbacks)
    if checkpoint_dir is not None:
        at = len(all_callbacks) - (plan.early_stopping is not None)
        all_callbacks.insert(at, AtomicBackupAndRestore(str(checkpoint_dir)))
    start_weights = None
    if config.wise_ft_alphas is not None:
        start_weights = FineTuneStartWeights(config.head_epochs, None if checkpoint_dir is None
                                             else os.path.join(checkpoint_dir, "wise_ft_start.npz"))
        all_callbacks.append(start_weights)
    if config.swa_epochs is not None:
        # After the early stopper: the average replaces the restored best weights.
        bn_data = None
        if config.bn_policy == "update":
            bn_data = as_dataset(train, batch_size, False, seed=0, setting="swa_epochs")
        all_callbacks.append(StochasticWeightAveraging(
            config.head_epochs + config.fine_epochs - config.swa_epochs, bn_data=bn_data))
    all_callbacks.extend(callbacks or [])

    fit_kwargs = {"class_weight": resolve_class_weight(
        config.class_weight, num_classes, lambda: _training_labels(data, train))}
    if isinstance(fit_train, (tuple, list)):
        x, y = fit_train[0], fit_train[1]
        fit_kwargs["batch_size"] = batch_size
        fit_kwargs["shuffle"] = shuffle
        if len(fit_train) == 3:
            fit_kwargs["sample_weight"] = fit_train[2]
    else:
        x, y = fit_train, None
        fit_kwargs["shuffle"] = False  # datasets come shuffled (or not) as the user made them
    if steps_per_epoch is not None or budget.repeats:
        fit_kwargs["steps_per_epoch"] = budget.steps_per_epoch
    build_before_fit(model, fit_train)  # the first train step traced once, not twice
    try:
        history = model.fit(
            x,
            y,
            validation_data=fit_validation,
            epochs=plan.epochs,
            callbacks=all_callbacks,
            verbose=fit_verbose(verbose),  # no ANSI bars in a file or pipe
            **fit_kwargs,
        )
    except Exception as err:  # TF's out-of-range label error from inside a dataset
        clean = label_error(err, num_classes)
        if clean is None:
            raise
        raise clean from None
    if objective.after_fit is not None:
        # Trained on one-hot labels (MixUp / CutMix); evaluation takes integer labels again.
        with model.distribute_strategy.scope():
            model.compile(optimizer=model.optimizer, **{**compile_args, "loss": objective.after_fit})
    history.history["unfrozen_groups"] = [
        plan.schedule.num_unfrozen(epoch, num_groups) for epoch in history.epoch
    ]
    strategies.finish(model, choice, validation)
    stopper = plan.early_stopping
    best_epoch = stopped_epoch = None
    if stopper is not None and stopper.best_weights is not None:
        best_epoch = int(stopper.best_epoch)
    if stopper is not None and stopper.stopped_epoch:
        stopped_epoch = int(stopper.stopped_epoch)
    result = FineTuneResult(
        model=model,
        history=history,
        unfreeze_events=list(plan.unfreezing.changes),
        head_epochs=config.head_epochs,
        fine_epochs=config.fine_epochs,
        schedule=plan.schedule,
        best_epoch=best_epoch,
        stopped_epoch=stopped_epoch,
        config=config,
        strategy=choice.to_record(),
    )
    # What ran (a resumed or early-stopped run runs fewer epochs than planned).
    ran = len(history.epoch)
    head_ran = sum(1 for e in history.epoch if e < config.head_epochs)
    result.budget = budget.record(head_ran, ran - head_ran)
    if stopper is not None:  # which epoch's weights came back (restore_head_epoch)
        result.budget["early_stopping"] = restore_record(stopper, config, val_examples)
    restored = restore_sentence(result.budget.get("early_stopping"))
    logger.info(
        "fine_tune: %d epochs ran (%d head + %d fine), %d + %d optimizer steps (%s), "
        "unfreezing at epochs %s%s",
        ran, head_ran, ran - head_ran, result.budget["head"]["steps"],
        result.budget["fine"]["steps"], budget.describe(), result.unfreeze_epochs,
        ", " + restored if restored else "",
    )
    if start_weights is not None:
        metric = "accuracy" if "val_accuracy" in history.history else "loss"
        result.wise_ft = wise_ft(model, start_weights.weights, validation,
                                 alphas=config.wise_ft_alphas, metric=metric)
        if start_weights.path and os.path.exists(start_weights.path):
            os.remove(start_weights.path)
    _evaluate_end(result, data, validation, batch_size, verbose)
    return result


def _evaluate_end(result, data, validation, batch_size, verbose):
    """The final validation and test metrics, into `result`; the one-line outcome printed
    (the way `fit` prints its progress) unless `verbose=0`."""
    if validation is not None:
        result.val_metrics = {
            k: float(v) for k, v in result.model.evaluate(
                strategies.as_dataset(validation, batch_size), verbose=0,
                return_dict=True).items()
        }
    if data is not None and data.test is not None:
        result.test_metrics = {
            k: float(v) for k, v in result.model.evaluate(
                data.pipeline("test", batch_size), verbose=0, return_dict=True).items()
        }
        logger.info("fine_tune: test %s (%s examples)", _format_metrics(result.test_metrics),
                    data.num_examples("test"))
    if verbose != 0:
        print(result.outcome(), flush=True)


def _probe_only(model, config, choice, compile_args, data, batch_size, validation, verbose):
    """Strategy `linear_probe`: the probe is the result; no `fit` (the model is compiled with
    a fresh optimizer so it evaluates and trains on as usual)."""
    from tlkit import optimizers as optimizers_lib
    from tlkit import trainability

    trainability.freeze_backbone(model, bn_policy=config.bn_policy)
    with model.distribute_strategy.scope():
        model.compile(optimizer=optimizers_lib.from_config(config, float(config.lr), model),
                      **compile_args)
    history = keras.callbacks.History()
    history.history, history.epoch = {}, []
    result = FineTuneResult(
        model=model, history=history, unfreeze_events=[], head_epochs=0, fine_epochs=0,
        schedule=unfreeze_lib.UnfreezeSchedule.constant(0), config=config,
        strategy=choice.to_record(),
        budget={"min_steps_per_epoch": config.min_steps_per_epoch,
                "head": {"epochs": 0, "steps": 0}, "fine": {"epochs": 0, "steps": 0},
                "note": "the converged linear probe (L-BFGS), no optimizer steps"},
    )
    logger.info("fine_tune: linear probe only (C=%s: %s; validation accuracy %s), no fit",
                choice.probe["C"], choice.probe.get("C_chosen_by"), choice.probe["val_accuracy"])
    _evaluate_end(result, data, validation, batch_size, verbose)
    return result


def _tlkit_owns_loss(model, loss_arg, loss) -> bool:
    """Whether `loss` is tlkit's choice (the head's default), not one the user gave."""
    head = heads_lib.find_head(model)
    return loss_arg is None and head is not None and loss == head.default_loss()


def _mixed_pipelines(train, validation, config, objective, num_classes, batch_size, shuffle):
    """`(train, validation)` for `fit`: with MixUp / CutMix, training batches mixed (labels
    one-hot when the loss switched to categorical, validation labels too); else unchanged."""
    setting = mixing_setting(config)
    if setting is None:
        return train, validation
    train = as_dataset(train, batch_size, shuffle, seed=0, setting=setting)
    if objective.one_hot:
        train = one_hot_labels(train, num_classes, setting)
        if validation is not None:
            validation = one_hot_labels(validation, num_classes, setting)
    return mix_batches(train, mixup=config.mixup, cutmix=config.cutmix, seed=0), validation


def _training_labels(data, train):
    """The integer training labels, for `class_weight="balanced"`."""
    if data is not None:
        return data.split_labels("train")
    if isinstance(train, (tuple, list)):
        return np.asarray(train[1])
    if isinstance(train, tf.data.Dataset):
        logger.info("class_weight='balanced': reading the training labels (one pass over the "
                    "training data)")
        return np.concatenate([np.asarray(e[1]).reshape(-1) for e in train.as_numpy_iterator()])
    raise config_lib.ConfigError(
        "FineTuneConfig.class_weight: 'balanced' needs the training labels, which this training "
        f"data ({type(train).__name__}) does not give; pass a mapping {{class index: weight}}.")


def _inner_fine_tune(model, loss, metrics, batch_size, train, validation, config):
    """`fine_tune` for a strategy's own run (a teacher), quietly, with the caller's settings."""
    return fine_tune(model, train, validation, config=config, loss=loss, metrics=metrics,
                     batch_size=batch_size, verbose=0)


def _as_unbatched(unlabeled):
    """`fine_tune(unlabeled=...)` as an unbatched dataset of inputs (arrays are sliced)."""
    if unlabeled is None or isinstance(unlabeled, tf.data.Dataset):
        return unlabeled
    return tf.data.Dataset.from_tensor_slices(np.asarray(unlabeled))


def _pipelines(model, data, validation, batch_size):
    """Train / val pipelines of a LabeledData, batched for the model's strategy."""
    from tlkit import distribute

    data = data.for_model(model)  # images of different sizes: the backbone's input size
    per_replica = None if batch_size is None else int(batch_size)  # None: the plan's default
    global_batch = distribute.distribution_plan(model.distribute_strategy, per_replica).global_batch
    train = data.pipeline("train", global_batch, training=True, seed=0)
    if validation is None and data.val is not None:
        validation = data.pipeline("val", global_batch)
    return data, train, validation, global_batch


def _format_metrics(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())


def _headline(metrics: dict) -> dict:
    """Accuracy (else the loss) first, for the one-line outcome."""
    keys = [k for k in ("accuracy", "sparse_categorical_accuracy", "binary_accuracy")
            if k in metrics][:1] or ["loss"]
    return {k: metrics[k] for k in keys if k in metrics}
