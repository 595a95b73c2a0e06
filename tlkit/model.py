"""`build_model`: a pretrained backbone + preprocessing + a new head, as one Keras model."""

from __future__ import annotations

import keras

from tlkit import heads as heads_lib
from tlkit import trainability
from tlkit.backbones import resolve
from tlkit.preprocessing import ImagePreprocessing


def build_model(
    backbone,
    head="classification",
    num_classes=None,
    class_names=None,
    input_shape=None,
    dropout=0.2,
    hidden_units=(256,),
    pooling="avg",
    augmentation=None,
    freeze_backbone=True,
    bn_policy="frozen",
    compile=True,
    optimizer="adam",
    learning_rate=1e-3,
    name=None,
    jit_compile="auto",
    data=None,
) -> keras.Model:
    """Stacks a new head on a pretrained backbone.

    The model takes raw inputs: images as pixels in `[0, 255]` (any size; grey is repeated to
    RGB when the backbone needs it), or strings for text backbones. The backbone's own
    preprocessing (resize, rescale, normalize, tokenize) is part of the model.

    Args:
        backbone: anything `tlkit.backbones.get` accepts (a `Backbone`, a Keras model, a
            pretrained name, a keras.applications name, a TF-Hub handle or SavedModel folder).
        head: `"classification"`, `"multilabel"`, `"regression"`, `"mlp"` or a `tlkit.heads.Head`.
        num_classes: number of classes / labels / outputs (or give `class_names`).
        class_names: names of the classes, saved with the model.
        input_shape: raw input shape without batch, e.g. `(28, 28, 1)`; default: the backbone's.
        dropout: dropout rate of the head.
        hidden_units: hidden layer sizes for `head="mlp"`.
        pooling: `"avg"` or `"max"` when the backbone returns a feature map or a sequence.
        augmentation: optional Keras layer (e.g. `tlkit.data.augmentation({...})`) applied to
            raw inputs; active only in training.
        freeze_backbone: start with only the head trainable (phase one of fine-tuning).
        bn_policy: BatchNorm policy, see `tlkit.trainability.set_trainable`.
        compile: compile with the head's default loss and metrics and `optimizer`.
        optimizer, learning_rate: used when `compile=True`.
        name: model name.
        jit_compile: XLA for `compile=True`: `"auto"` (Keras decides: on for a GPU without
            tf.distribute, off on CPU), `True` or `False`.
        data: a `tlkit.data.LabeledData` (may also be passed in place of `head`): gives
            `class_names` and the image `input_shape` unless they are passed.

    Returns:
        A `keras.Model`.

    Example:
    ```python
    model = tlkit.build_model("path/to/saved_model", num_classes=5, input_shape=(96, 96, 3))
    model.fit(train_ds, validation_data=val_ds, epochs=3)
    model = tlkit.build_model("efficientnet_lite0", data)   # classes and input shape from data
    ```
    """
    if is_labeled_data(head):
        head, data = "classification", head
    if data is not None:
        if not is_labeled_data(data):
            raise TypeError(
                "Expected `data` to be a tlkit.data.LabeledData (from tlkit.data.from_image_folder, "
                f"...). Received: {type(data).__name__}"
            )
        if class_names is None and num_classes is None:
            class_names = list(data.class_names)
        if input_shape is None and data.kind != "text":
            input_shape = data.input_shape
    backbone = resolve.get(backbone)
    info = backbone.input_info
    head_kwargs = {"dropout": dropout}
    if head == "mlp":
        head_kwargs["hidden_units"] = hidden_units
    head_layer = heads_lib.get(head, num_classes=num_classes, class_names=class_names, **head_kwargs)

    if info.kind == "text":
        if input_shape not in (None, (), []):
            raise ValueError(
                f"Text backbones take one string per example; input_shape must be () or None. "
                f"Received: input_shape={input_shape}"
            )
        inputs = keras.Input(shape=(), dtype="string", name="text")
        x = inputs
        if augmentation is not None:
            raise ValueError("`augmentation` applies to image backbones only.")
        preprocessor = getattr(backbone, "preprocessor", None)
        if preprocessor is not None:
            x = preprocessor(x)
    elif info.kind == "image":
        shape = _image_input_shape(input_shape, info)
        inputs = keras.Input(shape=shape, name="image")
        x = inputs
        if augmentation is not None:
            x = augmentation(x)
        x = ImagePreprocessing(info)(x)
    else:
        if input_shape is None:
            raise ValueError("Feature backbones need `input_shape`.")
        inputs = keras.Input(shape=tuple(input_shape), name="features")
        x = inputs

    features = backbone(x)
    if isinstance(features, (dict, list, tuple)):
        keys = sorted(features) if isinstance(features, dict) else list(range(len(features)))
        raise ValueError(
            f"The backbone {backbone.name!r} returns a {type(features).__name__} of outputs "
            f"({keys}); a head needs one feature tensor. Pick one with `output_key=` (e.g. "
            f"`from_hub(handle, output_key={keys[0]!r})`)."
        )
    features = _pool(features, pooling)
    outputs = head_layer(features)
    model = keras.Model(inputs, outputs, name=name or f"{backbone.name}_{head_layer.kind}")
    if freeze_backbone:
        trainability.freeze_backbone(model, bn_policy=bn_policy)
    else:
        trainability.unfreeze_all(model, bn_policy=bn_policy)
    if compile:
        compile_model(model, optimizer=optimizer, learning_rate=learning_rate, jit_compile=jit_compile)
    return model


def is_labeled_data(value) -> bool:
    """Whether `value` is a `tlkit.data.LabeledData`, duck-typed: the model and training layers
    do not import the data package (import contracts)."""
    return hasattr(value, "class_names") and hasattr(value, "pipeline") and hasattr(value, "splits")


def _image_input_shape(input_shape, info):
    if input_shape is None:
        size = info.image_size or (None, None)
        return (size[0], size[1], info.channels)
    shape = tuple(input_shape)
    if len(shape) != 3:
        raise ValueError(
            "Expected image `input_shape` as (height, width, channels) without the batch "
            f"dimension. Received: input_shape={input_shape} (rank {len(shape)})."
        )
    if shape[-1] not in (1, 3, info.channels):
        raise ValueError(
            f"Expected 1 or {info.channels} image channels. Received: input_shape={input_shape}"
        )
    return shape


def _pool(features, pooling):
    rank = len(features.shape)
    if rank == 2:
        return features
    if pooling not in ("avg", "max"):
        raise ValueError(f"Expected pooling 'avg' or 'max'. Received: pooling={pooling!r}")
    if rank == 4:
        layer = (
            keras.layers.GlobalAveragePooling2D(name="pool")
            if pooling == "avg"
            else keras.layers.GlobalMaxPooling2D(name="pool")
        )
        return layer(features)
    if rank == 3:
        layer = (
            keras.layers.GlobalAveragePooling1D(name="pool")
            if pooling == "avg"
            else keras.layers.GlobalMaxPooling1D(name="pool")
        )
        return layer(features)
    raise ValueError(f"Backbone output of rank {rank} is not supported: {features.shape}")


def compile_model(model, optimizer="adam", learning_rate=1e-3, loss=None, metrics=None, **kwargs):
    """Compiles `model` with its head's default loss and metrics (overridable).

    `optimizer` may be a name (`"adam"`, `"adamw"`, `"sgd"`) — built with `learning_rate` — or a
    Keras optimizer instance. Extra keyword arguments go to `model.compile` (e.g.
    `jit_compile=True` for XLA, `steps_per_execution=32`).
    """
    head = heads_lib.find_head(model)
    if loss is None:
        if head is None:
            raise ValueError("The model has no tlkit head; pass `loss=`.")
        loss = head.default_loss()
    if metrics is None:
        metrics = head.default_metrics() if head is not None else []
    if isinstance(optimizer, str):
        config = {"class_name": optimizer, "config": {"learning_rate": learning_rate}}
        optimizer = keras.optimizers.get(config)
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)
    return model
