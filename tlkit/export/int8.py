"""int8 exports: Keras' post-training `model.quantize("int8")` and full-integer int8 TFLite.

- `export_savedmodel_int8`: the serving SavedModel of a copy of the model with Keras' int8
  weights (Dense, EinsumDense, Embedding; inputs quantized on the fly): the int8 path for text
  models, whose string ops TFLite lacks. Keras can't quantize convolutions: a model whose
  kernels sit in such layers raises `UnsupportedLayersError` listing them (use
  `export_tflite_int8` for CNNs).
- `export_tflite_int8`: full-integer TFLite (int8 weights *and* activations) calibrated on a
  representative sample of the run's training inputs. The model goes through
  `keras.export.ExportArchive` and `TFLiteConverter.from_saved_model`, not
  `from_keras_model`, which fails on Keras 3 models (tensorflow#83754). When an op has no int8
  kernel, the conversion is retried with float fallback for those ops, and the result says so.

Both return the sizes of the int8 and float32 files and the parity check of the TFLite exports
(top-1 agreement and max |diff| on held-out inputs).
"""

from __future__ import annotations

import logging
import os
import tempfile

import keras
import numpy as np
import tensorflow as tf

from tlkit._io import atomic_path
from tlkit.export import formats as export_lib
from tlkit.inference import model_inputs
from tlkit.peft.errors import UnsupportedLayersError

logger = logging.getLogger("tlkit")


def _parity(expected, got) -> dict:
    expected, got = np.asarray(expected, dtype="float32"), np.asarray(got, dtype="float32")
    return {
        "max_abs_diff": float(np.max(np.abs(expected - got))),
        "top1_agreement": float(np.mean(expected.argmax(-1) == got.argmax(-1))),
        "num_examples": int(len(expected)),
    }


def _unquantizable_kernels(model) -> list[str]:
    """Layers with a kernel that Keras' `quantize` does not handle (convolutions, ...)."""
    from tlkit.peft.quantize import unsupported_for_quantization

    heavy = [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if getattr(layer, "_kernel", None) is not None or hasattr(layer, "depthwise_kernel")
    ]
    return unsupported_for_quantization(heavy)


def _folder_size(path) -> int:
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(path)
        for name in names
    )


def _served_probabilities(path, model, inputs):
    served = tf.saved_model.load(os.fspath(path))
    if export_lib._is_text(model):
        return served.serve(tf.constant(list(model_inputs(inputs))))["probabilities"].numpy()
    return served.serve_pixels(tf.constant(inputs, tf.float32))["probabilities"].numpy()


def export_savedmodel_int8(model, path, sample_inputs=None, float_size_bytes=None) -> dict:
    """Writes the serving SavedModel of an int8 copy of `model` (Keras `quantize("int8")`).

    The same endpoints as `tlkit.export.export_savedmodel` (raw images or strings in), with
    int8 kernels for the Dense, EinsumDense and Embedding layers; `model` itself is not changed.
    (A quantized `.keras` file is not offered: Keras 3.15 restores the int8 dtype policy only
    for layers whose config carries it, not for sublayers that composite layers such as
    `MultiHeadAttention` or tlkit's head create, so such a file would not load back.)

    Args:
        model: a trained float model.
        path: the SavedModel folder to write.
        sample_inputs: held-out raw inputs (pixels, or strings for a text model) for the parity
            check of the written SavedModel against the float Keras model.
        float_size_bytes: the float32 SavedModel's size to compare with; default `None`: one is
            written to a temporary folder for the report.

    Returns:
        `{"path", "size_bytes", "float_size_bytes", "size_ratio", "parity"}` (`parity` only
        with `sample_inputs`).

    Raises:
        UnsupportedLayersError: the model has kernels Keras can't quantize; lists the layers.
    """
    from tlkit.peft.quantize import _quantizable

    unsupported = _unquantizable_kernels(model)
    if unsupported:
        shown = ", ".join(unsupported[:8]) + (" ..." if len(unsupported) > 8 else "")
        raise UnsupportedLayersError(
            f"Keras {keras.__version__} cannot quantize {len(unsupported)} layer(s) of this model "
            f"to int8: {shown}. Export full-integer TFLite instead (format 'tflite-int8')."
        )
    with tempfile.TemporaryDirectory() as tmp:
        model.save(os.path.join(tmp, "trained.keras"))  # a copy: `model` stays float
        copy = keras.models.load_model(os.path.join(tmp, "trained.keras"), compile=False)
        if float_size_bytes is None:
            float_size_bytes = _folder_size(
                export_lib.export_savedmodel(copy, os.path.join(tmp, "float"))
            )
    copy.quantize("int8", filters=_quantizable)
    export_lib.export_savedmodel(copy, path)
    size = _folder_size(path)
    result = {
        "path": os.fspath(path),
        "size_bytes": size,
        "float_size_bytes": int(float_size_bytes),
        "size_ratio": float_size_bytes / size,
    }
    if sample_inputs is not None:
        result["parity"] = _parity(
            model.predict(model_inputs(sample_inputs), verbose=0),
            _served_probabilities(path, model, sample_inputs),
        )
    return result


def _convert_int8(saved_model_dir, representative, strict: bool):
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.target_spec.supported_ops = ops if strict else ops + [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


def export_tflite_int8(model, path, representative_inputs, sample_inputs=None,
                       num_calibration: int = 100, float_size_bytes=None) -> dict:
    """Converts an image (or feature) model to full-integer int8 TFLite, with a parity check.

    Inputs and outputs stay float32 (quantized / dequantized at the edges), so the file is a
    drop-in replacement for the float TFLite model.

    Args:
        model: a Keras model with a float input of static shape.
        path: the `.tflite` file to write.
        representative_inputs: raw training inputs `(n, ...)` to calibrate activation ranges on
            (the first `num_calibration`, one at a time, as the converter expects).
        sample_inputs: held-out inputs for the parity check.
        num_calibration: calibration examples. Default 100 (more did not raise the top-1
            agreement: docs/benchmarks/peft.md).
        float_size_bytes: the float32 TFLite size to compare with; default `None`: converted
            here for the report.

    Returns:
        `{"path", "size_bytes", "float_size_bytes", "size_ratio", "full_integer", "parity"}`
        (`full_integer` False when some ops kept float kernels).
    """
    if export_lib._is_text(model):
        raise ValueError(
            "TFLite export supports image and feature models; this model takes strings "
            "(tokenization is not a TFLite builtin). Use the 'savedmodel-int8' format."
        )
    calibration = np.asarray(representative_inputs, dtype="float32")[: int(num_calibration)]
    if len(calibration) == 0:
        raise ValueError("Expected some `representative_inputs` to calibrate int8 ranges on.")
    shape = export_lib.static_input_shape(model)

    def representative():
        for example in calibration:
            yield [example[None]]

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serve", lambda x: model(x, training=False), [tf.TensorSpec((None, *shape), tf.float32)]
    )
    full_integer = True
    with tempfile.TemporaryDirectory() as tmp:
        archive.write_out(tmp, verbose=False)
        try:
            flatbuffer = _convert_int8(tmp, representative, strict=True)
        except Exception as error:  # noqa: BLE001 - the converter raises several types
            # Some op lacks an int8 kernel: keep those ops float, say so in the record.
            logger.warning("full-integer int8 conversion failed (%s); retrying with float "
                           "fallback for unsupported ops", str(error).splitlines()[0][:200])
            flatbuffer = _convert_int8(tmp, representative, strict=False)
            full_integer = False
    with atomic_path(path) as tmp_file, open(tmp_file, "wb") as f:
        f.write(flatbuffer)
    if float_size_bytes is None:
        with tempfile.TemporaryDirectory() as tmp:
            float_size_bytes = export_lib.export_tflite(model, os.path.join(tmp, "f.tflite"))[
                "size_bytes"
            ]
    result = {
        "path": os.fspath(path),
        "size_bytes": len(flatbuffer),
        "float_size_bytes": int(float_size_bytes),
        "size_ratio": float_size_bytes / len(flatbuffer),
        "full_integer": full_integer,
    }
    if sample_inputs is not None:
        result["parity"] = export_lib.tflite_parity(model, path, sample_inputs)
    return result
