"""`tlkit.load`: `keras.models.load_model` with tlkit's serializable classes registered."""

from __future__ import annotations


def load(path, **kwargs):
    """Loads a `.keras` model saved from a tlkit model (backbones, heads, tlkit optimizers...).

    Same as `import keras, tlkit; keras.models.load_model(path)`: tlkit's Keras classes are
    registered first, whatever was imported before.

    Args:
        path: the `.keras` file.
        **kwargs: passed to `keras.models.load_model` (`compile=False`, ...).
    """
    import keras

    import tlkit

    tlkit.register_serializables()
    return keras.models.load_model(path, **kwargs)
