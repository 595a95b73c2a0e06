"""`tlkit.load`: a saved tlkit model, from a `.keras` file or a run folder, ready to predict."""

from __future__ import annotations

import json
import os
import re
import zipfile

RUN_MODEL = "model.keras"
RUN_CALIBRATION = "calibration.json"
# Keras' message when a config names a class nobody registered (followed by a config dump).
_UNKNOWN_CLASS = re.compile(r"Could not locate class '([^']+)'")
_UNKNOWN_FUNCTION = re.compile(r"Could not locate function '([^']+)'")


def _short(err, limit=200) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ModelLoadError(ValueError):
    """A saved model that cannot be loaded: it names a Keras class or function that is not
    registered in this process, or the file is damaged (the message names the file)."""


def _damaged(path, problem) -> ModelLoadError:
    return ModelLoadError(
        f"{path}: not a loadable Keras model ({problem}); it is damaged or not a .keras file: "
        "restore it, or retrain the run (tlkit train RECIPE --output RUN --force)")


def _check_file(path) -> None:
    """Refuses what is not a `.keras` archive before Keras reads it (Keras would say "File not
    found" for a folder, or fail deep in `zipfile` for a truncated file)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise _damaged(path, "a folder where a .keras file was expected")
    if os.path.exists(path) and path.endswith(".keras"):
        size = os.path.getsize(path)
        if not zipfile.is_zipfile(path):
            raise _damaged(path, f"{size} bytes, not a zip archive: truncated or not a model")
        try:
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
        except (zipfile.BadZipFile, OSError) as err:
            raise _damaged(path, f"broken zip archive: {err}") from None
        if "config.json" not in names:
            raise _damaged(path, "the archive has no config.json")


def load_keras_model(path, **kwargs):
    """`keras.models.load_model(path, **kwargs)` with one-line `ModelLoadError`s: Keras'
    "Could not locate class / function" error (a `TypeError` followed by kilobytes of config)
    says what to do, and a damaged file (a folder, truncated, not a zip, a broken archive)
    is named instead of failing deep inside Keras. No code in the file runs (safe mode)."""
    import keras

    _check_file(path)
    try:
        return keras.models.load_model(path, **kwargs)
    except (zipfile.BadZipFile, EOFError, KeyError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise _damaged(path, f"{type(err).__name__}: {_short(err)}") from None
    except OSError as err:
        if not os.path.exists(path):
            raise
        raise _damaged(path, f"{type(err).__name__}: {_short(err)}") from None
    except TypeError as err:
        function = _UNKNOWN_FUNCTION.search(str(err))
        if function is not None:
            raise ModelLoadError(
                f"{path}: the model refers to a function Keras does not know or will not load "
                f"({function.group(1)!r}: a Lambda layer or a function named in the config); "
                "no code in the file ran. Load only models you trust; for your own model, "
                "import the module that registers the function "
                "(@keras.saving.register_keras_serializable) before loading") from None
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


def calibration_problem(data):
    """`None` for a valid `calibration.json` content, else what it should be."""
    t = data.get("temperature") if isinstance(data, dict) else "no object"
    if t is None or (not isinstance(t, bool) and isinstance(t, (int, float)) and 0 < t < 1e6):
        return None
    return "a JSON object {'temperature': a number > 0 or null}"


def with_run_calibration(model, run_folder):
    """`model` as a run serves it: wrapped with the temperature fitted into
    `run_folder/calibration.json` (`output.temperature_scaling`), or unchanged when none was."""
    from tlkit._io import read_json

    calibration = os.path.join(os.fspath(run_folder), RUN_CALIBRATION)
    record = read_json(calibration, {}, expect=calibration_problem,
                       fix="restore it, or delete it to serve the model without temperature "
                       "scaling")
    temperature = record.get("temperature")
    if temperature is None:
        return model
    from tlkit.temperature import with_temperature

    return with_temperature(model, temperature)
