"""A finished run, opened again: its recipe (settings resolved), model and data, for the verbs
that re-read a run (`evaluate`, `report`)."""

from __future__ import annotations

import keras

from tlkit.recipes import load_recipe, preflight
from tlkit.runner.data import load_data
from tlkit.runner.run_model import load_run_model
from tlkit.runner.settings import resolve_settings


def reopen(run):
    """`(recipe, model, data)` of the run folder `run` (a `RunDir`): the recipe it ran with,
    its settings resolved as at training time; the model without its fitted temperature; the
    data (same seed and splits) prepared for the model. Only the data is checked before
    loading: the backbone is inside the run.

    Example:
    ```python
    recipe, model, data = reopen(open_run("runs/quickstart"))
    ```
    """
    recipe = load_recipe(run.recipe_path)
    preflight.check_ready(recipe, backbone=False)  # the model is in the run; its data may not be
    recipe = resolve_settings(recipe)
    keras.utils.set_random_seed(recipe.seed)
    model = load_run_model(run, calibrated=False)
    return recipe, model, load_data(recipe.data, recipe.seed).for_model(model)
