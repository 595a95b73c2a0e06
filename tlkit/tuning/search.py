"""`tune`: a keras-tuner search over tlkit's two-phase fine-tuning.

One call builds a `FineTuneHyperModel` and a keras-tuner tuner (Hyperband, Bayesian
optimization or random search), runs the search, and writes into the project folder:

```
<directory>/<project_name>/
  tlkit_search.json     the search space and settings (checked when the search resumes)
  trials.md, trials.csv one row per trial: id, status, score, Hyperband round, hyperparameters
  best_recipe.yaml      the best hyperparameters as a ready-to-run recipe
  objective_vs_lr.png   the objective against the learning rate(s)
  oracle.json, trial_*/ keras-tuner's own state (and each trial's backup / best checkpoint)
```

Resuming: rerunning the same call continues an interrupted search (keras-tuner reloads its
project when `overwrite=False`; trials that were running are rerun from their last finished
epoch). A rerun whose space or settings differ raises `SearchChangedError` instead of mixing
incompatible trials.

Distribution: `distribution_strategy=` runs each trial under a single-worker `tf.distribute`
strategy. Parallel trials use keras-tuner's chief/worker mode: run the same script in several
processes with `KERASTUNER_TUNER_ID` (`chief`, `tuner0`, `tuner1`, ...),
`KERASTUNER_ORACLE_IP` and `KERASTUNER_ORACLE_PORT` set; the chief serves the oracle and writes
the reports, each worker runs trials (sharing the project folder).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os

import keras
import keras_tuner

from tlkit._io import atomic_write_json, read_json
from tlkit.tuning import report
from tlkit.tuning.hypermodel import FineTuneHyperModel
from tlkit.tuning.space import SearchSpace

logger = logging.getLogger("tlkit.tuning")

TUNERS = ("hyperband", "bayesian", "random")
SEARCH_FILE = "tlkit_search.json"


class SearchChangedError(ValueError):
    """A resumed search whose space or settings differ from the ones it was started with."""


@dataclasses.dataclass
class TuneResult:
    """What a search found.

    Attributes:
        best_hyperparameters: the best trial's searched values `{name: value}` (`None` on a
            worker, which does not see all trials).
        best_score: its objective value.
        best_trial_id: its keras-tuner trial id.
        trials: `tlkit.tuning.report.trial_rows`: one dict per trial (`trial_id`, `status`,
            `score`, Hyperband `epochs` / `initial_epoch` / `continues`, `hyperparameters`).
        best_model: the best trial's model at its best epoch, compiled (when asked for).
        best_recipe: the recipe dict written to `best_recipe.yaml`.
        paths: `{"summary_md", "summary_csv", "recipe", "plot", "search"}`.
        project_dir: the keras-tuner project folder.
        objective: the objective's name.
        role: `"single"`, `"chief"` or `"worker"` (keras-tuner's parallel mode).
        trials_run: ids of the trials this process trained.
        trial_log: `FineTuneHyperModel.trial_log` of this process (epochs run per trial).
        tuner: the keras-tuner tuner.
    """

    best_hyperparameters: dict | None
    best_score: float | None
    best_trial_id: str | None
    trials: list
    best_model: keras.Model | None = None
    best_recipe: dict | None = None
    paths: dict = dataclasses.field(default_factory=dict)
    project_dir: str = ""
    objective: str = "val_accuracy"
    role: str = "single"
    trials_run: list = dataclasses.field(default_factory=list)
    trial_log: list = dataclasses.field(default_factory=list)
    tuner: object = None


def _role() -> str:
    """keras-tuner's parallel role from its environment variables."""
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return "single"
    return "chief" if "chief" in os.environ.get("KERASTUNER_TUNER_ID", "") else "worker"


def _search_record(space, tuner, objective, max_epochs, fixed) -> dict:
    return {
        "space": space.get_config(),
        "space_fingerprint": space.fingerprint(),
        "settings": {"tuner": tuner, "objective": objective, "max_epochs": int(max_epochs),
                     "fixed": fixed},
    }


def _check_resume(project_dir, record, overwrite):
    """Raises `SearchChangedError` when `project_dir` holds a search with another space."""
    path = os.path.join(project_dir, SEARCH_FILE)
    if overwrite and os.path.isdir(project_dir) and os.listdir(project_dir) and not any(
            os.path.exists(os.path.join(project_dir, f)) for f in (SEARCH_FILE, "oracle.json")):
        raise SearchChangedError(
            f"{project_dir} holds files that are not a search (no {SEARCH_FILE} or oracle.json); "
            "overwrite only replaces a search: choose another folder or project_name, or move "
            "those files away")
    if overwrite or not os.path.isdir(project_dir):
        return
    if not os.path.exists(path):
        if os.path.exists(os.path.join(project_dir, "oracle.json")):
            raise SearchChangedError(
                f"{project_dir} holds a keras-tuner project that tlkit.tuning did not start "
                f"(no {SEARCH_FILE}). Pass overwrite=True to replace it, or another project_name."
            )
        return
    stored = read_json(path, expect=lambda d: None if isinstance(d, dict) and isinstance(
        d.get("space"), dict) else "a JSON object with the search's 'space'",
        fix="start the search afresh with overwrite=True (tlkit tune --overwrite)")
    hint = (
        "Resume with the original space and settings, or start a new search with "
        "overwrite=True (the old trials are deleted) or another project_name."
    )
    if stored.get("space_fingerprint") != record["space_fingerprint"]:
        old = SearchSpace.from_config(stored["space"])
        new = SearchSpace.from_config(record["space"])
        raise SearchChangedError(
            f"The search in {project_dir} was started with a different search space "
            f"({'; '.join(new.diff(old))}). {hint}"
        )
    old, new = stored.get("settings", {}), json.loads(json.dumps(record["settings"]))
    old_fixed, new_fixed = old.pop("fixed", {}) or {}, new.pop("fixed")
    changed = [f"{k}: {old.get(k)!r} -> {new[k]!r}" for k in new if old.get(k) != new[k]]
    changed += [f"fixed {k}: {old_fixed.get(k)!r} -> {v!r}" for k, v in new_fixed.items()
                if old_fixed.get(k) != v]
    if changed:
        raise SearchChangedError(
            f"The search in {project_dir} was started with other settings "
            f"({'; '.join(changed)}). {hint}"
        )


class _OptionalTensorBoard:
    """keras-tuner (TF backend) imports `tensorboard` before each trial, even when no
    `TensorBoard` callback is in use, and fails where the package is not installed. Its method
    does nothing without such a callback, so it is skipped then."""

    def _configure_tensorboard_dir(self, callbacks, trial, execution=0):
        if any(type(cb).__name__ == "TensorBoard" for cb in callbacks):
            super()._configure_tensorboard_dir(callbacks, trial, execution)


class _RandomSearch(_OptionalTensorBoard, keras_tuner.RandomSearch):
    pass


class _BayesianOptimization(_OptionalTensorBoard, keras_tuner.BayesianOptimization):
    pass


class _Hyperband(_OptionalTensorBoard, keras_tuner.Hyperband):
    pass


def _make_tuner(name, hypermodel, max_trials, max_epochs, factor, **common):
    if name == "random":
        return _RandomSearch(hypermodel, max_trials=max_trials, **common)
    if name == "bayesian":
        return _BayesianOptimization(hypermodel, max_trials=max_trials, **common)
    tuner = _Hyperband(hypermodel, max_epochs=max_epochs, factor=factor, **common)
    if max_trials:
        tuner.oracle.max_trials = int(max_trials)  # a cap on Hyperband's own schedule
    return tuner


def tune(
    model,
    train,
    validation=None,
    space=None,
    tuner="hyperband",
    max_trials=10,
    max_epochs=3,
    directory="tuning",
    project_name="search",
    overwrite=False,
    distribution_strategy=None,
    objective="val_accuracy",
    fixed=None,
    base_config=None,
    recipe=None,
    model_kwargs=None,
    unfreeze=None,
    factor=3,
    executions_per_trial=1,
    early_stopping_patience=None,
    load_best_model=False,
    callbacks=None,
    seed=0,
    batch_size=32,
    steps_per_epoch=None,
    verbose=0,
) -> TuneResult:
    """Searches fine-tuning hyperparameters (LRs, layer-wise decay, unfreezing, dropout).

    Args:
        model: a callable `model(dropout=...)` building a fresh model with a tlkit head, or a
            backbone spec for `tlkit.build_model` (then give `model_kwargs`).
        train: training data: a batched `tf.data.Dataset`, a `keras.utils.PyDataset`, or an
            `(x, y)` tuple of arrays (batched with `batch_size`).
        validation: validation data (needed for `val_*` objectives).
        space: the search space as data (see `tlkit.tuning.space`), or a `SearchSpace`.
        tuner: `"hyperband"`, `"bayesian"` or `"random"`.
        max_trials: number of trials (with Hyperband: a cap on its own schedule; `None`: none).
        max_epochs: epoch budget of one configuration (head + fine-tuning epochs); Hyperband's
            `max_epochs`.
        directory, project_name: the project folder is `directory/project_name`.
        overwrite: start afresh, deleting the project folder's trials. `False` resumes.
        distribution_strategy: a single-worker `tf.distribute.Strategy` for every trial.
        objective: a metric name (`"val_accuracy"`, `"val_loss"`, ...) or a
            `keras_tuner.Objective`.
        fixed: values of the parameters not searched (`{name or recipe key: value}`).
        base_config: the `tlkit.FineTuneConfig` every trial starts from (its settings that
            are not tunable, e.g. `ema_momentum`, `class_weight`, `swa_epochs`,
            `wise_ft_alphas`; see `FineTuneHyperModel`). Default: the defaults.
        recipe: an input recipe (`tlkit.recipes.Recipe` or dict) to merge the best values into.
        model_kwargs: `tlkit.build_model` arguments when `model` is a backbone spec.
        unfreeze: optional `head_epochs -> UnfreezeSchedule` when no unfreezing parameter is
            searched (see `FineTuneHyperModel`).
        factor: Hyperband's reduction factor.
        executions_per_trial: trainings per trial (scores averaged).
        early_stopping_patience: `fine_tune`'s early stopping inside each trial (`None`: off).
        load_best_model: also return the best trial's model (rebuilt, best-epoch weights).
        callbacks: more Keras callbacks for every trial (keras-tuner deep-copies them).
        seed: seeds the oracle and every trial's initial weights (`None`: unseeded).
        batch_size, steps_per_epoch: for array data / data of unknown length.
        verbose: Keras and keras-tuner progress output.

    Returns:
        A `TuneResult`. The reports (`trials.md`, `trials.csv`, `best_recipe.yaml`,
        `objective_vs_lr.png`) are in `result.project_dir` (not written by workers).

    Raises:
        ValueError: a bad space (the message names the parameter), tuner or budget.
        SearchChangedError: resuming a project that was started with another space/settings.

    Example:
    ```python
    result = tlkit.tuning.tune(
        lambda dropout: tlkit.build_model("path/to/saved_model", num_classes=5,
                                          input_shape=(96, 96, 3), dropout=dropout,
                                          compile=False),
        train_ds, val_ds,
        space={"head_lr": {"min": 1e-4, "max": 1e-2, "sampling": "log"},
               "lr": {"min": 1e-5, "max": 1e-3, "sampling": "log"},
               "layerwise_decay": {"values": [1.0, 2.6]},
               "unfreeze_groups": {"min": 1, "max": 3}},
        tuner="random", max_trials=8, max_epochs=4, directory="runs", project_name="flowers")
    result.best_hyperparameters, result.paths["recipe"]
    ```
    """
    space = SearchSpace.from_config(space)
    if tuner not in TUNERS:
        raise ValueError(f"Expected `tuner` in {TUNERS}. Received: tuner={tuner!r}")
    if tuner != "hyperband" and (max_trials is None or int(max_trials) < 1):
        raise ValueError(
            f"Expected `max_trials` >= 1 for tuner={tuner!r}. Received: max_trials={max_trials!r}"
        )
    if isinstance(objective, str) and objective.startswith("val_") and validation is None:
        raise ValueError(f"The objective {objective!r} needs `validation` data.")
    role = _role()
    hypermodel = FineTuneHyperModel(
        model, space, epochs=max_epochs, fixed=fixed, model_kwargs=model_kwargs,
        unfreeze=unfreeze, early_stopping_patience=early_stopping_patience, seed=seed,
        base_config=base_config,
    )
    objective_name = objective if isinstance(objective, str) else objective.name
    project_dir = os.path.join(os.fspath(directory), project_name)
    record = _search_record(space, tuner, objective_name, max_epochs, hypermodel.fixed)
    overwrite = bool(overwrite) and role != "worker"  # a worker must not delete the project
    _check_resume(project_dir, record, overwrite)
    kt_tuner = _make_tuner(
        tuner, hypermodel, max_trials, max_epochs, factor,
        objective=objective, directory=os.fspath(directory), project_name=project_name,
        overwrite=overwrite, distribution_strategy=distribution_strategy,
        executions_per_trial=executions_per_trial, seed=seed,
    )
    search_path = os.path.join(project_dir, SEARCH_FILE)
    if overwrite or not os.path.exists(search_path):
        os.makedirs(project_dir, exist_ok=True)
        atomic_write_json(search_path, record)
    if role == "single":
        # keras-tuner saves its state after each trial only; saved now, a search interrupted
        # during its first trial resumes too (instead of starting over next to stale trials).
        kt_tuner.save()

    args = tuple(train) if isinstance(train, (tuple, list)) else (train,)
    kwargs = {"validation_data": validation, "epochs": max_epochs, "verbose": verbose,
              "batch_size": batch_size, "steps_per_epoch": steps_per_epoch,
              "callbacks": list(callbacks or [])}
    logger.info("tune: %s search in %s (%s), space %s", tuner, project_dir, role,
                space.get_config())
    kt_tuner.search(*args, **kwargs)

    trials_run = list(dict.fromkeys(e["trial_id"] for e in hypermodel.trial_log))
    result = TuneResult(
        best_hyperparameters=None, best_score=None, best_trial_id=None, trials=[],
        project_dir=project_dir, objective=objective_name, role=role, trials_run=trials_run,
        trial_log=list(hypermodel.trial_log), tuner=kt_tuner,
        paths={"search": search_path},
    )
    if role == "worker":
        return result
    return _finish(result, kt_tuner, hypermodel, space, max_epochs, recipe, model,
                   load_best_model)


def _finish(result, kt_tuner, hypermodel, space, max_epochs, recipe, model, load_best_model):
    """Collects the trials, writes the reports, and fills in the best trial."""
    oracle = kt_tuner.oracle
    rows = report.trial_rows(oracle, space)
    result.trials = rows
    maximize = oracle.objective.direction == "max"
    best_trials = oracle.get_best_trials(1)
    recipe_dict, comment = None, None
    if best_trials:
        best = best_trials[0]
        hp = best.hyperparameters
        result.best_trial_id = best.trial_id
        result.best_score = None if best.score is None else float(best.score)
        result.best_hyperparameters = {n: hp.values[n] for n in space.names if n in hp.values}
        values = hypermodel.values(hp)
        backbone = model if isinstance(model, (str, os.PathLike)) else None
        recipe_dict = report.best_recipe(values, space, max_epochs, recipe=recipe,
                                         backbone=backbone)
        comment = (
            f"Best of {len(rows)} trials (trial {best.trial_id}, {result.objective} = "
            f"{result.best_score}), written by tlkit.tuning.tune.\n"
            f"Searched: {', '.join(space.names)}. Project: {result.project_dir}"
        )
        if load_best_model:
            result.best_model = kt_tuner.get_best_models(1)[0]
            _compile(result.best_model)
    result.best_recipe = recipe_dict
    fixed_lr = None if "lr" in space else float(hypermodel.fixed["lr"])
    result.paths.update(report.write_reports(
        result.project_dir, rows, space, result.objective, result.best_trial_id, recipe_dict,
        comment, maximize=maximize, plot_fixed_lr=fixed_lr,
    ))
    logger.info("tune: best trial %s (%s = %s): %s", result.best_trial_id, result.objective,
                result.best_score, result.best_hyperparameters)
    return result


def _compile(model):
    import tlkit

    with model.distribute_strategy.scope():
        tlkit.compile_model(model)
