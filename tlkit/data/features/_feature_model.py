"""Calling "any feature model" on a batch: a Keras model, a Keras layer or a plain callable."""

from __future__ import annotations

import keras
import numpy as np


def call_feature_model(model, x) -> np.ndarray:
    """`model(x)` in inference mode, as a NumPy array.

    A `keras.Model` runs through `predict_on_batch` (its compiled predict function); a Keras
    layer is called with `training=False`; anything else is called as `model(x)`.
    """
    if isinstance(model, keras.Model):
        out = model.predict_on_batch(x)
    elif isinstance(model, keras.layers.Layer):
        out = model(x, training=False)
    elif callable(model):
        out = model(x)
    else:
        raise TypeError(f"Expected a callable feature model. Received: {type(model).__name__}")
    if isinstance(out, dict):
        raise TypeError(
            f"The feature model returned a dict with keys {sorted(out)}; wrap it so it returns "
            "one tensor, e.g. `lambda x: model(x)['pooled_output']`."
        )
    if isinstance(out, (list, tuple)):
        raise TypeError(
            f"The feature model returned {len(out)} outputs; wrap it so it returns one tensor."
        )
    return np.asarray(keras.ops.convert_to_numpy(out))


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of `x` (flattened per example) scaled to unit L2 norm."""
    x = np.asarray(x, dtype="float32").reshape(len(x), -1)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)
