"""The lazy `tlkit` package: public names stay what the README documents whatever was imported
before, and tlkit's Keras classes are registered for `keras.models.load_model`."""

import importlib
import inspect
import os
import pkgutil
import subprocess
import sys

import pytest

import tlkit
from tlkit.testing import tiny_model

# Public top-level functions planned but not there yet: no module may take their names either.
PLANNED = ("predict", "load")


def _all_modules():
    return [m.name for m in pkgutil.walk_packages(tlkit.__path__, "tlkit.")
            if not m.name.startswith("tlkit.testing.tuning_worker")]


LAZY_PACKAGES = ("tlkit", "tlkit.peft")  # packages with a PEP 562 `_ATTRIBUTES` table


def test_no_module_is_named_like_a_public_function():
    """Importing a submodule sets the package attribute of its name to the module, which would
    replace a lazily loaded function of the same name (`tlkit.peft.merge(...)` -> "'module'
    object is not callable")."""
    for package in map(importlib.import_module, LAZY_PACKAGES):
        modules = {m.name for m in pkgutil.iter_modules(package.__path__)}
        planned = set(PLANNED) if package is tlkit else set()
        assert not modules & (set(package._ATTRIBUTES) | planned), package.__name__


def test_public_names_survive_importing_every_module():
    for name in _all_modules():
        importlib.import_module(name)
    for package in map(importlib.import_module, LAZY_PACKAGES):
        for name in package._ATTRIBUTES:
            value = getattr(package, name)
            assert not inspect.ismodule(value), f"{package.__name__}.{name}"
            assert callable(value), f"{package.__name__}.{name}"
    assert tlkit.fine_tune.__module__ == "tlkit.training.fine_tuning"
    assert inspect.isfunction(tlkit.fine_tune)


def _run(code, tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(tlkit.__file__)))
    env = {**os.environ, "PYTHONPATH": root, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True)


@pytest.mark.slow  # over 5 CPU-seconds (tests/ timings, #31)
def test_keras_then_tlkit_loads_a_tlkit_model_in_a_fresh_process(tmp_path):
    path = str(tmp_path / "m.keras")
    tiny_model().save(path)
    keras_first = _run("import keras, tlkit; m = keras.models.load_model('m.keras'); "
                       "print(type(m.get_layer('head')).__name__)", tmp_path)
    assert keras_first.returncode == 0, keras_first.stderr[-2000:]
    assert keras_first.stdout.strip() == "Head"
    tlkit_first = _run("import tlkit, sys; assert 'tensorflow' not in sys.modules; "
                       "m = tlkit.load('m.keras'); print(type(m.get_layer('head')).__name__)",
                       tmp_path)
    assert tlkit_first.returncode == 0, tlkit_first.stderr[-2000:]
    assert tlkit_first.stdout.strip() == "Head"


@pytest.mark.slow  # over 5 CPU-seconds (tests/ timings, #31)
def test_plain_keras_without_tlkit_cannot_load_a_tlkit_model(tmp_path):
    """The documented limit: Keras imports only keras / keras_hub modules by itself, so a
    process that never imports tlkit cannot rebuild tlkit's layers (the README says so and names
    the serving SavedModel / TFLite exports for that case)."""
    tiny_model().save(str(tmp_path / "m.keras"))
    plain = _run("import keras; keras.models.load_model('m.keras')", tmp_path)
    assert plain.returncode != 0
    assert "Could not locate class 'ImagePreprocessing'" in plain.stderr, plain.stderr[-2000:]


def test_load_names_an_unregistered_class_and_the_fix_in_one_line(tmp_path, monkeypatch):
    import keras

    from tlkit.saving import ModelLoadError

    path = str(tmp_path / "m.keras")
    tiny_model().save(path)
    registry = keras.saving.get_custom_objects()  # Keras' live global registry
    monkeypatch.delitem(registry, "tlkit>Head")  # as in a tlkit that lacks the class
    with pytest.raises(ModelLoadError) as err:
        tlkit.load(path)
    message = str(err.value)
    assert "\n" not in message and len(message) < 400 and "Full object config" not in message
    assert "class 'Head' ('tlkit>Head')" in message and "serving SavedModel" in message
    assert isinstance(err.value, ValueError)  # the CLI reports it as one `tlkit: error:` line

    @keras.saving.register_keras_serializable(package="mine")
    class Scale(keras.layers.Layer):
        def call(self, x):
            return 2.0 * x

    inputs = keras.Input((3,))
    keras.Model(inputs, Scale()(inputs)).save(str(tmp_path / "custom.keras"))
    monkeypatch.delitem(registry, "mine>Scale")  # a process that did not import its module
    with pytest.raises(ModelLoadError, match=r"custom class: import the module that defines it"):
        tlkit.load(str(tmp_path / "custom.keras"))
