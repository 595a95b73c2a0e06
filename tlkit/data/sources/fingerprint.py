"""A cheap fingerprint of one split's examples, for deciding whether a feature cache is stale.

For a split built from files it covers every file, without reading one: each path with its
size and modification time (`tf.io.gfile.stat`, so `gs://` paths work too); a file changed
or replaced anywhere in the split changes it. For in-memory arrays or texts it hashes them
all. Splits without a `SplitSource` (e.g. `from_tfds`) get `None`: the cache then falls back to
the example count and a hash of the first batch.
"""

from __future__ import annotations

import hashlib

import numpy as np
import tensorflow as tf


def split_fingerprint(data, split: str) -> str | None:
    """SHA-1 of `data`'s `split` examples (see the module docstring); `None` when unknown.

    Args:
        data: a `tlkit.data.LabeledData`.
        split: `"train"`, `"val"` or `"test"`.
    """
    source = data.sources.get(split)
    if source is None:
        return None
    x, y = np.asarray(source.x), np.asarray(source.y)
    digest = hashlib.sha1(f"n={len(x)}".encode())
    digest.update(np.ascontiguousarray(y).tobytes())
    if x.dtype.kind in "OSU" and len(x) and _is_file(x.flat[0]):
        for path in x.reshape(-1):
            name = path.decode() if isinstance(path, bytes) else str(path)
            stat = tf.io.gfile.stat(name)
            digest.update(f"{name}\0{stat.length}\0{stat.mtime_nsec}\n".encode())
    elif x.dtype.kind in "OSU":
        for value in x.reshape(-1):
            digest.update(value if isinstance(value, bytes) else str(value).encode())
            digest.update(b"\0")
    else:
        digest.update(str((x.dtype.str, x.shape)).encode())
        digest.update(np.ascontiguousarray(x).tobytes())
    return digest.hexdigest()


def _is_file(value) -> bool:
    name = value.decode() if isinstance(value, bytes) else str(value)
    try:
        return not tf.io.gfile.isdir(name) and tf.io.gfile.exists(name)
    except tf.errors.OpError:  # not a path a filesystem understands: a text
        return False
