"""`tune_recipe`: the recipe front end of `tlkit.tuning` (`tlkit tune RECIPE`).

`tlkit.tuning` is a library in keras-tuner's sense (hypermodel + search) that knows nothing of
recipe files; this module reads a recipe's `tune:` section, its data and backbone, and runs
`tlkit.tuning.tune` over them.
"""

from __future__ import annotations

import dataclasses
import os

import keras

import tlkit.data as tdata
from tlkit import distribute
from tlkit.runner.build import build as build_model
from tlkit.runner.data import load_data, recipe_distribution
from tlkit.runner.run_lock import run_lock
from tlkit.runner.rundir import RunDir
from tlkit.runner.settings import resolve_settings
from tlkit.tuning import space as space_lib
from tlkit.tuning.search import TuneResult, tune
from tlkit.unfreeze.schedule import UnfreezeSchedule


# -- recipes ---------------------------------------------------------------------------------------
def recipe_fixed_values(recipe) -> dict:
    """The recipe's values of every tunable parameter (what trials use when not searched)."""
    config = recipe.fine_tune_config()
    values = {short: getattr(config, field) for short, field in space_lib.FIELD_OF.items()}
    values["dropout"] = recipe.head.dropout
    return values


def tune_recipe(recipe, output=None, overwrite=False, overrides=(), load_best_model=False,
                verbose=0) -> TuneResult:
    """Runs the hyperparameter search of a recipe's `tune:` section (`tlkit tune RECIPE`).

    The recipe's data, backbone, head and phases define each trial; `tune.space` names what
    varies (short names such as `lr`, or recipe keys such as `optimizer.lr`), `tune.algorithm`
    the tuner, `tune.max_trials` and `tune.objective` the rest. The epoch budget of a trial is
    the recipe's `phases.head_epochs + phases.fine_epochs`. Trials train the whole model in both
    phases (no cached features). The search folder is `<output>/tune`; rerunning the command
    resumes it.

    Args:
        recipe: a `tlkit.recipes.Recipe` or the path of a recipe YAML file.
        output: the run folder (default: `recipe.output.dir`, else `runs/<recipe name>`).
        overwrite: start the search afresh.
        overrides: `"key=value"` strings when `recipe` is a path (`--set`).
        load_best_model: also return the best trial's model.
        verbose: Keras / keras-tuner progress output.

    Returns:
        A `TuneResult`; `result.paths["recipe"]` is the best recipe, ready for `tlkit train`.

    Raises:
        ValueError: the recipe has no `tune` section, or its space is invalid.

    Example:
    ```python
    result = tlkit.runner.tune_recipe("recipes/smoke.yaml", output="/tmp/smoke")
    print(open(result.paths["recipe"]).read())
    ```
    """
    from tlkit.recipes import Recipe, load_recipe

    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, overrides)
    if recipe.tune is None:
        raise ValueError(
            f"Recipe {recipe.name!r} has no `tune` section; add e.g. `tune: {{algorithm: random, "
            "max_trials: 8, space: {optimizer.lr: {min: 1.0e-5, max: 1.0e-3, log: true}}}`."
        )
    folder = output or recipe.output.dir or os.path.join("runs", recipe.name)
    with run_lock(folder, "tune"):
        return _tune_locked(recipe, folder, overwrite, load_best_model, verbose)


def _tune_locked(recipe, folder, overwrite, load_best_model, verbose) -> TuneResult:
    import tensorflow as tf

    from tlkit.recipes import Recipe

    cfg = recipe.tune
    run = RunDir(folder)
    phases = recipe.phases
    budget = phases.head_epochs + phases.fine_epochs
    keras.utils.set_random_seed(recipe.seed)
    unfreeze = None
    if phases.schedule != "gradual":
        def unfreeze(head_epochs):
            config = recipe.fine_tune_config().replace(head_epochs=head_epochs)
            return UnfreezeSchedule.from_fine_tune_config(config, 0)

    with distribute.strategy_scope(**recipe_distribution(recipe)) as strategy:
        # Batch size and the other unset settings, as `tlkit train` resolves them; the trials'
        # learning rates stay the recipe's (the search space's values are not scaled).
        settings = resolve_settings(recipe, strategy)
        data = load_data(settings.data, recipe.seed)
        batch_size = settings.data.batch_size  # global (per replica x replicas)

        def build(dropout):
            head = dataclasses.replace(recipe.head, dropout=float(dropout))
            return build_model(dataclasses.replace(recipe, head=head), data, run)

        if data.kind == "image" and None in data.input_shape[:2]:
            # Images of different sizes: batched at the model's input size, as in training.
            data = data.for_model(build(recipe.head.dropout))
        drop = bool(settings.data.drop_remainder)
        train = tdata.batch(data.split("train"), batch_size, training=True, seed=recipe.seed,
                            drop_remainder=drop)
        val = None if data.val is None else tdata.batch(data.val, batch_size, training=False,
                                                        seed=recipe.seed, drop_remainder=drop)

        result = tune(
            build, train, val, cfg.space,
            tuner=cfg.algorithm, max_trials=cfg.max_trials, max_epochs=budget,
            directory=folder, project_name="tune", overwrite=overwrite,
            distribution_strategy=strategy if tf.distribute.has_strategy() else None,
            objective=cfg.objective, fixed=recipe_fixed_values(recipe),
            base_config=recipe.fine_tune_config(), recipe=recipe,
            unfreeze=unfreeze, early_stopping_patience=phases.patience,
            load_best_model=load_best_model, seed=recipe.seed, verbose=verbose,
        )
    if result.best_recipe is not None:
        Recipe.from_dict(result.best_recipe)  # the written recipe must load
    return result
