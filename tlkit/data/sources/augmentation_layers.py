"""`augmentation`: a seeded `keras.Sequential` of Keras image augmentation layers from a dict."""

from __future__ import annotations

import keras

ALLOWED_KEYS = ("flip", "rotation", "zoom", "translation", "contrast", "randaugment")
# They mix labels too, so they run on training batches, not in the model: fine-tuning settings.
_BATCH_MIXING = {"mixup": "regularization.mixup", "cutmix": "regularization.cutmix"}
_RANDAUGMENT_KEYS = ("num_ops", "factor")
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
    - `randaugment`: `True` (Keras's defaults: 2 ops, factor 0.5), a factor in `(0, 1]`, or
      `{num_ops: 2, factor: 0.5}` → `RandAugment` (pixels in `[0, 255]`).

    MixUp and CutMix mix labels as well, so they are fine-tuning settings
    (`tlkit.FineTuneConfig.mixup` / `cutmix`, recipe `regularization.mixup` / `cutmix`) applied to
    training batches, not layers here.

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
    mixing = [k for k in unknown if k in _BATCH_MIXING]
    if mixing:
        raise ValueError(
            f"Augmentation key {mixing[0]!r}: MixUp / CutMix mix labels too, so they are "
            f"fine-tuning settings applied to training batches: set {_BATCH_MIXING[mixing[0]]} in "
            f"a recipe (FineTuneConfig.{mixing[0]} in Python), not data.augmentation."
        )
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
        elif key == "randaugment":
            layers.append(_rand_augment(value, layer_seed))
    if not layers:
        return keras.layers.Identity(name=name)
    return keras.Sequential(layers, name=name)


def _rand_augment(value, seed):
    """`keras.layers.RandAugment` for raw `[0, 255]` pixels from `True`, a factor or a dict."""
    options = {}
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(_RANDAUGMENT_KEYS))
        if unknown:
            raise ValueError(f"Unknown `randaugment` key(s) {unknown}. Allowed keys: "
                             f"{list(_RANDAUGMENT_KEYS)}.")
        options = dict(value)
    elif value is not True:
        options = {"factor": value}
    factor = options.get("factor", 0.5)
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor <= 1:
        raise ValueError(f"Expected `randaugment` factor in (0, 1]. Received: factor={factor!r}")
    num_ops = options.get("num_ops", 2)
    if isinstance(num_ops, bool) or not isinstance(num_ops, int) or num_ops < 1:
        raise ValueError(f"Expected `randaugment` num_ops an int >= 1. Received: {num_ops!r}")
    return keras.layers.RandAugment(value_range=(0, 255), num_ops=num_ops, factor=float(factor),
                                    seed=seed, name="randaugment")
