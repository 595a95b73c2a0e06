"""Predictions of a trained run on raw inputs: image files, folders of images, or texts."""

from __future__ import annotations

import os

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def expand_image_inputs(inputs) -> list[str]:
    """Image file paths from files and folders (folders: their image files, recursively, sorted).

    Raises:
        FileNotFoundError: an input that does not exist, or no image file at all.
    """
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(
                os.path.join(root, f)
                for root, _, files in os.walk(item)
                for f in files
                if f.lower().endswith(IMAGE_EXTENSIONS)
            )
            if not found:
                raise FileNotFoundError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {item}")
            paths.extend(found)
        elif os.path.isfile(item):
            paths.append(item)
        else:
            raise FileNotFoundError(f"input not found: {item}")
    return paths


def load_images(paths, model) -> np.ndarray:
    """Decodes image files into the model's raw input: float32 `[0, 255]`, its size and channels.

    Raises:
        ValueError: a file that is not a decodable image (the path is named).
    """
    import tensorflow as tf

    height, width = _image_size(model)
    channels = model.inputs[0].shape[-1]
    images = []
    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        try:
            image = tf.io.decode_image(data, channels=channels, expand_animations=False)
        except tf.errors.InvalidArgumentError:
            raise ValueError(f"{path}: not a decodable image (JPEG, PNG, GIF or BMP)") from None
        image = tf.cast(image, tf.float32)
        if height is not None and width is not None:
            image = tf.image.resize(image, (height, width))
        images.append(image.numpy())
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise ValueError(
            f"images of different sizes {sorted(shapes)[:3]} for a model without a fixed input "
            "size; resize them first"
        )
    return np.stack(images)


def model_inputs(inputs):
    """`inputs` as Keras' `predict` takes them: strings (`bytes`, `numpy.str_`, as a string
    tensor's `.numpy()` gives them) become an object array of `str`, which is the only string
    array `predict` accepts (keras raises `Invalid dtype: object` / `str32` otherwise); anything
    else is returned as it is."""
    array = np.asarray(inputs) if isinstance(inputs, (list, tuple, np.ndarray)) else None
    if array is None or array.dtype.kind not in "OSU":
        return inputs
    return np.asarray(
        [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in array.ravel()],
        dtype=object,
    ).reshape(array.shape)


def predict(model, inputs, class_names=None, top: int = 1, batch_size: int = 32) -> list[dict]:
    """Top-`top` classes with probabilities for each input.

    Args:
        model: a trained tlkit model (raw inputs).
        inputs: image file paths / folders, PIL images or `[0, 255]` arrays (one image or a
            batch) for image models; strings for text models. One input alone is accepted too.
        class_names: names of the model's classes; default: those saved in its head.
        top: how many classes per input.
        batch_size: prediction batch size.

    Returns:
        `[{"input", "class", "probability", "top": [{"class", "probability"}, ...]}]`.

    Example:
    ```python
    tlkit.predict(model, ["cat.jpg", "dog.png"])[0]["class"]
    ```
    """
    if class_names is None:
        from tlkit import heads

        head = heads.find_head(model)
        class_names = getattr(head, "class_names", None)
        if not class_names:
            raise ValueError("The model's head has no class names; pass `class_names=`.")
    if (isinstance(inputs, (list, tuple)) and len(inputs) == 0) or (
            isinstance(inputs, np.ndarray) and inputs.size == 0):
        raise ValueError("predict: no inputs given (an empty list or array)")
    sources, x = _prediction_batch(model, inputs)
    if len(sources) == 0:
        raise ValueError(f"predict: no inputs found in {inputs!r:.200}")
    _check_finite_inputs(sources, x)
    probs = np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
    _check_finite_inputs(sources, probs, what="the model's probabilities for")
    results = []
    for source, p in zip(sources, probs):
        order = np.argsort(-p)[: max(1, top)]
        ranked = [{"class": class_names[i], "probability": float(p[i])} for i in order]
        results.append({"input": source, **ranked[0], "top": ranked})
    return results


def predict_tta(model, x, flip: bool = True, crops: float | None = None,
                batch_size: int = 32) -> np.ndarray:
    """Test-time augmentation: the mean of `model`'s predictions over deterministic views of
    images `x` `(n, h, w, c)`: the images, their horizontal mirror (`flip`), and with `crops`
    (a fraction such as 0.9) the four corner crops and the centre crop resized back.

    Returns the averaged predictions, shape `(n, outputs)`.
    """
    import keras

    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"predict_tta takes images (n, height, width, channels); got {x.shape}")
    if crops is not None and not 0.0 < float(crops) < 1.0:
        raise ValueError(f"predict_tta: crops must be a fraction in (0, 1), got {crops!r}")
    views = [x]
    if flip:
        views.append(x[:, :, ::-1, :])
    if crops is not None:
        h, w = x.shape[1:3]
        ch, cw = max(1, round(h * float(crops))), max(1, round(w * float(crops)))
        for top, left in ((0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw),
                          ((h - ch) // 2, (w - cw) // 2)):
            crop = x[:, top:top + ch, left:left + cw, :].astype("float32")
            views.append(np.asarray(keras.ops.image.resize(crop, (h, w))).astype(x.dtype))
    outputs = [np.asarray(model.predict(v, batch_size=batch_size, verbose=0)) for v in views]
    return np.mean(outputs, axis=0)


def _check_finite_inputs(sources, x, what="input"):
    """One line naming the inputs whose values (or probabilities) are NaN or infinite."""
    x = np.asarray(x) if not hasattr(x, "numpy") else x.numpy()
    if not np.issubdtype(x.dtype, np.floating):
        return
    bad = [s for s, row in zip(sources, x) if not np.isfinite(row).all()]
    if bad:
        shown = ", ".join(map(str, bad[:3])) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise ValueError(f"predict: {what} {shown}: NaN or infinite values; pass finite "
                         "pixel values (0-255) / features")


def _prediction_batch(model, inputs):
    """`(sources, x)`: a description of each input and the model's raw input batch."""
    if isinstance(inputs, (str, os.PathLike)) or not isinstance(inputs, (list, tuple, np.ndarray)):
        inputs = [inputs]
    if model.inputs[0].dtype == "string":
        x = model_inputs(list(inputs))
        return [str(t) for t in x], x
    if isinstance(inputs, np.ndarray):
        batch = inputs[None] if inputs.ndim == len(model.inputs[0].shape) - 1 else inputs
        return [f"array[{i}]" for i in range(len(batch))], _resized(batch, model)
    if all(isinstance(i, (str, os.PathLike)) for i in inputs):
        sources = expand_image_inputs([os.fspath(i) for i in inputs])
        return sources, load_images(sources, model)
    arrays = [np.asarray(i.convert("RGB") if hasattr(i, "convert") else i, dtype="float32")
              for i in inputs]
    return [f"image[{i}]" for i in range(len(arrays))], np.stack(
        [_resized(a[None], model)[0] for a in arrays])


def _resized(batch, model) -> np.ndarray:
    """`batch` as float32 at the model's fixed input size and channel count."""
    import tensorflow as tf

    height, width = _image_size(model)
    channels = model.inputs[0].shape[-1]
    x = tf.convert_to_tensor(np.asarray(batch, dtype="float32"))
    if x.shape.rank == 3:
        x = x[..., None]
    if channels == 1 and x.shape[-1] == 3:
        x = tf.image.rgb_to_grayscale(x)
    elif channels == 3 and x.shape[-1] == 1:
        x = tf.image.grayscale_to_rgb(x)
    if height is not None and width is not None and tuple(x.shape[1:3]) != (height, width):
        x = tf.image.resize(x, (height, width))
    return x.numpy()


def _image_size(model) -> tuple:
    """`(height, width)` images are resized to before `model` (its input size, else the
    backbone's: `tlkit.preprocessing.model_image_size`), `(None, None)` for any size."""
    from tlkit.preprocessing import model_image_size

    return model_image_size(model) or (None, None)
