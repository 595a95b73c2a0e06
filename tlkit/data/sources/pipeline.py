"""`batch`: the input pipeline for an unbatched `(x, y)` dataset (shuffle, map, batch, prefetch)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import tensorflow as tf

logger = logging.getLogger(__name__)

# Memory the default shuffle buffer may use (estimated from `element_spec`).
_SHUFFLE_BUFFER_BYTES = 256 * 2**20
# A dimension unknown in `element_spec` (e.g. a decoded image's height) counts as this many.
_UNKNOWN_DIM = 256


def batch(
    ds: tf.data.Dataset,
    batch_size: int,
    training: bool,
    seed: int | None = None,
    drop_remainder: bool = False,
    map_fn: Callable | None = None,
    batch_map_fn: Callable | None = None,
    shuffle_buffer: int | None = None,
    deterministic: bool | None = None,
    cache: bool = False,
) -> tf.data.Dataset:
    """Shuffles (training only), maps, batches and prefetches an unbatched `(x, y)` dataset.

    Args:
        ds: unbatched dataset, e.g. `LabeledData.train`.
        batch_size: examples per batch.
        training: shuffle (reshuffled every epoch) when `True`; keep the order otherwise.
        seed: shuffle seed; the same seed gives the same order of epochs.
        drop_remainder: drop the last, smaller batch (static batch dimension).
        map_fn: optional `(x, y) -> (x, y)` per example, run in parallel (e.g. resize).
        batch_map_fn: optional `(x, y) -> (x, y)` per batch, run in parallel (e.g. Keras
            augmentation layers, which are faster on batches).
        shuffle_buffer: examples in the shuffle buffer. Default: the whole dataset when it
            fits in about 256 MiB (estimated from `element_spec`; unknown dimensions count as
            256), else as many examples as do.
        deterministic: when set, `tf.data.Options().deterministic` of the result (`True`:
            same order for the same seed even with parallel maps; `False`: faster).
        cache: keep the examples of `ds` in memory after the first epoch (before shuffling
            and `map_fn`), so files are read and decoded once; for data that fits in RAM.

    Returns:
        A batched, prefetched `tf.data.Dataset`.

    For a `LabeledData` split prefer `data.pipeline(split, batch_size, ...)`: it shuffles file
    paths / raw arrays before the loader decodes them, so epochs start faster.

    Example:
    ```python
    train = tlkit.data.batch(data.train, 32, training=True, seed=0)
    val = tlkit.data.batch(data.val, 32, training=False)
    ```
    """
    if int(batch_size) < 1:
        raise ValueError(f"Expected `batch_size` >= 1. Received: batch_size={batch_size}")
    if cache:
        ds = ds.cache()
    if training:
        buffer = shuffle_buffer or default_shuffle_buffer(ds, batch_size)
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if map_fn is not None:
        ds = ds.map(map_fn, num_parallel_calls=tf.data.AUTOTUNE)
    _warn_if_unbatchable(ds)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=tf.data.AUTOTUNE)
    if batch_map_fn is not None:
        ds = ds.map(batch_map_fn, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    if deterministic is not None:
        options = tf.data.Options()
        options.deterministic = bool(deterministic)
        ds = ds.with_options(options)
    return ds


def default_shuffle_buffer(ds: tf.data.Dataset, batch_size: int = 32) -> int:
    """The shuffle buffer `batch` uses: whole dataset if it fits ~256 MiB, else what fits."""
    per_example = 0
    for spec in tf.nest.flatten(ds.element_spec):
        dims = [_UNKNOWN_DIM if d is None else d for d in spec.shape.as_list()]
        size = 64 if spec.dtype == tf.string else spec.dtype.size
        per_example += int(np.prod(dims, dtype="int64")) * size
    fits = max(int(batch_size) * 8, _SHUFFLE_BUFFER_BYTES // max(per_example, 1))
    card = int(ds.cardinality())
    if card > 0:
        return int(min(card, fits))
    return int(fits)


def _warn_if_unbatchable(ds: tf.data.Dataset) -> None:
    spec = ds.element_spec
    x_spec = spec[0] if isinstance(spec, tuple) else spec
    shape = getattr(x_spec, "shape", None)
    if shape is not None and shape.rank == 3 and None in shape.as_list()[:2]:
        logger.warning(
            "Images of unknown size %s are batched; if their sizes differ, batching fails. "
            "Pass `image_size=` to the loader, or a `map_fn` that resizes "
            "(e.g. `tlkit.data.preprocess_for`).",
            shape,
        )
