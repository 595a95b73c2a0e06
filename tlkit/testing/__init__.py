"""Tiny, network-free SavedModels and data for tests, examples and the offline smoke run."""

from tlkit.testing.savedmodels import make_image_savedmodel, make_text_savedmodel

__all__ = ["make_image_savedmodel", "make_text_savedmodel", "tiny_cnn"]


def tiny_cnn(input_shape=(16, 16, 3), filters=(4, 8, 8), name="tiny_cnn"):
    """A small functional CNN with BatchNorm; layer names give groups `block1`, `block2`, ...."""
    import keras

    inputs = keras.Input(input_shape)
    x = inputs
    for i, f in enumerate(filters, start=1):
        x = keras.layers.Conv2D(f, 3, strides=2, padding="same", name=f"block{i}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"block{i}_bn")(x)
        x = keras.layers.ReLU(name=f"block{i}_relu")(x)
    return keras.Model(inputs, x, name=name)
