"""Image files → float32 `[0, 255]` tensors, and an up-front pass that finds unreadable files."""

from __future__ import annotations

import logging
import os
import re

import numpy as np
import tensorflow as tf

from tlkit.data.sources._decode_cache import DecodeCheckCache
from tlkit.data.sources.labeled_data import Skipped

logger = logging.getLogger(__name__)

CHECKS = ("decode", "header", None)


def check_channels(channels: int) -> int:
    if channels not in (1, 3, 4):
        raise ValueError(f"Expected `channels` in (1, 3, 4). Received: channels={channels}")
    return int(channels)


def check_image_size(image_size):
    if image_size is None:
        return None
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    image_size = tuple(int(s) for s in image_size)
    if len(image_size) != 2 or min(image_size) < 1:
        raise ValueError(
            f"Expected `image_size` as (height, width) of positive ints. Received: {image_size}"
        )
    return image_size


def decode_fn(channels: int, image_size=None, shape=None, interpolation="bilinear"):
    """Returns `(path, y) -> (float32 image in [0, 255], y)` for `tf.data.Dataset.map`.

    Args:
        channels: channels of the output (grey is repeated, alpha dropped, as TF decodes).
        image_size: `(height, width)` to resize to, or `None` to keep each file's size.
        shape: static `(height, width)` to assert when every file has that size already.
        interpolation: resize method (`tf.image.resize`).
    """

    def load(path, y):
        raw = tf.io.read_file(path)
        image = tf.io.decode_image(raw, channels=channels, expand_animations=False)
        image.set_shape([None, None, channels])
        image = tf.cast(image, tf.float32)
        if image_size is not None:
            image = tf.image.resize(image, image_size, method=interpolation)
            image = tf.clip_by_value(image, 0.0, 255.0)
        elif shape is not None:
            image = tf.ensure_shape(image, [shape[0], shape[1], channels])
        return image, y

    return load


def find_unreadable(
    paths, check="decode", channels=3, cache: bool = True
) -> tuple[list[Skipped], dict[str, tuple]]:
    """Finds files that would fail to decode, before any epoch runs.

    Args:
        paths: image file paths.
        check: `"decode"` (decode every file with TensorFlow, in parallel, exactly as training
            will: the safe choice), `"header"` (PIL `verify`: cheap, misses truncated JPEGs) or
            `None` (no check).
        channels: channels to decode to.
        cache: with `"decode"`, reuse the outcome remembered for a file whose size, mtime and
            ctime are unchanged, and remember the new ones (`_decode_cache`).

    Returns:
        `(skipped, sizes)`: unreadable files with the reason, and `(height, width)` of every
        readable file (`"decode"` and `"header"` checks; empty with `None`).
    """
    if check not in CHECKS:
        raise ValueError(f"Expected `check` in {CHECKS}. Received: check={check!r}")
    paths = [os.fspath(p) for p in paths]
    # A name that is not valid UTF-8 (Python keeps its bytes as surrogate escapes) cannot
    # become a TensorFlow string: skipped and listed, never a failed run.
    misnamed = [Skipped(p, "the file name is not valid UTF-8; rename the file to include it")
                for p in paths if not _utf8(p)]
    if misnamed:
        paths = [p for p in paths if _utf8(p)]
        found, sizes = find_unreadable(paths, check, channels, cache)
        return misnamed + found, sizes
    if check is None or not paths:
        return [], {}
    if check == "header":
        return _check_headers(paths)
    if not cache:
        return _check_decode(paths, channels)
    store = DecodeCheckCache()
    try:
        known, stamps = store.lookup(paths, channels)
        todo = [p for p in paths if p not in known]
        skipped, sizes = _check_decode(todo, channels) if todo else ([], {})
        reasons = {s.source: s.reason for s in skipped}
        store.store(
            {p: (*sizes[p], None) if p in sizes else (None, None, reasons[p]) for p in todo},
            stamps,
            channels,
        )
    finally:
        store.close()
    logger.info(
        "decode check: %d file(s) decoded, %d unchanged since an earlier check (%s)",
        len(todo),
        len(known),
        store.path,
    )
    for path, (height, width, error) in known.items():
        if error is None:
            sizes[path] = (height, width)
        else:
            skipped.append(Skipped(path, error))
    order = {p: i for i, p in enumerate(paths)}
    skipped.sort(key=lambda s: order[s.source])
    return skipped, sizes


def _check_decode(paths, channels):
    """Decodes every file with TensorFlow, in parallel on all cores (tf.data map)."""

    def probe(path):
        image = tf.io.decode_image(
            tf.io.read_file(path), channels=channels, expand_animations=False
        )
        return path, tf.shape(image)[:2]

    ds = tf.data.Dataset.from_tensor_slices(np.asarray(paths, dtype=object))
    ds = ds.map(probe, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    ds = ds.ignore_errors(log_warning=False)
    sizes = {p.decode(): tuple(int(v) for v in hw) for p, hw in ds.as_numpy_iterator()}
    skipped = [Skipped(p, _decode_error(p, channels)) for p in paths if p not in sizes]
    return skipped, sizes


def _decode_error(path: str, channels: int) -> str:
    """The reason one file fails (only called for the few files that do)."""
    try:
        tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
    except (tf.errors.OpError, OSError) as err:
        message = getattr(err, "message", None) or str(err)
        message = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", message)
        message = re.sub(r"\s*\[Op:\w+\].*$", "", message.strip().splitlines()[-1])
        return message[:300]
    return "could not be decoded in the input pipeline"


def _check_headers(paths):
    from PIL import Image

    skipped, sizes = [], {}
    for path in paths:
        try:
            with Image.open(path) as image:
                width, height = image.size
                image.verify()
            sizes[path] = (height, width)
        except (OSError, SyntaxError, ValueError) as err:
            skipped.append(Skipped(path, f"{type(err).__name__}: {err}"))
    return skipped, sizes


def _utf8(path: str) -> bool:
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def printable(path: str) -> str:
    """`path` for messages and logs: bytes that are not UTF-8 shown as `\\xff`."""
    return path if _utf8(path) else os.fsencode(path).decode("utf-8", "backslashreplace")


def log_skipped(where: str, skipped: list[Skipped], limit: int = 10) -> None:
    if not skipped:
        return
    listed = "; ".join(f"{printable(s.source)} ({s.reason})" for s in skipped[:limit])
    more = f"; ... and {len(skipped) - limit} more" if len(skipped) > limit else ""
    logger.warning(
        "%s: skipped %d unreadable file(s), listed in `LabeledData.skipped`: %s%s",
        where,
        len(skipped),
        listed,
        more,
    )


def common_size(sizes: dict[str, tuple]) -> tuple | None:
    """The `(height, width)` shared by all files, or `None` when they differ."""
    distinct = set(sizes.values())
    return next(iter(distinct)) if len(distinct) == 1 else None
