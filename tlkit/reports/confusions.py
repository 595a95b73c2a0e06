"""Most-confused pairs of a confusion matrix (fastai's `ClassificationInterpretation.most_confused`)."""

from __future__ import annotations

import numpy as np


def most_confused(matrix, class_names, top: int = 10, min_count: int = 1) -> list[dict]:
    """The off-diagonal cells of a confusion matrix with the most examples, largest first.

    Args:
        matrix: `(k, k)` counts, rows = true class, columns = predicted class.
        class_names: the `k` class names.
        top: at most this many pairs (default 10).
        min_count: leave out pairs with fewer examples (default 1).

    Returns:
        `[{"true", "predicted", "count", "share"}]`; `share` is the fraction of the true class
        predicted as `predicted`. Ties keep the matrix order (true class, then predicted).

    Example:
    ```python
    most_confused([[5, 2], [0, 3]], ["cat", "dog"])
    # [{"true": "cat", "predicted": "dog", "count": 2, "share": 0.2857...}]
    ```
    """
    matrix = np.asarray(matrix, dtype="int64")
    if matrix.ndim != 2 or matrix.shape != (len(class_names), len(class_names)):
        raise ValueError(
            f"Expected a ({len(class_names)}, {len(class_names)}) confusion matrix. "
            f"Received: shape {matrix.shape}"
        )
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    rows, cols = np.nonzero(off >= max(int(min_count), 1))
    counts = off[rows, cols]
    order = np.argsort(-counts, kind="stable")[: max(int(top), 0)]
    totals = matrix.sum(axis=1)
    return [
        {
            "true": str(class_names[rows[i]]),
            "predicted": str(class_names[cols[i]]),
            "count": int(counts[i]),
            "share": float(counts[i] / totals[rows[i]]),
        }
        for i in order
    ]
