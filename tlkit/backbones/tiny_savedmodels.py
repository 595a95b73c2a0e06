"""Build TF2 *reusable SavedModels* (the TF-Hub format) without any network.

They follow the reusable SavedModel API (`__call__(inputs, training)`, `variables`,
`trainable_variables`, `regularization_losses`) so they exercise exactly the code paths of a
tfhub.dev model: a small CNN with a BatchNormalization (image feature vector) and a text encoder
that takes raw strings and returns a dict with `pooled_output` and `sequence_output`.
`tiny_cnn` is the same kind of small image network as a Keras model (for `from_keras`).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


class _TinyCNN(tf.__internal__.tracking.AutoTrackable):
    def __init__(self, channels=(8, 16), feature_dim=16, seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self._blocks = []
        c_in = 3
        for i, c_out in enumerate(channels, start=1):
            scope = f"block_{i}"
            kernel = tf.Variable(
                rng.normal(0, (2.0 / (9 * c_in)) ** 0.5, (3, 3, c_in, c_out)).astype("float32"),
                name=f"{scope}/conv/kernel",
            )
            gamma = tf.Variable(np.ones(c_out, "float32"), name=f"{scope}/bn/gamma")
            beta = tf.Variable(np.zeros(c_out, "float32"), name=f"{scope}/bn/beta")
            mean = tf.Variable(np.zeros(c_out, "float32"), trainable=False, name=f"{scope}/bn/moving_mean")
            var = tf.Variable(np.ones(c_out, "float32"), trainable=False, name=f"{scope}/bn/moving_variance")
            self._blocks.append((kernel, gamma, beta, mean, var))
            c_in = c_out
        self._proj = tf.Variable(
            rng.normal(0, (1.0 / c_in) ** 0.5, (c_in, feature_dim)).astype("float32"),
            name="top/proj/kernel",
        )
        self.variables_list = [v for b in self._blocks for v in b] + [self._proj]
        self.trainable_variables_list = [v for v in self.variables_list if v.trainable]
        self.regularization_losses = [
            tf.function(lambda: 1e-4 * tf.reduce_sum(tf.square(self._proj)), input_signature=[])
        ]

    @tf.function
    def __call__(self, images, training=False):
        x = tf.convert_to_tensor(images, tf.float32)
        for kernel, gamma, beta, mean, var in self._blocks:
            x = tf.nn.conv2d(x, kernel, strides=2, padding="SAME")
            if training:
                batch_mean, batch_var = tf.nn.moments(x, axes=[0, 1, 2])
                mean.assign(0.9 * mean + 0.1 * batch_mean)
                var.assign(0.9 * var + 0.1 * batch_var)
                x = tf.nn.batch_normalization(x, batch_mean, batch_var, beta, gamma, 1e-3)
            else:
                x = tf.nn.batch_normalization(x, mean, var, beta, gamma, 1e-3)
            x = tf.nn.relu(x)
        x = tf.reduce_mean(x, axis=[1, 2])
        return tf.matmul(x, self._proj)


class _TinyTextEncoder(tf.__internal__.tracking.AutoTrackable):
    def __init__(self, vocab_buckets=64, dim=8, seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self._buckets = vocab_buckets
        self._embedding = tf.Variable(
            rng.normal(0, 0.5, (vocab_buckets, dim)).astype("float32"), name="embeddings/table"
        )
        self._dense = tf.Variable(
            rng.normal(0, dim**-0.5, (dim, dim)).astype("float32"), name="encoder/dense/kernel"
        )
        self.variables_list = [self._embedding, self._dense]
        self.trainable_variables_list = list(self.variables_list)
        self.regularization_losses = []

    @tf.function
    def __call__(self, texts, training=False):
        tokens = tf.strings.split(tf.strings.lower(texts))
        ids = tf.strings.to_hash_bucket_fast(tokens, self._buckets)
        emb = tf.nn.embedding_lookup(self._embedding, ids)  # ragged [batch, words, dim]
        sequence = tf.nn.tanh(tf.ragged.map_flat_values(tf.matmul, emb, self._dense))
        if training:
            sequence = tf.ragged.map_flat_values(tf.nn.dropout, sequence, 0.1)
        pooled = tf.reduce_mean(sequence, axis=1)
        pooled = tf.where(tf.math.is_nan(pooled), tf.zeros_like(pooled), pooled)
        return {"pooled_output": pooled, "sequence_output": sequence.to_tensor()}


def _save(module, path, spec):
    module.variables = module.variables_list
    module.trainable_variables = module.trainable_variables_list
    for training in (True, False):
        module.__call__.get_concrete_function(spec, training=training)
    tf.saved_model.save(module, str(path))
    return str(path)


def make_image_savedmodel(path, channels=(8, 16), feature_dim=16, seed=0) -> str:
    """Writes a tiny image feature-vector SavedModel (2 conv blocks with BatchNorm) to `path`.

    Inputs: float images in [0, 1], any size. Output: `[batch, feature_dim]`. Variables are named
    `block_1/...`, `block_2/...`, `top/...`, so groups and `trainable_patterns` work on them.
    """
    module = _TinyCNN(channels, feature_dim, seed)
    return _save(module, path, tf.TensorSpec([None, None, None, 3], tf.float32))


def make_text_savedmodel(path, vocab_buckets=64, dim=8, seed=0) -> str:
    """Writes a tiny text encoder SavedModel taking raw strings; returns a dict of outputs."""
    module = _TinyTextEncoder(vocab_buckets, dim, seed)
    return _save(module, path, tf.TensorSpec([None], tf.string))


def _tiny_backbone(make, folder, seed, **kwargs):
    import os
    import tempfile

    from tlkit.backbones.hub import from_hub

    folder = os.path.abspath(folder) if folder else tempfile.mkdtemp(prefix="tlkit_tiny_")
    if not os.path.exists(os.path.join(folder, "saved_model.pb")):
        make(folder, seed=seed)
    return from_hub(folder, **kwargs)


def tiny_image_backbone(folder=None, seed=0, **kwargs):
    """The registered backbone `tiny`: `make_image_savedmodel` written into `folder` (kept when
    it is already there; a new temporary folder when `None`), loaded with `from_hub`."""
    return _tiny_backbone(make_image_savedmodel, folder, seed, **kwargs)


def tiny_text_backbone(folder=None, seed=0, **kwargs):
    """The registered backbone `tiny_text`: `make_text_savedmodel` (raw strings in), as
    `tiny_image_backbone`."""
    from tlkit.backbones.input_info import InputInfo

    kwargs.setdefault("input_info", InputInfo(kind="text", dtype="string"))
    return _tiny_backbone(make_text_savedmodel, folder, seed, **kwargs)


def tiny_cnn(input_shape=(16, 16, 3), filters=(4, 8, 8), name="tiny_cnn"):
    """A small functional Keras CNN with BatchNorm, randomly initialised (nothing to
    download); its layer names give the groups `block1`, `block2`, ...

    Example: `tlkit.backbones.from_keras(tiny_cnn((64, 64, 3), filters=(16, 32, 64)))`."""
    import keras

    inputs = keras.Input(input_shape)
    x = inputs
    for i, f in enumerate(filters, start=1):
        x = keras.layers.Conv2D(f, 3, strides=2, padding="same", name=f"block{i}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"block{i}_bn")(x)
        x = keras.layers.ReLU(name=f"block{i}_relu")(x)
    return keras.Model(inputs, x, name=name)
