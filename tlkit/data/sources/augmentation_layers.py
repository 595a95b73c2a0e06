"""`augmentation`: a seeded `keras.Sequential` of Keras image augmentation layers from a dict."""

from __future__ import annotations

import keras

ALLOWED_KEYS = ("flip", "rotation", "zoom", "translation", "contrast")
_FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical")


def augmentation(config: dict | None, seed: int = 0, name: str = "augmentation"):
    """Builds Keras preprocessing layers (active in training only) from a small config.

    Keys (all optional, applied in this order):

    - `flip`: `"horizontal"`, `"vertical"`, `"horizontal_and_vertical"` or `True`
      (horizontal) → `RandomFlip`.
    - `rotation`: fraction of a full turn, e.g. `0.1` (±36°) → `RandomRotation`.
    - `zoom`: e.g. `0.1` (±10 %) or `(low, high)` → `RandomZoom`.
    - `translation`: fraction of height and width, e.g. `0.1`, or `(height, width)` →
      `RandomTranslation`.
    - `contrast`: e.g. `0.2` → `RandomContrast` (pixels in `[0, 255]`).

    Args:
        config: the dict; `None` or `{}` gives a pass-through layer.
        seed: base seed; layer `i` gets `seed + i`, so a config and a seed give one sequence.
        name: name of the returned model.

    Returns:
        A `keras.Sequential` (or `keras.layers.Identity` for an empty config). It works on
        batches or single images and is a no-op at inference, so it can sit at the start of a
        model (`tlkit.build_model(..., augmentation=...)`) or in `tlkit.data.batch`'s
        `batch_map_fn`.

    Raises:
        ValueError: an unknown key (the message lists the allowed keys) or a bad flip mode.

    Example:
    ```python
    aug = tlkit.data.augmentation({"flip": "horizontal", "rotation": 0.1, "zoom": 0.1}, seed=0)
    ```
    """
    config = dict(config or {})
    unknown = sorted(set(config) - set(ALLOWED_KEYS))
    if unknown:
        raise ValueError(
            f"Unknown augmentation key(s) {unknown}. Allowed keys: {list(ALLOWED_KEYS)}."
        )
    layers = []
    for key in ALLOWED_KEYS:
        if key not in config or config[key] in (None, False, 0):
            continue
        value = config[key]
        layer_seed = int(seed) + len(layers)
        if key == "flip":
            mode = "horizontal" if value is True else value
            if mode not in _FLIP_MODES:
                raise ValueError(
                    f"Expected `flip` in {_FLIP_MODES} or True. Received: flip={value!r}"
                )
            layers.append(keras.layers.RandomFlip(mode, seed=layer_seed, name="flip"))
        elif key == "rotation":
            layers.append(keras.layers.RandomRotation(value, seed=layer_seed, name="rotation"))
        elif key == "zoom":
            layers.append(keras.layers.RandomZoom(value, seed=layer_seed, name="zoom"))
        elif key == "translation":
            height, width = value if isinstance(value, (tuple, list)) else (value, value)
            layers.append(
                keras.layers.RandomTranslation(height, width, seed=layer_seed, name="translation")
            )
        elif key == "contrast":
            layers.append(
                keras.layers.RandomContrast(
                    value, value_range=(0, 255), seed=layer_seed, name="contrast"
                )
            )
    if not layers:
        return keras.layers.Identity(name=name)
    return keras.Sequential(layers, name=name)
