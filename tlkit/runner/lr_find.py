"""`tlkit lr-find`: the learning-rate range test on a recipe's model, its backbone unfrozen as
in fine-tuning."""

from __future__ import annotations

import os

import keras

import tlkit.data as tdata
from tlkit import distribute, trainability
from tlkit.lr_finder import lr_find
from tlkit.model import compile_model
from tlkit.recipes import Recipe, load_recipe, preflight
from tlkit.runner.build import build, make_optimizer
from tlkit.runner.data import load_data, recipe_distribution
from tlkit.runner.run_lock import run_lock
from tlkit.runner.rundir import RunDir
from tlkit.runner.settings import resolve_settings


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
    with distribute.strategy_scope(**recipe_distribution(recipe)) as strategy:
        recipe = resolve_settings(recipe, strategy)
        data = load_data(recipe.data, recipe.seed)
        model = build(recipe, data, run)
        data = data.for_model(model)
        trainability.unfreeze_all(model, bn_policy=recipe.phases.bn_policy)
        compile_model(
            model, optimizer=make_optimizer(recipe, recipe.optimizer.lr),
            jit_compile=recipe.distribute.jit_compile,
        )
        train = tdata.batch(data.split("train"), recipe.data.batch_size, training=True,
                            seed=recipe.seed, drop_remainder=bool(recipe.data.drop_remainder))
        return lr_find(
            model, train, plot_path=os.path.join(folder, "lr_find.png"), verbose=verbose
        )
