"""The one check every report piece makes on labels and predicted probabilities."""

from __future__ import annotations

import numpy as np


def as_predictions(y_true, probs):
    """`(y_true, probs)` as int64 `(n,)` and `(n, k)` arrays; raises `ValueError` on a mismatch."""
    y_true = np.asarray(y_true).astype("int64").reshape(-1)
    probs = np.asarray(probs)
    if probs.ndim != 2 or len(probs) != len(y_true):
        raise ValueError(
            f"Expected probs of shape (n, num_classes) with n={len(y_true)}. "
            f"Received: probs.shape={probs.shape}"
        )
    return y_true, probs
