"""Seeded, stratified train / val / test index splits."""

from __future__ import annotations

import numpy as np


def check_fractions(val_fraction: float, test_fraction: float = 0.0) -> None:
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= float(value) < 1.0:
            raise ValueError(f"Expected 0 <= `{name}` < 1. Received: {name}={value}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            "Expected `val_fraction + test_fraction` < 1 so that training data remains. "
            f"Received: val_fraction={val_fraction}, test_fraction={test_fraction}"
        )


def class_rng(seed: int, class_index: int) -> np.random.Generator:
    """One generator per class, so a class's order does not depend on the other classes."""
    return np.random.default_rng([int(seed), int(class_index)])


def stratified_split(
    labels: np.ndarray, val_fraction: float, test_fraction: float = 0.0, seed: int = 0
) -> dict[str, np.ndarray]:
    """Splits example indices per class; each split comes back in a seeded random order.

    A class with at least 2 examples gets at least 1 validation (and test) example when the
    fraction is positive, and always keeps at least 1 training example.

    Returns:
        `{"train": idx, "val": idx, "test": idx}`, only the splits with a positive fraction
        besides `"train"`.
    """
    check_fractions(val_fraction, test_fraction)
    labels = np.asarray(labels).reshape(-1)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[class_rng(seed, c).permutation(len(idx))]
        n = len(idx)
        n_val = _count(n, val_fraction)
        n_test = _count(n, test_fraction)
        while n - n_val - n_test < 1 and (n_val or n_test):
            if n_test >= n_val and n_test:
                n_test -= 1
            else:
                n_val -= 1
        parts["val"].append(idx[:n_val])
        parts["test"].append(idx[n_val : n_val + n_test])
        parts["train"].append(idx[n_val + n_test :])
    rng = np.random.default_rng(int(seed))
    out = {}
    for split, fraction in (("train", 1.0), ("val", val_fraction), ("test", test_fraction)):
        if fraction > 0:
            joined = np.concatenate(parts[split]) if parts[split] else np.zeros(0, "int64")
            out[split] = rng.permutation(joined.astype("int64"))
    return out


def shuffled(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(int(seed)).permutation(n).astype("int64")


def _count(n: int, fraction: float) -> int:
    if fraction <= 0:
        return 0
    k = int(round(n * fraction))
    return max(k, 1) if n >= 2 else 0
