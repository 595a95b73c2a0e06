"""Builds a `LabeledData` from per-example columns and split indices (shared by the loaders)."""

from __future__ import annotations

import numpy as np

from tlkit.data.sources import _splits
from tlkit.data.sources.labeled_data import LabeledData, SplitSource


def assemble(
    x: np.ndarray,
    y: np.ndarray,
    split_indices: dict[str, np.ndarray],
    class_names,
    kind: str,
    map_fn=None,
    metadata: dict[str, np.ndarray] | None = None,
    skipped=(),
    name: str = "",
    unlabeled_x: np.ndarray | None = None,
    unlabeled_metadata: dict[str, np.ndarray] | None = None,
) -> LabeledData:
    """Args: `x`, `y` and `metadata` columns over all examples; `split_indices` picks each split;
    `unlabeled_x` (and its `unlabeled_metadata` columns): the unlabelled pool, mapped by the
    same `map_fn`."""
    y = np.asarray(y, dtype="int64")
    sources, labels, meta = {}, {}, {}
    for split, idx in split_indices.items():
        source = SplitSource(x[idx], y[idx], map_fn)
        sources[split] = source
        labels[split] = source.y
        if metadata:
            meta[split] = {k: np.asarray(v)[idx] for k, v in metadata.items()}
    datasets = {split: source.build() for split, source in sources.items()}
    data = LabeledData(
        **datasets,
        class_names=list(class_names),
        kind=kind,
        metadata=meta,
        labels=labels,
        skipped=list(skipped),
        sources=sources,
        name=name,
    )
    if unlabeled_x is None:
        return data
    return data.with_unlabeled(unlabeled_x, map_fn, unlabeled_metadata)


def split_pool(
    y: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """Stratified split of one pool of examples, or just a seeded shuffle when no fraction."""
    if val_fraction or test_fraction:
        return _splits.stratified_split(y, val_fraction, test_fraction, seed)
    _splits.check_fractions(val_fraction, test_fraction)
    return {"train": _splits.shuffled(len(y), seed)}


def layout_splits(
    split_labels: dict[str, np.ndarray], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """Split indices into the concatenation of `split_labels` (in its key order).

    A single pool (key `"all"`) is split by the fractions. With split folders, each present
    split is used as is (in a seeded order); a missing `val` / `test` is carved out of `train`
    when its fraction is positive.
    """
    offsets, start = {}, 0
    for split, y in split_labels.items():
        offsets[split] = np.arange(start, start + len(y), dtype="int64")
        start += len(y)
    if "all" in split_labels:
        return {
            k: offsets["all"][v]
            for k, v in split_pool(split_labels["all"], val_fraction, test_fraction, seed).items()
        }
    if "train" not in split_labels:
        return {s: idx[_splits.shuffled(len(idx), seed)] for s, idx in offsets.items()}
    carve_val = val_fraction if "val" not in split_labels else 0.0
    carve_test = test_fraction if "test" not in split_labels else 0.0
    out = {
        k: offsets["train"][v]
        for k, v in split_pool(split_labels["train"], carve_val, carve_test, seed).items()
    }
    for split in ("val", "test"):
        if split in offsets:
            out[split] = offsets[split][_splits.shuffled(len(offsets[split]), seed)]
    return out
