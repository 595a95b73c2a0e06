"""Export: .keras, raw-input serving SavedModel, TFLite parity, TF-Hub backbone round trip."""

import io
import json
import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import tlkit
from tlkit import export
from tlkit._extras import MissingExtraError
from tlkit.preprocessing import ImagePreprocessing
from tlkit.testing import tiny_cnn


@pytest.fixture(scope="module")
def image_model():
    keras.utils.set_random_seed(0)
    backbone = tlkit.backbones.from_keras(tiny_cnn())
    return tlkit.build_model(
        backbone, num_classes=3, class_names=["a", "b", "c"], input_shape=(16, 16, 3)
    )


@pytest.fixture(scope="module")
def pixels():
    return np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3)).astype("float32")


def _png(image):
    buf = io.BytesIO()
    Image.fromarray(image.astype("uint8")).save(buf, format="PNG")
    return buf.getvalue()


def test_keras_export_reloads_in_safe_mode(image_model, pixels, tmp_path):
    path = export.export_keras(image_model, tmp_path / "m.keras")
    reloaded = keras.models.load_model(path, safe_mode=True, compile=False)
    np.testing.assert_allclose(reloaded(pixels), image_model(pixels), atol=1e-6)


def test_savedmodel_serves_raw_image_bytes(image_model, pixels, tmp_path):
    path = export.export_savedmodel(image_model, tmp_path / "sm")
    served = tf.saved_model.load(path)
    out = served.serve(tf.constant([_png(p) for p in pixels]))
    expected = image_model(pixels).numpy()
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5)
    assert [c.decode() for c in out["class_name"].numpy()] == [
        "abc"[i] for i in expected.argmax(-1)
    ]
    assert set(served.signatures) >= {"serving_default", "serve", "serve_pixels"}
    np.testing.assert_allclose(served.serve_pixels(pixels)["probabilities"], expected, atol=1e-5)


@pytest.mark.slow  # over ~2 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_savedmodel_resizes_jpeg_of_another_size(image_model, tmp_path):
    path = export.export_savedmodel(image_model, tmp_path / "sm")
    served = tf.saved_model.load(path)
    big = np.random.default_rng(1).integers(0, 256, (40, 30, 3)).astype("uint8")
    buf = io.BytesIO()
    Image.fromarray(big).save(buf, format="JPEG")
    out = served.serve(tf.constant([buf.getvalue()]))
    assert out["probabilities"].shape == (1, 3)


def test_text_savedmodel_serves_strings(text_savedmodel, tmp_path):
    backbone = tlkit.backbones.from_hub(
        text_savedmodel, input_info=tlkit.backbones.InputInfo(kind="text", dtype="string")
    )
    model = tlkit.build_model(backbone, num_classes=2, class_names=["neg", "pos"])
    served = tf.saved_model.load(export.export_savedmodel(model, tmp_path / "text"))
    texts = ["a great day", "awful weather today"]
    out = served.serve(tf.constant(texts))
    np.testing.assert_allclose(out["probabilities"], model(tf.constant(texts)), atol=1e-5)
    results = export.export_model(model, tmp_path / "all", ["tflite", "onnx"])
    assert "skipped" in results["tflite"] and "skipped" in results["onnx"]


@pytest.mark.parametrize("quantize, tolerance", [(None, 1e-5), ("dynamic", 0.05)])
@pytest.mark.slow  # over ~3 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_tflite_parity(image_model, pixels, tmp_path, quantize, tolerance):
    result = export.export_tflite(
        image_model, tmp_path / "m.tflite", quantize=quantize, sample_inputs=pixels
    )
    assert os.path.getsize(result["path"]) == result["size_bytes"]
    parity = result["parity"]
    assert parity["num_examples"] == len(pixels)
    assert parity["max_abs_diff"] < tolerance
    got = export.tflite_predict(result["path"], pixels)
    np.testing.assert_allclose(got, image_model(pixels), atol=tolerance)


def test_tflite_refuses_text_and_dynamic_shapes(text_savedmodel, tmp_path):
    backbone = tlkit.backbones.from_keras(tiny_cnn(input_shape=(None, None, 3)))
    model = tlkit.build_model(backbone, num_classes=2, input_shape=(None, None, 3))
    with pytest.raises(ValueError, match="static input shape"):
        export.export_tflite(model, tmp_path / "m.tflite")


@pytest.mark.slow  # over ~2 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_hub_export_of_a_keras_backbone_round_trips(image_model, pixels, tmp_path):
    original = tlkit.trainability.find_backbone(image_model)
    storage = [v.value for v in original.variables]
    flags = [v.trainable for v in image_model.variables]
    path = export.export_hub(image_model, tmp_path / "hub")
    # The live model keeps its own variables and trainable flags.
    assert all(v.value is s for v, s in zip(original.variables, storage))
    assert [v.trainable for v in image_model.variables] == flags
    reloaded = tlkit.backbones.from_hub(path)
    preprocess = ImagePreprocessing(original.input_info)
    np.testing.assert_allclose(reloaded(pixels / 255.0), original(preprocess(pixels)), atol=1e-5)
    # The reusable SavedModel API and the layer groups survive.
    obj = tf.saved_model.load(path)
    assert len(obj.variables) == len(original.variables)
    # conv kernels + biases and BN gamma + beta; BN moving statistics are not trainable
    assert len(obj.trainable_variables) == 12
    assert len(obj.regularization_losses) == 0
    assert [g.name for g in reloaded.layer_groups()] == ["block1", "block2", "block3"]
    with open(os.path.join(path, export.HUB_INFO_FILE)) as f:
        assert json.load(f)["input_info"]["value_range"] == [0.0, 1.0]


def test_hub_export_of_a_hub_backbone_round_trips(image_savedmodel, tmp_path):
    original = tlkit.backbones.from_hub(image_savedmodel)
    model = tlkit.build_model(original, num_classes=2, input_shape=(12, 12, 3))
    path = export.export_hub(model, tmp_path / "hub2")
    reloaded = tlkit.backbones.from_hub(path)
    x = np.random.default_rng(2).uniform(0, 255, (3, 12, 12, 3)).astype("float32")
    np.testing.assert_allclose(
        reloaded(x / 255.0), original(ImagePreprocessing(original.input_info)(x)), atol=1e-5
    )
    assert [g.name for g in reloaded.layer_groups()] == ["block_1", "block_2", "top"]
    # A model on the re-exported backbone trains (its variables are trainable).
    reloaded_model = tlkit.build_model(reloaded, num_classes=2, input_shape=(12, 12, 3))
    tlkit.unfreeze_all(reloaded_model)
    assert len(reloaded_model.trainable_weights) > 2


@pytest.mark.slow  # over 5 CPU-seconds (tests/ timings, #31)
def test_export_model_writes_an_index(image_model, pixels, tmp_path):
    results = export.export_model(
        image_model, tmp_path / "out", ["keras", "tflite-dynamic", "hub"], sample_inputs=pixels
    )
    with open(tmp_path / "out" / "export.json") as f:
        assert json.load(f) == json.loads(json.dumps(results))
    assert results["tflite-dynamic"]["parity"]["top1_agreement"] >= 0.8
    with pytest.raises(ValueError, match="Unknown export format 'coreml'"):
        export.export_model(image_model, tmp_path / "x", ["coreml"])


# -- ONNX (the `onnx` extra) ---------------------------------------------------------------------------
def test_onnx_export_parity_with_onnxruntime(image_model, pixels, tmp_path):
    pytest.importorskip("tf2onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    results = export.export_model(image_model, tmp_path / "out", ["onnx"], sample_inputs=pixels)
    record = results["onnx"]
    assert record["path"] == str(tmp_path / "out" / "model.onnx")
    assert os.path.getsize(record["path"]) == record["size_bytes"]
    assert record["parity"]["num_examples"] == len(pixels)
    assert record["parity"]["max_abs_diff"] < 1e-5 and record["parity"]["top1_agreement"] == 1.0
    assert json.loads((tmp_path / "out" / "export.json").read_text())["onnx"] == record
    # Read back by ONNX Runtime alone, at another batch size than the parity check's.
    session = onnxruntime.InferenceSession(record["path"], providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [export.onnx_export.ONNX_INPUT_NAME]
    got = session.run(None, {"inputs": pixels[:2]})[0]
    np.testing.assert_allclose(got, image_model(pixels[:2]), atol=1e-5)


@pytest.mark.parametrize("module", ["tf2onnx", "onnx", "onnxruntime"])
def test_onnx_without_its_extra_fails_before_any_work(image_model, tmp_path, monkeypatch, module):
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    with pytest.raises(MissingExtraError) as err:
        export.export_model(image_model, tmp_path / "out", ["keras", "onnx"])
    assert str(err.value) == (f"ONNX export needs {module}, which is not installed: "
                              'pip install "tlkit[onnx]"')
    assert not (tmp_path / "out").exists()  # not even the keras file of the same call
