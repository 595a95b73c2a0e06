"""Mixed precision (`mixed_bfloat16` on CPU) through every backbone kind and every tlkit path.

A SavedModel traced for float32 gets float32 inputs and hands bfloat16 on; the head's output
layer computes in float32; exports serve float32. Models stay tiny: bfloat16 is slow on CPU.
"""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import tlkit
from tlkit import cli
from tlkit.backbones import InputInfo, from_hub, from_keras
from tlkit.export import export_model, tflite_predict
from tlkit.optimizers.layerwise import LayerwiseMixin
from tlkit.pretrained.registry import MissingPackageError
from tlkit.runner.rundir import RunDir
from tlkit.unfreeze import UnfreezeSchedule

SMOKE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "recipes", "smoke.yaml")


def _images(n=16, size=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (n, size, size, 3)).astype("float32"), np.arange(n) % 3


def _dataset(x, y, batch=8):
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


def _assert_mixed(model):
    """Hidden layers compute in bfloat16; the model's output is float32, symbolically and really."""
    assert model.output.dtype == "float32"
    assert tlkit.trainability.find_backbone(model).compute_dtype == "bfloat16"


@pytest.mark.slow  # over ~3 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_hub_image_savedmodel_fine_tunes_layerwise_and_reloads(
    mixed_bfloat16, image_savedmodel, tmp_path
):
    x, y = _images()
    model = tlkit.build_model(image_savedmodel, num_classes=3, input_shape=(16, 16, 3), dropout=0.0)
    _assert_mixed(model)
    before = {v.path: v.numpy().copy() for v in model.weights}
    result = tlkit.fine_tune(
        model, _dataset(x, y), _dataset(x, y), epochs=(1, 2),
        unfreeze=UnfreezeSchedule.gradual(head_epochs=1, first=1, every=1),  # top, then block_2
        layerwise_decay=2.0, lr=1e-2, early_stopping_patience=None, verbose=0,
    )
    assert np.isfinite(result.history.history["loss"]).all()
    assert isinstance(model.optimizer, LayerwiseMixin)
    changed = {p for p, v in before.items() if not np.array_equal(v, _weight(model, p))}
    assert any("top_proj" in p for p in changed) and any("block_2_conv" in p for p in changed)
    assert not any("block_1" in p for p in changed)  # gradual: block_1 never unfroze
    assert not any("bn_gamma" in p or "bn_beta" in p for p in changed)  # bn_policy "frozen"
    predictions = model.predict(x, verbose=0)
    assert predictions.dtype == np.float32
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), predictions, atol=1e-6)


def _weight(model, path):
    return next(v for v in model.weights if v.path == path).numpy()


def test_hub_text_savedmodel_trains_on_strings(mixed_bfloat16, text_savedmodel):
    backbone = from_hub(text_savedmodel, input_info=InputInfo(kind="text", dtype="string"))
    model = tlkit.build_model(backbone, num_classes=2, dropout=0.0)
    _assert_mixed(model)
    texts = tf.constant(["good movie", "bad plot", "a good plot", "bad bad movie"])
    history = model.fit(_dataset(texts, np.array([1, 0, 1, 0]), 4), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert model.predict(texts, verbose=0).dtype == np.float32


@pytest.mark.slow
def test_keras_application_and_image_preprocessing_with_mean_std(mixed_bfloat16):
    # ImagePreprocessing with a resize and mean/std once mixed a bfloat16 resize with float32
    # constants (EfficientNet-Lite0 failed this way).
    x, y = _images(8)
    # MobileNet (v1) at alpha 0.25: any Keras application does, and v1 has half of
    # MobileNetV2's layers to trace (#31: pytest on this test alone 22.0 -> 18.6 CPU-s).
    base = keras.applications.MobileNet(
        alpha=0.25, weights=None, include_top=False, input_shape=(32, 32, 3)
    )
    info = InputInfo(image_size=(32, 32), value_range=(0, 1), mean=(0.5, 0.5, 0.5), std=(0.25,) * 3)
    model = tlkit.build_model(from_keras(base, input_info=info), num_classes=3, input_shape=(16, 16, 3))
    _assert_mixed(model)
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # head step through the backbone
    assert np.isfinite(history.history["loss"]).all()


@pytest.mark.slow  # over 5 CPU-seconds (tests/ timings, #31)
@pytest.mark.parametrize(
    "name,kwargs",
    [("efficientnet_lite0", {"image_size": 32}), ("vgg16_hed", {"image_size": 32})],
)
def test_offline_image_backbones_build_and_train_a_step(mixed_bfloat16, name, kwargs):
    try:
        backbone = tlkit.backbones.get(name, **kwargs)
    except MissingPackageError as err:
        pytest.skip(str(err))
    x, y = _images(4)
    model = tlkit.build_model(backbone, num_classes=3, input_shape=(16, 16, 3))
    _assert_mixed(model)
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert np.isfinite(model.predict(x, verbose=0)).all()


@pytest.mark.slow
def test_offline_minilm_builds_and_predicts(mixed_bfloat16):
    pytest.importorskip("tensorflow_text")
    try:
        backbone = tlkit.backbones.get("minilm_l6", sequence_length=8)
    except (MissingPackageError, ImportError) as err:
        pytest.skip(str(err))
    model = tlkit.build_model(backbone, num_classes=2)
    _assert_mixed(model)
    probs = model.predict(tf.constant(["a good movie", "a bad plot"]), verbose=0)
    assert probs.dtype == np.float32 and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.slow  # over ~3 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_mixed_float16_wraps_the_layerwise_optimizer_in_loss_scaling():
    # float16 runs on CPU too (slowly): one fine-tune step shows the loss-scaled layer-wise path.
    keras.config.set_dtype_policy("mixed_float16")
    try:
        x, y = _images(8)
        model = tlkit.testing.tiny_model()
        tlkit.fine_tune(model, (x, y), epochs=(1, 1), layerwise_decay=2.0, batch_size=8,
                        early_stopping_patience=None, verbose=0)
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        assert isinstance(model.optimizer.inner_optimizer, LayerwiseMixin)
        assert model.output.dtype == "float32"
        assert all(np.isfinite(v.numpy()).all() for v in model.trainable_weights)
    finally:
        keras.config.set_dtype_policy("float32")


@pytest.mark.slow  # over ~3 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_head_on_features_and_lr_find(mixed_bfloat16, image_savedmodel):
    x, y = _images()
    model = tlkit.build_model(image_savedmodel, num_classes=3, input_shape=(16, 16, 3))
    head_before = [w.numpy().copy() for w in tlkit.heads.find_head(model).weights]
    history = tlkit.train_head_on_features(model, _dataset(x, y), _dataset(x, y), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    head_after = [w.numpy() for w in tlkit.heads.find_head(model).weights]
    assert not all(np.array_equal(a, b) for a, b in zip(head_before, head_after))
    weights = [w.numpy().copy() for w in model.weights]
    found = tlkit.lr_find(model, _dataset(x, y), num_steps=8)
    assert np.isfinite(found.suggestion)
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(weights, model.weights))


@pytest.mark.slow  # over 5 CPU-seconds (tests/ timings, #31)
def test_exports_serve_float32_with_tflite_parity(mixed_bfloat16, image_savedmodel, tmp_path):
    x, _ = _images(4)
    model = tlkit.build_model(image_savedmodel, num_classes=3, input_shape=(16, 16, 3))
    out = export_model(
        model, tmp_path, formats=("keras", "savedmodel", "tflite", "tflite-dynamic", "hub"),
        sample_inputs=x,
    )
    assert out["tflite"]["parity"]["top1_agreement"] == 1.0
    assert out["tflite"]["parity"]["max_abs_diff"] < 1e-2
    assert out["tflite-dynamic"]["parity"]["max_abs_diff"] < 5e-2  # quantized weights
    assert tflite_predict(out["tflite"]["path"], x).dtype == np.float32
    served = tf.saved_model.load(out["savedmodel"]["path"])
    for fn in served.signatures.values():
        assert all(s.dtype in (tf.float32, tf.string) for s in fn.structured_input_signature[1].values())
        assert all(
            t.dtype in (tf.float32, tf.string, tf.int32, tf.int64) for t in fn.structured_outputs.values()
        )
    hub = tf.saved_model.load(out["hub"]["path"])
    assert hub(tf.zeros((1, 16, 16, 3)), training=False).dtype == tf.float32


@pytest.mark.slow
def test_recipe_with_mixed_precision_matches_float32(tmp_path, capsys):
    fast = ["--set", "phases.head_epochs=4", "--set", "phases.fine_epochs=1"]
    accuracy = {}
    for mixed in ("false", "true"):
        out = str(tmp_path / f"mixed_{mixed}")
        code = cli.main(["train", SMOKE, "--output", out, "--set",
                         f"distribute.mixed_precision={mixed}", *fast])
        assert code == 0, capsys.readouterr().err
        accuracy[mixed] = RunDir(out).read_json("metrics.json")["accuracy"]
    assert keras.config.dtype_policy().name == "float32"  # restored after the run
    assert abs(accuracy["true"] - accuracy["false"]) <= 0.05, accuracy
