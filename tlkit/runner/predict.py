"""`tlkit predict`: classify image files / folders or texts with a run's served model."""

from __future__ import annotations

from tlkit import inference
from tlkit.recipes import load_recipe
from tlkit.runner.run_model import load_run_model
from tlkit.runner.rundir import open_run
from tlkit.runner.settings import resolve_settings


def predict_run(path, inputs, top: int = 1) -> list[dict]:
    """`tlkit predict`: the run's served model on `inputs` (image files / folders or texts),
    batched with the run's resolved `data.batch_size` (`resolve_settings`); see
    `tlkit.inference.predict` for what comes back."""
    run = open_run(path)
    recipe = resolve_settings(load_recipe(run.recipe_path))
    model = load_run_model(run)
    names = run.class_names(num_classes=int(model.outputs[0].shape[-1]))
    return inference.predict(model, inputs, names, top=top,
                             batch_size=recipe.data.batch_size)
