"""build_model: heads, preprocessing, groups, freezing, save/reload, and bad input."""

import keras
import numpy as np
import pytest

import tlkit
from tlkit.backbones import InputInfo, WeightsUnavailableError, from_keras
from tlkit.testing import check_save_reload_parity, tiny_cnn


@pytest.mark.slow  # over ~2 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
@pytest.mark.parametrize(
    "head,num_classes,loss",
    [
        ("classification", 3, "sparse_categorical_crossentropy"),
        ("multilabel", 4, "binary_crossentropy"),
        ("regression", 2, "mse"),
        ("mlp", 3, "sparse_categorical_crossentropy"),
    ],
)
def test_heads_build_and_fit(tiny_cnn_model, head, num_classes, loss):
    model = tlkit.build_model(
        from_keras(tiny_cnn_model), head=head, num_classes=num_classes, input_shape=(16, 16, 3)
    )
    assert model.output_shape == (None, num_classes)
    assert model.loss == loss
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (8, 16, 16, 3))
    if head == "multilabel":
        y = rng.integers(0, 2, (8, num_classes)).astype("float32")
    elif head == "regression":
        y = rng.normal(size=(8, num_classes))
    else:
        y = rng.integers(0, num_classes, 8)
    history = model.fit(x, y, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    out = model.predict(x, verbose=0)
    if head in ("classification", "mlp"):
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    if head == "multilabel":
        assert ((out >= 0) & (out <= 1)).all() and not np.allclose(out.sum(axis=1), 1.0)


@pytest.mark.slow  # over ~2 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_groups_freeze_and_unfreeze(tiny_cnn_model, image_batch):
    model = tlkit.build_model(from_keras(tiny_cnn_model), num_classes=3, input_shape=(16, 16, 3))
    assert tlkit.trainability.group_names(model) == ["block1", "block2", "block3", "head"]
    summary = {r["group"]: r for r in tlkit.trainable_summary(model)}
    assert summary["head"]["trainable"] and not summary["block3"]["trainable"]
    tlkit.unfreeze_top(model, 1)
    summary = {r["group"]: r for r in tlkit.trainable_summary(model)}
    # conv kernel + bias trainable; BN frozen by default policy.
    assert summary["block3"]["trainable_params"] == 3 * 3 * 8 * 8 + 8
    assert not summary["block2"]["trainable"]
    backbone = tlkit.trainability.find_backbone(model)
    frozen = {v.path: v.numpy().copy() for v in backbone.weights}
    x, y = image_batch
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    for v in backbone.weights:
        changed = not np.array_equal(frozen[v.path], v.numpy())
        assert changed == v.path.startswith("block3_conv"), v.path
    text = tlkit.format_summary(model)
    assert "block3" in text and "head" in text
    with pytest.raises(ValueError, match="Unknown layer group"):
        tlkit.set_trainable(model, ["block9"])


def test_preprocessing_rescales_to_backbone_range():
    inputs = keras.Input((2, 2, 3))
    identity = keras.Model(inputs, keras.layers.Identity()(inputs))
    info = InputInfo(value_range=(-1, 1), image_size=(2, 2))
    model = tlkit.build_model(
        from_keras(identity, input_info=info), num_classes=2, input_shape=(4, 4, 1), compile=False
    )
    sub = keras.Model(model.input, model.get_layer("preprocessing").output)
    out = sub(np.full((1, 4, 4, 1), 255.0)).numpy()
    assert out.shape == (1, 2, 2, 3)
    np.testing.assert_allclose(out, 1.0)
    out = sub(np.zeros((1, 4, 4, 1))).numpy()
    np.testing.assert_allclose(out, -1.0)


@pytest.mark.slow  # over ~2 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_keras_backbone_save_reload(tiny_cnn_model, image_batch, tmp_path):
    model = tlkit.build_model(
        from_keras(tiny_cnn_model),
        num_classes=3,
        input_shape=(16, 16, 3),
        class_names=["a", "b", "c"],
    )
    tlkit.unfreeze_all(model)
    x, y = image_batch
    model.fit(x, y, epochs=1, verbose=0)
    reloaded = check_save_reload_parity(model, x, tmp_path)
    assert tlkit.heads.find_head(reloaded).class_names == ["a", "b", "c"]
    assert tlkit.trainability.group_names(reloaded) == ["block1", "block2", "block3", "head"]


def test_bad_inputs_give_clear_errors(tiny_cnn_model):
    backbone = from_keras(tiny_cnn_model)
    with pytest.raises(ValueError, match="num_classes` >= 2"):
        tlkit.build_model(backbone, head="classification", num_classes=1)
    with pytest.raises(ValueError, match=r"\(height, width, channels\)"):
        tlkit.build_model(backbone, num_classes=3, input_shape=(16, 16))
    with pytest.raises(ValueError, match="Unknown head"):
        tlkit.build_model(backbone, head="softmax", num_classes=3)
    with pytest.raises(ValueError, match="needs `num_classes`"):
        tlkit.build_model(backbone)
    with pytest.raises(ValueError, match="Unknown Keras application"):
        from_keras("MobileNetV9")
    with pytest.raises(FileNotFoundError, match="Weights file not found"):
        from_keras("MobileNetV2", weights="/nonexistent/weights.h5")
    with pytest.raises(ValueError, match="Unknown backbone"):
        tlkit.backbones.get("not-a-backbone")


def test_imagenet_download_fails_offline_with_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # empty cache: Keras must try to download

    def offline(*args, **kwargs):
        raise OSError("[Errno -2] Name or service not known")

    monkeypatch.setattr("urllib.request.urlretrieve", offline)
    with pytest.raises(WeightsUnavailableError, match="offline"):
        from_keras("MobileNetV2", weights="imagenet", input_shape=(96, 96, 3))


@pytest.mark.slow
def test_keras_application_with_local_weights(tmp_path):
    keras.utils.set_random_seed(1)
    base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "mnv2_notop.weights.h5"
    base.save_weights(path)
    backbone = from_keras("MobileNetV2", weights=str(path), input_shape=(32, 32, 3))
    for a, b in zip(base.weights, backbone.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert backbone.input_info.value_range == (-1.0, 1.0)
    assert not backbone.trainable


@pytest.mark.slow
def test_importing_tlkit_configures_nothing_global():
    import subprocess
    import sys

    code = (
        "import keras, tensorflow as tf\n"
        "before = (keras.config.dtype_policy().name, keras.config.floatx())\n"
        "import tlkit\n"
        "after = (keras.config.dtype_policy().name, keras.config.floatx())\n"
        "assert before == after, (before, after)\n"
        "assert not tf.config.list_logical_devices('CPU')[1:], 'devices changed'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]


def test_tiny_cnn_helper_groups():
    assert len(tiny_cnn().layers) == 10
