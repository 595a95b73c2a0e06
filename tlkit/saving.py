"""`tlkit.load`: a saved tlkit model, from a `.keras` file or a run folder, ready to predict."""

from __future__ import annotations

import json
import os

RUN_MODEL = "model.keras"
RUN_CALIBRATION = "calibration.json"


def load(path, **kwargs):
    """Loads a tlkit model from a `.keras` file or a run folder (`tlkit train`'s output).

    For a file this is `import keras, tlkit; keras.models.load_model(path)`: tlkit's Keras
    classes are registered first, whatever was imported before. For a run folder it loads the
    folder's `model.keras` (not compiled, for inference) with the run's fitted temperature
    applied when the recipe asked for temperature scaling (`calibration.json`), as
    `tlkit predict RUN` serves it. The model takes raw inputs (its preprocessing is inside) and
    keeps its class names in its head, so `tlkit.predict(model, ["cat.jpg"])` needs nothing else.

    Args:
        path: a `.keras` file or a run folder.
        **kwargs: passed to `keras.models.load_model` (`compile=False`, `safe_mode`, ...).

    Raises:
        FileNotFoundError: no such file, or a folder without `model.keras`.

    Example:
    ```python
    model = tlkit.load("runs/quickstart")
    tlkit.predict(model, "my_image.png")[0]["class"]
    ```
    """
    import keras

    import tlkit

    tlkit.register_serializables()
    path = os.fspath(path)
    if not os.path.isdir(path):
        if not os.path.exists(path):
            raise FileNotFoundError(f"no model at {path}: pass a .keras file or a run folder")
        return keras.models.load_model(path, **kwargs)
    model_path = os.path.join(path, RUN_MODEL)
    if not os.path.exists(model_path):
        raise FileNotFoundError(
            f"{path} has no {RUN_MODEL}: not a finished tlkit run (train it with tlkit train)")
    kwargs.setdefault("compile", False)
    return with_run_calibration(keras.models.load_model(model_path, **kwargs), path)


def with_run_calibration(model, run_folder):
    """`model` as a run serves it: wrapped with the temperature fitted into
    `run_folder/calibration.json` (`output.temperature_scaling`), or unchanged when none was."""
    calibration = os.path.join(os.fspath(run_folder), RUN_CALIBRATION)
    temperature = None
    if os.path.exists(calibration):
        with open(calibration) as f:
            temperature = json.load(f).get("temperature")
    if temperature is None:
        return model
    from tlkit.temperature import with_temperature

    return with_temperature(model, temperature)
