"""Label smoothing through the cross-entropy losses' own `label_smoothing` argument.

Keras's `SparseCategoricalCrossentropy` has no such argument, so integer labels get
`SparseLabelSmoothingCrossentropy`: one-hot, then Keras's `categorical_crossentropy` with it.
"""

from __future__ import annotations

import keras

_WITH_ARGUMENT = {
    "categorical_crossentropy": keras.losses.CategoricalCrossentropy,
    "binary_crossentropy": keras.losses.BinaryCrossentropy,
}


@keras.saving.register_keras_serializable("tlkit")
class SparseLabelSmoothingCrossentropy(keras.losses.Loss):
    """Sparse categorical cross-entropy with label smoothing (integer labels)."""

    def __init__(self, label_smoothing=0.1, from_logits=False, name="sparse_smoothed_ce",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        depth = keras.ops.shape(y_pred)[-1]
        labels = keras.ops.reshape(keras.ops.cast(y_true, "int32"), keras.ops.shape(y_pred)[:-1])
        return keras.losses.categorical_crossentropy(
            keras.ops.one_hot(labels, depth, dtype=y_pred.dtype), y_pred,
            from_logits=self.from_logits, label_smoothing=self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing,
                "from_logits": self.from_logits}


def with_label_smoothing(loss, amount: float):
    """`loss` (a name or Keras cross-entropy loss) with `label_smoothing=amount`."""
    if not amount:
        return loss
    if isinstance(loss, str):
        if loss == "sparse_categorical_crossentropy":
            return SparseLabelSmoothingCrossentropy(amount)
        if loss in _WITH_ARGUMENT:
            return _WITH_ARGUMENT[loss](label_smoothing=amount)
    elif isinstance(loss, keras.losses.SparseCategoricalCrossentropy):
        return SparseLabelSmoothingCrossentropy(amount, from_logits=loss.fn_kwargs.get(
            "from_logits", False))
    elif isinstance(loss, tuple(_WITH_ARGUMENT.values())):
        return type(loss).from_config({**loss.get_config(), "label_smoothing": amount})
    raise ValueError(f"label_smoothing={amount} needs a cross-entropy loss (categorical, sparse "
                     f"categorical or binary); the loss is {loss!r}.")
