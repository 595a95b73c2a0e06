"""Frozen-feature caching: run a feature model over a dataset once, keep `(features, y)`.

While a backbone is frozen its outputs never change, so computing them once (in memory, or in
`.npy` files on disk) and training only the head on them is much faster than running the
backbone every epoch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid

import keras
import numpy as np
import tensorflow as tf

from tlkit._progress import progbar
from tlkit.data.features._feature_model import call_feature_model

logger = logging.getLogger(__name__)

_FORMAT_VERSION = 1


def extract_features(
    feature_model,
    ds: tf.data.Dataset,
    batch_size: int = 64,
    cache_dir=None,
    progress: bool = True,
    cache_name: str = "features",
    batched: bool = False,
) -> tf.data.Dataset:
    """Computes `feature_model(x)` for every example once; returns an unbatched `(features, y)`.

    Args:
        feature_model: any callable mapping a batch of `x` to a batch of features (a Keras
            model runs through `predict_on_batch`, a Keras layer with `training=False`).
        ds: unbatched `(x, y)` dataset in a fixed order (e.g. `LabeledData.train`), or a
            batched one with `batched=True`.
        batch_size: batch size for the feature model.
        cache_dir: optional folder; features and labels are saved there as `.npy` files
            (written to a temporary name, then renamed, so a crash never leaves a half file)
            and read back on the next call instead of recomputed. The cache is recomputed when
            the number of examples or, for Keras models, the weights differ.
        progress: show a `keras.utils.Progbar` while extracting.
        cache_name: file name stem inside `cache_dir` (one per split / model / data set).
        batched: `ds` is already batched.

    Returns:
        An unbatched `tf.data.Dataset` of `(features, y)` (float32 features, in the order of
        `ds`); batch it with `tlkit.data.batch`.

    Example:
    ```python
    feats = tlkit.data.extract_features(backbone_model, data.train, cache_dir="runs/cache",
                                        cache_name="train")
    head.fit(tlkit.data.batch(feats, 64, training=True, seed=0), epochs=20)
    ```
    """
    features, labels = extract_feature_arrays(
        feature_model,
        ds,
        batch_size=batch_size,
        cache_dir=cache_dir,
        progress=progress,
        cache_name=cache_name,
        batched=batched,
    )
    return tf.data.Dataset.from_tensor_slices((features, labels))


def extract_feature_arrays(
    feature_model,
    ds: tf.data.Dataset,
    batch_size: int = 64,
    cache_dir=None,
    progress: bool = True,
    cache_name: str = "features",
    batched: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Like `extract_features`, but returns the `(features, labels)` NumPy arrays.

    Example:
    ```python
    features, labels = tlkit.data.extract_feature_arrays(backbone_model, data.val)
    ```
    """
    if int(batch_size) < 1:
        raise ValueError(f"Expected `batch_size` >= 1. Received: batch_size={batch_size}")
    batches = ds if batched else ds.batch(int(batch_size))
    fingerprint = weights_fingerprint(feature_model)
    count = _num_examples(ds, batched)
    paths = _cache_paths(cache_dir, cache_name) if cache_dir is not None else None
    if paths is not None:
        cached = _load(paths, fingerprint, count)
        if cached is not None:
            logger.info("Loaded cached features from %s", paths["features"])
            return cached
    features, labels = _compute(feature_model, batches, progress)
    if paths is not None:
        _save(paths, features, labels, fingerprint, feature_model)
        logger.info("Cached %d feature vectors in %s", len(features), paths["features"])
    return features, labels


def weights_fingerprint(model) -> str | None:
    """SHA-1 over a Keras model's / layer's weights (`None` for other callables)."""
    weights = getattr(model, "weights", None)
    if not isinstance(model, keras.layers.Layer) or weights is None:
        return None
    digest = hashlib.sha1()
    for variable in weights:
        # `Variable.numpy()`, not `np.asarray(variable)`: a variable's `__array__` takes no
        # `copy` keyword (numpy 2 warns on every call, #36).
        value = np.asarray(variable.numpy())
        digest.update(str(value.shape).encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


def _compute(feature_model, batches: tf.data.Dataset, progress: bool):
    card = int(batches.cardinality())
    bar = progbar(card if card >= 0 else None, progress, unit_name="batch")
    features, labels = [], []
    for step, element in enumerate(batches.prefetch(tf.data.AUTOTUNE), start=1):
        if not (isinstance(element, tuple) and len(element) == 2):
            raise ValueError(
                "extract_features needs a dataset of (x, y) pairs; received elements of "
                f"spec {batches.element_spec}."
            )
        x, y = element
        out = call_feature_model(feature_model, x)
        if len(out) != len(y):
            raise ValueError(
                f"The feature model returned {len(out)} rows for a batch of {len(y)}; it must "
                "map a batch of inputs to one feature vector (or map) per input."
            )
        features.append(out.astype("float32", copy=False))
        labels.append(np.asarray(y))
        bar.update(step)
    if card < 0 and features:
        bar.update(len(features), finalize=True)
    if not features:
        raise ValueError("extract_features got an empty dataset.")
    return np.concatenate(features), np.concatenate(labels)


def _num_examples(ds: tf.data.Dataset, batched: bool) -> int | None:
    if batched:
        return None
    card = int(ds.cardinality())
    return card if card >= 0 else None


def _cache_paths(cache_dir, cache_name: str) -> dict[str, str]:
    if not cache_name or os.sep in cache_name or cache_name.startswith("."):
        raise ValueError(
            f"Expected `cache_name` as a plain file name stem. Received: {cache_name!r}"
        )
    folder = os.fspath(cache_dir)
    os.makedirs(folder, exist_ok=True)
    stem = os.path.join(folder, cache_name)
    return {
        "features": f"{stem}.features.npy",
        "labels": f"{stem}.labels.npy",
        "meta": f"{stem}.json",
    }


def _load(paths, fingerprint, count):
    """The cached `(features, labels)`, or `None` when absent, stale or damaged (a damaged
    cache is recomputed, with a warning, never a failure)."""
    if not all(os.path.isfile(p) for p in paths.values()):
        return None
    try:
        return _read(paths, fingerprint, count)
    except (OSError, ValueError, EOFError, KeyError, AttributeError) as err:
        logger.warning("Recomputing cached features %s: the cache is damaged (%s)",
                       paths["features"], " ".join(str(err).split())[:120])
        return None


def _read(paths, fingerprint, count):
    with open(paths["meta"], encoding="utf-8") as f:
        meta = json.load(f)
    if not isinstance(meta, dict):
        raise ValueError(f"{paths['meta']} is not a JSON object")
    reasons = []
    if meta.get("format") != _FORMAT_VERSION:
        reasons.append("cache format changed")
    if fingerprint is not None and meta.get("weights_fingerprint") != fingerprint:
        reasons.append("the feature model's weights differ")
    if count is not None and meta.get("num_examples") != count:
        reasons.append(f"{count} examples now, {meta.get('num_examples')} cached")
    if reasons:
        logger.warning("Recomputing cached features %s: %s", paths["features"], "; ".join(reasons))
        return None
    features = np.load(paths["features"], allow_pickle=False)
    labels = np.load(paths["labels"], allow_pickle=False)
    if len(features) != len(labels) or len(features) != meta.get("num_examples"):
        logger.warning("Recomputing cached features %s: files disagree", paths["features"])
        return None
    return features, labels


def _save(paths, features, labels, fingerprint, model) -> None:
    if os.path.exists(paths["meta"]):  # the old cache stops counting as complete first
        os.remove(paths["meta"])
    _atomic_write(paths["features"], lambda f: np.save(f, features))
    _atomic_write(paths["labels"], lambda f: np.save(f, labels))
    meta = {
        "format": _FORMAT_VERSION,
        "num_examples": int(len(features)),
        "feature_shape": list(features.shape[1:]),
        "weights_fingerprint": fingerprint,
        "model": getattr(model, "name", type(model).__name__),
    }
    # Written last: its presence marks a complete cache.
    _atomic_write(paths["meta"], lambda f: f.write(json.dumps(meta, indent=2).encode()))


def _atomic_write(path: str, write) -> None:
    tmp = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
