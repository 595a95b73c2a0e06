"""ONNX export through Keras's own exporter (`model.export(format="onnx")`), with the same
parity check as TFLite (max abs difference and top-1 agreement with the Keras model, here
run with ONNX Runtime).

Needs the `onnx` extra (tf2onnx, onnx, onnxruntime): `pip install "tlkit[onnx]"`. A missing
one fails with that line before anything is converted or written.

Example:
```python
from tlkit.export import export_onnx

record = export_onnx(model, "export/model.onnx", sample_inputs=images[:64])
record["parity"]  # {"max_abs_diff": ..., "top1_agreement": 1.0, "num_examples": 64}
```
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import tensorflow as tf

ONNX_MODULES = ("tf2onnx", "onnx", "onnxruntime")
"""What the ONNX export imports: all three in the `onnx` extra (tlkit/_extras.py)."""
ONNX_INPUT_NAME = "inputs"
"""The name of the exported model's input (float pixels in `[0, 255]`, or features)."""


def _require_onnx():
    """Raises `MissingExtraError` (one line naming `tlkit[onnx]`) unless tf2onnx, onnx and
    onnxruntime are all installed; imports nothing heavy when they are missing."""
    from tlkit._extras import MissingExtraError, message, missing

    absent = missing(ONNX_MODULES)
    if absent:
        raise MissingExtraError(message(absent[0], "ONNX export"))


def export_onnx(model, path, sample_inputs=None, opset: int | None = None) -> dict:
    """Writes `model` as an ONNX file with Keras's exporter (`model.export(format="onnx")`,
    tf2onnx underneath), and checks it with ONNX Runtime against the Keras model.

    The ONNX model takes what the Keras model takes (float32 `[batch, h, w, c]` pixels in
    `[0, 255]` for image models: the backbone's resize and normalization are inside) under
    the input name `ONNX_INPUT_NAME`, with a dynamic batch dimension, and returns the class
    probabilities.

    Args:
        model: a Keras model with a float input (image or feature model).
        path: the `.onnx` file to write (replaced atomically).
        sample_inputs: optional raw inputs for the parity check.
        opset: the ONNX opset (default: tf2onnx's).

    Returns:
        `{"path", "size_bytes", "parity": {"max_abs_diff", "top1_agreement", "num_examples"}}`
        (`parity` only with `sample_inputs`).

    Raises:
        MissingExtraError: tf2onnx, onnx or onnxruntime is not installed (checked first).
        ValueError: a text model (its tokenizer's string ops have no ONNX equivalent).

    Example:
    ```python
    export_onnx(model, "model.onnx", sample_inputs=pixels)
    session = onnxruntime.InferenceSession("model.onnx")
    probs = session.run(None, {"inputs": pixels})[0]
    ```
    """
    from tlkit._io import atomic_path

    _require_onnx()
    if model.inputs[0].dtype == "string":
        raise ValueError(
            "ONNX export supports image and feature models; this model takes strings "
            "(its tokenizer has no ONNX equivalent). Use the 'savedmodel' format."
        )
    spec = tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.float32, name=ONNX_INPUT_NAME)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        # Keras's tf2onnx patch for NumPy 2 tests `hasattr(np, "object")`: NumPy's FutureWarning.
        warnings.filterwarnings("ignore", message=".*np.object.*", category=FutureWarning)
        model.export(tmp, format="onnx", input_signature=[spec], opset_version=opset,
                     verbose=False)
    result = {"path": os.fspath(path), "size_bytes": os.path.getsize(path)}
    if sample_inputs is not None:
        result["parity"] = onnx_parity(model, path, sample_inputs)
    return result


def onnx_predict(onnx_path, inputs, batch_size: int = 64) -> np.ndarray:
    """Runs an ONNX model on `inputs` with ONNX Runtime (CPU), `batch_size` at a time."""
    _require_onnx()
    import onnxruntime

    session = onnxruntime.InferenceSession(os.fspath(onnx_path),
                                           providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    inputs = np.asarray(inputs, dtype="float32")
    return np.concatenate([
        session.run(None, {name: inputs[start:start + int(batch_size)]})[0]
        for start in range(0, len(inputs), int(batch_size))
    ])


def onnx_parity(model, onnx_path, inputs) -> dict:
    """Compares ONNX Runtime and Keras outputs: `{max_abs_diff, top1_agreement, num_examples}`
    (the TFLite check's figures, `tlkit.export.tflite_parity`)."""
    inputs = np.asarray(inputs, dtype="float32")
    expected = np.asarray(model.predict(inputs, batch_size=64, verbose=0), dtype="float32")
    got = onnx_predict(onnx_path, inputs).astype("float32")
    return {
        "max_abs_diff": float(np.max(np.abs(expected - got))),
        "top1_agreement": float(np.mean(expected.argmax(-1) == got.argmax(-1))),
        "num_examples": int(len(inputs)),
    }
