"""Running a recipe: data → model → phases → evaluation → reports → export, in a run folder.

`train_recipe(recipe)` is what `tlkit train` calls. Training takes one or two `fit` calls
(*stages*):

- with `data.cache_features`: `head` (the head alone, on features extracted once from the
  frozen backbone and cached in `checkpoints/features/`), then `fine` (`tlkit.fine_tune` with
  the unfreezing schedule);
- otherwise one `tlkit.fine_tune` call for both phases (`all`).

Each stage has its own backup folder (`tlkit.checkpoint.AtomicBackupAndRestore`, Keras'
`BackupAndRestore` with atomic commits) and, once finished, its weights in `checkpoints/` and
its name in `state.json`: re-running the same command after an
interruption resumes where it stopped. Every epoch is appended to `history.json`.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import time
import types

import keras

import tlkit.data as tdata
from tlkit import distribute, trainability
from tlkit import groups as groups_lib
from tlkit import heads as heads_lib
from tlkit.checkpoint import AtomicBackupAndRestore
from tlkit.head_training import train_head_on_features
from tlkit.recipes import Recipe, check_required, dump_recipe, load_recipe, preflight
from tlkit.reports.versions import library_versions
from tlkit.runner.build import build, make_optimizer
from tlkit.runner.data import load_data, recipe_distribution
from tlkit.runner.evaluation import evaluate, interpret
from tlkit.runner.export import export_recipe
from tlkit.runner.records import training_record, write_card, write_report
from tlkit.runner.run_lock import run_lock
from tlkit.runner.run_model import served
from tlkit.runner.rundir import RunDir, atomic_path, atomic_write_text, run_log
from tlkit.runner.scratch import scratch_baseline
from tlkit.runner.settings import resolve_settings
from tlkit.training import strategies
from tlkit.training.class_weights import resolve_class_weight
from tlkit.training.fine_tuning import fine_tune
from tlkit.training.training_loss import training_loss

logger = logging.getLogger("tlkit")


# -- what runs when --------------------------------------------------------------------------------


def planned_strategy(recipe: Recipe, model=None, examples_per_class=None) -> str:
    """The strategy a run plans to run: `phases.strategy`, with `auto` resolved as far as the
    recipe, model and `examples_per_class` (the smallest class count of the training split)
    tell before training (`tlkit.training.strategies.planned`)."""
    if model is not None:
        head = heads_lib.find_head(model)
    else:  # the recipe's head: `mlp` is a classification head with hidden layers
        mlp = recipe.head.kind == "mlp"
        head = types.SimpleNamespace(
            kind="classification" if mlp else recipe.head.kind,
            hidden_units=tuple(recipe.head.hidden_units) if mlp else ())
    return strategies.planned(
        recipe.fine_tune_config(), head, examples_per_class=examples_per_class,
        distribution=model.distribute_strategy if model is not None else None)


def plan_stages(recipe: Recipe, strategy: str | None = None) -> list[dict]:
    """The `fit` calls of a run: `[{name, start, end}]`, epochs `[start, end)` across the run.

    With `data.cache_features`, the head phase trains on cached features (stage `head`) unless
    the `strategy` (default: `planned_strategy(recipe)`) fits a linear probe instead: then one
    stage `all` whose probe reads the same feature cache."""
    head, fine = recipe.phases.head_epochs, recipe.phases.fine_epochs
    strategy = strategy or planned_strategy(recipe)
    if recipe.data.cache_features and head and not strategies.get(strategy).uses_probe:
        return [{"name": "head", "start": 0, "end": head}] + (
            [{"name": "fine", "start": head, "end": head + fine}] if fine else []
        )
    return [{"name": "all", "start": 0, "end": head + fine}]


def plan_segments(recipe: Recipe, num_groups: int, batch_norm: bool = True,
                  strategy=None) -> list[dict]:
    """What trains when, for reports: `[{name, label, short, start, end, unfrozen, lr}]`
    (`tlkit.training.strategies.Strategy.segments`), following `strategy`: a name or the
    `FineTuneResult.strategy` record of what ran (default: `planned_strategy(recipe)`).
    `num_groups`: the backbone groups; `batch_norm`: whether the backbone has BatchNorm."""
    record = strategy if isinstance(strategy, dict) else None
    name = strategy if isinstance(strategy, str) else None
    if not (record or {}).get("strategy") and name is None:
        name = planned_strategy(recipe)
    return strategies.segments(recipe.fine_tune_config(), num_groups, batch_norm=batch_norm,
                               cached_features=bool(recipe.data.cache_features),
                               record=record, name=name)


class _EpochRecorder(keras.callbacks.Callback):
    """Appends each epoch's logs to the run's `history.json` (atomic; resumed runs dedupe).

    Args:
        run: the `RunDir`.
        stage: the stage name.
        offset: added to Keras' epoch index (a stage's `fit` may count from 0).
        segments: `plan_segments` output, to tag each record with what trained.
    """

    def __init__(self, run: RunDir, stage: str, offset: int, segments):
        super().__init__()
        self.run, self.stage, self.offset, self.segments = run, stage, offset, segments

    def on_epoch_end(self, epoch, logs=None):
        epoch = int(epoch) + self.offset
        segment = next((s for s in self.segments if s["start"] <= epoch < s["end"]), None)
        record = {
            "epoch": epoch,
            "stage": self.stage,
            "segment": segment["label"] if segment else None,
            "unfrozen": segment["unfrozen"] if segment else None,
        }
        record.update({k: float(v) for k, v in (logs or {}).items()})
        self.run.add_history([record])


def _callbacks(recipe, run, stage, offset, segments):
    callbacks = [_EpochRecorder(run, stage, offset, segments)]
    if recipe.output.tensorboard:
        if importlib.util.find_spec("tensorboard") is None:
            logger.warning(
                "TensorBoard logs skipped: the `tensorboard` package is not installed "
                "(pip install tensorboard), or set output.tensorboard: false"
            )
        else:
            callbacks.append(keras.callbacks.TensorBoard(run.logs, write_graph=False))
    return callbacks


def _head_on_features(recipe, run, model, data, stage, segments, verbose):
    """Stage `head`: the head alone on cached backbone features (no augmentation there)."""
    callbacks = _callbacks(recipe, run, "head", 0, segments)
    callbacks.append(AtomicBackupAndRestore(run.backup_dir("head")))
    train_head_on_features(
        model,
        data.train,
        data.val,
        epochs=stage["end"],
        batch_size=recipe.data.batch_size,
        seed=recipe.seed,
        cache_dir=_feature_cache(run),
        data_fingerprints=_fingerprints(data),
        callbacks=callbacks,
        optimizer=make_optimizer(recipe, recipe.optimizer.resolved_head_lr),
        ignore_augmentation=True,
        drop_remainder=bool(recipe.data.drop_remainder),
        # The head's loss and class weights as configured; MixUp / CutMix mix images, so they
        # apply from the `fine` stage on (not to cached features).
        loss=_head_loss(recipe, model),
        class_weight=_class_weight(recipe, model, data),
        verbose=verbose,
        jit_compile=recipe.distribute.jit_compile,
        steps_per_execution=recipe.distribute.steps_per_execution or 1,
    )


def _fine_tune(recipe, run, model, data, stage, segments, verbose, examples_per_class=None):
    """Stage `fine` (after cached-feature head training) or `all` (both phases).
    `examples_per_class`: the audit's smallest training class (what `auto` decides by)."""
    batch_size, seed = recipe.data.batch_size, recipe.seed
    head_epochs = recipe.phases.head_epochs if stage["name"] == "all" else 0
    drop = bool(recipe.data.drop_remainder)
    train = tdata.batch(data.split("train"), batch_size, training=True, seed=seed,
                        drop_remainder=drop)
    val = None
    if data.val is not None:
        val = tdata.batch(data.val, batch_size, training=False, seed=seed, drop_remainder=drop)
    config = recipe.fine_tune_config().replace(
        head_epochs=head_epochs, fine_epochs=stage["end"] - stage["start"] - head_epochs,
        class_weight=_class_weight(recipe, model, data))
    cache = {}
    if recipe.data.cache_features:
        # A probe (lp_ft / linear_probe / auto) reads the features the head phase would cache.
        cache = {"feature_cache": _feature_cache(run),
                 "data_fingerprints": _fingerprints(data)}
    result = fine_tune(
        model, train, val, config,
        checkpoint_dir=run.backup_dir(stage["name"]),
        callbacks=_callbacks(recipe, run, stage["name"], stage["start"], segments),
        verbose=verbose,
        examples_per_class=examples_per_class,
        unlabeled=data.unlabeled,  # data.unlabeled: the pool semi-supervised strategies read
        **cache,
    )
    if result.wise_ft is not None:
        run.write_json("wise_ft.json", {
            "alpha": result.wise_ft["alpha"], "metric": result.wise_ft["metric"],
            "scores": {f"{a:g}": v for a, v in result.wise_ft["scores"].items()}})

    # What the strategy did (`auto`'s choice and why), for metrics.json and the model card;
    # the report's phases follow what ran.
    budget = dict(result.budget or {})
    if stage["name"] == "fine" and stage["start"]:  # the head epochs ran on cached features
        train_examples, drop = data.num_examples("train"), bool(recipe.data.drop_remainder)
        per_epoch = (train_examples // batch_size if drop
                     else math.ceil(train_examples / batch_size))
        budget["head"] = {"epochs": stage["start"], "steps": stage["start"] * per_epoch,
                          "on_cached_features": True}
    run.update_state(strategy=result.strategy, budget=budget, segments=plan_segments(
        recipe, _num_groups(model), trainability.has_batch_norm(model), result.strategy))


def _feature_cache(run) -> str:
    return os.path.join(run.checkpoints, "features")


def _fingerprints(data) -> dict:
    return {s: tdata.split_fingerprint(data, s) for s in ("train", "val")}


def _num_groups(model) -> int:
    return sum(1 for g in trainability.layer_groups(model) if g.name != groups_lib.HEAD_GROUP)


def _class_weight(recipe, model, data):
    """`regularization.class_weight` with `balanced` computed from the training labels."""
    setting = recipe.fine_tune_config().class_weight
    if setting != "balanced":
        return setting
    num_classes = int(model.outputs[0].shape[-1])
    return resolve_class_weight(setting, num_classes, data.split_labels("train"))


def _head_loss(recipe, model):
    """The head's loss under the recipe's `regularization` settings, for integer labels."""
    objective = training_loss(heads_lib.find_head(model).default_loss(),
                              recipe.fine_tune_config(), owned=True)
    return objective.after_fit if objective.after_fit is not None else objective.loss


def _train(recipe, run, model, data, verbose, examples_per_class=None):
    strategy = planned_strategy(recipe, model, examples_per_class)
    segments = run.state.get("segments") if run.state.get("strategy") else None
    if segments is None:
        segments = plan_segments(recipe, _num_groups(model), trainability.has_batch_norm(model),
                                 strategy)
        run.update_state(segments=segments)
    _resume_weights(run, model)
    for stage in plan_stages(recipe, strategy):
        if run.stage_done(stage["name"]):
            continue
        if strategies.get(strategy).uses_probe:  # the probe replaces the head epochs
            logger.info("stage %s: the linear probe, then up to %d fine-tuning epochs",
                        stage["name"], max(recipe.phases.fine_epochs, 1))
        else:
            logger.info("stage %s: epochs %d-%d", stage["name"], stage["start"] + 1,
                        stage["end"])
        started = time.time()
        if stage["name"] == "head":
            _head_on_features(recipe, run, model, data, stage, segments, verbose)
        else:
            _fine_tune(recipe, run, model, data, stage, segments, verbose, examples_per_class)
        with atomic_path(run.stage_weights(stage["name"])) as tmp:
            model.save_weights(tmp)
        seconds = {**run.state.get("stage_seconds", {}), stage["name"]: _since(started)}
        run.update_state(stage_seconds=seconds)  # this attempt's, when the stage resumed
        run.mark_stage_done(stage["name"])
    logger.info("trainable parameters at the end:\n%s", trainability.format_summary(model))


def _resume_weights(run: RunDir, model) -> None:
    """Loads the weights of the last finished stage; a damaged weights file (truncated, not
    HDF5) takes its stage off `stages_done`, with a warning, so that the stage runs again (its
    `BackupAndRestore` backup, when intact, makes that quick)."""
    while run.last_stage_done:
        stage = run.last_stage_done
        path = run.stage_weights(stage)
        try:
            model.load_weights(path)
        except (OSError, ValueError, KeyError) as err:
            logger.warning("%s is damaged (%s); stage %s runs again", path,
                           " ".join(str(err).split())[:120], stage)
            state = run.state
            state["stages_done"] = state["stages_done"][:-1]
            run.update_state(stages_done=state["stages_done"])
            continue
        logger.info("resuming after stage %s", stage)
        return


# -- the whole run -----------------------------------------------------------------------------------
def train_recipe(recipe, output=None, force=False, overrides=(), verbose="auto") -> str:
    """Trains, evaluates, reports and exports a recipe in its run folder.

    Args:
        recipe: a `Recipe` or a path to a recipe YAML file.
        output: run folder (default: `recipe.output.dir`, else `runs/<recipe name>`).
        force: retrain from scratch even if the folder holds a finished (or different) run.
        overrides: `"key=value"` strings when `recipe` is a path.
        verbose: Keras progress output (`"auto"`, 0, 1, 2).

    Returns:
        The run folder. A finished run of the same recipe is not retrained (its folder is
        returned); an interrupted one resumes.

    Example:
    ```python
    from tlkit.runner.train import train_recipe

    run_dir = train_recipe("recipes/smoke.yaml", output="/tmp/smoke")
    ```
    """
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, overrides)
    check_required(recipe)
    run = RunDir(output or recipe.output.dir or os.path.join("runs", recipe.name))
    with run_lock(run.path, "train"):  # one writer per run folder (a second one: one line)
        return _train_locked(recipe, run, force, verbose)


def _train_locked(recipe, run, force, verbose) -> str:
    if force or not run.finished_with(dump_recipe(recipe)):
        # Data and backbone availability, before any folder is created or replaced (also
        # before "holds a run of a different recipe": the recipe's own error comes first).
        preflight.check_ready(recipe)
    status = run.prepare(dump_recipe(recipe), force=force)
    if status == "complete":
        logger.info("%s is already trained with this recipe; pass --force to retrain", run.path)
        return run.path
    try:
        with run_log(run):
            logger.info("%s run in %s", "resuming" if status == "resume" else "starting", run.path)
            _run(recipe, run, verbose)
    except BaseException as err:
        if status == "new":
            run.settle(err)
        raise
    run.settle()
    return run.path


def _run(recipe: Recipe, run: RunDir, verbose) -> None:
    started = time.time()
    keras.utils.set_random_seed(recipe.seed)
    with distribute.strategy_scope(**recipe_distribution(recipe)) as strategy:
        _check_distribution(recipe, run, strategy)
        recipe = resolve_settings(recipe, strategy)
        data = load_data(recipe.data, recipe.seed)
        # The model first: images of different sizes are batched at its input size (the
        # backbone's, unless data.image_size is set), or a clear error comes before any work.
        model = distribute.apply_keras_fixes(build(recipe, data, run))
        raw, data = data, data.for_model(model)
        report = tdata.audit(raw, progress=verbose != 0)  # the files as they are
        atomic_write_text(run.file("reports", "data_audit.txt"), report.to_text() + "\n")
        report.save(run.file("reports", "data_audit.json"))  # for the report's cross-links
        logger.info("data audit:\n%s", report.to_text())
        if report.has_leakage:
            logger.warning(
                "the data audit found examples shared across splits; see %s",
                run.file("reports", "data_audit.txt"),
            )
            # Refuses (DataLeakageError, listing the files) unless data.allow_leakage: true.
            tdata.check_no_leakage(
                report,
                allow=recipe.data.allow_leakage,
                allow_hint="set data.allow_leakage: true in the recipe (or --set "
                "data.allow_leakage=true)",
            )
        run.write_json("class_names.json", data.class_names)
        # The smallest training class, as the probe counts it (every class of the head).
        counts = report.class_counts.get("train") or {}
        _train(recipe, run, model, data, verbose,
               examples_per_class=min(counts.values()) if counts else None)
        with atomic_path(run.model_path) as tmp:
            model.save(tmp)
    evaluation_started = time.time()
    found = interpret(recipe, run, model, data, verbose)
    metrics = evaluate(recipe, run, model, data, verbose=verbose, _found=found)
    metrics["train_seconds"] = _since(started)
    metrics["timings"] = {**run.state.get("stage_seconds", {}),
                          "evaluation": _since(evaluation_started)}
    metrics["versions"] = library_versions()
    wise = run.read_json("wise_ft.json", None)
    if wise is not None:
        metrics["wise_ft"] = wise
    if run.state.get("strategy"):
        metrics["strategy"] = run.state["strategy"]
    if run.state.get("budget"):  # epochs and optimizer steps per phase (min_steps_per_epoch)
        metrics["budget"] = run.state["budget"]
    export_started = time.time()
    exports = export_recipe(recipe, run, served(run, model), data)
    metrics["timings"]["export"] = _since(export_started)
    # A drifting export (parity below tlkit.export.folder.PARITY_MIN_AGREEMENT) is a warning
    # of the run: in metrics.json, the model card and the command's last lines.
    metrics["warnings"] = [*metrics.get("warnings", []),
                           *(info["warning"] for info in exports.values() if info.get("warning"))]
    _write_records(recipe, run, model, data, metrics, found, exports)
    if recipe.compare.scratch_epochs:
        # The pretrained result, its model, exports and reports first: the from-scratch
        # comparison can take longer than all of them; its result is merged in afterwards.
        logger.info(
            "pretrained backbone: %s accuracy %.4f (model, exports and reports written); now "
            "the from-scratch comparison (%d epochs; compare.scratch_epochs: 0 skips it)",
            metrics.get("split", "test"), metrics.get("accuracy", float("nan")),
            recipe.compare.scratch_epochs,
        )
        metrics["scratch"] = scratch_baseline(recipe, run, data, verbose)
        metrics["timings"]["scratch"] = metrics["scratch"].get("seconds")
        _write_records(recipe, run, model, data, metrics, found, exports)
    run.mark_complete(train_seconds=metrics["train_seconds"])


def _since(started: float) -> float:
    return round(time.time() - started, 1)


def _write_records(recipe, run, model, data, metrics, found, exports) -> None:
    """`metrics.json`, the model card and `report.html` from what the run knows so far."""
    run.write_json("metrics.json", metrics)
    write_card(recipe, run, model, data, metrics, exports,
               training_record(recipe, model, data, run.state.get("strategy")))
    write_report(recipe, run, data, metrics, found, exports)


def _check_distribution(recipe: Recipe, run: RunDir, strategy) -> None:
    """TPU preflight: data and run folder on gs:// (TPU workers can't read the VM's disk)."""
    paths = [p for p in (recipe.data.path, run.path) if p]
    distribute.check_tpu_ready(strategy, paths=paths)
