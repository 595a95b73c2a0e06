"""`tlkit.load`: a saved tlkit model, from a `.keras` file or a run folder, ready to predict."""

from __future__ import annotations

import json
import os
import re

RUN_MODEL = "model.keras"
RUN_CALIBRATION = "calibration.json"
# Keras' message when a config names a class nobody registered (followed by a config dump).
_UNKNOWN_CLASS = re.compile(r"Could not locate class '([^']+)'")


class ModelLoadError(ValueError):
    """A saved model names a Keras class that is not registered in this process."""


def load_keras_model(path, **kwargs):
    """`keras.models.load_model(path, **kwargs)`, with Keras' "Could not locate class" error
    (a `TypeError` followed by kilobytes of config) turned into one `ModelLoadError` line that
    says what to do."""
    import keras

    try:
        return keras.models.load_model(path, **kwargs)
    except TypeError as err:
        found = _UNKNOWN_CLASS.search(str(err))
        if found is None:
            raise
        name = found.group(1)
        # Its registered name, `package>Class`, is in the config dump that follows.
        registered = re.search(rf"'([\w.-]+>{re.escape(name)})'", str(err))
        registered = registered.group(1) if registered else name
        if registered.startswith("tlkit>"):
            fix = ("it is a tlkit layer this tlkit version does not have (saved by a newer "
                   "tlkit?): upgrade tlkit, or load the run's serving SavedModel / TFLite export "
                   "(`tlkit export RUN --format savedmodel`), which need no tlkit")
        else:
            fix = ("it is a custom class: import the module that defines it (decorated with "
                   "@keras.saving.register_keras_serializable) before loading, or pass "
                   f"custom_objects={{'{registered}': TheClass}}")
        raise ModelLoadError(
            f"{path}: Keras could not find class {name!r} ({registered!r}); {fix}"
        ) from None


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
        ModelLoadError: the model uses a Keras class that no imported module registers (the
            message names it and the fix).

    Example:
    ```python
    model = tlkit.load("runs/quickstart")
    tlkit.predict(model, "my_image.png")[0]["class"]
    ```
    """

    import tlkit

    tlkit.register_serializables()
    path = os.fspath(path)
    if not os.path.isdir(path):
        if not os.path.exists(path):
            raise FileNotFoundError(f"no model at {path}: pass a .keras file or a run folder")
        return load_keras_model(path, **kwargs)
    model_path = os.path.join(path, RUN_MODEL)
    if not os.path.exists(model_path):
        raise FileNotFoundError(
            f"{path} has no {RUN_MODEL}: not a finished tlkit run (train it with tlkit train)")
    kwargs.setdefault("compile", False)
    return with_run_calibration(load_keras_model(model_path, **kwargs), path)


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
