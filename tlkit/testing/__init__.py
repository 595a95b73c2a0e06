"""Tiny, network-free SavedModels and data for tests, examples and the offline smoke run, the
reusable checks (`checks.py`) and `TestCase`, the base of the backbone and strategy tests."""

from tlkit.backbones.tiny_savedmodels import make_image_savedmodel, make_text_savedmodel, tiny_cnn
from tlkit.testing.checks import (
    check_save_reload_parity,
    check_serialization_round_trip,
    frozen_weights_unchanged,
)
from tlkit.testing.test_case import TestCase

__all__ = [
    "TestCase",
    "check_save_reload_parity",
    "check_serialization_round_trip",
    "free_ports",
    "frozen_weights_unchanged",
    "make_image_savedmodel",
    "make_text_savedmodel",
    "tiny_cnn",
    "tiny_image_data",
    "tiny_model",
    "tiny_transformer",
]


def tiny_image_data(n=24, size=16, seed=0):
    """`(x, y)`: `n` random `[0, 255]` images `(size, size, 3)` and two classes by brightness."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (n, size, size, 3)).astype("float32")
    return x, (x.mean(axis=(1, 2, 3)) > 127).astype("int32")


def tiny_model(num_classes=3, input_shape=(16, 16, 3), seed=0, **build_kwargs):
    """`tlkit.build_model` on `tiny_cnn()` (groups block1-3 + head), seeded, dropout 0.

    The backbone expects `[-1, 1]` inputs (the model rescales raw pixels). Extra keyword
    arguments go to `build_model` (`compile=False`, `freeze_backbone=False`, ...).
    """
    import keras

    import tlkit
    from tlkit.backbones import InputInfo, from_keras

    keras.utils.set_random_seed(seed)
    build_kwargs.setdefault("dropout", 0.0)
    return tlkit.build_model(
        from_keras(tiny_cnn(input_shape), input_info=InputInfo(value_range=(-1, 1))),
        num_classes=num_classes,
        input_shape=input_shape,
        **build_kwargs,
    )


def tiny_transformer(seed=0):
    """`tlkit.build_model` on a 2-layer transformer encoder (Keras `MultiHeadAttention`, whose
    projections are EinsumDense layers named query/key/value, as in KerasHub) with 3 classes."""
    import keras

    import tlkit

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6, 8))
    x = inputs
    for i in range(2):
        attention = keras.layers.MultiHeadAttention(2, 4, name=f"transformer_layer_{i}_attention")
        x = keras.layers.LayerNormalization(name=f"transformer_layer_{i}_norm")(x + attention(x, x))
        x = keras.layers.Dense(8, name=f"transformer_layer_{i}_ffn")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    backbone = tlkit.backbones.from_keras(keras.Model(inputs, x, name="encoder"))
    return tlkit.build_model(backbone, num_classes=3, input_shape=(6, 8), dropout=0.0)


def free_ports(n: int) -> str:
    """`n` free localhost TCP ports, comma-separated (for multi-worker jobs in tests)."""
    import socket

    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ",".join(map(str, ports))
