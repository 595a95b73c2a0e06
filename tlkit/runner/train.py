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

import dataclasses
import functools
import hashlib
import importlib.util
import logging
import math
import os
import time
import types
import zipfile

import keras
import numpy as np

import tlkit
import tlkit.data as tdata
from tlkit import distribute, registry, trainability
from tlkit import groups as groups_lib
from tlkit import heads as heads_lib
from tlkit import optimizers as optimizers_lib
from tlkit.backbones.resolve import BackboneOptionError
from tlkit.checkpoint import AtomicBackupAndRestore
from tlkit.lr_finder import lr_find
from tlkit.optimizers import schedules
from tlkit.recipes import Recipe, RecipeError, check_required, dump_recipe, load_recipe, preflight
from tlkit.reports.versions import library_versions
from tlkit.runner.data import load_data, recipe_strategy
from tlkit.runner.run_lock import run_lock
from tlkit.runner.rundir import (
    RecordError,
    RunDir,
    RunError,
    atomic_path,
    atomic_write_text,
    open_run,
    run_log,
)
from tlkit.saving import load_keras_model, with_run_calibration
from tlkit.training import strategies
from tlkit.training.class_weights import resolve_class_weight
from tlkit.training.fine_tuning import fine_tune
from tlkit.training.training_loss import training_loss

logger = logging.getLogger("tlkit")


# -- model -----------------------------------------------------------------------------------------
def make_backbone(recipe: Recipe, run: RunDir):
    """The recipe's backbone (`tlkit.backbones.get`); a registered backbone that needs a folder
    (`tiny` / `tiny_text`: tiny SavedModels) writes into the run's `backbone/<name>`."""
    cfg = recipe.backbone
    kwargs = dict(cfg.options)
    if cfg.input_info is not None:
        kwargs["input_info"] = tlkit.backbones.InputInfo.from_config(cfg.input_info)
    if cfg.name in registry.BACKBONES and "folder" in registry.BACKBONES.get(cfg.name).needs:
        kwargs.setdefault("folder", run.file("backbone", cfg.name))
        kwargs.setdefault("seed", recipe.seed)
    try:
        return tlkit.backbones.get(cfg.spec, **kwargs)
    except BackboneOptionError as err:
        raise RecipeError(f"backbone.options: {err}") from None


def build(recipe: Recipe, data, run: RunDir) -> keras.Model:
    """`tlkit.build_model` from the recipe: backbone frozen, not compiled yet."""
    backbone = make_backbone(recipe, run)
    head = recipe.head
    augmentation = None
    if data.kind == "image":
        augmentation = _augmentation(recipe)
    model = tlkit.build_model(
        backbone,
        head=head.kind,
        class_names=data.class_names,
        input_shape=None if data.kind == "text" else data.input_shape,
        dropout=head.dropout,
        hidden_units=tuple(head.hidden_units),
        pooling=head.pooling,
        augmentation=augmentation,
        freeze_backbone=True,
        bn_policy=recipe.phases.bn_policy,
        compile=False,
        name=recipe.name.replace("-", "_").replace(".", "_"),
    )
    if recipe.peft is not None:
        report = tlkit.peft.apply(model, recipe.peft.lora_config())
        logger.info("peft: %s", report)
    return model


# -- stages ----------------------------------------------------------------------------------------
def _augmentation(recipe):
    """The recipe's `data.augmentation` layers, or `None` for an empty spec."""
    spec = recipe.data.augmentation
    return tdata.augmentation(spec, seed=recipe.seed) if spec else None


def _optimizer(recipe, learning_rate):
    """An unbuilt optimizer of the recipe's `optimizer.name` / `weight_decay` at `learning_rate`."""
    return optimizers_lib.from_config(recipe.fine_tune_config(), learning_rate)


def resolve_batch(recipe, strategy):
    """The recipe with `data.batch_size` (per replica) filled from `tlkit.distribute.plan`
    (the device's default: 32 on CPU, 64 on GPU, 128 per TPU core) when the recipe leaves it
    null."""
    if recipe.data.batch_size is not None:
        return recipe
    batch = distribute.plan(strategy).per_replica_batch
    logger.info("data.batch_size: %d per replica (tlkit.distribute.plan's default here)", batch)
    return dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, batch_size=batch))


def resolve_execution(recipe, strategy):
    """The recipe with `distribute.steps_per_execution` filled from `tlkit.distribute.plan`
    (32 on a TPU, 1 elsewhere) when the recipe leaves it null."""
    cfg = recipe.distribute
    if cfg.steps_per_execution is not None:
        return recipe
    steps = distribute.plan(strategy, recipe.data.batch_size).steps_per_execution
    return dataclasses.replace(
        recipe, distribute=dataclasses.replace(cfg, steps_per_execution=steps)
    )


def resolve_settings(recipe: Recipe, strategy=None) -> Recipe:
    """The recipe with every setting it leaves unset (null) filled for this machine, the one
    way every verb fills them (`train`, `evaluate`, `report`, `export`, `predict`, `tune`,
    `lr-find`): `data.batch_size` per replica from `tlkit.distribute.plan` (`resolve_batch`),
    then the global batch, `data.drop_remainder` on a TPU and the LRs scaled across replicas
    (`_per_replica`), then `distribute.steps_per_execution` (`resolve_execution`).

    Args:
        recipe: a `Recipe`.
        strategy: the `tf.distribute` strategy the verb runs under; default: the current one.

    Example:
    ```python
    recipe = resolve_settings(load_recipe("recipes/smoke.yaml"))
    recipe.data.batch_size  # 32 on a CPU when the recipe leaves it null
    ```
    """
    if strategy is None:
        import tensorflow as tf

        strategy = tf.distribute.get_strategy()
    return resolve_execution(_per_replica(resolve_batch(recipe, strategy), strategy), strategy)


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
    tlkit.train_head_on_features(
        model,
        data.train,
        data.val,
        epochs=stage["end"],
        batch_size=recipe.data.batch_size,
        seed=recipe.seed,
        cache_dir=_feature_cache(run),
        data_fingerprints=_fingerprints(data),
        callbacks=callbacks,
        optimizer=_optimizer(recipe, recipe.optimizer.resolved_head_lr),
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
    return {s: tlkit.data.split_fingerprint(data, s) for s in ("train", "val")}


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
    logger.info("trainable parameters at the end:\n%s", tlkit.format_summary(model))


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
    run_dir = tlkit.runner.train.train_recipe("recipes/smoke.yaml", output="/tmp/smoke")
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
    with distribute.strategy_scope(**recipe_strategy(recipe)) as strategy:
        _check_distribution(recipe, run, strategy)
        recipe = resolve_settings(recipe, strategy)
        data = load_data(recipe.data, recipe.seed)
        # The model first: images of different sizes are batched at its input size (the
        # backbone's, unless data.image_size is set), or a clear error comes before any work.
        model = tlkit.distribute.apply_keras_fixes(build(recipe, data, run))
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
            tlkit.data.check_no_leakage(
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
    found = _interpret(recipe, run, model, data, verbose)
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
    exports = _export(recipe, run, _served(run, model), data)
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
    _write_card(recipe, run, model, data, metrics, exports)
    write_report(recipe, run, data, metrics, found, exports)


def _check_distribution(recipe: Recipe, run: RunDir, strategy) -> None:
    """TPU preflight: data and run folder on gs:// (TPU workers can't read the VM's disk)."""
    paths = [p for p in (recipe.data.path, run.path) if p]
    tlkit.distribute.check_tpu_ready(strategy, paths=paths)


def _per_replica(recipe: Recipe, strategy) -> Recipe:
    """`data.batch_size` is per replica: the run uses batch x replicas (and scales the LRs by
    the replica count when `distribute.scale_lr`). On a TPU, training batches are static
    (`drop_remainder`) unless the recipe says otherwise."""
    if recipe.data.drop_remainder is None and tlkit.distribute.is_tpu(strategy):
        recipe = dataclasses.replace(
            recipe, data=dataclasses.replace(recipe.data, drop_remainder=True)
        )
    replicas = int(strategy.num_replicas_in_sync)
    if replicas == 1:
        return recipe
    opt = recipe.optimizer
    scale = float(replicas) if recipe.distribute.scale_lr else 1.0
    optimizer = dataclasses.replace(
        opt,
        lr=opt.lr * scale,
        head_lr=opt.head_lr * scale if opt.head_lr is not None else None,
    )
    data = dataclasses.replace(recipe.data, batch_size=recipe.data.batch_size * replicas)
    logger.info("%d replicas: global batch %d, LR x%g", replicas, data.batch_size, scale)
    return dataclasses.replace(recipe, data=data, optimizer=optimizer)


# -- baseline --------------------------------------------------------------------------------------
def scratch_baseline(recipe: Recipe, run: RunDir, data, verbose="auto") -> dict:
    """The same architecture trained from random weights on the same data (`compare:`).

    All layers train and BatchNorm statistics update (momentum 0.9, right for a short run from
    scratch); Adam at
    `compare.scratch_lr` for `compare.scratch_epochs` epochs, same augmentation and batch size.
    Returns `{accuracy, epochs, seconds, best_val_accuracy}` on the transfer run's test split, or
    `{skipped: reason}` when the backbone cannot be built without its weights.
    """
    saved = run.read_json("scratch_baseline.json", None)
    if saved is not None:
        return saved
    cfg = recipe.backbone
    if cfg.name in ("tiny", "tiny_text") or cfg.handle or cfg.path:
        result = {"skipped": "a SavedModel backbone cannot be rebuilt without its weights"}
        run.write_json("scratch_baseline.json", result)
        return result
    started = time.time()
    keras.utils.set_random_seed(recipe.seed)
    backbone = tlkit.backbones.get(cfg.spec, **{**cfg.options, "weights": None})
    augmentation = None
    if data.kind == "image":
        augmentation = _augmentation(recipe)
    model = tlkit.build_model(
        backbone,
        head=recipe.head.kind,
        class_names=data.class_names,
        input_shape=None if data.kind == "text" else data.input_shape,
        dropout=recipe.head.dropout,
        hidden_units=tuple(recipe.head.hidden_units),
        pooling=recipe.head.pooling,
        augmentation=augmentation,
        freeze_backbone=False,
        bn_policy="update",
        learning_rate=recipe.compare.scratch_lr,
        name="scratch",
    )
    # Keras's BatchNormalization momentum 0.99 suits long runs; over a few hundred steps the
    # moving statistics stay near their initial values and evaluation scores chance. 0.9 lets
    # them follow the few epochs a baseline gets (measured: 0.10 -> see README results).
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    batch_size, seed = recipe.data.batch_size, recipe.seed
    val = None
    if data.val is not None:
        val = tdata.batch(data.val, batch_size, training=False, seed=seed)
    logger.info("from-scratch baseline: %d epochs", recipe.compare.scratch_epochs)
    history = model.fit(
        tdata.batch(data.split("train"), batch_size, training=True, seed=seed),
        validation_data=val,
        epochs=recipe.compare.scratch_epochs,
        verbose=verbose,
        shuffle=False,  # the dataset comes shuffled (Keras warns about shuffle=True with one)
    )
    split = "test" if data.test is not None else "val"
    test = tdata.batch(data.split(split), batch_size, training=False, seed=seed)
    accuracy = float(model.evaluate(test, verbose=0, return_dict=True)["accuracy"])
    result = {
        "accuracy": accuracy,
        "split": split,
        "epochs": recipe.compare.scratch_epochs,
        "seconds": round(time.time() - started, 1),
        "best_val_accuracy": max(history.history.get("val_accuracy", [float("nan")])),
    }
    run.write_json("scratch_baseline.json", result)
    return result


# -- evaluation ------------------------------------------------------------------------------------
TOP_LOSSES = 16


def _eval_split(data) -> str:
    """The split a run is evaluated on: test, else val; an empty one is an error."""
    if data.test is None and data.val is None:
        raise ValueError("no test or validation split to evaluate on: set data.splits")
    split = "test" if data.test is not None else "val"
    if not len(data.split_labels(split)):
        raise ValueError(f"the {split} split is empty: nothing to evaluate or report on")
    return split


def _predict(model, data, split, recipe, verbose):
    ds = tdata.batch(data.split(split), recipe.data.batch_size, training=False, seed=recipe.seed)
    return np.asarray(model.predict(ds.map(_inputs_only), verbose=verbose))


def _model_digest(run: RunDir) -> str:
    digest = hashlib.sha256()
    with open(run.model_path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _split_predictions(run: RunDir, model, data, split, recipe, verbose, reuse) -> np.ndarray:
    """The model's probabilities on `split`, saved in `reports/predictions.npz` with the digest
    of `model.keras`; with `reuse`, saved ones of the same model, split and labels are read
    back instead of predicting again (`tlkit report` after training)."""
    path = run.file("reports", "predictions.npz")
    y_true = data.split_labels(split)
    digest = _model_digest(run) if os.path.exists(run.model_path) else None
    if reuse and digest and os.path.exists(path):
        try:
            with np.load(path, allow_pickle=False) as saved:
                if (
                    str(saved["model_sha256"]) == digest
                    and str(saved["split"]) == split
                    and np.array_equal(saved["y_true"], y_true)
                ):
                    logger.info("reusing the %s predictions in %s", split, path)
                    return np.asarray(saved["probs"])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            # A cache: predicted again and rewritten below.
            logger.warning("%s is damaged (%s); predicting again", path, str(err)[:100])
    probs = _predict(model, data, split, recipe, verbose)
    if digest:
        with atomic_path(path) as tmp:
            np.savez(tmp, probs=probs, y_true=y_true, split=split, model_sha256=digest)
    return probs


def _interpret(
    recipe, run: RunDir, model, data, verbose, temperature="fit", reuse=False
) -> dict:
    """Predicts the evaluation split once and derives everything the reports show from it.

    `temperature`: `"fit"` fits one on the validation split when the recipe asks
    (`output.temperature_scaling`) and stores it in the run; otherwise the run's stored one.
    The probabilities returned (and reported) are the ones the served model gives: with the
    temperature applied. `reuse`: read the saved predictions of the same model when present.
    """
    from tlkit import reports
    from tlkit.reports.neighbours import model_neighbour_votes
    from tlkit.reports.top_losses import gather_inputs, split_refs

    split = _eval_split(data)
    logger.info("evaluating on %s (%s examples)", split, data.num_examples(split))
    probs = _split_predictions(run, model, data, split, recipe, verbose, reuse)
    y_true = data.split_labels(split)
    if temperature == "fit":
        temperature = None
        if recipe.output.temperature_scaling:
            if data.val is None or split == "val":
                raise ValueError(
                    "output.temperature_scaling needs a validation split apart from the "
                    "evaluation split: set data.splits.val_fraction"
                )
            temperature = reports.fit_temperature(
                data.split_labels("val"), _predict(model, data, "val", recipe, 0)
            )
            logger.info("temperature scaling: T = %.3f (fitted on val)", temperature)
        run.write_json("calibration.json", {"temperature": temperature})
    calibration = reports.calibration_summary(y_true, probs, temperature)
    if temperature is not None:
        probs = reports.apply_temperature(probs, temperature)
    slice_values, column = None, recipe.data.slice_by
    if column:
        columns = data.metadata.get(split, {})
        if column not in columns:
            raise ValueError(
                f"data.slice_by: no metadata column {column!r} in the {split} split "
                f"(available: {sorted(columns) or 'none'})"
            )
        slice_values = columns[column]
    audit = None
    if os.path.exists(run.file("reports", "data_audit.json")):
        audit = run.read_json(os.path.join("reports", "data_audit.json"))
    losses = reports.top_losses_from_predictions(
        y_true, probs, data.class_names, n=TOP_LOSSES, split=split,
        refs=split_refs(data, split), audit=audit,
        # "suspected wrong label" needs the top losses' nearest training examples to agree
        neighbour_votes=functools.partial(
            model_neighbour_votes, model, data, split, batch_size=recipe.data.batch_size,
        ),
    )
    losses.inputs = gather_inputs(data, split, losses.index)
    return {
        "split": split,
        "y_true": y_true,
        "probs": probs,
        "calibration": calibration,
        "slice_column": column,
        "slice_values": slice_values,
        "top_losses": losses,
    }


def _write_metrics_reports(run: RunDir, data, found: dict) -> dict:
    from tlkit import reports

    metrics = reports.write_reports(
        run.reports,
        found["y_true"],
        found["probs"],
        data.class_names,
        history=run.history(),
        stages=run.state.get("segments"),
        slice_column=found["slice_column"],
        slice_values=found["slice_values"],
        calibration=found["calibration"],
    )
    metrics["split"] = found["split"]
    metrics["top_losses"] = found["top_losses"].to_records()
    return metrics


def evaluate(recipe, run: RunDir, model, data, verbose="auto", _found=None) -> dict:
    """Evaluates on test (else val) and writes `run/reports` (all but the model card, which
    the caller writes with everything the run knows); returns the metrics."""
    found = _found or _interpret(recipe, run, model, data, verbose)
    metrics = _write_metrics_reports(run, data, found)
    for warning in metrics["warnings"]:
        logger.warning("%s", warning)
    return metrics


def write_report(recipe, run: RunDir, data, metrics, found, exports=None) -> str:
    """Writes `run/report.html` (one self-contained page) from the evaluation's results."""
    from tlkit.reports import write_html_report

    exports = exports if exports is not None else recorded_exports(run)
    files = {
        name: os.path.relpath(info["path"], run.path)
        for name, info in exports.items()
        if info.get("path")
    }

    def text(*parts):
        path = run.file(*parts)
        if not os.path.exists(path):
            return None
        with open(path, encoding="utf-8") as f:
            return f.read()

    summary = {
        "run": run.path,
        "backbone": recipe.backbone.spec,
        "data": f"{recipe.data.source} {recipe.data.name or recipe.data.path or ''}".strip(),
        "classes": len(data.class_names),
        "splits": ", ".join(f"{s} {data.num_examples(s)}" for s in data.splits),
        f"{found['split']} accuracy": f"{metrics['accuracy']:.4f}",
        "training time": f"{run.state.get('train_seconds', metrics.get('train_seconds', '?'))} s",
    }
    path = write_html_report(
        run.file("report.html"),
        title=f"tlkit report: {recipe.name}",
        summary=summary,
        metrics=metrics,
        class_names=data.class_names,
        history=run.history(),
        stages=run.state.get("segments"),
        top_losses=found["top_losses"],
        calibration=found["calibration"],
        slices=metrics.get("slices"),
        audit_text=text("reports", "data_audit.txt"),
        model_card=text("reports", "model_card.md"),
        files=files,
    )
    return path


def report_run(path, verbose=0) -> str:
    """Regenerates a finished run's `report.html` (`tlkit report`); returns its path.

    Raises:
        FileNotFoundError: no run folder, or no trained model in it.
        RunError: the run is not finished.
        ValueError: no test / validation split, or an empty one.
    """
    with run_lock(path, "report"):
        return _report_locked(path, verbose)


def _report_locked(path, verbose) -> str:
    run = open_run(path)
    if not run.complete:
        raise RunError(
            f"{run.path} is not a finished run (state.json is not complete): finish it with "
            "tlkit train first"
        )
    recipe = load_recipe(run.recipe_path)
    preflight.check_ready(recipe, backbone=False)  # the model is in the run; its data may not be
    recipe = resolve_settings(recipe)
    keras.utils.set_random_seed(recipe.seed)
    model = load_run_model(run, calibrated=False)
    data = load_data(recipe.data, recipe.seed).for_model(model)
    temperature = run.read_json("calibration.json", {}).get("temperature")
    found = _interpret(recipe, run, model, data, verbose, temperature=temperature, reuse=True)
    metrics = {**run.read_json("metrics.json", {}), **_write_metrics_reports(run, data, found)}
    return write_report(recipe, run, data, metrics, found)


def _inputs_only(x, y):
    return x


def _write_card(recipe, run, model, data, metrics, exports):
    from tlkit.reports import model_card

    trainable = int(sum(np.prod(v.shape) for v in model.trainable_weights))
    source = recipe.data.name or recipe.data.path or ""
    budget = f", budget {recipe.data.per_class} per class" if recipe.data.per_class else ""
    text = model_card(
        name=recipe.name,
        metrics=metrics,
        class_names=data.class_names,
        backbone=recipe.backbone.spec,
        data={
            "description": f"{recipe.data.source} {source}".strip() + budget,
            "splits": {s: data.num_examples(s) for s in data.splits},
        },
        stages=run.state.get("segments"),
        params={"total": int(model.count_params()), "trainable": trainable},
        warnings=metrics.get("warnings", ()),
        slices=metrics.get("slices"),
        calibration=metrics.get("calibration"),
        training=_training_record(recipe, model, data, run.state.get("strategy")),
        evaluated_on=metrics.get("split", "test"),
        exports={k: v.get("path", v.get("skipped")) for k, v in (exports or {}).items()},
    )
    atomic_write_text(os.path.join(run.reports, "model_card.md"), text)


def _training_record(recipe, model, data, strategy=None) -> dict:
    """How the run trained, for the model card's Training section (`model_card(training=)`);
    `strategy`: the `FineTuneResult.strategy` record of what ran."""
    config = recipe.fine_tune_config()
    ran = (strategy or {}).get("strategy")
    probed = ran is not None and strategies.get(ran).uses_probe
    if probed:  # the probe replaced the head epochs
        config = config.replace(head_epochs=0, fine_epochs=max(config.fine_epochs, 1))
    spec = recipe.data.augmentation if data.kind == "image" else {}
    augmentation = ", ".join(f"{k}: {v}" for k, v in spec.items())
    if augmentation and (recipe.data.cache_features or probed):
        augmentation += (" (fine-tuning epochs only: the linear probe fits on un-augmented "
                         "features)" if probed else
                         " (fine-tuning epochs only: the head phase trains on cached features)")
    optimizer = config.optimizer + (
        f", weight decay {config.weight_decay:g}" if config.weight_decay else "")
    batch_norm = None
    if trainability.has_batch_norm(model):
        batch_norm = {
            "frozen": "frozen (inference mode: statistics and gamma/beta fixed)",
            "train_affine": "statistics frozen, gamma/beta trained in unfrozen groups",
            "update": "statistics updated and gamma/beta trained in unfrozen groups",
        }.get(config.bn_policy, config.bn_policy)
    return {
        "input": _input_description(model, data),
        "augmentation": augmentation,
        "batch_size": recipe.data.batch_size,
        "optimizer": optimizer,
        # No fit when the probe alone ran (not the probe kept after fine-tuning).
        "learning_rate": {} if ran == "linear_probe" and not strategy.get("probe_kept")
        else schedules.describe(config),
        "batch_norm": batch_norm,
        "seed": recipe.seed,
    }


def _input_description(model, data) -> str:
    """E.g. `28x28x1 pixels in [0, 255] (resized to 128x128 px, 3 channels, scaled to [-1, 1]
    inside the model)`."""
    from tlkit.preprocessing import ImagePreprocessing

    if data.kind == "text":
        return "strings, tokenized inside the model"
    raw = "x".join(str(d) for d in data.input_shape) if data.input_shape else "any-size"
    layer = next((x for x in model._flatten_layers(include_self=False)
                  if isinstance(x, ImagePreprocessing)), None)
    if layer is None:
        return f"{raw} pixels in [0, 255]"
    info = layer.input_info
    size = ("resized to " + "x".join(map(str, info.image_size)) + " px" if info.image_size
            else "at the data's size")
    low, high = info.value_range
    return (f"{raw} pixels in [0, 255] ({size}, {info.channels} channels, scaled to "
            f"[{low:g}, {high:g}] inside the model)")


PARITY_INPUTS = 256
"""Inputs the exports' parity check compares on, where the evaluation split has them (32 left
a 1-in-32 step in the top-1 agreement)."""


def sample_inputs(data, n=PARITY_INPUTS, split=None):
    """Up to `n` raw inputs of `split` (default: the test, else val split), for export parity
    checks; `split="train"` gives the calibration inputs of full-integer TFLite."""
    split = split or ("test" if data.test is not None else "val")
    xs = [x for x, _ in data.split(split).take(n).as_numpy_iterator()]
    return np.stack(xs) if xs else None


def _representative(formats, data):
    """Training inputs to calibrate `tflite-int8` on (100, as the TFLite guide suggests)."""
    return sample_inputs(data, 100, split="train") if "tflite-int8" in formats else None


def _export(recipe, run, model, data) -> dict:
    formats = [f for f in recipe.output.export if f != "keras"]
    results = {"keras": {"path": run.model_path}}
    if formats:
        from tlkit.export import export_model

        sample = sample_inputs(data) if data.kind != "text" else None
        results.update(
            export_model(
                model, run.export_dir, formats, sample_inputs=sample, class_names=data.class_names,
                representative_inputs=_representative(formats, data),
            )
        )
    return results


def load_run_model(run: RunDir, calibrated: bool = True) -> keras.Model:
    """The trained model of a run (`model.keras`, loaded in safe mode); with the run's fitted
    temperature applied (`output.temperature_scaling`) unless `calibrated=False`."""
    import tlkit.pretrained  # noqa: F401  (registers the pretrained backbones' classes)

    model = load_keras_model(run.model_path, safe_mode=True, compile=False)
    return _served(run, model) if calibrated else model


def _served(run: RunDir, model) -> keras.Model:
    """`model` as users get it: with the run's temperature, when one was fitted."""
    return with_run_calibration(model, run.path)


def predict_run(path, inputs, top: int = 1) -> list[dict]:
    """`tlkit predict`: the run's served model on `inputs` (image files / folders or texts),
    batched with the run's resolved `data.batch_size` (`resolve_settings`); see
    `tlkit.inference.predict` for what comes back."""
    from tlkit import inference

    run = open_run(path)
    recipe = resolve_settings(load_recipe(run.recipe_path))
    model = load_run_model(run)
    names = run.class_names(num_classes=int(model.outputs[0].shape[-1]))
    return inference.predict(model, inputs, names, top=top,
                             batch_size=recipe.data.batch_size)


def evaluate_run(path, verbose="auto", tta=None) -> dict:
    """Re-evaluates a finished run (same recipe, data and splits); rewrites its reports.

    `tta`: also evaluate with test-time augmentation (`tlkit.inference.predict_tta`), e.g.
    `{"flip": True, "crops": 0.9}`; its metrics go to `metrics_tta.json` beside `metrics.json`
    (which keeps the plain ones) and are returned under `"tta"`.
    """
    with run_lock(path, "evaluate"):
        return _evaluate_locked(path, verbose, tta)


def _evaluate_locked(path, verbose, tta) -> dict:
    run = open_run(path)
    recipe = load_recipe(run.recipe_path)
    preflight.check_ready(recipe, backbone=False)  # the model is in the run; its data may not be
    recipe = resolve_settings(recipe)
    keras.utils.set_random_seed(recipe.seed)
    model = load_run_model(run, calibrated=False)
    data = load_data(recipe.data, recipe.seed).for_model(model)
    metrics = evaluate(recipe, run, model, data, verbose=verbose)
    # Merged into the run's records: the from-scratch comparison, training time and exports
    # (Files) stay in metrics.json and the model card.
    merged = {**_previous_metrics(run), **metrics}
    run.write_json("metrics.json", merged)
    _write_card(recipe, run, model, data, merged, recorded_exports(run))
    if tta is not None:
        return {**merged, "tta": evaluate_tta(run, data, **tta)}
    return merged


def _previous_metrics(run: RunDir) -> dict:
    """The run's `metrics.json`, which `evaluate` rewrites: a damaged one is replaced (with a
    warning), not a reason to fail."""
    try:
        return run.read_json("metrics.json", {})
    except RecordError as err:
        logger.warning("%s (evaluate rewrites it now; the training time and comparisons it "
                       "held are lost)", str(err).split("; ")[0])
        return {}


def evaluate_tta(run: RunDir, data, flip: bool = True, crops: float | None = None) -> dict:
    """Metrics of the run's served model with test-time augmentation on its evaluation split,
    written to `metrics_tta.json` (`views`, accuracy, macro F1, ..., and `without_tta`: the
    same figures from `metrics.json`)."""
    from tlkit.inference import predict_tta
    from tlkit.reports import classification_metrics

    if data.kind != "image":
        raise ValueError("--tta averages flipped / cropped views of images; this run's model "
                         "takes text")
    split = _eval_split(data)
    x = np.stack([np.asarray(x) for x, _ in data.split(split).as_numpy_iterator()])
    probs = predict_tta(load_run_model(run), x, flip=flip, crops=crops)
    metrics = classification_metrics(data.split_labels(split), probs, data.class_names)
    views = 1 + bool(flip) + (5 if crops else 0)
    plain = run.read_json("metrics.json", {})
    record = {"split": split, "flip": bool(flip), "crops": crops, "views": views,
              **{k: metrics[k] for k in ("accuracy", "balanced_accuracy", "macro_f1",
                                         "weighted_f1", "num_examples") if k in metrics},
              "without_tta": {k: plain[k] for k in ("accuracy", "macro_f1") if k in plain}}
    run.write_json("metrics_tta.json", record)
    logger.info("test-time augmentation (%d views): %s accuracy %.4f (without: %s)", views,
                split, record["accuracy"], record["without_tta"].get("accuracy"))
    return record


def recorded_exports(run: RunDir) -> dict:
    """`{format: record}` of everything exported from the run: `model.keras` and the formats
    listed in `export/export.json`."""
    return {"keras": {"path": run.model_path}, **run.read_json("export/export.json", {})}


def _merge_card_files(run: RunDir) -> None:
    """Rewrites the `## Files` section (the last) of the run's model card from
    `recorded_exports`, keeping everything above it."""
    path = os.path.join(run.reports, "model_card.md")
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        text = f.read()
    head = text.split("\n## Files\n")[0].rstrip("\n")
    files = [
        f"- {fmt}: `{record.get('path', record.get('skipped'))}`"
        for fmt, record in recorded_exports(run).items()
    ]
    atomic_write_text(path, head + "\n\n## Files\n\n" + "\n".join(files) + "\n")


def export_run(path, formats, output=None) -> dict:
    """Exports a finished run's model (`tlkit export`)."""
    with run_lock(path, "export"):
        return _export_locked(path, formats, output)


def _export_locked(path, formats, output) -> dict:
    from tlkit.export import export_model

    run = open_run(path)
    model = load_run_model(run)
    sample = representative = None
    if model.inputs[0].dtype != "string" and any(f.startswith("tflite") for f in formats):
        recipe = resolve_settings(load_recipe(run.recipe_path))
        data = load_data(recipe.data, recipe.seed).for_model(model)
        sample, representative = sample_inputs(data), _representative(formats, data)
    folder = output or run.export_dir
    results = export_model(
        model, folder, formats, sample_inputs=sample, class_names=run.class_names(),
        representative_inputs=representative,
    )
    if os.path.abspath(folder) == os.path.abspath(run.export_dir):
        _merge_card_files(run)  # export.json was merged; the card lists every format
    return results


def lr_find_recipe(recipe, output=None, verbose=0):
    """Runs the LR range test (`tlkit lr-find`) on the recipe's model with the backbone
    unfrozen as in fine-tuning; writes `lr_find.png` into `output` (default: the run folder)."""
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    preflight.check_ready(recipe)
    keras.utils.set_random_seed(recipe.seed)
    folder = output or recipe.output.dir or os.path.join("runs", recipe.name)
    with run_lock(folder, "lr-find"):
        return _lr_find_locked(recipe, folder, verbose)


def _lr_find_locked(recipe, folder, verbose):
    os.makedirs(folder, exist_ok=True)
    run = RunDir(folder)
    with distribute.strategy_scope(**recipe_strategy(recipe)) as strategy:
        recipe = resolve_settings(recipe, strategy)
        data = load_data(recipe.data, recipe.seed)
        model = build(recipe, data, run)
        data = data.for_model(model)
        trainability.unfreeze_all(model, bn_policy=recipe.phases.bn_policy)
        tlkit.compile_model(
            model, optimizer=_optimizer(recipe, recipe.optimizer.lr),
            jit_compile=recipe.distribute.jit_compile,
        )
        train = tdata.batch(data.split("train"), recipe.data.batch_size, training=True,
                            seed=recipe.seed, drop_remainder=bool(recipe.data.drop_remainder))
        return lr_find(
            model, train, plot_path=os.path.join(folder, "lr_find.png"), verbose=verbose
        )
