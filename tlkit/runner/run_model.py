"""A finished run's trained model, loaded as users get it."""

from __future__ import annotations

import keras

from tlkit import register_serializables
from tlkit.runner.rundir import RunDir
from tlkit.saving import load_keras_model, with_run_calibration


def load_run_model(run: RunDir, calibrated: bool = True) -> keras.Model:
    """The trained model of a run (`model.keras`, loaded in safe mode); with the run's fitted
    temperature applied (`output.temperature_scaling`) unless `calibrated=False`."""
    register_serializables()  # tlkit's Keras classes, the pretrained backbones' included

    model = load_keras_model(run.model_path, safe_mode=True, compile=False)
    return served(run, model) if calibrated else model


def served(run: RunDir, model) -> keras.Model:
    """`model` as users get it: with the run's temperature, when one was fitted."""
    return with_run_calibration(model, run.path)
