"""int8 exports: Keras int8 SavedModel, full-integer TFLite, and exports of merged LoRA models."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import tlkit
from tlkit.export.int8 import export_savedmodel_int8
from tlkit.peft import UnsupportedLayersError
from tlkit.testing import tiny_model


def _images(n, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, 16, 16, 3)).astype("float32")


@pytest.mark.slow  # over 5 CPU-seconds (tests/ timings, #31)
def test_merged_lora_cnn_exports_full_integer_tflite_with_parity(tmp_path):
    model = tiny_model()
    tlkit.peft.lora(model, rank=2, targets=["Conv2D"])
    for v in model.weights:  # a non-zero update, as after training
        if "lora_kernel_b" in v.path:
            v.assign(np.full(v.shape, 0.05, "float32"))
    held_out = _images(16, seed=1)
    assert tlkit.peft.merge(model, held_out).max_abs_diff < 1e-4
    results = tlkit.export.export_model(
        model, tmp_path, formats=("keras", "tflite", "tflite-int8"),
        sample_inputs=held_out, representative_inputs=_images(32),
    )
    int8 = results["tflite-int8"]
    assert int8["full_integer"] is True
    assert int8["float_size_bytes"] == results["tflite"]["size_bytes"]
    assert int8["parity"]["num_examples"] == 16 and int8["parity"]["top1_agreement"] >= 0.8
    assert json.loads((tmp_path / "export.json").read_text())["tflite-int8"]["size_bytes"] > 0


def test_tflite_int8_needs_representative_inputs(tmp_path):
    with pytest.raises(ValueError, match="representative_inputs"):
        tlkit.export.export_model(tiny_model(), tmp_path, formats=("tflite-int8",))


def _dense_image_model():
    keras.utils.set_random_seed(0)
    body = keras.Sequential(
        [keras.Input((16, 16, 3)), keras.layers.Flatten(), keras.layers.Dense(128, name="fc")],
        name="mlp",
    )
    return tlkit.build_model(tlkit.backbones.from_keras(body), num_classes=3,
                             input_shape=(16, 16, 3), dropout=0.0)


@pytest.mark.slow  # over 5 CPU-seconds (tests/ timings, #31)
def test_savedmodel_int8_serves_int8_kernels_and_leaves_the_model_float(tmp_path):
    model = _dense_image_model()
    held_out = _images(16, seed=1)
    result = export_savedmodel_int8(model, tmp_path / "int8", sample_inputs=held_out)
    assert result["parity"]["top1_agreement"] >= 0.9 and result["parity"]["max_abs_diff"] < 0.05
    assert result["size_ratio"] > 2.0  # int8 kernels: the 98k-parameter Dense dominates
    assert all(layer.quantization_mode is None for layer in model._flatten_layers())
    served = tf.saved_model.load(str(tmp_path / "int8"))
    assert "int8" in {v.dtype.name for v in served.variables}


def test_savedmodel_int8_lists_convolutions_it_cannot_quantize(tmp_path):
    with pytest.raises(UnsupportedLayersError, match=r"block1_conv \(Conv2D\).*tflite-int8"):
        export_savedmodel_int8(tiny_model(), tmp_path / "int8")
    assert not list(tmp_path.iterdir())


def test_model_inputs_gives_predict_the_string_arrays_it_accepts():
    from tlkit.inference import model_inputs

    texts = keras.Input((), dtype="string")
    model = keras.Model(texts, keras.layers.Lambda(
        lambda s: keras.ops.ones((keras.ops.shape(s)[0], 1)))(texts))
    for raw in (np.array([b"a", b"b"], dtype=object), np.array(["a", "b"])):
        converted = model_inputs(raw)
        assert converted.dtype == object and list(converted) == ["a", "b"]
        assert model.predict(converted, verbose=0).shape == (2, 1)
    pixels = _images(2)
    assert model_inputs(pixels) is pixels


@pytest.mark.slow  # over ~3 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_tflite_dynamic_reports_its_int8_size_next_to_float32(tmp_path):
    model = _dense_image_model()  # int8 weights shrink the 98k-parameter Dense
    held_out = _images(16, seed=1)
    results = tlkit.export.export_model(model, tmp_path, formats=("tflite-dynamic",),
                                        sample_inputs=held_out)
    record = json.loads((tmp_path / "export.json").read_text())["tflite-dynamic"]
    assert not (tmp_path / "model.tflite").exists()  # the float32 size came from a temporary file
    assert record["float_size_bytes"] > 2 * record["size_bytes"]
    assert record["size_ratio"] == pytest.approx(record["float_size_bytes"] / record["size_bytes"])
    assert record["parity"]["top1_agreement"] >= 0.9 and record["parity"]["num_examples"] == 16
    assert results["tflite-dynamic"]["size_bytes"] == (tmp_path / "model_dynamic.tflite").stat().st_size


@pytest.mark.slow  # over ~3 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_tflite_predict_runs_large_inputs_in_slices_with_the_same_outputs(tmp_path):
    model = tiny_model()
    path = tlkit.export.export_tflite(model, tmp_path / "m.tflite")["path"]
    images = _images(10)
    whole = tlkit.export.tflite_predict(path, images, batch_size=10)
    sliced = tlkit.export.tflite_predict(path, images, batch_size=4)  # slices of 4, 4 and 2
    assert sliced.shape == (10, 3)
    np.testing.assert_allclose(sliced, whole, atol=1e-6)
    np.testing.assert_allclose(whole, model.predict(images, verbose=0), atol=1e-4)
