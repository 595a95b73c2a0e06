"""Focal loss (Lin et al., 2017) for class imbalance: Keras's `CategoricalFocalCrossentropy`.

Keras ships the categorical focal loss only; integer labels get
`SparseCategoricalFocalCrossentropy`, which one-hots them and calls Keras's
`categorical_focal_crossentropy` (as `SparseLabelSmoothingCrossentropy` does for label smoothing).
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable("tlkit")
class SparseCategoricalFocalCrossentropy(keras.losses.Loss):
    """Keras's categorical focal cross-entropy for integer labels.

    Args:
        alpha: weight of the loss, as in Keras (default 0.25).
        gamma: focusing parameter; 0 gives `alpha` x cross-entropy (default 2.0).
        from_logits: whether predictions are logits (default False).
        label_smoothing: as in Keras's categorical losses (default 0.0).
    """

    def __init__(self, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0,
                 name="sparse_categorical_focal_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.alpha, self.gamma = float(alpha), float(gamma)
        self.from_logits, self.label_smoothing = bool(from_logits), float(label_smoothing)

    def call(self, y_true, y_pred):
        depth = keras.ops.shape(y_pred)[-1]
        labels = keras.ops.reshape(keras.ops.cast(y_true, "int32"), keras.ops.shape(y_pred)[:-1])
        return keras.losses.categorical_focal_crossentropy(
            keras.ops.one_hot(labels, depth, dtype=y_pred.dtype), y_pred, alpha=self.alpha,
            gamma=self.gamma, from_logits=self.from_logits, label_smoothing=self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "gamma": self.gamma,
                "from_logits": self.from_logits, "label_smoothing": self.label_smoothing}


def focal_loss(*, sparse: bool, gamma: float = 2.0, from_logits: bool = False,
               label_smoothing: float = 0.0) -> keras.losses.Loss:
    """Keras's `CategoricalFocalCrossentropy` (one-hot labels) or its sparse form."""
    cls = SparseCategoricalFocalCrossentropy if sparse else keras.losses.CategoricalFocalCrossentropy
    return cls(gamma=float(gamma), from_logits=from_logits, label_smoothing=float(label_smoothing))
