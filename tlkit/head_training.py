"""Train the head on cached features while the backbone is frozen.

A frozen backbone (BatchNorm in inference mode) computes the same features every epoch, so the
head phase can run the backbone once per example (`tlkit.data.extract_features`) and then train
only the head on the features: the same updates as the full pipeline, at a fraction of the cost.
This is not possible with augmentation (each epoch sees new images), so it refuses then.
"""

from __future__ import annotations

import logging
import math
import os

import keras
import tensorflow as tf

from tlkit import heads as heads_lib
from tlkit._progress import fit_verbose
from tlkit.data import extract_feature_arrays, extract_feature_shards
from tlkit.label_check import check_labels
from tlkit.trainability import find_backbone

logger = logging.getLogger(__name__)


class ProbeError(ValueError):
    """`fit_linear_probe` cannot fit this model or data (the message says why); `auto` fine-tuning
    falls back to the unfreeze schedule on it."""


def feature_model(model) -> keras.Model:
    """The part of a tlkit model that runs before its head: raw input → pooled features."""
    head = heads_lib.find_head(model)
    if head is None:
        raise ValueError("The model has no tlkit head; build it with `tlkit.build_model`.")
    return keras.Model(model.inputs, head.input, name=f"{model.name}_features")


def head_model(model) -> keras.Model:
    """A model over the head alone (features in, predictions out), sharing the head's weights."""
    head = heads_lib.find_head(model)
    features = keras.Input(shape=tuple(head.input.shape[1:]), name="features")
    return keras.Model(features, head(features), name=f"{model.name}_head")


def has_augmentation(model) -> bool:
    """Whether the model has Keras random preprocessing layers (augmentation) before its head."""
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if type(layer).__name__.startswith("Random") or layer.name == "augmentation":
            return True
    return False


# Batch of the one feature-extraction pass on CPU: the backbone's activations of a small batch
# stay in the CPU caches (`benchmarks/feature_caching.py` measures ms/image by batch size:
# docs/benchmarks/speed.md).
CPU_EXTRACTION_BATCH = 32

# BLAS threads of the linear probe's L-BFGS fit (None: the BLAS library's default). Its products
# are skinny (examples x features by features x classes): OpenBLAS's threads made the fits
# slower (docs/benchmarks/speed.md, `benchmarks/probe_speed.py`).
PROBE_BLAS_THREADS = 1

# The linear probe's default C grid, on features scaled to unit mean squared norm: the raw-feature
# grid of docs/benchmarks/other.md (`benchmarks/probe_c.py`) times EfficientNet-Lite0's mean
# squared feature norm, rounded.
PROBE_CS = (40.0, 400.0, 4000.0, 40000.0)


def extraction_batch_size(batch_size: int) -> int:
    """Batch of the feature-extraction pass: on a GPU/TPU at least 256 (amortizes the per-call
    overhead, inference needs no gradients' memory), on CPU `CPU_EXTRACTION_BATCH`."""
    if tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"):
        return max(int(batch_size), 256)
    return CPU_EXTRACTION_BATCH


def _unbatch(ds):
    spec = ds.element_spec
    first = spec[0] if isinstance(spec, tuple) else spec
    return ds.unbatch() if first.shape.rank and first.shape[0] is None else ds


def train_head_on_features(
    model,
    train: tf.data.Dataset,
    validation: tf.data.Dataset | None = None,
    epochs: int = 5,
    learning_rate: float = 1e-3,
    batch_size: int = 64,
    shuffle: bool = True,
    seed: int = 0,
    cache_dir=None,
    callbacks=None,
    optimizer=None,
    ignore_augmentation: bool = False,
    drop_remainder: bool = False,
    verbose="auto",
    jit_compile="auto",
    steps_per_execution: int = 1,
    in_memory_max_bytes: int = 2**31,
    shard_size: int = 4096,
    loss=None,
    class_weight: dict | None = None,
    data_fingerprints: dict | None = None,
):
    """Trains `model`'s head on features of its frozen backbone, computed once.

    Args:
        model: a model from `tlkit.build_model` whose backbone is frozen (only the head trains).
        train, validation: `(x, y)` datasets, batched or not, in a fixed order.
        epochs: head epochs.
        learning_rate: Adam learning rate of the head.
        batch_size: batch size for training the head on the features.
        shuffle: shuffle the cached features each epoch (seeded).
        cache_dir: keep the features there as sharded `.npy` files with a manifest
            (`tlkit.data.extract_feature_shards`: reused by a later call with the same model
            and data, resumed after a kill, checksummed). Default `None`: in memory only.
        in_memory_max_bytes: with `cache_dir`, train from one in-memory array when the
            features take at most this many bytes (fastest); larger caches are streamed shard
            by shard (memory bounded by `shard_size`, not by the number of examples).
            Default 2 GiB.
        shard_size: examples per shard of the cache. Default 4096.
        data_fingerprints: with `cache_dir`, `{"train": ..., "val": ...}` strings that change
            when the data does, e.g. `tlkit.data.split_fingerprint(data, "train")` (every
            file's path, size and mtime). Default: the example count and the first batch.
        callbacks, verbose: passed to the head's `fit` (e.g. a `BackupAndRestore`: a rerun
            resumes the head phase).
        optimizer: a Keras optimizer for the head (default: `Adam(learning_rate)`).
        jit_compile, steps_per_execution: for the head's `compile` (XLA; steps per call).
        ignore_augmentation: train the head on features of un-augmented inputs even when the
            model has augmentation layers (they stay for the later fine-tuning); default: refuse.
        drop_remainder: training batches of exactly `batch_size` (static shapes, for TPUs).
        loss: the head's loss (default: its default loss, e.g. sparse cross-entropy).
        class_weight: `{class index: weight}` for the head's `fit` (default: none).

    Returns:
        The `keras.callbacks.History` of the head training; `model`'s head holds the new weights.

    Example:
    ```python
    model = tlkit.build_model("efficientnet_lite0", num_classes=10, input_shape=(64, 64, 1))
    train_head_on_features(model, data.pipeline("train", 64, training=False), epochs=10)
    ```
    """
    if has_augmentation(model) and not ignore_augmentation:
        raise ValueError(
            "Feature caching needs a model without augmentation (each epoch would see new "
            "images); train the head with `fit` instead, drop `augmentation`, or pass "
            "ignore_augmentation=True to train the head on un-augmented features."
        )
    trainable_outside_head = [
        v for v in model.trainable_variables
        if not any(v is w for w in heads_lib.find_head(model).weights)
    ]
    if trainable_outside_head:
        raise ValueError(
            "Feature caching needs a frozen backbone, but these variables train: "
            f"{[v.path for v in trainable_outside_head[:3]]}. Call tlkit.freeze_backbone(model)."
        )
    extractor = feature_model(model)
    extract_batch = extraction_batch_size(batch_size)
    cache = _cache_spec(model, extractor, cache_dir, data_fingerprints, in_memory_max_bytes,
                        shard_size)
    train_ds = _features(extractor, _unbatch(train), "train", cache, extract_batch, verbose,
                         shuffle=shuffle, seed=seed)
    train_ds = train_ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
    val_ds = None
    if validation is not None:
        val_ds = _features(extractor, _unbatch(validation), "val", cache, extract_batch,
                           verbose).batch(batch_size)
    head = head_model(model)
    layer = heads_lib.find_head(model)
    head.compile(
        optimizer=optimizer if optimizer is not None else keras.optimizers.Adam(learning_rate),
        loss=loss if loss is not None else layer.default_loss(),
        metrics=layer.default_metrics(),
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
    history = head.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=callbacks,
                       verbose=fit_verbose(verbose), shuffle=False, class_weight=class_weight)
    logger.info("train_head_on_features: %d head epochs ran on cached features",
                len(history.epoch))
    return history


def _cache_spec(model, extractor, cache_dir, data_fingerprints, in_memory_max_bytes=2**31,
                shard_size=4096) -> dict:
    """Where and how `_features` caches features (one layout for head training and probes)."""
    backbone = find_backbone(model)
    # What the cached features depend on besides the weights (fingerprinted by the cache).
    describe = {"model": model.name, "input_shape": list(model.input_shape[1:]),
                "backbone": type(backbone).__name__ if backbone is not None else None,
                "feature_shape": list(extractor.output_shape[1:])}
    return {"dir": cache_dir, "in_memory_max_bytes": in_memory_max_bytes,
            "shard_size": shard_size, "describe": describe,
            "fingerprints": dict(data_fingerprints or {})}


def _feature_arrays(extractor, data, name, cache, batch_size, verbose):
    """`(features, labels)` arrays of `data` (a dataset), through the cache when it has a dir."""
    if cache["dir"] is None:
        return extract_feature_arrays(extractor, _unbatch(data), batch_size=batch_size,
                                      progress=verbose != 0)
    return _shards(extractor, _unbatch(data), name, cache, batch_size, verbose).arrays()


def _check_finite(x, split):
    """NaN / infinite features (from NaN or infinite inputs) stop the run with one line."""
    import numpy as np

    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if bad.size:
        raise ValueError(
            f"the backbone's features of {bad.size} {split} example(s) (the first: index "
            f"{bad[0]}) contain NaN or infinity: the inputs hold NaN / infinite values; clean "
            "or drop those examples")


def _check_class_indices(y):
    shape = getattr(y, "shape", ())
    if len(shape) > 1 and shape[-1] > 1:
        raise ProbeError(f"fit_linear_probe: expected integer class labels, got labels of shape "
                         f"{tuple(shape)} (one-hot or multi-label)")


def _shards(extractor, ds, name, cache, extract_batch, verbose):
    return extract_feature_shards(
        extractor,
        ds,
        os.path.join(os.fspath(cache["dir"]), name),
        describe=cache["describe"],
        data_fingerprint=cache["fingerprints"].get(name),
        shard_size=cache["shard_size"],
        batch_size=extract_batch,
        progress=verbose != 0,
    )


def _features(extractor, ds, name, cache, extract_batch, verbose, shuffle=False, seed=0):
    """Unbatched `(features, y)` of `ds`: from memory when they fit, else streamed from shards."""
    if cache["dir"] is None:
        x, y = extract_feature_arrays(
            extractor, ds, batch_size=extract_batch, progress=verbose != 0
        )
    else:
        shards = _shards(extractor, ds, name, cache, extract_batch, verbose)
        if shards.nbytes > int(cache["in_memory_max_bytes"]):
            logger.info(
                "Streaming %d cached %s features (%.1f GB > in_memory_max_bytes) from %s",
                shards.num_examples,
                name,
                shards.nbytes / 1e9,
                shards.folder,
            )
            return shards.dataset(shuffle=shuffle, seed=seed)
        x, y = shards.arrays()
    out = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        out = out.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return out


def fit_linear_probe(model, train, validation=None, Cs=PROBE_CS, batch_size=256,
                     max_iter=1000, verbose=0, cache_dir=None, data_fingerprints=None,
                     default_C=None, choose_from=0) -> dict:
    """Fits `model`'s linear classification head to convergence on its frozen backbone's
    features (L-BFGS multinomial logistic regression, scikit-learn), then writes the solution
    into the head: the "LP" of LP-FT (Kumar et al., 2022). Seconds, not epochs.

    The features are divided by their root mean squared norm on `train` before the fit (the
    head's kernel absorbs the factor, so the model predicts what the probe predicts): `C` then
    does not depend on the scale of the backbone's features.

    Args:
        model: a tlkit classification model with a linear head (no `hidden_units`).
        train, validation: `(x, y)` datasets (batched or not); every class in `train`.
        Cs: inverse L2 strengths tried, on unit-mean-squared-norm features; the best on
            `validation` is kept (ties: the smaller C). Without `validation`, the largest
            (the weakest regularization; docs/benchmarks/other.md). A probe that starts
            fine-tuning is another matter: `fine_tune` passes `FineTuneConfig.probe_c`.
        default_C, choose_from: with `default_C`, a validation split of fewer than
            `choose_from` examples (or none) does not choose: the probe fits at `default_C`
            (a handful of validation examples cannot tell the grid's Cs apart, and picked
            the largest on ties of the smaller ones: #36). Default: choose whenever there
            is validation data.
        batch_size: batch size of the feature extraction on an accelerator (on CPU,
            `CPU_EXTRACTION_BATCH`: `extraction_batch_size`).
        max_iter: L-BFGS iterations.
        cache_dir, data_fingerprints: as for `train_head_on_features` (the same cache layout):
            the features are read from / written to `cache_dir` (`train`, `val`), so a head
            phase and a probe on the same model and data extract them once.

    Raises:
        ProbeError: not a linear classification head, labels that are not class indices (e.g.
            one-hot), or a class with no training examples.

    Returns:
        `{"C": chosen, "C_chosen_by": how, "train_accuracy": ..., "val_accuracy": ... or None,
        "val_examples": how many validation examples scored it, "examples_per_class": the
        smallest class count of train, "feature_mean_sq_norm": the features' mean squared
        norm on train (C / that is the C of a fit on the raw features)}`.

    Example:
    ```python
    tlkit.fit_linear_probe(model, train, val)          # converged probe
    tlkit.fine_tune(model, train, val, head_epochs=0, fine_epochs=3)   # then fine-tune: LP-FT
    ```
    """
    # scikit-learn's L-BFGS solver converges in seconds on cached features; a Keras fit of the
    # head would need many epochs and an LR to reach the same (convex) optimum.
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    layer = heads_lib.find_head(model)
    if layer is None or layer.kind != "classification" or layer.hidden_units:
        raise ProbeError("fit_linear_probe needs a tlkit classification model with a linear head "
                         "(no hidden_units).")
    if not Cs:
        raise ProbeError("fit_linear_probe: Cs must name at least one C > 0.")
    extractor = feature_model(model)
    cache = _cache_spec(model, extractor, cache_dir, data_fingerprints)
    batch_size = extraction_batch_size(batch_size)
    x, y = _feature_arrays(extractor, train, "train", cache, batch_size, verbose)
    _check_class_indices(y)
    x, y = x.reshape(len(x), -1), np.asarray(y).reshape(-1).astype("int64")
    units = int(layer.units)
    num_classes = max(units, 2)
    check_labels(y, num_classes)
    _check_finite(x, "training")
    missing = sorted(set(range(num_classes)) - set(y.tolist()))
    if missing:
        raise ProbeError(f"fit_linear_probe: no training examples of class(es) {missing}.")
    xv = yv = None
    if validation is not None:
        xv, yv = _feature_arrays(extractor, validation, "val", cache, batch_size, verbose)
        xv, yv = xv.reshape(len(xv), -1), np.asarray(yv).reshape(-1).astype("int64")
        check_labels(yv, num_classes, "validation labels")
        _check_finite(xv, "validation")
    mean_sq_norm = float(np.mean(np.sum(np.square(x, dtype="float64"), axis=1)))
    scale = math.sqrt(mean_sq_norm) if mean_sq_norm > 0 else 1.0
    x = x / scale
    xv = None if xv is None else xv / scale
    n_val = 0 if xv is None else len(xv)
    if default_C is not None and n_val < int(choose_from):
        Cs = (float(default_C),)
        how = (f"the default C: {n_val} validation examples < {int(choose_from)}, too few to "
               "choose on")
    with threadpool_limits(limits=PROBE_BLAS_THREADS, user_api="blas"):
        if len(Cs) == 1 or xv is None:
            C = max(float(c) for c in Cs)
            if default_C is None or n_val >= int(choose_from):
                how = ("the one C given" if len(Cs) == 1
                       else "the largest C given (no validation data)")
            clf = LogisticRegression(C=C, max_iter=int(max_iter)).fit(x, y)
            val_accuracy = None if xv is None else float(clf.score(xv, yv))
        else:
            best, how = None, f"validation accuracy ({len(xv)} examples)"
            for C in sorted(Cs):
                clf = LogisticRegression(C=float(C), max_iter=int(max_iter)).fit(x, y)
                score = float(clf.score(xv, yv))
                if best is None or score > best[0]:
                    best = (score, float(C), clf)
            val_accuracy, C, clf = best
        train_accuracy = float(clf.score(x, y))
    # logits = coef . (x / scale) + b: the kernel on the raw features is coef / scale.
    coef = (clf.coef_ / scale).astype("float32")
    intercept = clf.intercept_.astype("float32")
    kernel = np.zeros((x.shape[1], units), "float32")
    bias = np.zeros((units,), "float32")
    if coef.shape[0] == 1 and units == 1:  # sigmoid output: the binary solution as it is
        kernel[:, 0], bias[0] = coef[0], intercept[0]
    elif coef.shape[0] == 1:  # two softmax units: split the binary logit symmetrically
        kernel[:, 0], kernel[:, 1] = -coef[0] / 2, coef[0] / 2
        bias[0], bias[1] = -intercept[0] / 2, intercept[0] / 2
    else:
        kernel[:, :] = coef.T
        bias[:] = intercept
    layer._out.kernel.assign(kernel)
    layer._out.bias.assign(bias)
    return {"C": C, "C_chosen_by": how, "train_accuracy": train_accuracy,
            "val_accuracy": val_accuracy,
            "val_examples": 0 if xv is None else int(len(xv)),
            "examples_per_class": int(np.bincount(y, minlength=num_classes).min()),
            "feature_mean_sq_norm": mean_sq_norm}
