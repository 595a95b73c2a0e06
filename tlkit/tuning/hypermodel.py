"""`FineTuneHyperModel`: keras-tuner's `HyperModel` over tlkit's two-phase fine-tuning.

`build(hp)` builds a fresh model (the head's dropout from `hp`); `fit(hp, model, ...)` runs
`tlkit.fine_tune` — the head phase, then gradual unfreezing at a lower LR, in one
`fit()` — with the trial's head LR, fine-tuning LR, layer-wise decay, unfreezing schedule, and
with keras-tuner's callbacks (its `TunerCallback` and best-epoch checkpoint) appended. It returns
the Keras `History`, which keras-tuner reduces to the objective.

The phase schedule is defined over the whole epoch budget (`epochs`): `head_epochs` of head
training, then fine-tuning until `epochs`, with the LR decay and the unfreezing steps placed on
that axis. Hyperband trains a configuration in rounds (`tuner/initial_epoch` ..
`tuner/epochs`); a round continues the *same* schedule where the previous round stopped:

- every trial keeps a `keras.callbacks.BackupAndRestore` backup in its trial folder
  (`trial_<id>/tlkit_backup`: weights, optimizer state and step, epoch). A trial Hyperband may
  continue keeps it after training; the continuing trial takes it over, so the epochs already
  done are not redone, the optimizer (Adam moments, step counter, hence the LR schedule)
  continues, and `GradualUnfreezing` derives the trainable groups from the epoch. (Backups of
  configurations Hyperband drops stay until the project folder is deleted; `tlkit_backup*`
  folders may be removed once the search is over.)
- the round stops after epoch `tuner/epochs` (a small callback), not at the end of the budget;
- when the previous round's backup is missing (e.g. it ran on a machine without a shared
  project folder), the round starts from the weights Hyperband loaded (the previous round's best
  epoch) at epoch `tuner/initial_epoch`, with the optimizer's step set to match.

The backup also makes an interrupted trial resume from its last finished epoch when the search
is resumed (keras-tuner reruns trials that were running).
"""

from __future__ import annotations

import json
import logging
import os
import shutil

import keras
import keras_tuner
import tensorflow as tf

from tlkit.training.fine_tuning import batches_per_epoch
from tlkit.tuning import space as space_lib

logger = logging.getLogger("tlkit.tuning")

BACKUP_DIR = "tlkit_backup"
KEY_FILE = "tlkit_hyperparameters.json"
_UNFREEZE_PARAMS = ("head_epochs", "unfreeze_groups", "unfreeze_every", "unfreeze_per_step")


def _is_model_instance(obj) -> bool:
    return isinstance(obj, (keras.layers.Layer, tf.Module))


class FineTuneHyperModel(keras_tuner.HyperModel):
    """A keras-tuner `HyperModel` whose trials are tlkit two-phase fine-tuning runs.

    Args:
        model: how to build a fresh model for each trial: a callable `model(dropout=...)`
            returning a built `keras.Model` with a tlkit head (e.g. a `lambda` around
            `tlkit.build_model`), or a backbone spec for `tlkit.build_model` (a pretrained name,
            keras.applications name, TF-Hub handle or SavedModel folder). Not a model or
            backbone *instance*: trials must not share weights.
        space: the search space, a `SearchSpace` or a dict (see `tlkit.tuning.space`).
        epochs: the epoch budget of one configuration (head + fine-tuning epochs). `None`: the
            `epochs` given to `fit` (`tuner.search(..., epochs=...)`). Required with Hyperband,
            as its `max_epochs`.
        fixed: values of the parameters that are not searched (`{name or recipe key: value}`);
            the rest default to `tlkit.tuning.space.DEFAULTS` (those of `tlkit.fine_tune`).
        base_config: a `tlkit.FineTuneConfig` (or its dict) every trial's config starts from:
            its settings that are not tunable parameters (`ema_momentum`, `class_weight`,
            `swa_epochs`, `wise_ft_alphas`, `surgical_group`, ...) reach each trial's
            `fine_tune`; the trial's values (searched or `fixed`) replace the rest. Default:
            `tlkit.FineTuneConfig()`.
        model_kwargs: more `tlkit.build_model` arguments when `model` is a backbone spec
            (`num_classes`, `input_shape`, `head`, ...).
        unfreeze: optional callable `head_epochs -> UnfreezeSchedule` used when the space
            tunes none of `head_epochs` / `unfreeze_*` (e.g. a recipe's `table` schedule);
            default: the trial config's gradual schedule (`first=unfreeze_groups`,
            `every=unfreeze_every`, `per_step=unfreeze_per_step`; see `tlkit.config`).
        early_stopping_patience: `fine_tune`'s early stopping (`None`: off; Hyperband does the
            pruning).
        seed: when not `None`, `keras.utils.set_random_seed(seed)` before each build, so every
            trial starts from the same initial head weights and data order.
        name: the HyperModel's name.

    Attributes:
        trial_log: one dict per `fit` call: `trial_id`, `initial_epoch`, `stop_epoch`,
            `total_epochs`, `epochs` (the epochs run), `first_step` (optimizer step at the
            first batch), `unfrozen_groups` (per epoch run), `resumed_from`: `None` (fresh),
            `"interrupted"` (the trial's own backup, after an interruption),
            `"previous_round"` (the previous Hyperband round's backup, taken over) or
            `"weights"` (the weights keras-tuner loaded; no backup found).

    `tlkit.tuning.tune` builds the tuner for you. With keras-tuner's own tuner classes (as in
    the example) the `tensorboard` package must be installed: keras-tuner imports it before
    every trial on the TensorFlow backend.

    Example:
    ```python
    hypermodel = tlkit.tuning.FineTuneHyperModel(
        lambda dropout: tlkit.build_model(backbone_path, num_classes=5, dropout=dropout,
                                          compile=False),
        space={"lr": {"min": 1e-5, "max": 1e-3, "sampling": "log"}},
        epochs=4)
    tuner = keras_tuner.RandomSearch(hypermodel, objective="val_accuracy", max_trials=4)
    tuner.search(train_ds, validation_data=val_ds, epochs=4)
    ```
    """

    def __init__(self, model, space, epochs=None, fixed=None, model_kwargs=None, unfreeze=None,
                 early_stopping_patience=None, seed=None, name=None, base_config=None):
        super().__init__(name=name, tunable=True)
        if _is_model_instance(model):
            raise ValueError(
                "Expected `model` a callable `model(dropout=...)` that builds a fresh model, or "
                "a backbone spec (name, handle or folder). Received a model instance "
                f"({type(model).__name__}): its weights would carry over from one trial to the "
                "next. Wrap its construction in a function instead."
            )
        if not callable(model) and not isinstance(model, (str, os.PathLike)):
            raise ValueError(
                "Expected `model` a callable `model(dropout=...)` or a backbone spec string. "
                f"Received: {model!r}"
            )
        self.model = model
        self.model_kwargs = dict(model_kwargs or {})
        self.space = space_lib.SearchSpace.from_config(space)
        self.fixed = {**space_lib.DEFAULTS, **space_lib.check_fixed(fixed)}
        from tlkit.config import FineTuneConfig

        self.base_config = FineTuneConfig.from_config(
            {} if base_config is None else base_config)
        if epochs is not None:
            epochs = int(epochs)
            if epochs < 1:
                raise ValueError(f"Expected `epochs` >= 1. Received: epochs={epochs}")
            check_budget(self.space, self.fixed, epochs)
        self.epochs = epochs
        self.unfreeze = unfreeze
        self.early_stopping_patience = early_stopping_patience
        self.seed = seed
        self.trial_log: list[dict] = []

    # -- hyperparameters -----------------------------------------------------------------------
    def declare_hyperparameters(self, hp):
        self.space.declare(hp)

    def values(self, hp) -> dict:
        """Every parameter's value in a trial: searched ones from `hp`, the rest fixed."""
        values = dict(self.fixed)
        for name in self.space.names:
            values[name] = hp.get(name) if name in hp else self.space.params[name].declare(hp)
        if values["head_lr"] is None:  # a recipe's `head_lr: null`: ten times the LR
            values["head_lr"] = 10.0 * float(values["lr"])
        return values

    # -- build ---------------------------------------------------------------------------------
    def build(self, hp):
        """Builds a fresh, uncompiled model with the trial's head dropout.

        Args:
            hp: the trial's `keras_tuner.HyperParameters`.

        Returns:
            A built `keras.Model` (backbone frozen; `fit` compiles it).
        """
        self.space.declare(hp)
        dropout = float(self.values(hp)["dropout"])
        if self.seed is not None:
            keras.utils.set_random_seed(int(self.seed))
        if callable(self.model):
            model = self.model(dropout=dropout)
        else:
            import tlkit

            kwargs = {"compile": False, **self.model_kwargs, "dropout": dropout}
            model = tlkit.build_model(os.fspath(self.model), **kwargs)
        if not isinstance(model, keras.Model) or not model.built:
            raise ValueError(
                "The model builder must return a built `keras.Model` (e.g. from "
                f"`tlkit.build_model`). Received: {type(model).__name__}"
            )
        return model

    # -- fit -----------------------------------------------------------------------------------
    def config(self, values, head_epochs, total_epochs):
        """The `tlkit.FineTuneConfig` of a trial with these `values` (short names): the
        `base_config` with the trial's values. `strategy="auto"` runs as `gradual`: a trial
        is `head_epochs` + fine-tuning epochs that Hyperband rounds and resumed trials continue,
        and every trial must report validation metrics, while `auto` may replace the head
        epochs by a probe or end with the probe alone (no epochs); search `strategy` (e.g.
        `{"choice": ["gradual", "lp_ft"]}`) to compare strategies."""
        fields = {short: values[short] for short in space_lib.FIELD_OF}
        fields = {space_lib.FIELD_OF[k]: v for k, v in fields.items()}
        fields.update(
            head_epochs=int(head_epochs),
            fine_epochs=int(total_epochs) - int(head_epochs),
            layerwise_decay=space_lib.config_value("layerwise_decay", values["layerwise_decay"]),
            layer_decay=space_lib.config_value("layer_decay", values.get("layer_decay")),
            patience=self.early_stopping_patience,
        )
        if any(n in self.space for n in _UNFREEZE_PARAMS):
            # The searched gradual schedule, not the base config's `all` / `table`.
            fields.update(unfreeze="gradual", table=None)
        if fields["strategy"] == "auto":
            fields["strategy"] = "gradual"
        return self.base_config.replace(**fields)

    def schedule(self, values, head_epochs):
        """The `UnfreezeSchedule` given to the trials instead of the config's (the recipe's
        `table` / `all` schedule when the space tunes no unfreezing parameter), else `None`."""
        if self.unfreeze is not None and not any(n in self.space for n in _UNFREEZE_PARAMS):
            return self.unfreeze(head_epochs)
        return None

    def fit(self, hp, model, *args, validation_data=None, callbacks=None, epochs=None,
            initial_epoch=0, verbose=0, batch_size=32, steps_per_epoch=None, **kwargs):
        """Fine-tunes `model` with the trial's hyperparameters (head phase, then unfreezing).

        Args:
            hp: the trial's `keras_tuner.HyperParameters`.
            model: the model from `build(hp)`.
            *args: the training data given to `tuner.search`: a batched `tf.data.Dataset` or
                `keras.utils.PyDataset`, or arrays `x, y`.
            validation_data: evaluated after each epoch (the objective's `val_*` metrics).
            callbacks: keras-tuner's callbacks (and the user's); passed into the fit.
            epochs: where this fit stops: the budget, or Hyperband's `tuner/epochs`.
            initial_epoch: where it starts (Hyperband's `tuner/initial_epoch`).
            verbose: Keras progress output.
            batch_size: for array data.
            steps_per_epoch: batches per epoch when the data's length is unknown.

        Returns:
            The Keras `History` of the epochs run (with `unfrozen_groups` per epoch).

        Raises:
            TypeError: unexpected `fit` arguments (e.g. `validation_split`).
            ValueError: no training data, or a Hyperband round without `epochs` set here.
        """
        from tlkit.training.fine_tuning import fine_tune

        if kwargs:
            raise TypeError(
                f"FineTuneHyperModel.fit got unexpected arguments {sorted(kwargs)}; it takes "
                "the training data, validation_data, callbacks, epochs, initial_epoch, verbose, "
                "batch_size and steps_per_epoch."
            )
        train = _train_data(args)
        callbacks = list(callbacks or [])
        total, stop, initial_epoch = self._window(hp, epochs, initial_epoch)
        values = self.values(hp)
        head = int(values["head_epochs"])
        if head > total:
            raise ValueError(
                f"head_epochs={head} exceeds the epoch budget {total}; lower head_epochs or "
                "raise the budget (max_epochs)."
            )
        trial_id, trial_dir, parent_dir = _trial_dirs(callbacks, hp)
        window = _TrialWindow(initial_epoch, stop)
        own = [window]
        resumed_from = None
        if trial_dir is not None:
            execution = sum(1 for e in self.trial_log if e["trial_id"] == trial_id)
            backup, resumed_from = _prepare_backup(trial_dir, parent_dir, execution, hp,
                                                   initial_epoch, stop)
            # Keep the state when Hyperband may continue this configuration later.
            own.append(keras.callbacks.BackupAndRestore(backup, delete_checkpoint=stop >= total))
        if initial_epoch > 0 and resumed_from is None:
            resumed_from = "weights"
            window.start_step = initial_epoch * batches_per_epoch(train, steps_per_epoch,
                                                                 batch_size)
            logger.warning(
                "trial %s: no backup of the previous Hyperband round; continuing at epoch %d "
                "from the weights keras-tuner loaded (fresh optimizer state).",
                trial_id, initial_epoch,
            )
        schedule = self.schedule(values, head)
        result = fine_tune(
            model, train, validation_data,
            self.config(values, head, total),
            callbacks=own + callbacks,
            steps_per_epoch=steps_per_epoch,
            batch_size=batch_size,
            verbose=verbose,
            **({} if schedule is None else {"unfreeze": schedule}),
        )
        history = result.history
        self.trial_log.append({
            "trial_id": trial_id,
            "initial_epoch": initial_epoch,
            "stop_epoch": stop,
            "total_epochs": total,
            "epochs": list(history.epoch),
            "first_step": window.first_step,
            "unfrozen_groups": list(history.history.get("unfrozen_groups", [])),
            "resumed_from": resumed_from,
        })
        return history

    def _window(self, hp, epochs, initial_epoch):
        hyperband = "tuner/epochs" in hp.values
        if self.epochs is None and hyperband:
            raise ValueError(
                "Hyperband trains configurations in rounds; give FineTuneHyperModel the whole "
                "epoch budget: `epochs=max_epochs`."
            )
        total = self.epochs if self.epochs is not None else epochs
        if total is None:
            raise ValueError("No epoch budget: pass `epochs=` to FineTuneHyperModel or search().")
        total = int(total)
        stop = int(epochs) if epochs is not None else total
        if hyperband:
            stop = int(hp.values["tuner/epochs"])
            initial_epoch = int(hp.values.get("tuner/initial_epoch", initial_epoch))
        if not 0 <= int(initial_epoch) < stop <= total:
            raise ValueError(
                f"Expected 0 <= initial_epoch < epochs <= budget. Received: initial_epoch="
                f"{initial_epoch}, epochs={stop}, budget={total}"
            )
        return total, stop, int(initial_epoch)


def check_budget(space, fixed, epochs):
    """Raises a `ValueError` naming `head_epochs` when it can exceed the epoch budget."""
    if "head_epochs" in space:
        param = space.params["head_epochs"]
        largest = max(param.values) if param.values is not None else param.max
    else:
        largest = fixed["head_epochs"]
    if largest > epochs:
        raise ValueError(
            f"tune space: parameter 'head_epochs' can be {largest}, more than the epoch budget "
            f"of {epochs} (max_epochs). Lower head_epochs or raise max_epochs."
        )


class _TrialWindow(keras.callbacks.Callback):
    """Runs only epochs `[initial_epoch, stop)` of the fine-tuning schedule.

    Stops after epoch `stop`; when `start_step` is set (continuing without a backup), starts the
    fit at `initial_epoch` (as `BackupAndRestore` does) with the optimizer at that step.
    """

    def __init__(self, initial_epoch, stop):
        super().__init__()
        self.initial_epoch = int(initial_epoch)
        self.stop = int(stop)
        self.start_step = None
        self.first_step = None
        self.first_epoch = None

    def on_train_begin(self, logs=None):
        if self.start_step is not None:
            # The attribute `fit` reads after `on_train_begin` (set by BackupAndRestore too).
            self.model._initial_epoch = self.initial_epoch
            self.model.optimizer.iterations.assign(self.start_step)

    def on_epoch_begin(self, epoch, logs=None):
        if self.first_epoch is None:
            self.first_epoch = int(epoch)
            if self.start_step is not None and self.first_epoch != self.initial_epoch:
                raise RuntimeError(
                    f"Could not continue the Hyperband round at epoch {self.initial_epoch}: the "
                    f"fit started at epoch {self.first_epoch}."
                )

    def on_train_batch_begin(self, batch, logs=None):
        if self.first_step is None:
            self.first_step = int(self.model.optimizer.iterations.numpy())

    def on_epoch_end(self, epoch, logs=None):
        if int(epoch) + 1 >= self.stop:
            self.model.stop_training = True


def _prepare_backup(trial_dir, parent_dir, execution, hp, initial_epoch, stop):
    """The `BackupAndRestore` folder of a trial's execution, and where its state comes from.

    The trial's own backup (left by an interrupted run) resumes it; a backup that is finished
    (at `stop` or beyond: a completed execution of a trial that keras-tuner reruns) or that was
    made with other hyperparameters is removed. A Hyperband round without its own backup takes
    over the previous round's (moved: a configuration is continued at most once).

    Returns:
        `(folder, resumed_from)` with `resumed_from` `None`, `"interrupted"` or
        `"previous_round"`.
    """
    name = BACKUP_DIR if execution == 0 else f"{BACKUP_DIR}_{execution}"
    backup = os.path.join(trial_dir, name)
    key = _values_key(hp)
    resumed_from = None
    if os.path.isdir(backup) and (
        _backup_key(backup) != key or (_backup_epoch(backup) or 0) >= stop
        or not _has_backup(backup)
    ):
        shutil.rmtree(backup)
    if _has_backup(backup):
        resumed_from = "interrupted"
    elif initial_epoch > 0 and parent_dir is not None:
        parent_backup = os.path.join(parent_dir, name)
        if _backup_key(parent_backup) == key:
            shutil.move(parent_backup, backup)
            resumed_from = "previous_round"
    os.makedirs(backup, exist_ok=True)
    with open(os.path.join(backup, KEY_FILE), "w", encoding="utf-8") as f:
        f.write(key)
    return backup, resumed_from


def _backup_epoch(folder) -> int | None:
    path = os.path.join(folder, "training_metadata.json")
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return int(json.load(f)["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a damaged backup record: the trial starts again


def _has_backup(folder) -> bool:
    return os.path.exists(os.path.join(folder, "training_metadata.json"))


def _values_key(hp) -> str:
    """The trial's hyperparameter values without Hyperband's round bookkeeping, as JSON."""
    values = {k: v for k, v in hp.values.items() if not k.startswith("tuner/")}
    return json.dumps(values, sort_keys=True, default=str)


def _backup_key(folder) -> str | None:
    """The hyperparameters a backup was made with (`None`: no complete backup there)."""
    path = os.path.join(folder, KEY_FILE)
    if not _has_backup(folder) or not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return f.read()


def _trial_dirs(callbacks, hp):
    """(trial id, trial folder, Hyperband parent's folder) from keras-tuner's `TunerCallback`."""
    for cb in callbacks:
        tuner, trial = getattr(cb, "tuner", None), getattr(cb, "trial", None)
        if tuner is not None and trial is not None and hasattr(tuner, "get_trial_dir"):
            parent = hp.values.get("tuner/trial_id")
            parent_dir = tuner.get_trial_dir(parent) if parent else None
            return trial.trial_id, tuner.get_trial_dir(trial.trial_id), parent_dir
    return None, None, None


def _train_data(args):
    if not args or args[0] is None:
        raise ValueError("No training data: call `tuner.search(train_data, ...)`.")
    if len(args) == 1:
        return args[0]
    if len(args) in (2, 3):
        return tuple(args)
    raise TypeError(f"Expected the training data as `x` or `x, y`. Received {len(args)} values.")
