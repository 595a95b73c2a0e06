"""File I/O of the sharded feature cache on local or non-local paths (`gs://`, `ram://`, ...).

Local paths use the OS directly (fsync before an atomic rename, memory-mapped `.npy` reads);
any other path goes through `tf.io.gfile`, TensorFlow's filesystem layer, so a cache folder on
Cloud Storage works from a Cloud TPU VM or a multi-host GPU job without a mounted bucket. There
a shard is written to a temporary object and renamed (on GCS a copy then a delete: readers
never see a half-written object, the same guarantee as a local rename).
"""

from __future__ import annotations

import io
import os
import uuid

import numpy as np
import tensorflow as tf

from tlkit.data.features.feature_cache import _atomic_write as _local_atomic_write


def is_local(path: str) -> bool:
    """Whether `path` is on the local filesystem (no `scheme://` prefix)."""
    return "://" not in os.fspath(path)


def join(folder: str, name: str) -> str:
    return os.path.join(folder, name) if is_local(folder) else f"{folder.rstrip('/')}/{name}"


def basename(path: str) -> str:
    return os.path.basename(path) if is_local(path) else path.rstrip("/").rsplit("/", 1)[-1]


def atomic_write(path: str, write) -> None:
    """Calls `write(f)` on a temporary file, then renames it to `path` (see module docstring)."""
    if is_local(path):
        _local_atomic_write(path, write)
        return
    tmp = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with tf.io.gfile.GFile(tmp, "wb") as f:
            write(f)
        tf.io.gfile.rename(tmp, path, overwrite=True)
    finally:
        if tf.io.gfile.exists(tmp):
            tf.io.gfile.remove(tmp)


def load_npy(path: str, mmap: bool = False) -> np.ndarray:
    """A `.npy` file: memory-mapped when local and `mmap`, else read whole."""
    if is_local(path):
        return np.load(path, mmap_mode="r" if mmap else None)
    with tf.io.gfile.GFile(path, "rb") as f:
        return np.load(io.BytesIO(f.read()))


def open_binary(path: str):
    return open(path, "rb") if is_local(path) else tf.io.gfile.GFile(path, "rb")


def open_text(path: str):
    return open(path, encoding="utf-8") if is_local(path) else tf.io.gfile.GFile(path, "r")
