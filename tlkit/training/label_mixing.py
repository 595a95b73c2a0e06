"""MixUp / CutMix on training batches: Keras's `MixUp` and `CutMix` layers in the tf.data pipeline.

They mix labels as well as images, so unlike the other augmentation layers
(`tlkit.data.augmentation`, inside the model) they cannot run in the model: they map
`(images, one-hot labels)` batches of the training dataset only. Validation, test and feature
extraction never see them (validation labels are one-hot encoded, nothing else). With both set,
each batch gets one of the two with probability 1/2 (timm's `switch_prob` default); Keras has no
such switch, hence the `tf.cond` below.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tlkit.config import ConfigError


def _split(element, setting):
    if not isinstance(element, tuple) or len(element) not in (2, 3):
        raise ConfigError(
            f"FineTuneConfig.{setting}: expected a training dataset of (images, labels) or "
            f"(images, labels, sample_weights) batches; got elements {element!r}")
    return element[0], element[1], element[2:]


def one_hot_labels(ds: tf.data.Dataset, num_classes: int, setting: str = "mixup"):
    """`ds` (a dataset or `(x, y[, w])` arrays) with its integer labels one-hot encoded
    (float32); float labels are kept."""
    if isinstance(ds, (tuple, list)):
        x, y, rest = _split(tuple(ds), setting)
        if np.issubdtype(np.asarray(y).dtype, np.integer):
            y = keras.utils.to_categorical(np.asarray(y).reshape(-1), int(num_classes))
        return (x, y, *rest)
    _split(ds.element_spec, setting)

    def encode(x, y, *rest):
        if y.dtype.is_integer:
            if y.shape.rank is not None and y.shape.rank >= 2 and y.shape[-1] == 1:
                y = tf.squeeze(y, axis=-1)
            y = tf.one_hot(y, int(num_classes), dtype=tf.float32)
        return (x, y, *rest)

    return ds.map(encode, num_parallel_calls=tf.data.AUTOTUNE)


def mix_batches(ds: tf.data.Dataset, *, mixup: float | None = None, cutmix: float | None = None,
                seed: int = 0) -> tf.data.Dataset:
    """`ds` (batches with one-hot labels) with MixUp (`alpha`) and/or CutMix (`factor`) applied.

    The labels of a mixed example are the convex combination of its two examples' labels with
    the weights of their images (Keras's layers). Sample weights, if any, pass unchanged.
    """
    setting = "mixup" if mixup is not None else "cutmix"
    _split(ds.element_spec, setting)
    layers = []
    if mixup is not None:
        layers.append(keras.layers.MixUp(alpha=float(mixup), seed=int(seed)))
    if cutmix is not None:
        layers.append(keras.layers.CutMix(factor=float(cutmix), seed=int(seed) + 1))
    if not layers:
        return ds

    def apply(layer, x, y):
        out = layer({"images": x, "labels": y}, training=True)
        return tf.cast(out["images"], tf.float32), tf.cast(out["labels"], y.dtype)

    def mix(x, y, *rest):
        if y.dtype.is_integer:  # multi-hot integer labels: mixed ones are fractions
            y = tf.cast(y, tf.float32)
        if len(layers) == 1:
            x, y = apply(layers[0], x, y)
        else:
            x, y = tf.cond(tf.random.uniform([], seed=int(seed)) < 0.5,
                           lambda: apply(layers[0], x, y), lambda: apply(layers[1], x, y))
        return (x, y, *rest)

    return ds.map(mix, num_parallel_calls=tf.data.AUTOTUNE)


def as_dataset(train, batch_size: int, shuffle: bool, seed: int, setting: str):
    """Training data given as `(x, y[, w])` arrays, as a batched dataset (shuffled each epoch
    when `shuffle`), so that batches can be mixed; a dataset passes through."""
    if isinstance(train, tf.data.Dataset):
        return train
    if not isinstance(train, (tuple, list)) or len(train) not in (2, 3):
        raise ConfigError(
            f"FineTuneConfig.{setting}: needs a tf.data.Dataset, a LabeledData or (x, y) "
            f"arrays as training data; got {type(train).__name__}")
    ds = tf.data.Dataset.from_tensor_slices(tuple(train))
    if shuffle:
        ds = ds.shuffle(len(train[0]), seed=int(seed), reshuffle_each_iteration=True)
    return ds.batch(int(batch_size))
