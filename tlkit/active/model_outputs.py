"""One pass of a tlkit model over a pool: pooled embeddings and predicted probabilities."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tlkit import heads as heads_lib
from tlkit.data.sources.labeled_data import UNLABELED, LabeledData


def pool_inputs(pool, labelled: bool = False):
    """`(unbatched dataset of x, file paths or None, default labelled set or None)` of `pool`.

    Args:
        pool: a `LabeledData` (its unlabelled pool, or its train split with `labelled=True`),
            an array of inputs, or an unbatched `tf.data.Dataset` of `x` or `(x, y)`.
        labelled: read a `LabeledData`'s train split instead of its pool.
    """
    if isinstance(pool, LabeledData):
        if labelled:
            return pool.split("train").map(lambda x, y: x), None, None
        ds = pool.split(UNLABELED)  # one line when there is none
        paths = pool.metadata.get(UNLABELED, {}).get("path")
        return ds, paths, pool if pool.train is not None else None
    if isinstance(pool, tf.data.Dataset):
        if isinstance(pool.element_spec, tuple):
            pool = pool.map(lambda x, *rest: x)
        return pool, None, None
    array = np.asarray(pool)
    if array.ndim == 0:
        raise ValueError(f"Expected a pool of examples (array, dataset or LabeledData). "
                         f"Received: {type(pool).__name__}")
    if array.dtype.kind in "iub" or array.dtype == np.float64:
        array = array.astype("float32")
    return tf.data.Dataset.from_tensor_slices(array), None, None


def pool_outputs(model, datasets, batch_size: int = 32) -> list[tuple[np.ndarray, np.ndarray]]:
    """`[(embeddings (n, d), probabilities (n, classes)), ...]` of `model` on each unbatched
    dataset of `datasets` (one model built and traced for all of them).

    The embedding is what the model's head reads (the backbone's pooled output); both come from
    one forward pass when the head sits in the model's own graph, else from two.
    """
    head = heads_lib.find_head(model)
    if head is None or head.kind != "classification":
        raise ValueError("select_to_label needs a tlkit classification model (built with "
                         "`tlkit.build_model`, or a run's model).")
    try:
        both = keras.Model(model.inputs, [head.input, model.outputs[0]])
        passes = [both]
    except ValueError:  # the head is nested in a wrapper (e.g. a calibrated model)
        passes = [keras.Model(model.inputs, head.input), model]
    results = []
    for inputs in datasets:
        embeddings, probabilities = [], []
        for x in inputs.batch(int(batch_size)).prefetch(tf.data.AUTOTUNE):
            outs = [m.predict_on_batch(x) for m in passes]
            outs = outs[0] if len(passes) == 1 else outs
            embeddings.append(np.asarray(outs[0]).reshape(len(outs[0]), -1))
            probabilities.append(np.asarray(outs[1], dtype="float64"))
        if not embeddings:
            results.append((np.zeros((0, 0), "float32"), np.zeros((0, head.units))))
        else:
            results.append((np.concatenate(embeddings), np.concatenate(probabilities)))
    return results
