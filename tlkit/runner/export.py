"""`tlkit export`: a run's model in other formats (TFLite, SavedModel, ONNX, ...), with parity
checks on the run's own inputs; also the formats `output.export` asks for at the end of
`tlkit train` (`export_recipe`)."""

from __future__ import annotations

import os

import numpy as np

from tlkit.export import export_model
from tlkit.recipes import load_recipe
from tlkit.runner.data import load_data
from tlkit.runner.records import merge_card_files
from tlkit.runner.run_lock import run_lock
from tlkit.runner.run_model import load_run_model
from tlkit.runner.rundir import open_run
from tlkit.runner.settings import resolve_settings


def export_run(path, formats, output=None) -> dict:
    """Exports a finished run's model (`tlkit export`)."""
    with run_lock(path, "export"):
        return _export_locked(path, formats, output)


def _export_locked(path, formats, output) -> dict:
    run = open_run(path)
    model = load_run_model(run)
    sample = representative = None
    checked = [f for f in formats if f.startswith("tflite") or f == "onnx"]  # parity checks
    if model.inputs[0].dtype != "string" and checked:
        recipe = resolve_settings(load_recipe(run.recipe_path))
        data = load_data(recipe.data, recipe.seed).for_model(model)
        sample, representative = sample_inputs(data), representative_inputs(formats, data)
    folder = output or run.export_dir
    results = export_model(
        model, folder, formats, sample_inputs=sample, class_names=run.class_names(),
        representative_inputs=representative,
    )
    if os.path.abspath(folder) == os.path.abspath(run.export_dir):
        merge_card_files(run)  # export.json was merged; the card lists every format
    return results


def export_recipe(recipe, run, model, data) -> dict:
    """The formats of the recipe's `output.export` (`keras` is the run's `model.keras`),
    exported into the run's `export/`; returns `{format: record}`."""
    formats = [f for f in recipe.output.export if f != "keras"]
    results = {"keras": {"path": run.model_path}}
    if formats:
        sample = sample_inputs(data) if data.kind != "text" else None
        results.update(
            export_model(
                model, run.export_dir, formats, sample_inputs=sample, class_names=data.class_names,
                representative_inputs=representative_inputs(formats, data),
            )
        )
    return results


PARITY_INPUTS = 256
"""Inputs the exports' parity check compares on, where the evaluation split has them (32 left
a 1-in-32 step in the top-1 agreement)."""


def sample_inputs(data, n=PARITY_INPUTS, split=None):
    """Up to `n` raw inputs of `split` (default: the test, else val split), for export parity
    checks; `split="train"` gives the calibration inputs of full-integer TFLite."""
    split = split or ("test" if data.test is not None else "val")
    xs = [x for x, _ in data.split(split).take(n).as_numpy_iterator()]
    return np.stack(xs) if xs else None


def representative_inputs(formats, data):
    """Training inputs to calibrate `tflite-int8` on (100, as the TFLite guide suggests)."""
    return sample_inputs(data, 100, split="train") if "tflite-int8" in formats else None
