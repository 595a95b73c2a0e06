"""Fashion-MNIST from Debian's `dataset-fashion-mnist` IDX files (MIT licence), offline."""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np
import tensorflow as tf

from tlkit.config import VAL_FRACTION
from tlkit.data.sources import _images, _splits
from tlkit.data.sources.labeled_data import LabeledData
from tlkit.data.sources.numpy_arrays import from_numpy

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
CLASS_NAMES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def read_idx(path) -> np.ndarray:
    """Reads one (optionally gzipped) IDX file of unsigned bytes into an array."""
    opener = gzip.open if os.fspath(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4:
        raise ValueError(f"{os.fspath(path)!r} is not an IDX file (too short).")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(
            f"{os.fspath(path)!r} is not an IDX file of unsigned bytes "
            f"(magic {data[:4].hex()}, expected 0000080x)."
        )
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise ValueError(
            f"{os.fspath(path)!r} is truncated: header says shape {shape}, found {array.size} "
            "values."
        )
    return array.reshape(shape)


def load_fashion_mnist_arrays(path=None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """`{"train": (x, y), "test": (x, y)}` as uint8 images `(n, 28, 28)` and int labels."""
    folder = os.fspath(path) if path is not None else DEFAULT_DIR
    missing = [
        os.path.join(folder, name)
        for files in _FILES.values()
        for name in files
        if not os.path.isfile(os.path.join(folder, name))
    ]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST files not found: {missing}. Install them with "
            "`sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu, puts them in "
            f"{DEFAULT_DIR}), or pass `path=` to a folder holding the four IDX .gz files."
        )
    out = {}
    for split, (images, labels) in _FILES.items():
        x = read_idx(os.path.join(folder, images))
        y = read_idx(os.path.join(folder, labels)).astype("int64")
        if len(x) != len(y):
            raise ValueError(f"{folder}: {len(x)} {split} images but {len(y)} labels.")
        out[split] = (x, y)
    return out


def fashion_mnist(
    num_per_class: int | None = None,
    subset=None,
    image_size=None,
    seed: int = 0,
    val_fraction: float = VAL_FRACTION,
    eval_per_class: int | None = None,
    channels: int = 1,
    path=None,
) -> LabeledData:
    """Fashion-MNIST (Zalando, MIT licence) read offline from the installed IDX files.

    Train and val come from the official 60k training images (val: `val_fraction` per class,
    stratified, seeded); test is the official 10k test set. Pixels are float32 in `[0, 255]`.

    Args:
        num_per_class: keep this many training examples per class (a label budget, nested
            across budgets like `subsample`); `None` keeps all.
        subset: optional class names or indices to keep (labels are renumbered in that order).
        image_size: `(height, width)` to resize to (default 28x28).
        seed: seed of the val split and of the picks.
        val_fraction: fraction of the official training set held out for validation.
        eval_per_class: keep at most this many val and test examples per class (faster
            evaluation); `None` keeps all.
        channels: 1 (grey, as stored) or 3 (grey repeated).
        path: folder of the four `*-idx?-ubyte.gz` files (default: Debian's location).

    Returns:
        A `LabeledData` of kind `"image"` with `train`, `val` (if `val_fraction` > 0), `test`.

    Raises:
        FileNotFoundError: the files are missing (the message says how to install them).

    Example:
    ```python
    data = tlkit.data.fashion_mnist(num_per_class=10, image_size=(32, 32), channels=3)
    ```
    """
    image_size = _images.check_image_size(image_size)
    if channels not in (1, 3):
        raise ValueError(f"Expected `channels` 1 or 3. Received: channels={channels}")
    arrays = load_fashion_mnist_arrays(path)
    names = list(CLASS_NAMES)
    if subset is not None:
        keep = [_class_index(c) for c in subset]
        names = [CLASS_NAMES[i] for i in keep]
        remap = np.full(len(CLASS_NAMES), -1, dtype="int64")
        remap[keep] = np.arange(len(keep))
        for split, (x, y) in arrays.items():
            mask = remap[y] >= 0
            arrays[split] = (x[mask], remap[y[mask]])
    x_train, y_train = arrays["train"]
    x_test, y_test = arrays["test"]
    parts = (
        _splits.stratified_split(y_train, val_fraction, 0.0, seed)
        if val_fraction
        else {"train": _splits.shuffled(len(y_train), seed)}
    )
    train_idx = parts["train"]
    if num_per_class is not None:
        train_idx = _per_class(y_train, train_idx, num_per_class, seed)
    val = None
    if "val" in parts:
        val_idx = parts["val"]
        if eval_per_class is not None:
            val_idx = _per_class(y_train, val_idx, eval_per_class, seed)
        val = (x_train[val_idx], y_train[val_idx])
    test_idx = _splits.shuffled(len(y_test), seed)
    if eval_per_class is not None:
        test_idx = _per_class(y_test, test_idx, eval_per_class, seed)
    data = from_numpy(
        x_train[train_idx],
        y_train[train_idx],
        class_names=names,
        kind="image",
        val_fraction=0.0,
        seed=seed,
        val=val,
        test=(x_test[test_idx], y_test[test_idx]),
        name="Fashion-MNIST",
    )
    if image_size is None and channels == 1:
        return data
    return data.map(_resize_fn(image_size, channels))


def _class_index(c) -> int:
    if isinstance(c, (int, np.integer)) and 0 <= int(c) < len(CLASS_NAMES):
        return int(c)
    if isinstance(c, str) and c in CLASS_NAMES:
        return CLASS_NAMES.index(c)
    raise ValueError(f"Unknown Fashion-MNIST class {c!r}. Classes: {CLASS_NAMES} (or 0-9).")


def _per_class(y: np.ndarray, indices: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """At most `per_class` of `indices` per class, nested across budgets for a seed."""
    if int(per_class) < 1:
        raise ValueError(f"Expected a per-class count >= 1. Received: {per_class}")
    ordered = np.sort(indices)
    picked = []
    for c in np.unique(y[ordered]):
        idx = ordered[y[ordered] == c]
        picked.append(idx[_splits.class_rng(seed, c).permutation(len(idx))[: int(per_class)]])
    joined = np.concatenate(picked)
    return joined[np.random.default_rng(int(seed)).permutation(len(joined))]


def _resize_fn(image_size, channels: int):
    def fix(x, y):
        if image_size is not None:
            x = tf.image.resize(x, image_size)
        if channels == 3:
            x = tf.image.grayscale_to_rgb(x)
        return x, y

    return fix
