"""`from_numpy`: in-memory arrays of images, texts or feature vectors and their labels."""

from __future__ import annotations

import logging

import numpy as np
import tensorflow as tf

from tlkit.config import TEST_FRACTION, VAL_FRACTION
from tlkit.data.sources import _assemble, _labels
from tlkit.data.sources.labeled_data import KINDS, LabeledData

logger = logging.getLogger(__name__)


def from_numpy(
    x,
    y,
    class_names=None,
    kind: str | None = None,
    val_fraction: float = VAL_FRACTION,
    test_fraction: float = TEST_FRACTION,
    seed: int = 0,
    val=None,
    test=None,
    metadata: dict | None = None,
    name: str = "numpy arrays",
    x_unlabeled=None,
) -> LabeledData:
    """Wraps arrays as a `LabeledData`, holding out stratified val / test splits.

    Args:
        x: images `(n, h, w)` / `(n, h, w, c)` with pixels in `[0, 255]`, texts `(n,)` of str,
            or features `(n, d)`.
        y: `n` labels: integer class indices, or class names (strings).
        class_names: class list; default: `"0"`..`"k-1"` for integer labels (k = max + 1),
            sorted distinct names for string labels.
        kind: `"image"`, `"text"` or `"features"`; default: inferred from `x`'s dtype and rank.
        val_fraction, test_fraction: fractions per class held out from `(x, y)` (stratified,
            seeded), unless `val` / `test` are given.
        seed: seed of the split and of the order of examples.
        val, test: optional explicit `(x, y)` splits.
        metadata: optional columns aligned with `x` (e.g. `{"source": array}`), kept per split.
        name: description for summaries and reports.
        x_unlabeled: optional unlabelled inputs, shaped like `x`, kept as
            `LabeledData.unlabeled` (the pool for semi-supervised training and
            `tlkit.select_to_label`). Default `None`.

    Returns:
        A `LabeledData`.

    Raises:
        ValueError: `x` and `y` lengths differ (both are named), a label is outside the class
            list (its index and value are named), labels are not integers, or < 2 classes;
            `x_unlabeled` is empty or its examples are not shaped like `x`'s.

    Example:
    ```python
    data = tlkit.data.from_numpy(images, labels, class_names=["cat", "dog"], val_fraction=0.2)
    ```
    """
    parts = {"train": (x, y, "x", "y")}
    for split, pair in (("val", val), ("test", test)):
        if pair is not None:
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
                raise ValueError(f"Expected `{split}` as a pair (x_{split}, y_{split}).")
            parts[split] = (pair[0], pair[1], f"x_{split}", f"y_{split}")
    arrays = {}
    for split, (xs, ys, x_name, y_name) in parts.items():
        xs = np.asarray(xs)
        ys = np.asarray(ys)
        if ys.ndim == 2 and ys.shape[1] == 1:
            ys = ys.reshape(-1)
        if ys.ndim != 1:
            raise ValueError(
                f"Expected `{y_name}` as one class index per example, shape (n,). Received shape "
                f"{ys.shape}; for one-hot labels pass `np.argmax({y_name}, axis=1)`."
            )
        if xs.ndim == 0 or len(xs) != len(ys):
            raise ValueError(
                f"`{x_name}` and `{y_name}` must have the same length. Received: "
                f"len({x_name})={len(xs) if xs.ndim else 'scalar'}, len({y_name})={len(ys)}."
            )
        arrays[split] = (xs, ys, y_name)

    every_y = np.concatenate([ys for _, ys, _ in arrays.values()])
    if every_y.dtype.kind in "USO":
        names = (
            [str(c) for c in class_names]
            if class_names is not None
            else _labels.infer_class_names(every_y)
        )
        index = {c: i for i, c in enumerate(names)}
        converted = {}
        for split, (xs, ys, y_name) in arrays.items():
            for i, value in enumerate(ys):
                if str(value).strip() not in index:
                    raise ValueError(
                        f"{y_name}[{i}] = {str(value)!r} is not in class_names {names}."
                    )
            converted[split] = (xs, np.asarray([index[str(v).strip()] for v in ys]), y_name)
        arrays = converted
    else:
        arrays = {
            s: (xs, _as_int_labels(ys, y_name), y_name) for s, (xs, ys, y_name) in arrays.items()
        }
        highest = max(int(ys.max()) for _, ys, _ in arrays.values() if len(ys))
        names = (
            [str(c) for c in class_names]
            if class_names is not None
            else [str(i) for i in range(highest + 1)]
        )
        for _, ys, y_name in arrays.values():
            _check_range(ys, len(names), y_name, class_names is not None)
    if len(names) < 2:
        raise ValueError(
            f"Expected at least 2 classes. Received: class_names={names}; classification needs "
            "labels of 2 or more classes."
        )

    kind = kind or _infer_kind(arrays["train"][0])
    if kind not in KINDS:
        raise ValueError(f"Expected `kind` in {KINDS}. Received: kind={kind!r}")
    xs_all = [_prepare_x(xs, kind) for xs, _, _ in arrays.values()]
    shapes = {xs.shape[1:] for xs in xs_all}
    if len(shapes) > 1:
        raise ValueError(f"All splits need the same example shape. Received: {sorted(shapes)}")
    x_all = np.concatenate(xs_all) if len(xs_all) > 1 else xs_all[0]
    pool = None if x_unlabeled is None else _prepare_unlabeled(x_unlabeled, kind, x_all.shape[1:])
    y_all = np.concatenate([ys for _, ys, _ in arrays.values()]).astype("int64")

    if metadata is not None:
        metadata = {k: np.asarray(v) for k, v in metadata.items()}
        for key, value in metadata.items():
            if len(value) != len(arrays["train"][1]):
                raise ValueError(
                    f"metadata[{key!r}] has {len(value)} entries; expected one per example "
                    f"of x ({len(arrays['train'][1])})."
                )
    sizes = {s: len(ys) for s, (_, ys, _) in arrays.items()}
    y_by_split = {s: y_all[o : o + n] for s, o, n in _offsets(sizes)}
    split_indices = _assemble.layout_splits(y_by_split, val_fraction, test_fraction, seed)
    if metadata:
        pad = len(y_all) - sizes["train"]
        metadata = {k: _pad(v, pad) for k, v in metadata.items()}
    return _assemble.assemble(
        x_all,
        y_all,
        split_indices,
        names,
        kind,
        map_fn=_cast_fn(kind),
        metadata=metadata,
        name=name,
        unlabeled_x=pool,
    )


def _prepare_unlabeled(x_unlabeled, kind: str, example_shape) -> np.ndarray:
    pool = np.asarray(x_unlabeled)
    if pool.ndim == 0 or len(pool) == 0:
        raise ValueError(
            f"`x_unlabeled` is empty (shape {pool.shape}); pass at least one unlabelled example, "
            "or leave it out."
        )
    pool = _prepare_x(pool, kind)
    if pool.shape[1:] != tuple(example_shape):
        raise ValueError(
            f"`x_unlabeled` examples have shape {pool.shape[1:]}; expected {tuple(example_shape)} "
            "like `x`'s. Resize or reshape them to match."
        )
    return pool


def _offsets(sizes):
    start = 0
    for split, n in sizes.items():
        yield split, start, n
        start += n


def _pad(values: np.ndarray, extra: int) -> np.ndarray:
    if extra == 0:
        return values
    fill = np.full((extra,) + values.shape[1:], None if values.dtype == object else 0)
    return np.concatenate([values, fill.astype(values.dtype)])


def _as_int_labels(ys: np.ndarray, y_name: str) -> np.ndarray:
    if ys.dtype.kind == "b" or ys.dtype.kind not in "iuf":
        raise ValueError(
            f"Expected integer class indices in `{y_name}`. Received dtype {ys.dtype}."
        )
    if ys.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(ys) | (ys != np.round(ys)))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"{y_name}[{i}] = {ys[i].item()} is not an integer class index "
                f"({bad.size} such label(s))."
            )
    return ys.astype("int64")


def _check_range(ys: np.ndarray, num_classes: int, y_name: str, named: bool) -> None:
    bad = np.flatnonzero((ys < 0) | (ys >= num_classes))
    if bad.size:
        i = int(bad[0])
        source = f"class_names has {num_classes} entries" if named else "labels start at 0"
        raise ValueError(
            f"{y_name}[{i}] = {int(ys[i])} is outside [0, {num_classes}) ({source}); "
            f"{bad.size} label(s) out of range. Fix the labels or pass a longer `class_names`."
        )


def _infer_kind(x: np.ndarray) -> str:
    if x.dtype.kind in "USO":
        return "text"
    if x.ndim == 3 or (x.ndim == 4 and x.shape[-1] in (1, 3, 4)):
        return "image"
    if x.ndim == 2:
        return "features"
    raise ValueError(
        f"Cannot tell what `x` of shape {x.shape} and dtype {x.dtype} holds. Pass "
        "kind='image' (n, h, w[, c]), 'text' (n,) or 'features' (n, d)."
    )


def _prepare_x(x: np.ndarray, kind: str) -> np.ndarray:
    if kind == "text":
        return np.asarray([str(v) for v in x], dtype=object)
    if x.dtype.kind not in "iufb":
        raise ValueError(f"Expected numeric `x` for kind={kind!r}. Received dtype {x.dtype}.")
    if kind == "image":
        if x.ndim == 3:
            x = x[..., np.newaxis]
        if x.ndim != 4:
            raise ValueError(f"Expected images of shape (n, h, w[, c]). Received {x.shape}.")
        if x.dtype.kind == "f" and x.size and float(np.nanmax(x)) <= 1.0:
            logger.warning(
                "Image pixels are all <= 1.0; tlkit expects pixels in [0, 255] (models rescale "
                "to the backbone's range). Multiply by 255 if these are [0, 1] images."
            )
    return x


def _cast_fn(kind: str):
    if kind == "text":
        return None

    def cast(x, y):
        return tf.cast(x, tf.float32), y

    return cast
