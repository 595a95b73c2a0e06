"""Exporting a trained tlkit model: `.keras`, a serving SavedModel, TFLite and a TF-Hub backbone.

- `export_keras`: `model.save` + a reload in safe mode (the file is checked, not only written).
- `export_savedmodel`: a SavedModel whose `serve` signature takes *raw* inputs: encoded
  JPEG / PNG / GIF / BMP bytes (`tf.string`, decoded and resized inside) for image models, or
  strings for text models; it returns `probabilities`, `class_id` and `class_name`. A second
  endpoint, `serve_pixels`, takes `[0, 255]` float pixels. Built with `keras.export.ExportArchive`.
- `export_tflite`: float or dynamic-range quantized TFLite via Keras's LiteRT exporter
  (`model.export(format="litert")`, builtin ops only), with a parity check against the Keras model (max abs difference, top-1 agreement).
- `export_hub`: the (fine-tuned) backbone as a TF2 reusable SavedModel (`__call__(inputs,
  training)`, `variables`, `trainable_variables`, `regularization_losses`), so that
  `tlkit.backbones.from_hub(path)` and other TF-Hub consumers can reuse it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf

from tlkit import heads as heads_lib
from tlkit import trainability
from tlkit.backbones.hub import HubBackbone
from tlkit.preprocessing import ImagePreprocessing, model_image_size

logger = logging.getLogger("tlkit")

HUB_INFO_FILE = "tlkit_backbone.json"


def _is_text(model) -> bool:
    return model.inputs[0].dtype == "string"


def _class_names(model, class_names=None):
    if class_names is not None:
        return [str(c) for c in class_names]
    head = heads_lib.find_head(model)
    if head is not None and head.class_names:
        return list(head.class_names)
    return [str(i) for i in range(model.outputs[0].shape[-1])]


# -- .keras --------------------------------------------------------------------------------------
def export_keras(model, path) -> str:
    """Saves `model` to a `.keras` file and checks that it reloads in safe mode.

    Returns:
        `path`.
    """
    from tlkit._io import atomic_path

    with atomic_path(path) as tmp:
        model.save(tmp)
        keras.models.load_model(tmp, safe_mode=True, compile=False)
    return os.fspath(path)


# -- serving SavedModel ----------------------------------------------------------------------------
def _pixel_size(model):
    """`(height, width, channels)` of the model's raw image input (height/width may be None)."""
    shape = model.inputs[0].shape
    return shape[1], shape[2], shape[3]


def _decode_fn(model, default_size=224):
    height, width, channels = _pixel_size(model)
    if height is None or width is None:
        height, width = model_image_size(model) or (default_size, default_size)

    def decode(data):
        image = tf.io.decode_image(data, channels=channels, expand_animations=False)
        image = tf.image.resize(tf.cast(image, tf.float32), (height, width))
        return tf.ensure_shape(image, (height, width, channels))

    def decode_batch(images):
        return tf.map_fn(
            decode, images, fn_output_signature=tf.TensorSpec((height, width, channels), tf.float32)
        )

    return decode_batch


def export_savedmodel(model, path, class_names=None) -> str:
    """Writes a serving SavedModel that takes raw inputs.

    Endpoints (also SavedModel signatures; `serve` is `serving_default`):
    - `serve(inputs)`: `tf.string` `[batch]`: encoded images (JPEG, PNG, GIF, BMP) for image
      models, texts for text models.
    - `serve_pixels(pixels)` (image models): float32 `[batch, h, w, c]` in `[0, 255]`.

    Each returns `{"probabilities", "class_id", "class_name"}`.

    Example:
    ```python
    served = tf.saved_model.load(path)
    served.serve(tf.constant([open("cat.jpg", "rb").read()]))["class_name"]
    ```
    """
    path = os.fspath(path)
    names = tf.constant(_class_names(model, class_names))

    def outputs(probs):
        class_id = tf.argmax(probs, axis=-1, output_type=tf.int32)
        return {
            "probabilities": probs,
            "class_id": class_id,
            "class_name": tf.gather(names, class_id),
        }

    archive = keras.export.ExportArchive()
    archive.track(model)
    spec = tf.TensorSpec([None], tf.string, name="inputs")
    if _is_text(model):
        archive.add_endpoint("serve", lambda texts: outputs(model(texts, training=False)), [spec])
    else:
        decode = _decode_fn(model)
        archive.add_endpoint(
            "serve", lambda images: outputs(model(decode(images), training=False)), [spec]
        )
        height, width, channels = _pixel_size(model)
        pixels = tf.TensorSpec([None, height, width, channels], tf.float32, name="pixels")
        archive.add_endpoint("serve_pixels", lambda x: outputs(model(x, training=False)), [pixels])
    with _replacing_dir(path) as tmp:
        archive.write_out(tmp, verbose=False)
    return path


@contextlib.contextmanager
def _replacing_dir(path):
    """Yields a temporary folder next to `path` that replaces `path` on success."""
    from tlkit._io import temp_name

    if os.path.isdir(path) and os.listdir(path) and not os.path.exists(
            os.path.join(path, "saved_model.pb")):
        raise ValueError(
            f"{path} exists and is not a SavedModel (no saved_model.pb): tlkit only replaces "
            "its own exports; choose another --output, or move that folder away")
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{path} exists and is a file, not a SavedModel folder: choose another "
                         "--output, or move it away")
    tmp = temp_name(path)
    os.makedirs(tmp)
    try:
        yield tmp
        if os.path.isdir(path):
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)


# -- TFLite ----------------------------------------------------------------------------------------
def export_tflite(model, path, quantize: str | None = None, sample_inputs=None) -> dict:
    """Converts an image (or feature) model to TFLite, with a parity check.

    Args:
        model: a Keras model with a float input of static height, width and channels.
        path: the `.tflite` file to write.
        quantize: `None` (float32) or `"dynamic"` (dynamic-range quantized weights).
        sample_inputs: optional raw inputs `(n, h, w, c)` for the parity check.

    Returns:
        `{"path", "size_bytes", "parity": {"max_abs_diff", "top1_agreement", "num_examples"}}`
        (`parity` only with `sample_inputs`).

    Raises:
        ValueError: a text model (string ops are not TFLite builtins), or an input shape
            with unknown dimensions.
    """
    from tlkit._io import atomic_path

    if _is_text(model):
        raise ValueError(
            "TFLite export supports image and feature models; this model takes strings "
            "(tokenization is not a TFLite builtin). Use the 'savedmodel' format."
        )
    if quantize not in (None, "dynamic"):
        raise ValueError(f"Expected quantize None or 'dynamic'. Received: quantize={quantize!r}")
    shape = static_input_shape(model)
    # Keras's LiteRT exporter (ExportArchive -> SavedModel -> TFLiteConverter). Builtin ops
    # only: Keras would also allow TF ("Flex") ops, which the plain TFLite runtime lacks.
    options = {"target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}}
    if quantize == "dynamic":
        options["optimizations"] = [tf.lite.Optimize.DEFAULT]
    with tempfile.TemporaryDirectory() as tmp:
        converted = os.path.join(tmp, "model.tflite")
        model.export(converted, format="litert", verbose=False,
                     input_signature=[tf.TensorSpec((None, *shape), tf.float32)], **options)
        with open(converted, "rb") as f:
            flatbuffer = f.read()
    with atomic_path(path) as tmp_file:
        with open(tmp_file, "wb") as f:
            f.write(flatbuffer)
    result = {"path": os.fspath(path), "size_bytes": len(flatbuffer)}
    if sample_inputs is not None:
        result["parity"] = tflite_parity(model, path, sample_inputs)
    return result


def static_input_shape(model) -> tuple:
    """The input shape (without batch) of a TFLite export: the model's, with an image size
    it leaves open fixed at the size it resizes to (`tlkit.preprocessing.model_image_size`:
    the backbone's), so a model trained on images of different sizes exports as it ran.

    Raises:
        ValueError: a dimension nothing fixes (a backbone that takes any size).
    """
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) == 3 and None in shape[:2] and model_image_size(model) is not None:
        shape = (*model_image_size(model), shape[2])
    if any(d is None for d in shape):
        raise ValueError(
            f"TFLite export needs a static input shape; the model takes {shape}. Set "
            "data.image_size (or build the model with a fixed input_shape)."
        )
    return shape


def tflite_predict(tflite_path, inputs, batch_size: int = 64) -> np.ndarray:
    """Runs a TFLite model on inputs (with `tf.lite.Interpreter`), `batch_size` at a time.

    The interpreter allocates activations for a whole batch: 1,000 images at 128 px in one
    batch take gigabytes, so larger inputs go through in slices.
    """
    import warnings

    inputs = np.asarray(inputs, dtype="float32")
    with warnings.catch_warnings():  # tf.lite.Interpreter's deprecation notice (LiteRT)
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
        interpreter = tf.lite.Interpreter(model_path=os.fspath(tflite_path))
    detail = interpreter.get_input_details()[0]
    output = interpreter.get_output_details()[0]["index"]
    outputs, allocated = [], None
    for start in range(0, len(inputs), int(batch_size)):
        chunk = inputs[start:start + int(batch_size)]
        if chunk.shape != allocated:
            interpreter.resize_tensor_input(detail["index"], chunk.shape)
            interpreter.allocate_tensors()
            allocated = chunk.shape
        interpreter.set_tensor(detail["index"], chunk)
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(output).copy())
    return np.concatenate(outputs)


def tflite_parity(model, tflite_path, inputs) -> dict:
    """Compares TFLite and Keras outputs: `{max_abs_diff, top1_agreement, num_examples}`."""
    inputs = np.asarray(inputs, dtype="float32")
    expected = np.asarray(model.predict(inputs, batch_size=64, verbose=0))  # in slices, too
    got = tflite_predict(tflite_path, inputs)
    return {
        "max_abs_diff": float(np.max(np.abs(expected - got))),
        "top1_agreement": float(np.mean(expected.argmax(-1) == got.argmax(-1))),
        "num_examples": int(len(inputs)),
    }


# -- TF-Hub backbone ---------------------------------------------------------------------------------
class _HubModule(tf.__internal__.tracking.AutoTrackable):
    """The reusable SavedModel object: `__call__(inputs, training=False)` + variable lists."""


@contextlib.contextmanager
def _all_trainable(layer):
    """Makes every layer under `layer` trainable; restores layer and variable flags after."""
    layers = list(layer._flatten_layers(include_self=True, recursive=True))
    layer_flags = [(sub, sub._trainable) for sub in layers]
    var_flags = [(v, v.trainable) for v in layer.variables]
    try:
        for sub in layers:  # the property setter itself: `x.trainable = True` is skipped
            type(sub).trainable.fset(sub, True)  # by Keras when x.trainable is already True
        yield
    finally:
        for sub, flag in layer_flags:
            sub._trainable = flag
        for v, flag in var_flags:
            v.trainable = flag


@contextlib.contextmanager
def _renamed_variables(backbone, trainable_ids):
    """Points each Keras variable of `backbone` at a fresh `tf.Variable` named
    `<tlkit group>/<variable path>` (trainable when its id is in `trainable_ids`), so the
    SavedModel's variables carry the layer groups (`from_hub` groups variables by their first
    name scope). Yields `[(keras_variable, tf_variable)]`; the originals are restored on exit."""
    group_of = {}
    for group in backbone.layer_groups():
        for v in group.variables:
            group_of[id(v)] = group.name
    swapped = []
    try:
        for v in backbone.variables:
            scope = group_of.get(id(v), "other")
            name = f"{scope}/{v.path}".replace(":", "_")
            new = tf.Variable(v.value, name=name, trainable=id(v) in trainable_ids)
            swapped.append((v, v._value, new))
            v._value = new
        yield [(v, new) for v, _, new in swapped]
    finally:
        for v, old, _ in swapped:
            v._value = old


def export_hub(model_or_backbone, path) -> str:
    """Writes the (fine-tuned) backbone as a TF2 reusable SavedModel (the TF-Hub format).

    Image modules take float images in `[0, 1]` of any size (the TF-Hub image convention) and
    do the backbone's own resize / normalization inside; text modules take strings (with the
    backbone's tokenizer inside). Variables are named `<group>/<layer>/<weight>` for Keras
    backbones, so `from_hub` finds the same layer groups. `HUB_INFO_FILE` next to
    `saved_model.pb` records the module's `InputInfo` and the original backbone's.

    `trainable_variables` are the variables that train when fine-tuned (BatchNorm statistics
    excluded); `regularization_losses` is empty.

    Example:
    ```python
    export_hub(model, "export/hub")
    backbone = tlkit.backbones.from_hub("export/hub")
    ```
    """
    from tlkit._io import atomic_write_json
    from tlkit.backbones.base import Backbone

    path = os.fspath(path)
    backbone = model_or_backbone
    if not isinstance(backbone, Backbone):
        backbone = trainability.find_backbone(model_or_backbone)
        if backbone is None:
            raise ValueError(
                "export_hub needs a tlkit model (with a tlkit Backbone) or a Backbone."
            )
    info = backbone.input_info
    module = _HubModule()
    if info.kind == "image":
        preprocess = ImagePreprocessing(info)
        spec = tf.TensorSpec([None, None, None, info.channels], tf.float32)
        module_info = {"kind": "image", "value_range": [0.0, 1.0], "channels": info.channels}

        def forward(x):
            return preprocess(tf.convert_to_tensor(x, tf.float32) * 255.0)
    elif info.kind == "text":
        preprocessor = getattr(backbone, "preprocessor", None)
        spec = tf.TensorSpec([None], tf.string)
        module_info = {"kind": "text", "dtype": "string"}
        if preprocessor is not None:
            module._preprocessor = preprocessor  # tracks its vocabulary tables / assets

        def forward(x):
            return preprocessor(x) if preprocessor is not None else x
    else:
        spec = tf.TensorSpec([None, *backbone.input_shape[1:]], tf.float32)
        module_info = {"kind": "features"}

        def forward(x):
            return x

    def save(variables, trainable, owner=None):
        def call(inputs, training=False):
            outputs = backbone(forward(inputs), training=training)
            # Under a mixed dtype policy the backbone computes in bfloat16/float16; the module
            # serves float32 like any TF-Hub module.
            return tf.nest.map_structure(
                lambda t: tf.cast(t, tf.float32) if t.dtype.is_floating else t, outputs
            )

        module.__call__ = tf.function(call)
        module.variables = list(variables)
        module.trainable_variables = list(trainable)
        module.regularization_losses = []
        if owner is not None:
            module._source = owner
        for training in (False, True):
            module.__call__.get_concrete_function(spec, training=training)
        with _replacing_dir(path) as tmp:
            tf.saved_model.save(module, tmp)

    if isinstance(backbone, HubBackbone):
        variables = [v.value for v in backbone._hub_variables]
        trainable = [v.value for v in backbone._hub_variables if not v._tlkit_always_frozen]
        saved_policy = backbone.bn_policy
        backbone.bn_policy = "update"  # training=True reaches the SavedModel as it is
        try:
            with _all_trainable(backbone):
                save(variables, trainable, owner=backbone._obj)
        finally:
            backbone.bn_policy = saved_policy
    else:
        with _all_trainable(backbone):
            natural = {id(v) for v in backbone.trainable_variables}
            with _renamed_variables(backbone, natural) as pairs:
                save([new for _, new in pairs], [new for v, new in pairs if id(v) in natural])
    atomic_write_json(
        os.path.join(path, HUB_INFO_FILE),
        {
            "input_info": module_info,
            "backbone_input_info": info.get_config(),
            "backbone": backbone.name,
            "groups": [g.name for g in backbone.layer_groups()],
        },
    )
    return path
