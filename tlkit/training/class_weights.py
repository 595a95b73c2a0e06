"""Class weights for imbalanced data, for Keras's `fit(class_weight=...)`.

`"balanced"` is scikit-learn's heuristic (`compute_class_weight("balanced")`): class `c` weighs
`n_examples / (n_classes * count_c)`; classes absent from the labels weigh 1.
"""

from __future__ import annotations

import logging

import numpy as np

from tlkit.config import ConfigError

logger = logging.getLogger(__name__)


def balanced_class_weight(labels, num_classes: int) -> dict[int, float]:
    """`{class: weight}` inverse to the class frequencies of integer `labels`."""
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.asarray(labels).reshape(-1).astype("int64")
    present = np.unique(labels)
    weights = compute_class_weight("balanced", classes=present, y=labels)
    result = {c: 1.0 for c in range(int(num_classes))}
    result.update({int(c): float(w) for c, w in zip(present, weights)})
    return result


def resolve_class_weight(setting, num_classes: int, labels=None) -> dict[int, float] | None:
    """The `class_weight` dict for `fit`, from the config's setting.

    Args:
        setting: `None`, `"balanced"` or `{class index: weight}`.
        num_classes: the model's number of classes (missing classes weigh 1).
        labels: the training labels, or a callable returning them (read for `"balanced"` only).

    Raises:
        ConfigError: a class index outside the model's classes.
    """
    if setting is None:
        return None
    if setting == "balanced":
        labels = labels() if callable(labels) else labels
        if labels is None:
            raise ConfigError("FineTuneConfig.class_weight: 'balanced' needs the training labels; "
                              "give a mapping {class index: weight} instead.")
        weights = balanced_class_weight(labels, num_classes)
        logger.info("class weights (balanced): %s",
                    ", ".join(f"{c}: {w:.3g}" for c, w in weights.items()))
        return weights
    outside = [c for c in setting if not 0 <= int(c) < int(num_classes)]
    if outside:
        raise ConfigError(f"FineTuneConfig.class_weight: class indices {outside} are outside the "
                          f"model's {num_classes} classes (0..{int(num_classes) - 1}).")
    return {c: float(setting.get(c, 1.0)) for c in range(int(num_classes))}
