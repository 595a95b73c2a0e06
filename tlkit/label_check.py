"""Class labels checked against the model's classes before (and while) training.

A label outside `[0, num_classes)` makes TensorFlow fail deep inside the loss with an
`InvalidArgumentError` and a graph dump. `check_labels` catches it in arrays before training;
`label_error` turns TensorFlow's message into one `LabelError` line when the labels come in a
`tf.data.Dataset` (which is only read while training).

Example:
```python
check_labels(np.array([0, 2, 7]), num_classes=3)   # LabelError: ... label 7 ...
```
"""

from __future__ import annotations

import re

import numpy as np

_TF_MESSAGE = re.compile(r"label value of (-?\d+) which is outside the valid range of \[0, (\d+)\)")


class LabelError(ValueError):
    """A class label outside the model's classes (the message names the label and the range)."""


def check_labels(y, num_classes: int, where: str = "training labels") -> None:
    """Raises `LabelError` when integer labels `y` fall outside `[0, num_classes)`, are not
    whole numbers, or are NaN. One-hot / multi-label arrays (2-D) are left alone.

    Args:
        y: labels (array-like).
        num_classes: the model's output units.
        where: what the labels are, for the message.
    """
    y = np.asarray(y)
    if y.ndim > 1 and y.shape[-1] > 1:
        return
    y = y.reshape(-1)
    if y.size == 0:
        raise LabelError(f"{where}: no examples (an empty data set)")
    if not np.issubdtype(y.dtype, np.number):
        return
    if np.issubdtype(y.dtype, np.floating):
        bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
        if bad.size:
            raise LabelError(f"{where}: label {float(y[bad[0]])!r} at index {bad[0]} is not a class "
                             f"index (expected whole numbers 0..{num_classes - 1})")
    bad = np.flatnonzero((y < 0) | (y >= num_classes))
    if bad.size:
        raise LabelError(
            f"{where}: label {y[bad[0]]:g} at index {bad[0]} is outside the model's "
            f"{num_classes} classes (expected 0..{num_classes - 1}; {bad.size} such label(s)); "
            "fix the labels, or build the model with as many classes as the data has")


def label_error(err, num_classes: int, where: str = "training labels") -> LabelError | None:
    """The `LabelError` for TensorFlow's out-of-range label error `err`, else `None`."""
    found = _TF_MESSAGE.search(str(err))
    if found is None:
        return None
    return LabelError(
        f"{where}: label {found.group(1)} is outside the model's {num_classes} classes "
        f"(expected 0..{num_classes - 1}); fix the labels, or build the model with as many "
        "classes as the data has")
