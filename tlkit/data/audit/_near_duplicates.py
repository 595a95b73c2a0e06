"""Near-duplicate search for `tlkit.data.audit`: cosine similarity of normalized embeddings.

Every audited example is embedded, and all pairs at or above the threshold are found by
`_similar_pairs.similar_pairs` (a faiss index, exact re-check), not by an N x N product.
"""

from __future__ import annotations

import logging

import numpy as np
import tensorflow as tf

from tlkit.data.audit._audit_sources import leaks
from tlkit.data.audit._similar_pairs import similar_pairs
from tlkit.data.features._feature_model import call_feature_model, l2_normalize
from tlkit.data.features.feature_cache import weights_fingerprint
from tlkit.data.features.feature_shards import extract_feature_shards

logger = logging.getLogger(__name__)

_MAX_NEAR_PAIRS = 10_000


def embed_size(model, embed_image_size, dominant_size):
    if embed_image_size is not None:
        size = embed_image_size
        return (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
    shape = _model_input_shape(model)
    if shape is not None and len(shape) == 4 and shape[1] and shape[2]:
        return int(shape[1]), int(shape[2])
    return tuple(dominant_size) if dominant_size else None


def _model_input_shape(model):
    try:
        shape = model.input_shape
    except (AttributeError, ValueError):
        return None
    return (
        tuple(shape)
        if isinstance(shape, (tuple, list)) and shape and not isinstance(shape[0], (tuple, list))
        else None
    )


def model_channels(model) -> int:
    shape = _model_input_shape(model)
    if shape is not None and len(shape) == 4 and shape[-1] in (1, 3):
        return int(shape[-1])
    return 3


def _to_image(value, size, channels) -> np.ndarray:
    array = np.asarray(value, dtype="float32")
    if array.ndim == 2:
        array = array[..., np.newaxis]
    if array.shape[-1] == 4 or array.shape[-1] == 2:
        array = array[..., :-1]
    if array.shape[-1] == 1 and channels == 3:
        array = np.repeat(array, 3, axis=-1)
    elif array.shape[-1] == 3 and channels == 1:
        array = array @ np.asarray([0.2989, 0.5870, 0.1140], "float32")[:, None]
    if size is not None and tuple(array.shape[:2]) != tuple(size):
        array = tf.image.resize(array, size).numpy()
    return array


def near_duplicates(
    source,
    limit,
    items,
    group_of,
    model,
    *,
    threshold,
    size,
    channels,
    batch_size,
    notes,
    cache_dir=None,
    worker=None,
) -> list[dict]:
    """Pairs of examples whose embeddings have cosine >= `threshold` (exact duplicates aside).

    Args:
        source: the audit source; iterated again (same examples) for decoded values.
        limit: per-split sample sizes, or `None`.
        items: the audit's items, in iteration order.
        group_of: item index → exact-duplicate group, to skip pairs already reported.
        model: the feature model.
        threshold: cosine similarity from which a pair is reported.
        size: `(height, width)` images are resized to, or `None`.
        channels: channels the model takes (1 or 3).
        batch_size: batch size for the model.
        notes: the report's notes (appended to when the pairs are cut).
        cache_dir, worker: see `tlkit.data.audit` (`embedding_cache_dir`, `worker`).
    """
    if worker is not None and cache_dir is None:
        raise ValueError(
            "audit(worker=...) needs embedding_cache_dir=: a folder every worker can read and "
            "write (e.g. gs://bucket/audit-cache), where the workers' embeddings meet."
        )
    if cache_dir is not None:
        embeddings, owners = _sharded_embeddings(
            source, limit, model, size, channels, batch_size, cache_dir, worker
        )
        return _pairs(embeddings, owners, items, group_of, threshold, notes)
    embeddings, owners, batch, batch_owners = [], [], [], []

    def flush():
        if not batch:
            return
        if source.kind == "image":
            x = np.stack(batch)
        elif source.kind == "text":
            x = tf.constant([v if isinstance(v, bytes) else str(v).encode() for v in batch])
        else:
            x = np.stack([np.asarray(v, dtype="float32") for v in batch])
        out = call_feature_model(model, x)
        embeddings.append(l2_normalize(out))
        owners.extend(batch_owners)
        batch.clear()
        batch_owners.clear()

    for k, (item, value) in enumerate(source.iterate(limit, with_values=True)):
        if item.error or value is None:
            continue
        batch.append(_to_image(value, size, channels) if source.kind == "image" else value)
        batch_owners.append(k)
        if len(batch) >= batch_size:
            flush()
    flush()
    if not embeddings:
        return []
    return _pairs(np.concatenate(embeddings), owners, items, group_of, threshold, notes)


def _pairs(embeddings, owners, items, group_of, threshold, notes) -> list[dict]:
    """The report's near-duplicate pairs among `embeddings` (row i embeds item `owners[i]`)."""
    if not len(embeddings):
        return []
    owners = [int(k) for k in owners]
    a, b, sims = similar_pairs(embeddings, threshold)
    pairs = []
    for i, j, sim in zip(a.tolist(), b.tolist(), sims.tolist()):
        ka, kb = owners[i], owners[j]
        if ka in group_of and group_of.get(ka) == group_of.get(kb):
            continue  # already an exact duplicate
        ia, ib = items[ka], items[kb]
        pairs.append(
            {
                "a": {"split": ia.split, "item": ia.ref},
                "b": {"split": ib.split, "item": ib.ref},
                "similarity": round(float(sim), 4),
                "cross_split": leaks((ia.split, ib.split)),
            }
        )
    pairs = _sorted_pairs(pairs)
    if len(pairs) > _MAX_NEAR_PAIRS:
        message = (
            f"{len(pairs)} near-duplicate pairs found; the report keeps the first "
            f"{_MAX_NEAR_PAIRS} (pairs across splits first, then by similarity)"
        )
        logger.warning(message)
        notes.append(message)
        pairs = pairs[:_MAX_NEAR_PAIRS]
    return pairs


def _sorted_pairs(pairs):
    return sorted(pairs, key=lambda p: (not p["cross_split"], -p["similarity"]))


def _sharded_embeddings(source, limit, model, size, channels, batch_size, cache_dir, worker):
    """`(embeddings, owners)` through `extract_feature_shards`: the labels it stores are the
    items' indices, so a worker's share of the rows keeps saying whose embedding it is."""
    def values():
        for k, (item, value) in enumerate(source.iterate(limit, with_values=True)):
            if not item.error and value is not None:
                yield (_to_image(value, size, channels) if source.kind == "image" else value), k

    first = next(values(), None)
    if first is None:
        return np.zeros((0, 1), "float32"), np.zeros(0, "int64")
    if source.kind == "text":
        spec = tf.TensorSpec((), tf.string)
    else:
        spec = tf.TensorSpec(np.shape(first[0]), tf.float32)
    ds = tf.data.Dataset.from_generator(
        values, output_signature=(spec, tf.TensorSpec((), tf.int64))
    )
    shards = extract_feature_shards(
        lambda x: l2_normalize(call_feature_model(model, x)),
        ds,
        cache_dir,
        describe={
            "audit_embeddings": type(model).__name__,
            "weights": weights_fingerprint(model),
            "source": source.description,
            "size": list(size) if size else None,
            "channels": channels,
        },
        batch_size=batch_size,
        worker=worker,
    )
    return shards.arrays()
