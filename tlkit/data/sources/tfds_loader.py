"""`from_tfds`: a TensorFlow Datasets classification data set through its builder."""

from __future__ import annotations

import logging
import re

import tensorflow as tf

from tlkit._extras import require
from tlkit.data.sources import _images
from tlkit.data.sources.labeled_data import LabeledData

logger = logging.getLogger(__name__)

AUTO = "auto"


def from_tfds(
    name: str,
    split: str = "train[:80%]",
    val_split: str | None = AUTO,
    test_split: str | None = AUTO,
    data_dir=None,
    as_supervised: bool = True,
    x_key: str | None = None,
    y_key: str | None = None,
    image_size=None,
    download: bool = True,
    download_config=None,
) -> LabeledData:
    """Loads a TFDS classification data set (`tfds.builder` → `download_and_prepare` → splits).

    Args:
        name: TFDS name, optionally with config and version (`"mnist"`, `"tf_flowers:3.*.*"`),
            or the name of a `tfds.core.GeneratorBasedBuilder` subclass you defined.
        split: TFDS split for training, with slicing (`"train[:80%]"`).
        val_split: TFDS split for validation. `"auto"`: the rest of `split` when it is
            `"<name>[:N%]"` (e.g. `"train[80%:]"`), else none. `None`: no validation split.
        test_split: TFDS split for testing. `"auto"`: `"test"` when the data set has one.
        data_dir: TFDS data folder (default: TFDS's, `~/tensorflow_datasets`).
        as_supervised: read `(input, label)` through the data set's `supervised_keys`. With
            `False`, `x_key` / `y_key` pick the features (default `"image"`/`"text"`, `"label"`).
        x_key, y_key: feature names when `as_supervised=False`.
        image_size: optional `(height, width)` to resize images to.
        download: let TFDS download and prepare the data when it is not in `data_dir` yet.
        download_config: optional `tfds.download.DownloadConfig`.

    Returns:
        A `LabeledData`; `class_names` come from `info.features[label].names`. Images are
        float32 in `[0, 255]`.

    Raises:
        tfds.core.DatasetNotFoundError: unknown name.
        RuntimeError: the data could not be prepared (e.g. offline); the message says what to do.
        ValueError: the label feature is not a `ClassLabel`.

    Example:
    ```python
    data = tlkit.data.from_tfds("tf_flowers", split="train[:80%]", image_size=(224, 224))
    ```
    """
    tfds = require("tensorflow_datasets", "A TFDS data set")
    image_size = _images.check_image_size(image_size)
    builder = tfds.builder(name, data_dir=data_dir)
    info = builder.info
    if download:
        try:
            builder.download_and_prepare(download_config=download_config)
        except Exception as err:  # network, checksum, disk: each surfaces as its own type
            raise RuntimeError(
                f"TFDS could not prepare {name!r} in {builder.data_dir!r} "
                f"({type(err).__name__}: {err}). If this machine is offline, prepare it where "
                "there is network and copy the folder, then pass its parent as `data_dir=` "
                "(in a recipe: data.options.data_dir), or set the TFDS_DATA_DIR environment "
                "variable to it."
            ) from err
    x_key, y_key = _keys(info, as_supervised, x_key, y_key)
    label = info.features[y_key]
    if not isinstance(label, tfds.features.ClassLabel):
        raise ValueError(
            f"{name!r}: feature {y_key!r} is a {type(label).__name__}, not a ClassLabel; "
            "from_tfds loads classification data. Pass `y_key=` naming a ClassLabel feature."
        )
    kind = _kind(info.features[x_key], tfds)

    splits = {"train": split, "val": _val_split(split, val_split), "test": None}
    if test_split == AUTO:
        known = set(info.splits.keys())
        splits["test"] = "test" if (not known or "test" in known) and "test" not in split else None
    else:
        splits["test"] = test_split
    datasets = {}
    for role, tfds_split in splits.items():
        if tfds_split is None:
            continue
        ds = builder.as_dataset(split=tfds_split, as_supervised=as_supervised, shuffle_files=False)
        if not as_supervised:
            ds = ds.map(lambda ex: (ex[x_key], ex[y_key]), num_parallel_calls=tf.data.AUTOTUNE)
        datasets[role] = ds.map(
            _convert_fn(kind, image_size), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )
    return LabeledData(
        **datasets,
        class_names=list(label.names),
        kind=kind,
        name=f"tfds {name} ({', '.join(f'{k}={v}' for k, v in splits.items() if v)})",
    )


def _keys(info, as_supervised, x_key, y_key):
    if as_supervised:
        if not info.supervised_keys:
            raise ValueError(
                f"{info.name!r} has no supervised_keys; pass as_supervised=False with `x_key` "
                f"and `y_key` from its features {list(info.features.keys())}."
            )
        keys = info.supervised_keys
        return keys[0], keys[1]
    features = list(info.features.keys())
    x_key = x_key or next((k for k in ("image", "text") if k in features), None)
    y_key = y_key or "label"
    for key, arg in ((x_key, "x_key"), (y_key, "y_key")):
        if key not in features:
            raise ValueError(
                f"{info.name!r} has no feature {key!r}. Features: {features}; pass `{arg}=`."
            )
    return x_key, y_key


def _kind(feature, tfds) -> str:
    if isinstance(feature, tfds.features.Image):
        return "image"
    if isinstance(feature, tfds.features.Text) or feature.dtype == tf.string:
        return "text"
    return "features"


def _val_split(split: str, val_split):
    if val_split != AUTO:
        return val_split
    match = re.fullmatch(r"(\w+)\[:(\d+(?:\.\d+)?)%\]", split.replace(" ", ""))
    if match:
        return f"{match.group(1)}[{match.group(2)}%:]"
    logger.info("from_tfds: no validation split derived from split=%r; pass `val_split=`.", split)
    return None


def _convert_fn(kind: str, image_size):
    def convert(x, y):
        if kind == "image":
            x = tf.cast(x, tf.float32)
            if image_size is not None:
                x = tf.clip_by_value(tf.image.resize(x, image_size), 0.0, 255.0)
        elif kind == "features":
            x = tf.cast(x, tf.float32)
        return x, tf.cast(y, tf.int64)

    return convert
