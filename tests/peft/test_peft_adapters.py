"""Adapter files (save / load / mismatch refusal) and merging adapters for export."""

import keras
import numpy as np
import pytest

import tlkit
from tlkit.peft import AdapterMismatchError
from tlkit.testing import tiny_model


def _adapted():
    model = tiny_model(seed=0)
    tlkit.peft.lora(model, rank=2, targets=["Conv2D"])
    return model


@pytest.fixture(scope="module")
def trained():
    """A LoRA-adapted tiny model fine-tuned once for the module (tests that change the model
    take a copy of its weights: `_copy`)."""
    model = _adapted()
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (12, 16, 16, 3)).astype("float32")
    tlkit.fine_tune(model, (x, np.arange(12) % 3), epochs=(1, 1), lr=1e-2, unfreeze="all", verbose=0)
    return model, x


def _copy(model):
    copy = _adapted()
    copy.set_weights(model.get_weights())
    return copy


def test_adapters_reload_onto_a_fresh_base_with_the_same_outputs(trained, tmp_path):
    model, x = trained
    path = tlkit.peft.save_adapters(model, tmp_path / "adapters.npz")
    fresh = tiny_model(seed=0)
    config = tlkit.peft.load_adapters(fresh, path)
    assert config.rank == 2 and config.targets == ("Conv2D",)
    np.testing.assert_allclose(fresh.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    with np.load(path) as data:  # adapters + head only, no base kernels
        saved = {str(k) for k in data.files}
    assert len(saved) == 1 + 6 + 2
    assert [p.name for p in tmp_path.iterdir()] == ["adapters.npz"]


def test_adapters_refuse_a_different_base(trained, tmp_path):
    model, _ = trained
    path = tlkit.peft.save_adapters(model, tmp_path / "adapters.npz")
    with pytest.raises(AdapterMismatchError, match="pretrained weights of layer 'block1_conv'"):
        tlkit.peft.load_adapters(tiny_model(seed=1), path)  # same architecture, other weights
    with pytest.raises(AdapterMismatchError, match="different head or backbone"):
        tlkit.peft.load_adapters(tiny_model(seed=0, num_classes=4), path)
    other = tlkit.build_model(
        tlkit.backbones.from_keras(keras.Sequential([keras.Input((4,)), keras.layers.Dense(4)])),
        num_classes=3, input_shape=(4,))
    with pytest.raises(AdapterMismatchError, match="does not fit this model.*Conv2D"):
        tlkit.peft.load_adapters(other, path)


def test_merge_removes_adapters_and_matches_the_adapted_model(trained, tmp_path):
    model, x = _copy(trained[0]), trained[1]
    adapted = model.predict(x, verbose=0)
    np.testing.assert_allclose(adapted, trained[0].predict(x, verbose=0), atol=1e-6)  # trained
    report = tlkit.peft.merge(model, x)
    assert report.layers == ["block1_conv", "block2_conv", "block3_conv"]
    assert report.max_abs_diff < 1e-4
    assert not tlkit.peft.lora_layers(model)
    assert not [v for v in model.weights if "lora" in v.path]
    model.save(tmp_path / "merged.keras")
    reloaded = keras.models.load_model(tmp_path / "merged.keras")
    assert not [v for v in reloaded.weights if "lora" in v.path]
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), adapted, atol=1e-4)
