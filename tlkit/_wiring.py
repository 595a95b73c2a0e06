"""How recipe sections map onto tlkit's data, fine-tuning, optimizer, distribute and tune APIs.

Each function here is the *one* place where `tlkit.train` and `tlkit.cli` call another part of
tlkit, translating recipe fields into that part's arguments.
"""

from __future__ import annotations

import contextlib
import logging

logger = logging.getLogger("tlkit")


# -- data --------------------------------------------------------------------------------------------
def load_data(cfg, seed: int):
    """The `LabeledData` of a recipe's `data` section (`tlkit.recipes.DataConfig`).

    The `per_class` budget is applied with `tlkit.data.subsample` (nested across budgets).
    """
    import tlkit.data as tdata

    s = cfg.splits
    size = cfg.image_size
    size = (size, size) if isinstance(size, int) else (tuple(size) if size else None)
    opts = dict(cfg.options)
    if cfg.source == "fashion_mnist":
        data = tdata.fashion_mnist(
            image_size=size, seed=seed, val_fraction=s.val_fraction, path=cfg.path, **opts
        )
    elif cfg.source == "digits":
        data = tdata.digits(
            val_fraction=s.val_fraction,
            test_fraction=s.test_fraction,
            seed=seed,
            image_size=size,
            **opts,
        )
    elif cfg.source == "tweets":
        data = tdata.tweets(
            val_fraction=s.val_fraction,
            test_fraction=s.test_fraction,
            seed=seed,
            path=cfg.path,
            **opts,
        )
    elif cfg.source == "folder":
        data = tdata.from_image_folder(
            cfg.path,
            image_size=size,
            val_fraction=s.val_fraction,
            test_fraction=s.test_fraction,
            seed=seed,
            class_names=cfg.class_names,
            **opts,
        )
    elif cfg.source == "csv":
        data = tdata.from_csv(
            cfg.path,
            cfg.x_col,
            cfg.y_col,
            kind=cfg.kind or "image",
            class_names=cfg.class_names,
            val_fraction=s.val_fraction,
            test_fraction=s.test_fraction,
            seed=seed,
            image_size=size,
            **opts,
        )
    elif cfg.source == "numpy":
        data = _from_npz(cfg, seed, tdata)
    else:  # tfds
        data = tdata.from_tfds(
            cfg.name,
            split=s.train or "train[:80%]",
            val_split=s.val or "auto",
            test_split=s.test or "auto",
            image_size=size,
            **opts,
        )
    budget = cfg.per_class
    if budget is not None:
        budget = {"train": budget} if isinstance(budget, int) else budget
        for split, n in budget.items():
            if split in data.splits:
                data = tdata.subsample(data, n, seed=seed, split=split, allow_fewer=True)
    return data


def _from_npz(cfg, seed, tdata):
    """`data.source: numpy`: an `.npz` with `x`, `y`; optionally `x_val`/`y_val`,
    `x_test`/`y_test` (explicit splits) and `meta_<column>` (per-example metadata of `x`)."""
    import numpy as np

    with np.load(cfg.path, allow_pickle=False) as arrays:
        a = {k: arrays[k] for k in arrays.files}
    for key in ("x", "y"):
        if key not in a:
            raise ValueError(f"data.path: {cfg.path} has no array {key!r} (found {sorted(a)})")
    extra = {
        split: (a[f"x_{split}"], a[f"y_{split}"]) for split in ("val", "test") if f"x_{split}" in a
    }
    metadata = {k[len("meta_") :]: v for k, v in a.items() if k.startswith("meta_")}
    return tdata.from_numpy(
        a["x"],
        a["y"],
        class_names=cfg.class_names,
        kind=cfg.kind,
        val_fraction=cfg.splits.val_fraction,
        test_fraction=cfg.splits.test_fraction,
        seed=seed,
        metadata=metadata or None,
        name=cfg.path,
        **extra,
        **cfg.options,
    )


def audit(data_or_path, **kwargs):
    """`tlkit.data.audit(...)`: an `AuditReport` (`.to_text()`, `.has_leakage`)."""
    import tlkit.data as tdata

    return tdata.audit(data_or_path, **kwargs)


def augmentation(spec: dict, seed: int):
    """`tlkit.data.augmentation(spec, seed)`, or `None` for an empty spec."""
    if not spec:
        return None
    import tlkit.data as tdata

    return tdata.augmentation(spec, seed=seed)


def batch(ds, batch_size, training, seed, drop_remainder=False):
    """`tlkit.data.batch`: shuffle (training), batch (static shapes with `drop_remainder`),
    prefetch."""
    import tlkit.data as tdata

    return tdata.batch(ds, batch_size, training=training, seed=seed, drop_remainder=drop_remainder)


# -- training ----------------------------------------------------------------------------------------
def fine_tune(
    model, train, validation, recipe, head_epochs, fine_epochs, checkpoint_dir, callbacks, verbose
):
    """`tlkit.fine_tune` with the recipe's `FineTuneConfig`: `head_epochs` + `fine_epochs` in one
    `fit` (epochs from 0)."""
    from tlkit.training.fine_tuning import fine_tune as run

    config = recipe.fine_tune_config().replace(head_epochs=head_epochs, fine_epochs=fine_epochs)
    return run(model, train, validation, config, callbacks=callbacks,
               checkpoint_dir=checkpoint_dir, verbose=verbose)


def make_optimizer(cfg, learning_rate: float):
    """An unbuilt Keras optimizer of the recipe's `optimizer.name` (and `weight_decay`)."""
    import keras

    config = {"learning_rate": learning_rate}
    if cfg.weight_decay is not None:
        config["weight_decay"] = cfg.weight_decay
    return keras.optimizers.get({"class_name": cfg.name, "config": config})


def lr_find(model, train, plot_path=None, verbose=0):
    """`tlkit.lr_finder.lr_find(model, train, plot_path=...)`: an `LRFinderResult`."""
    from tlkit.lr_finder import lr_find as run

    return run(model, train, plot_path=plot_path, verbose=verbose)


def tune(recipe, output=None, overwrite=False, verbose=0):
    """`tlkit.tuning.tune_recipe(recipe, output=...)`: a `TuneResult` (best recipe in
    `result.paths["recipe"]`)."""
    from tlkit.tuning import tune_recipe

    return tune_recipe(recipe, output=output, overwrite=overwrite, verbose=verbose)


# -- distribute --------------------------------------------------------------------------------------
def resolve_execution(recipe, strategy):
    """The recipe with `distribute.steps_per_execution` filled from `tlkit.distribute.plan`
    (32 on a TPU, 1 elsewhere) when the recipe leaves it null."""
    import dataclasses

    from tlkit import distribute

    cfg = recipe.distribute
    if cfg.steps_per_execution is not None:
        return recipe
    steps = distribute.plan(strategy, recipe.data.batch_size).steps_per_execution
    return dataclasses.replace(
        recipe, distribute=dataclasses.replace(cfg, steps_per_execution=steps)
    )


@contextlib.contextmanager
def strategy_scope(cfg):
    """`tlkit.distribute.get_strategy(cfg.strategy)`'s scope; with `mixed_precision`, the
    `mixed_float16` (GPU) or `mixed_bfloat16` (CPU / TPU) dtype policy, restored on exit."""
    from tlkit import distribute

    strategy = distribute.get_strategy(cfg.strategy)
    policy = None
    if cfg.mixed_precision:
        policy = "mixed_float16" if distribute.device_kind(strategy) == "gpu" else "mixed_bfloat16"
    if strategy.num_replicas_in_sync > 1 or cfg.strategy != "auto":
        logger.info("distribution: %s", distribute.plan(strategy, 1, cfg.scale_lr, bool(policy))
                    .describe().replace("global batch 1 (1/replica), ", ""))
    with contextlib.ExitStack() as stack:
        if policy:
            stack.enter_context(distribute.dtype_policy(policy))
        stack.enter_context(strategy.scope())
        yield strategy
