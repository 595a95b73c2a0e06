"""`simulate`: rounds of labelling from a pool whose labels are known, for benchmarks.

Each round fits a classifier on the embeddings of the examples labelled so far, lets a
selection method pick the next examples from the rest of the pool (reading the classifier's
probabilities and the embeddings), "labels" them by revealing their known labels, and scores
the classifier on a test set. Nothing here knows the data set: the caller brings embeddings,
labels and the initial labelled subset (pair seeds by passing the same subset to every method).
"""

from __future__ import annotations

import time

import numpy as np

from tlkit.active.pool_view import PoolView
from tlkit.active.selection import select


def default_classifier():
    """A linear probe like `tlkit.fit_linear_probe` without validation data: multinomial
    logistic regression (L-BFGS) at the largest C of its grid, on L2-normalised features."""
    from sklearn.linear_model import LogisticRegression

    from tlkit.head_training import PROBE_CS

    return LogisticRegression(C=max(PROBE_CS), max_iter=1000)


def simulate(embeddings, labels, initial, budgets, method: str, test=None,
             classifier=default_classifier, num_classes: int | None = None,
             seed: int = 0) -> list[dict]:
    """Simulates labelling rounds with `method`; returns one record per state of the set.

    Args:
        embeddings: `(n, d)` features of the pool (e.g. cached backbone outputs).
        labels: `(n,)` the pool's known labels, revealed only for picked examples.
        initial: indices of the examples labelled before the first round.
        budgets: labelled-set sizes after each round, increasing (e.g. `[50, 150, 250]`).
        method: a selection method name (`tlkit.active.methods.METHODS`).
        test: optional `(embeddings, labels)` to score the classifier on after each round.
        classifier: a factory of scikit-learn style classifiers (`fit`, `predict_proba`,
            `classes_`); default `default_classifier`.
        num_classes: classes of the problem (default: `labels.max() + 1`).
        seed: seed of the method's random choices (round `r` uses `seed + r`).

    Returns:
        `[{"round": r, "labelled": size, "accuracy": test accuracy or None, "picked": indices
        picked in round r (empty for round 0), "select_s": seconds the selection took}]`,
        round 0 being the initial set.

    Example:
    ```python
    rounds = simulate(e_pool, y_pool, initial=first_10, budgets=[50, 150, 250],
                      method="typiclust", test=(e_test, y_test))
    ```
    """
    x = _unit(embeddings)
    y = np.asarray(labels, dtype="int64").reshape(-1)
    if len(x) != len(y):
        raise ValueError(f"embeddings ({len(x)}) and labels ({len(y)}) differ in length.")
    k = int(num_classes or y.max() + 1)
    chosen = np.asarray(initial, dtype="int64").reshape(-1)
    if len(np.unique(chosen)) != len(chosen):
        raise ValueError("`initial` repeats an index.")
    sizes = [int(b) for b in budgets]
    if any(b <= a for a, b in zip([len(chosen)] + sizes, sizes)):
        raise ValueError(f"Expected `budgets` increasing from the initial {len(chosen)} "
                         f"examples. Received: {sizes}")
    test_x = None if test is None else _unit(test[0])
    test_y = None if test is None else np.asarray(test[1], dtype="int64").reshape(-1)
    if len(np.unique(y[chosen])) < 2:
        raise ValueError("The initial labelled set needs examples of at least 2 classes.")
    from threadpoolctl import threadpool_limits

    from tlkit.head_training import PROBE_BLAS_THREADS

    records, picked, spent = [], [], 0.0
    for round_ in range(len(sizes) + 1):
        with threadpool_limits(PROBE_BLAS_THREADS):  # skinny L-BFGS products: 1 thread is faster
            model = classifier().fit(x[chosen], y[chosen])
        accuracy = None if test is None else float(np.mean(model.predict(test_x) == test_y))
        records.append({"round": round_, "labelled": len(chosen), "accuracy": accuracy,
                        "picked": picked, "select_s": spent})
        if round_ == len(sizes):
            break
        rest = np.setdiff1d(np.arange(len(x)), chosen)
        view = PoolView(x[rest], _probabilities(model, x[rest], k), x[chosen])
        start = time.perf_counter()
        selection = select(view, sizes[round_] - len(chosen), method, seed + round_)
        spent = time.perf_counter() - start
        picked = rest[selection.indices].tolist()
        chosen = np.concatenate([chosen, rest[selection.indices]])
    return records


def _probabilities(model, x, num_classes: int) -> np.ndarray:
    """`predict_proba` over all classes (a class absent from the labelled set gets 0)."""
    proba = model.predict_proba(x)
    out = np.zeros((len(x), num_classes))
    out[:, np.asarray(model.classes_, dtype="int64")] = proba
    return out


def _unit(x) -> np.ndarray:
    x = np.asarray(x, dtype="float32").reshape(len(x), -1)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
