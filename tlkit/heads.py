"""Heads: the new layers stacked on a backbone, with their default loss and metrics.

A head is a serializable Keras layer (`Head`), so a saved model remembers what kind of head it
has, its class names, and which loss and metrics fit it.
"""

from __future__ import annotations

import keras

KINDS = ("classification", "multilabel", "regression")


@keras.saving.register_keras_serializable(package="tlkit")
class Head(keras.layers.Layer):
    """Dropout → optional hidden Dense layers → output Dense with the task's activation.

    Args:
        kind: `"classification"` (softmax over `units` classes), `"multilabel"` (independent
            sigmoids) or `"regression"` (linear).
        units: number of classes / labels / regression targets.
        hidden_units: sizes of hidden Dense layers (an MLP head); empty for a linear head.
        dropout: dropout rate before each Dense layer.
        activation: activation of hidden layers.
        class_names: optional names of the classes / labels, saved with the model.
    """

    def __init__(
        self,
        kind="classification",
        units=2,
        hidden_units=(),
        dropout=0.0,
        activation="relu",
        class_names=None,
        **kwargs,
    ):
        kwargs.setdefault("name", "head")
        super().__init__(**kwargs)
        if kind not in KINDS:
            raise ValueError(f"Expected head `kind` in {KINDS}. Received: kind={kind!r}")
        units = int(units)
        if kind == "classification" and units < 2:
            raise ValueError(
                "Expected `num_classes` >= 2 for a softmax classification head. "
                f"Received: num_classes={units}. For one yes/no output use "
                "head='multilabel' with num_classes=1 (sigmoid)."
            )
        if units < 1:
            raise ValueError(f"Expected `units` >= 1. Received: units={units}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"Expected 0 <= dropout < 1. Received: dropout={dropout}")
        if class_names is not None and len(class_names) != units:
            raise ValueError(
                f"Got {len(class_names)} class names for {units} outputs: {list(class_names)}"
            )
        self.kind = kind
        self.units = units
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.dropout = float(dropout)
        self.activation = activation
        self.class_names = list(class_names) if class_names is not None else None
        self._dropouts = []
        self._hidden = []
        for i, u in enumerate(self.hidden_units):
            self._dropouts.append(keras.layers.Dropout(self.dropout, name=f"dropout_{i}"))
            self._hidden.append(keras.layers.Dense(u, activation=activation, name=f"hidden_{i}"))
        self._final_dropout = keras.layers.Dropout(self.dropout, name="dropout_out")
        out_activation = {"classification": "softmax", "multilabel": "sigmoid"}.get(kind)
        # The output stays float32 under mixed precision (numerically safe softmax/loss).
        self._out = keras.layers.Dense(units, activation=out_activation, dtype="float32", name="out")

    def build(self, input_shape):
        shape = tuple(input_shape)
        for dense in self._hidden:
            dense.build(shape)
            shape = shape[:-1] + (dense.units,)
        self._out.build(shape)
        self.built = True

    def call(self, inputs, training=None):
        x = inputs
        for dropout, dense in zip(self._dropouts, self._hidden):
            x = dense(dropout(x, training=training))
        if self.dropout:
            x = self._final_dropout(x, training=training)
        return self._out(x)

    def scale_logits(self, factor):
        """Multiplies the output layer's kernel and bias by `factor` (> 0): the logits scale,
        the predicted classes stay (LP-FT's `probe_temperature` softens a converged probe)."""
        if not factor > 0:
            raise ValueError(f"Expected factor > 0. Received: factor={factor}")
        for variable in (self._out.kernel, self._out.bias):
            variable.assign(variable * factor)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.units,)

    def compute_output_spec(self, inputs, training=None):
        # The output layer computes in float32 even under a mixed policy; say so symbolically
        # too (Keras would otherwise report this layer's compute dtype, e.g. bfloat16).
        return keras.KerasTensor(self.compute_output_shape(inputs.shape), dtype=self._out.compute_dtype)

    def default_loss(self):
        return {
            "classification": "sparse_categorical_crossentropy",
            "multilabel": "binary_crossentropy",
            "regression": "mse",
        }[self.kind]

    def default_metrics(self):
        if self.kind == "classification":
            return ["accuracy"]
        if self.kind == "multilabel":
            return [keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")]
        return [keras.metrics.MeanAbsoluteError(name="mae")]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "kind": self.kind,
                "units": self.units,
                "hidden_units": list(self.hidden_units),
                "dropout": self.dropout,
                "activation": self.activation,
                "class_names": self.class_names,
            }
        )
        return config


def classification(num_classes, dropout=0.2, class_names=None) -> Head:
    """Softmax classifier over `num_classes` (>= 2) classes."""
    return Head("classification", num_classes, dropout=dropout, class_names=class_names)


def multilabel(num_labels, dropout=0.2, class_names=None) -> Head:
    """Independent sigmoid per label (multi-label classification)."""
    return Head("multilabel", num_labels, dropout=dropout, class_names=class_names)


def regression(num_outputs=1, dropout=0.0) -> Head:
    """Linear outputs trained with mean squared error."""
    return Head("regression", num_outputs, dropout=dropout)


def mlp(num_classes, hidden_units=(256,), dropout=0.3, kind="classification", class_names=None) -> Head:
    """An MLP head: `hidden_units` Dense layers with dropout, then the task's output layer."""
    return Head(kind, num_classes, hidden_units=hidden_units, dropout=dropout, class_names=class_names)


_FACTORIES = {
    "classification": classification,
    "multilabel": multilabel,
    "regression": regression,
    "mlp": mlp,
}


def get(head, num_classes=None, class_names=None, **kwargs) -> Head:
    """Resolves a head name (`"classification"`, `"multilabel"`, `"regression"`, `"mlp"`)."""
    if isinstance(head, Head):
        return head
    if head not in _FACTORIES:
        raise ValueError(f"Unknown head {head!r}. Expected one of {sorted(_FACTORIES)} or a `Head`.")
    if num_classes is None and class_names is not None:
        num_classes = len(class_names)
    if head == "regression":
        return regression(num_classes or 1, **kwargs)
    if num_classes is None:
        raise ValueError(f"head={head!r} needs `num_classes` (or `class_names`).")
    return _FACTORIES[head](num_classes, class_names=class_names, **kwargs)


def find_head(model) -> Head | None:
    """The tlkit `Head` layer of `model`, or `None`."""
    for layer in getattr(model, "layers", []):
        if isinstance(layer, Head):
            return layer
    return None
