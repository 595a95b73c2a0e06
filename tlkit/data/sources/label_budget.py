"""`subsample`: a balanced label budget (e.g. 5, 10 or 50 examples per class)."""

from __future__ import annotations

import numpy as np

from tlkit.data.sources import _splits
from tlkit.data.sources.labeled_data import LabeledData


def subsample(
    labeled: LabeledData,
    per_class: int,
    seed: int = 0,
    split: str = "train",
    allow_fewer: bool = False,
) -> LabeledData:
    """Keeps `per_class` examples of every class in one split; the other splits are untouched.

    The pick is nested across budgets: with the same seed, the 5-per-class subset is inside
    the 10-per-class subset, which is inside the 50-per-class one (each class's examples are
    ranked once by a generator seeded with `(seed, class)`), so label-budget curves compare
    like with like.

    Args:
        labeled: the data.
        per_class: examples to keep per class (>= 1).
        seed: seed of the pick.
        split: split to subsample.
        allow_fewer: keep all examples of a class that has fewer than `per_class` instead of
            raising.

    Returns:
        A new `LabeledData` whose `split` has at most `per_class` examples of each class, in a
        seeded random order.

    Raises:
        ValueError: `per_class` < 1, or a class has fewer examples (unless `allow_fewer`).

    Example:
    ```python
    for budget in (5, 10, 50):
        small = tlkit.data.subsample(data, per_class=budget, seed=0)
    ```
    """
    per_class = int(per_class)
    if per_class < 1:
        raise ValueError(f"Expected `per_class` >= 1. Received: per_class={per_class}")
    labels = labeled.split_labels(split)
    counts = np.bincount(labels, minlength=labeled.num_classes)
    short = {labeled.class_names[c]: int(n) for c, n in enumerate(counts) if n < per_class}
    if short and not allow_fewer:
        raise ValueError(
            f"Split {split!r} has fewer than per_class={per_class} examples for class(es) "
            f"{short}. Lower `per_class` or pass allow_fewer=True."
        )
    picked = []
    for c in range(labeled.num_classes):
        idx = np.flatnonzero(labels == c)
        order = _splits.class_rng(seed, c).permutation(len(idx))
        picked.append(idx[order[:per_class]])
    indices = np.concatenate(picked)
    indices = indices[np.random.default_rng(int(seed)).permutation(len(indices))]
    return labeled.select(split, indices)
