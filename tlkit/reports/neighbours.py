"""Neighbour votes: the labels of an example's nearest training examples in the model's feature
space (the head's input), the evidence behind a "suspected wrong label" in the top losses."""

from __future__ import annotations

import numpy as np

# k of the k nearest training neighbours that vote, and the share of them that must carry the
# predicted class before a confident top loss is flagged as a suspected wrong label (a share, so
# a bank smaller than k still works). Chosen on planted label noise: docs/benchmarks/other.md
# (`benchmarks/label_noise.py`).
NEIGHBOURS = 10
NEIGHBOUR_AGREEMENT = 0.8

# At most this many training examples (a seeded random sample) are embedded as the neighbour
# bank: the cost is one forward pass of the backbone each.
MAX_NEIGHBOUR_BANK = 5000


def agrees(votes, cls) -> bool:
    """Whether at least `NEIGHBOUR_AGREEMENT` of the neighbours in `votes` (one row of
    `neighbour_votes`) carry class `cls`."""
    total = int(np.sum(votes))
    return total > 0 and int(votes[cls]) >= NEIGHBOUR_AGREEMENT * total


def neighbour_votes(
    train_features,
    train_labels,
    query_features,
    num_classes: int | None = None,
    k: int = NEIGHBOURS,
    max_train: int = MAX_NEIGHBOUR_BANK,
    seed: int = 0,
) -> np.ndarray:
    """Per query, how many of its `k` nearest training examples carry each class.

    Distances are cosine distances (features L2-normalized, scikit-learn `NearestNeighbors`).

    Args:
        train_features: `(n, d)` features of the training examples (the bank).
        train_labels: their `(n,)` integer labels.
        query_features: `(q, d)` features of the examples to vote on.
        num_classes: number of classes (default: `max(train_labels) + 1`).
        k: neighbours per query (default `NEIGHBOURS`, 10); fewer when the bank is smaller.
        max_train: at most this many training examples, a seeded random sample (default
            `MAX_NEIGHBOUR_BANK`, 5,000).
        seed: seed of that sample.

    Returns:
        An int array `(q, num_classes)` whose rows sum to `min(k, bank size)`.

    Example:
    ```python
    votes = neighbour_votes(train_x, train_y, query_x, num_classes=3)
    votes[0]  # e.g. array([0, 8, 2]): 8 of query 0's 10 neighbours are of class 1
    ```
    """
    from sklearn.neighbors import NearestNeighbors

    train = _unit_rows(train_features)
    labels = np.asarray(train_labels, dtype="int64").reshape(-1)
    queries = _unit_rows(query_features)
    if len(train) != len(labels):
        raise ValueError(
            f"Expected one label per training example. Received: {len(train)} features, "
            f"{len(labels)} labels"
        )
    if not len(train):
        raise ValueError("Expected at least one training example to take neighbours from.")
    if int(k) < 1:
        raise ValueError(f"Expected k >= 1. Received: k={k}")
    num_classes = int(num_classes if num_classes is not None else labels.max() + 1)
    if len(train) > int(max_train):
        keep = np.sort(np.random.default_rng(seed).choice(len(train), int(max_train), False))
        train, labels = train[keep], labels[keep]
    if not len(queries):
        return np.zeros((0, num_classes), dtype="int64")
    k = min(int(k), len(train))
    _, nearest = NearestNeighbors(n_neighbors=k).fit(train).kneighbors(queries)
    votes = np.zeros((len(queries), num_classes), dtype="int64")
    np.add.at(votes, (np.arange(len(queries))[:, None], labels[nearest]), 1)
    return votes


def model_neighbour_votes(
    model,
    data,
    split: str,
    indices,
    k: int = NEIGHBOURS,
    max_train: int = MAX_NEIGHBOUR_BANK,
    batch_size: int = 64,
    seed: int = 0,
):
    """Neighbour votes of the examples at `indices` of `split`, in `model`'s feature space
    (the input of its tlkit head), against up to `max_train` examples of `data`'s train split.

    Args:
        model: a model from `tlkit.build_model` (with a tlkit head).
        data: a `tlkit.data.LabeledData` with a train split.
        split: the split of the queried examples; on `"train"` the queried examples are left
            out of the bank (no example votes for itself).
        indices: positions in `split`.
        k, max_train, seed: see `neighbour_votes`.
        batch_size: batch size of the feature pass.

    Returns:
        `(len(indices), num_classes)` votes, or `None` when there is no evidence to compute: the
        model has no tlkit head or `data` has no training examples.

    Example:
    ```python
    votes = model_neighbour_votes(model, data, "test", [3, 17])
    ```
    """
    from tlkit import heads as heads_lib

    if heads_lib.find_head(model) is None or "train" not in data.splits:
        return None
    indices = np.asarray(indices, dtype="int64").reshape(-1)
    labels = np.asarray(data.split_labels("train"), dtype="int64")
    bank = np.arange(len(labels))
    if split == "train":
        bank = np.setdiff1d(bank, indices)
    if len(bank) > int(max_train):
        bank = np.sort(np.random.default_rng(seed).choice(bank, int(max_train), False))
    if not len(bank):
        return None
    from tlkit.head_training import feature_model

    extractor = feature_model(model)
    return neighbour_votes(
        _embed(extractor, data, "train", bank, batch_size),
        labels[bank],
        _embed(extractor, data, split, indices, batch_size),
        num_classes=len(data.class_names),
        k=k,
        max_train=max_train,
        seed=seed,
    )


def _embed(extractor, data, split, indices, batch_size) -> np.ndarray:
    """`extractor`'s features of the examples at `indices` of `split`, in that order."""
    import tlkit.data as tdata

    if not len(indices):
        return np.zeros((0, int(extractor.output.shape[-1])), dtype="float32")
    order = np.argsort(indices, kind="stable")
    # Sorted indices: `select` keeps them in this order whether it picks or filters.
    picked = data.select(split, indices[order]).split(split)
    ds = tdata.batch(picked, batch_size, training=False).map(lambda x, y: x)
    features = np.asarray(extractor.predict(ds, verbose=0), dtype="float32")
    out = np.empty_like(features)
    out[order] = features
    return out


def _unit_rows(x) -> np.ndarray:
    x = np.asarray(x, dtype="float32")
    x = x.reshape(len(x), -1)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
