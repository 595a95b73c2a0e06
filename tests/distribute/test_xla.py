"""XLA (`jit_compile`) and `steps_per_execution`: same results on CPU, and set by recipes."""

import json
import os
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

import tlkit
from tlkit import cli, distribute
from tlkit.backbones import InputInfo, from_hub
from tlkit.recipes import Recipe, RecipeError
from tlkit.runner.settings import resolve_execution
from tlkit.testing import tiny_model

SMOKE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "recipes", "smoke.yaml")


def _data(n=16):
    rng = np.random.default_rng(0)
    return rng.uniform(0, 255, (n, 16, 16, 3)).astype("float32"), np.arange(n) % 3


def _fine_tuned(build, jit):
    x, y = _data()
    model = build()
    result = tlkit.fine_tune(
        model, (x, y), epochs=(1, 1), unfreeze=1, batch_size=8, shuffle=False,
        early_stopping_patience=None, verbose=0, jit_compile=jit, steps_per_execution=2,
    )
    assert model.jit_compile is jit and model.steps_per_execution == 2
    return [w.numpy() for w in model.weights], result.history.history["loss"]


@pytest.mark.slow  # over 5 CPU-seconds (tests/ timings, #31)
@pytest.mark.parametrize("backbone", ["keras", "savedmodel"])
def test_fine_tune_with_xla_matches_without(backbone, image_savedmodel):
    def build():
        if backbone == "keras":
            return tiny_model()
        keras.utils.set_random_seed(0)
        return tlkit.build_model(image_savedmodel, num_classes=3, input_shape=(16, 16, 3), dropout=0.0)

    plain, plain_loss = _fine_tuned(build, False)
    xla, xla_loss = _fine_tuned(build, True)
    np.testing.assert_allclose(xla_loss, plain_loss, rtol=1e-3, atol=1e-4)
    for a, b in zip(xla, plain):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_build_model_passes_jit_compile():
    assert tiny_model(jit_compile=True).jit_compile is True
    assert tiny_model(jit_compile=False).jit_compile is False


def test_text_savedmodel_keeps_xla_off_instead_of_failing(text_savedmodel):
    backbone = from_hub(text_savedmodel, input_info=InputInfo(kind="text", dtype="string"))
    assert backbone.supports_jit is False  # string ops have no XLA kernels
    assert from_hub(text_savedmodel).supports_jit is False  # read from the traced signature
    with pytest.warns(UserWarning, match="jit_compile"):
        model = tlkit.build_model(backbone, num_classes=2, jit_compile=True)
    assert model.jit_compile is False
    texts = tf.constant(["good movie", "bad plot", "a good plot", "bad bad movie"])
    model.fit(tf.data.Dataset.from_tensor_slices((texts, [1, 0, 1, 0])).batch(4), verbose=0)


def test_recipe_steps_per_execution_comes_from_the_plan(monkeypatch):
    recipe = Recipe.from_dict({"backbone": {"name": "tiny"}})
    strategy = tf.distribute.get_strategy()
    assert resolve_execution(recipe, strategy).distribute.steps_per_execution == 1
    monkeypatch.setattr(distribute, "device_kind", lambda strategy: "tpu")
    assert resolve_execution(recipe, strategy).distribute.steps_per_execution == 32
    fixed = Recipe.from_dict({"backbone": {"name": "tiny"}, "distribute": {"steps_per_execution": 4}})
    assert resolve_execution(fixed, strategy).distribute.steps_per_execution == 4


@pytest.mark.slow
def test_recipe_jit_compile_and_steps_per_execution_reach_the_model(tmp_path):
    out = str(tmp_path / "xla")
    code = cli.main([
        "train", SMOKE, "--output", out, "--set", "phases.head_epochs=0",
        "--set", "phases.fine_epochs=1", "--set", "distribute.jit_compile=true",
        "--set", "distribute.steps_per_execution=3",
    ])
    assert code == 0
    with zipfile.ZipFile(os.path.join(out, "model.keras")) as archive:
        compiled = json.loads(archive.read("config.json"))["compile_config"]
    assert compiled["jit_compile"] is True and compiled["steps_per_execution"] == 3


@pytest.mark.parametrize("value", [0, "sometimes"])
def test_recipe_rejects_bad_execution_keys(value):
    key = "steps_per_execution" if value == 0 else "jit_compile"
    with pytest.raises(RecipeError, match=f"distribute.{key}"):
        Recipe.from_dict({"backbone": {"name": "tiny"}, "distribute": {key: value}})
