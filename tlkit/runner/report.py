"""`tlkit report`: regenerate a finished run's `report.html` (reusing its saved predictions)."""

from __future__ import annotations

import keras

from tlkit.recipes import load_recipe, preflight
from tlkit.runner.data import load_data
from tlkit.runner.evaluation import interpret, write_metrics_reports
from tlkit.runner.records import write_report
from tlkit.runner.run_lock import run_lock
from tlkit.runner.run_model import load_run_model
from tlkit.runner.rundir import RunError, open_run
from tlkit.runner.settings import resolve_settings


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
    found = interpret(recipe, run, model, data, verbose, temperature=temperature, reuse=True)
    metrics = {**run.read_json("metrics.json", {}), **write_metrics_reports(run, data, found)}
    return write_report(recipe, run, data, metrics, found)
