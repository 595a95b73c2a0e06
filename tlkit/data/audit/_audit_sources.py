"""What `tlkit.data.audit` reads: image files under class folders, or `LabeledData` / arrays.

Each source yields one `Item` per example (split, name, label, content hash, size, mode, or
the error that made it unreadable), and optionally the decoded value for embeddings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterator

import numpy as np

from tlkit.data.sources import _class_folders
from tlkit.data.sources.labeled_data import UNLABELED, LabeledData

MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


@dataclasses.dataclass
class Item:
    """One audited example: where it is, its label, and what reading it showed."""

    split: str
    ref: str
    label: object  # class index (int) or class name (str), as stored; None: unlabelled pool
    known: bool  # label is in the class list
    digest: str | None = None
    size: tuple[int, int] | None = None
    mode: str | None = None
    error: str | None = None


class FolderSource:
    """Image files under class folders, read with PIL."""

    kind = "image"

    def __init__(self, path, splits, class_names):
        extensions = _class_folders.IMAGE_EXTENSIONS
        layout = _class_folders.scan(path, extensions, class_names, splits)
        if not layout.class_names:
            _class_folders.require_classes(layout, extensions, "image")
        self.description = os.path.abspath(layout.root)
        self.class_names = list(layout.class_names)
        self.split_names = list(layout.split_dirs)
        order = {"train": 0, "val": 1, "test": 2}
        self.split_names.sort(key=lambda s: order.get(s, 3))
        self.files = {s: layout.files[s] for s in self.split_names}
        self.seed = 0
        self.total = sum(len(f) for f in self.files.values())
        self.notes = []
        if layout.other_files:
            shown = [os.path.relpath(p, layout.root) for p in layout.other_files[:5]]
            self.notes.append(
                f"{len(layout.other_files)} file(s) ignored (not {'/'.join(extensions)}, or "
                f"not inside a class folder), e.g. {shown}"
            )
        for split, names in layout.extra_classes.items():
            if names:
                self.notes.append(
                    f"split {split!r} has class folders {names} not in the class list"
                )

    def limit(self, max_images, seed):
        self.seed = int(seed)
        return _proportional({s: len(f) for s, f in self.files.items()}, max_images)

    def iterate(self, limit, with_values) -> Iterator[tuple[Item, object]]:
        from PIL import Image

        classes = set(self.class_names)
        for split in self.split_names:
            files = self.files[split]
            if limit is not None:
                keep = _sample_indices(
                    len(files), limit[split], self.seed, self.split_names.index(split)
                )
                files = [files[i] for i in keep]
            for path, class_name in files:
                item = Item(
                    split,
                    os.path.relpath(path, self.description),
                    class_name,
                    class_name in classes,
                )
                value = None
                try:
                    with Image.open(path) as image:
                        image.load()
                        item.mode = image.mode
                        item.size = (image.height, image.width)
                        pixels = np.asarray(image)
                        if with_values:
                            value = np.asarray(image.convert("RGB"))
                    item.digest = _digest(pixels, item.mode)
                except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
                    item.error = f"{type(err).__name__}: {err}"
                yield item, value


class DatasetSource:
    """Examples of `LabeledData` splits (iterated as NumPy) or of NumPy arrays."""

    def __init__(self, description, parts, class_names, kind, refs, notes=()):
        self.description = description
        # split -> ("dataset", tf.data.Dataset, size or None) | ("arrays", x, y)
        self.parts = parts
        self.split_names = list(parts)
        self.class_names = list(class_names)
        self.kind = kind
        self.refs = refs  # split -> optional array of names (e.g. file paths)
        self.sizes = {s: self._size(p) for s, p in parts.items()}
        self.total = sum(self.sizes.values())
        self.notes = list(notes)
        self.seed = 0

    @staticmethod
    def _size(part):
        return int(part[2] or 0) if part[0] == "dataset" else len(part[2])

    @classmethod
    def from_labeled(cls, data: LabeledData, splits, class_names):
        chosen = list(splits) if splits is not None else list(data.splits)
        if splits is None and data.unlabeled is not None:
            chosen.append(UNLABELED)
        parts, refs = {}, {}
        for split in chosen:
            ds = data.split(split)
            if split == UNLABELED:  # inputs alone: paired with no label for `iterate`
                ds = ds.map(lambda x: (x, -1))
            parts[split] = ("dataset", ds, data.num_examples(split))
            refs[split] = data.metadata.get(split, {}).get("path")
        names = list(class_names) if class_names is not None else data.class_names
        notes = []
        if data.skipped:
            notes.append(f"the loader already skipped {len(data.skipped)} input(s) (`.skipped`)")
        return cls(data.name or "LabeledData", parts, names, data.kind, refs, notes)

    @classmethod
    def from_arrays(cls, arrays, splits, class_names):
        if isinstance(arrays, dict):
            pairs = dict(arrays)
        else:
            if len(arrays) != 2:
                raise ValueError("Expected arrays as an (x, y) pair or a dict {split: (x, y)}.")
            pairs = {_class_folders.SINGLE: arrays}
        if splits is not None:
            missing = [s for s in splits if s not in pairs]
            if missing:
                raise ValueError(f"Split(s) {missing} not given. Present: {list(pairs)}")
            pairs = {s: pairs[s] for s in splits}
        parts, every_label, kind = {}, [], None
        for split, pair in pairs.items():
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
                raise ValueError(f"Expected split {split!r} as an (x, y) pair of arrays.")
            x, y = np.asarray(pair[0]), np.asarray(pair[1]).reshape(-1)
            if len(x) != len(y):
                raise ValueError(
                    f"x and y of split {split!r} differ in length: len(x)={len(x)}, "
                    f"len(y)={len(y)}."
                )
            if kind is None:
                kind = "text" if x.dtype.kind in "USO" else "image" if x.ndim >= 3 else "features"
            parts[split] = ("arrays", x, y)
            every_label.append(y)
        labels = np.concatenate(every_label) if every_label else np.zeros(0)
        if class_names is not None:
            names = [str(c) for c in class_names]
        elif labels.dtype.kind in "USO":
            names = sorted({str(v) for v in labels})
        else:
            names = [str(i) for i in range(int(labels.max()) + 1 if labels.size else 0)]
        return cls("numpy arrays", parts, names, kind or "features", {})

    def limit(self, max_images, seed):
        self.seed = int(seed)
        return _proportional(self.sizes, max_images)

    def _pairs(self, split, cap):
        part = self.parts[split]
        if part[0] == "dataset":
            # tlkit loaders keep each split in a seeded random order: the first `cap` are a sample.
            ds = part[1] if cap is None else part[1].take(cap)
            for i, (x, y) in enumerate(ds.as_numpy_iterator()):
                yield i, x, y
            return
        _, x, y = part
        for i in _sample_indices(len(y), cap, self.seed, self.split_names.index(split)):
            yield int(i), x[i], y[i]

    def iterate(self, limit, with_values) -> Iterator[tuple[Item, object]]:
        index = {name: i for i, name in enumerate(self.class_names)}
        for split in self.split_names:
            refs = self.refs.get(split)
            cap = limit[split] if limit is not None else None
            for i, x, y in self._pairs(split, cap):
                ref = str(refs[i]) if refs is not None and i < len(refs) else f"#{i}"
                if split == UNLABELED:
                    label, known = None, True
                else:
                    label, known = _label(y, self.class_names, index)
                item = Item(split, ref, label, known)
                if self.kind == "image":
                    array = np.asarray(x)
                    if array.ndim == 2:
                        array = array[..., np.newaxis]
                    item.size = (int(array.shape[0]), int(array.shape[1]))
                    item.mode = MODES.get(int(array.shape[-1]), f"{array.shape[-1]}ch")
                    if refs is not None and os.path.isfile(ref):
                        # The file as it is on disk (a loader may have resized or converted
                        # it), as the audit of a folder sees it.
                        item.size, item.mode = _file_size_mode(ref, item.size, item.mode)
                    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
                        item.error = "non-finite pixel values"
                    item.digest = _digest(array, item.mode)
                else:
                    item.digest = _digest(x, self.kind)
                yield item, (x if with_values else None)


def leaks(splits) -> bool:
    """Whether copies of one example in `splits` are leakage: they span more than one of
    train, val and test. The unlabelled pool counts as training data (a model trains on it), so
    a copy in the pool and in train is not leakage; one in the pool and in test is.

    Example: `leaks(["unlabeled", "test"])` is `True`; `leaks(["unlabeled", "train"])` `False`.
    """
    return len({"train" if s == UNLABELED else s for s in splits}) > 1


def _file_size_mode(path, size, mode):
    """`((height, width), mode)` from the image file's header (PIL, no decode); the decoded
    ones when the file cannot be opened."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return (image.height, image.width), image.mode
    except (OSError, SyntaxError, ValueError):
        return size, mode


def _label(y, class_names, index):
    if isinstance(y, (bytes, np.bytes_)):
        y = y.decode("utf-8", "replace")
    if isinstance(y, (str, np.str_)):
        return str(y), str(y) in index
    value = int(np.asarray(y).reshape(-1)[0])
    return value, 0 <= value < len(class_names)


def _proportional(sizes: dict[str, int], max_images) -> dict[str, int] | None:
    total = sum(sizes.values())
    if max_images is None or total <= int(max_images):
        return None
    return {s: max(1, int(n * int(max_images) / total)) if n else 0 for s, n in sizes.items()}


def _sample_indices(n: int, k: int | None, seed: int, stream: int) -> np.ndarray:
    """Sorted seeded sample of `k` of `range(n)` (all when `k` is None or >= n)."""
    if k is None or k >= n:
        return np.arange(n)
    rng = np.random.default_rng([int(seed), int(stream)])
    return np.sort(rng.choice(n, size=k, replace=False))


def _digest(value, tag) -> str:
    digest = hashlib.sha1(str(tag).encode())
    if isinstance(value, (bytes, np.bytes_)):
        digest.update(bytes(value))
    elif isinstance(value, str):
        digest.update(value.encode("utf-8"))
    else:
        array = np.ascontiguousarray(value)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def jsonable(value):
    return value if isinstance(value, (str, int, float)) else str(value)
