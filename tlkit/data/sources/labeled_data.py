"""`LabeledData`: the train / val / test splits of a classification data set, and what they hold."""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from tlkit.data.sources import pipeline as pipeline_lib

logger = logging.getLogger(__name__)

KINDS = ("image", "text", "features")
SPLITS = ("train", "val", "test")
UNLABELED = "unlabeled"
"""Name of the unlabelled pool: not one of `SPLITS` (it has no labels), but carried, mapped,
audited and named like a split (`data.split("unlabeled")`, `metadata["unlabeled"]`)."""
NO_LABEL = -1
"""The label its `SplitSource` carries for each unlabelled example (never trained on)."""


@dataclasses.dataclass(frozen=True)
class Skipped:
    """An input that a loader left out, and why.

    Args:
        source: file path, or `"<file>: row N"` for a CSV row.
        reason: what was wrong with it.
    """

    source: str
    reason: str


@dataclasses.dataclass
class SplitSource:
    """How one split's dataset is built: per-example columns and a map to `(x, y)`.

    Loaders that know their examples up front (files, arrays) keep this so that `select` and
    `subsample` can pick examples *before* decoding, instead of filtering a decoded stream.

    Args:
        x: per-example inputs or their sources (file paths, texts, arrays), first axis = examples.
        y: integer labels, shape `(n,)`.
        map_fn: optional `(x, y) -> (x, y)` applied with `tf.data` (decode, resize, cast).
    """

    x: np.ndarray
    y: np.ndarray
    map_fn: Callable | None = None

    def build(self, shuffle: bool = False, seed: int | None = None, buffer: int | None = None):
        """Returns the unbatched `(x, y)` dataset.

        Args:
            shuffle: shuffle the raw entries (paths, arrays) *before* `map_fn`, reshuffled each
                epoch: the buffer fills fast and holds no decoded images.
            seed: shuffle seed.
            buffer: shuffle buffer size (default: see `tlkit.data.sources.pipeline.default_shuffle_buffer`).
        """
        ds = tf.data.Dataset.from_tensor_slices((self.x, self.y))
        if shuffle:
            size = buffer or pipeline_lib.default_shuffle_buffer(ds)
            ds = ds.shuffle(size, seed=seed, reshuffle_each_iteration=True)
        if self.map_fn is not None:
            ds = ds.map(self.map_fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds

    def select(self, indices) -> SplitSource:
        return SplitSource(self.x[indices], self.y[indices], self.map_fn)

    def then(self, fn: Callable) -> SplitSource:
        """The same examples with `fn(x, y) -> (x, y)` applied after this source's map."""
        first = self.map_fn
        if first is None:
            return SplitSource(self.x, self.y, fn)

        def composed(x, y):
            return fn(*first(x, y))

        return SplitSource(self.x, self.y, composed)


@dataclasses.dataclass
class LabeledData:
    """Splits of a labelled data set as unbatched `tf.data.Dataset`s of `(x, y)`.

    Images are float32 pixels in `[0, 255]` of shape `(height, width, channels)` (rescaling to
    a backbone's range happens inside models built by `tlkit.build_model`); texts are scalar
    `tf.string`; features are float32 vectors. Labels are int64 class indices into
    `class_names`. Every split keeps a fixed order (loaders shuffle once, with their seed), so
    `labels[split]` and `metadata[split]` line up with the dataset, example by example. Use
    `pipeline(split, batch_size)` (or `tlkit.data.batch`) to shuffle per epoch, batch and
    prefetch.

    Args:
        train, val, test: unbatched `(x, y)` datasets, or `None` when a split is absent.
        class_names: names of the classes; label `i` is `class_names[i]`.
        kind: `"image"`, `"text"` or `"features"`.
        metadata: optional per-split columns aligned with the examples, e.g.
            `{"test": {"path": array([...])}}`, for slicing metrics by source, size, etc.
        labels: optional per-split int64 label arrays aligned with the examples (filled by the
            loaders; computed on demand by `split_labels` otherwise).
        skipped: inputs a loader left out (corrupt files, undecodable texts, bad rows).
        sources: per-split `SplitSource`s, when the loader has them (see `select`);
            `sources["unlabeled"]` holds the unlabelled pool's (labels `NO_LABEL`).
        name: short description of where the data came from.
        unlabeled: optional unbatched dataset of inputs `x` alone (no labels): the pool of
            unlabelled examples (`from_image_folder(..., unlabeled=DIR)`,
            `from_numpy(..., x_unlabeled=...)`), for semi-supervised training and for choosing
            what to label next (`tlkit.select_to_label`). `metadata["unlabeled"]` names its
            files; the data audit reports its duplicates with the val / test splits as leakage.

    Example:
    ```python
    data = tlkit.data.from_numpy(x, y, class_names=["cat", "dog"], val_fraction=0.2)
    model.fit(data.pipeline("train", 32, seed=0), validation_data=data.pipeline("val", 32))
    ```
    """

    train: tf.data.Dataset | None = None
    val: tf.data.Dataset | None = None
    test: tf.data.Dataset | None = None
    class_names: list[str] = dataclasses.field(default_factory=list)
    kind: str = "image"
    metadata: dict[str, dict[str, np.ndarray]] = dataclasses.field(default_factory=dict, repr=False)
    labels: dict[str, np.ndarray] = dataclasses.field(default_factory=dict, repr=False)
    skipped: list[Skipped] = dataclasses.field(default_factory=list)
    sources: dict[str, SplitSource] = dataclasses.field(default_factory=dict, repr=False)
    name: str = ""
    unlabeled: tf.data.Dataset | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Expected `kind` in {KINDS}. Received: kind={self.kind!r}")
        self.class_names = [str(c) for c in self.class_names]
        if len(self.class_names) < 2:
            raise ValueError(
                "Expected at least 2 classes for classification. "
                f"Received: class_names={self.class_names!r}"
            )
        if len(set(self.class_names)) != len(self.class_names):
            duplicates = [c for c, n in collections.Counter(self.class_names).items() if n > 1]
            raise ValueError(f"`class_names` must be unique. Repeated: {duplicates}")
        if not self.splits:
            raise ValueError("LabeledData needs at least one of `train`, `val`, `test`.")
        for split, ds in self.splits.items():
            spec = ds.element_spec
            if not (isinstance(spec, tuple) and len(spec) == 2):
                raise ValueError(
                    f"Expected the `{split}` dataset to yield `(x, y)` pairs. "
                    f"Received element_spec={spec}"
                )
            if spec[1].shape.rank not in (0, None):
                raise ValueError(
                    f"Expected unbatched data with scalar integer labels in `{split}`. Received "
                    f"label spec {spec[1]}; pass an unbatched dataset (call `.unbatch()`)."
                )
        if self.unlabeled is not None and isinstance(self.unlabeled.element_spec, tuple):
            raise ValueError(
                "Expected the `unlabeled` dataset to yield inputs `x` alone. Received "
                f"element_spec={self.unlabeled.element_spec}; drop the labels with "
                "`.map(lambda x, y: x)`."
            )

    # -- what is inside ------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """Number of classes (`len(class_names)`)."""
        return len(self.class_names)

    @property
    def splits(self) -> dict[str, tf.data.Dataset]:
        """The present splits, by name, in `train`, `val`, `test` order."""
        return {s: getattr(self, s) for s in SPLITS if getattr(self, s) is not None}

    def split(self, name: str) -> tf.data.Dataset:
        """Returns split `name` (or the `"unlabeled"` pool, inputs alone), with a clear error
        when it is absent."""
        if name == UNLABELED:
            if self.unlabeled is None:
                raise ValueError(
                    "This data has no unlabelled pool. Pass `unlabeled=` to the loader "
                    "(recipes: data.unlabeled)."
                )
            return self.unlabeled
        if name not in SPLITS:
            raise ValueError(f"Expected a split in {SPLITS}. Received: {name!r}")
        ds = getattr(self, name)
        if ds is None:
            raise ValueError(
                f"This data has no `{name}` split (present: {list(self.splits)}). Pass a "
                "`val_fraction` / `test_fraction` or explicit splits to the loader."
            )
        return ds

    @property
    def element_spec(self):
        """`(x_spec, y_spec)` of the splits (taken from the first present split)."""
        return next(iter(self.splits.values())).element_spec

    @property
    def input_shape(self) -> tuple:
        """Shape of one `x` without batch, `None` for dimensions that vary (e.g. image size)."""
        return tuple(self.element_spec[0].shape)

    @property
    def input_dtype(self) -> str:
        """Dtype name of `x` (`"float32"` for images and features, `"string"` for text)."""
        return self.element_spec[0].dtype.name

    def num_examples(self, split: str) -> int | None:
        """Number of examples in `split`, or `None` when unknown without a full pass."""
        if split in self.labels:
            return int(len(self.labels[split]))
        card = int(self.split(split).cardinality())
        return card if card >= 0 else None

    def split_labels(self, split: str) -> np.ndarray:
        """Labels of `split` in dataset order (one pass over the data when not known yet)."""
        if split not in self.labels:
            ys = [y for y in self.split(split).map(lambda x, y: y).as_numpy_iterator()]
            self.labels[split] = np.asarray(ys, dtype="int64").reshape(-1)
        return self.labels[split]

    def class_counts(self, split: str = "train") -> dict[str, int]:
        """Examples per class name in `split`."""
        counts = np.bincount(self.split_labels(split), minlength=self.num_classes)
        return {name: int(counts[i]) for i, name in enumerate(self.class_names)}

    def summary(self) -> str:
        """A few lines: kind, input shape, classes, and examples per split."""
        lines = [
            f"LabeledData({self.name or 'unnamed'}): kind={self.kind}, "
            f"input_shape={self.input_shape}, dtype={self.input_dtype}, "
            f"{self.num_classes} classes {self.class_names[:10]}"
            + (" ..." if self.num_classes > 10 else "")
        ]
        for split in self.splits:
            lines.append(f"  {split}: {self.num_examples(split)} examples")
        if self.unlabeled is not None:
            lines.append(f"  unlabeled: {self.num_examples(UNLABELED)} examples (no labels)")
        if self.skipped:
            lines.append(f"  skipped: {len(self.skipped)} inputs (see `.skipped`)")
        return "\n".join(lines)

    def take(self, split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The first `n` examples of `split` as arrays `(x, y)` (dataset order)."""
        xs, ys = [], []
        for x, y in self.split(split).take(int(n)).as_numpy_iterator():
            xs.append(x)
            ys.append(y)
        return np.stack(xs), np.asarray(ys, dtype="int64")

    def show_batch(self, split: str = "train", n: int = 9, columns: int = 3):
        """A grid of the first `n` images of `split` with their class names (like fastai's).

        Returns:
            A `matplotlib.figure.Figure` (shown by Jupyter; `fig.savefig("batch.png")` elsewhere).

        Raises:
            ValueError: the data are not images.
        """
        if self.kind != "image":
            raise ValueError(
                f"show_batch draws images; this data is kind={self.kind!r}. Look at texts with "
                f"`data.take({split!r}, {n})`."
            )
        from tlkit._image_grid import image_grid

        pairs = list(self.split(split).take(int(n)).as_numpy_iterator())  # any sizes
        return image_grid([x for x, _ in pairs], [self.class_names[y] for _, y in pairs],
                          columns, suptitle=f"{self.name or 'data'}: {split}")

    def map(self, fn: Callable) -> LabeledData:
        """Returns a copy with `fn(x, y) -> (x, y)` applied to every split (order kept).

        With a `SplitSource` the function is composed with the loader's own map (decode), so
        `select` and `subsample` still pick examples before decoding. `fn` must keep `y` and
        return exactly one example per example (labels and metadata stay aligned).

        Example:
        ```python
        data = data.map(lambda x, y: (tf.image.resize(x, (64, 64)), y))
        ```
        """
        datasets, sources = {}, dict(self.sources)
        for split, ds in self.splits.items():
            if split in sources:
                sources[split] = sources[split].then(fn)
                datasets[split] = sources[split].build()
            else:
                datasets[split] = ds.map(
                    fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
                )
        if self.unlabeled is not None:
            if UNLABELED in sources:
                sources[UNLABELED] = sources[UNLABELED].then(fn)
                datasets[UNLABELED] = unlabeled_inputs(sources[UNLABELED])
            else:
                datasets[UNLABELED] = self.unlabeled.map(
                    lambda x: fn(x, tf.constant(NO_LABEL, tf.int64))[0],
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
                )
        return dataclasses.replace(
            self,
            **datasets,
            sources=sources,
            labels=dict(self.labels),
            metadata=dict(self.metadata),
        )

    def pipeline(
        self,
        split: str,
        batch_size: int,
        training: bool | None = None,
        seed: int | None = None,
        shuffle_buffer: int | None = None,
        **batch_kwargs,
    ) -> tf.data.Dataset:
        """`tlkit.data.batch` for one split, shuffling before decoding when it can.

        With a `SplitSource` (all loaders but `from_tfds`) the raw entries (file paths, arrays)
        are shuffled before the loader's decode map, so an epoch starts quickly and the shuffle
        buffer holds no decoded images; otherwise this is `batch(self.<split>, ...)`.

        Args:
            split: `"train"`, `"val"` or `"test"`.
            batch_size: examples per batch.
            training: shuffle each epoch; default: `split == "train"`.
            seed: shuffle seed.
            shuffle_buffer: entries in the shuffle buffer (default: all that fit ~256 MiB).
            **batch_kwargs: `drop_remainder`, `map_fn`, `batch_map_fn`, `deterministic`,
                `cache` of `tlkit.data.batch`.

        Returns:
            A batched, prefetched `tf.data.Dataset`.

        Example:
        ```python
        model.fit(data.pipeline("train", 32, seed=0), validation_data=data.pipeline("val", 32))
        ```
        """
        if split == UNLABELED:
            # Inputs alone: no shuffle unless asked (a pool is scored in order).
            ds = self.split(split)
            if training:
                ds = ds.shuffle(shuffle_buffer or pipeline_lib.default_shuffle_buffer(ds),
                                seed=seed, reshuffle_each_iteration=True)
            return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
        training = split == "train" if training is None else bool(training)
        ds = self.split(split)
        if training and split in self.sources and not batch_kwargs.get("cache"):
            ds = self.sources[split].build(shuffle=True, seed=seed, buffer=shuffle_buffer)
            return pipeline_lib.batch(ds, batch_size, training=False, **batch_kwargs)
        return pipeline_lib.batch(
            ds,
            batch_size,
            training=training,
            seed=seed,
            shuffle_buffer=shuffle_buffer,
            **batch_kwargs,
        )

    # -- image size ----------------------------------------------------------------------------
    def image_sizes(self) -> set[tuple[int, int]]:
        """The distinct `(height, width)` of the images as their files hold them (from the
        loader's `height` / `width` metadata, all splits); empty when not known."""
        sizes = set()
        for columns in self.metadata.values():
            if "height" in columns and "width" in columns:
                sizes.update((int(h), int(w)) for h, w in zip(columns["height"], columns["width"])
                             if h > 0 and w > 0)
        return sizes

    def resized(self, image_size, interpolation: str = "bilinear") -> LabeledData:
        """A copy whose images are resized to `image_size` (decoded, then resized, per example;
        pixels stay in `[0, 255]`), so that images of different sizes batch. Metadata keep the
        files' own `height` / `width`.

        Args:
            image_size: `(height, width)` or an int.
            interpolation: `tf.image.resize` method (default `"bilinear"`).

        Example:
        ```python
        data = tlkit.data.from_image_folder("photos/").resized((224, 224))
        ```
        """
        if self.kind != "image":
            raise ValueError(f"resized() resizes images; this data is kind={self.kind!r}")
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        size = tuple(int(s) for s in size)
        if len(size) != 2 or min(size) < 1:
            raise ValueError(
                f"Expected `image_size` as (height, width) of positive ints. Received: {image_size}"
            )
        channels = self.input_shape[-1]

        def resize(x, y):
            x = tf.clip_by_value(tf.image.resize(x, size, method=interpolation), 0.0, 255.0)
            return tf.ensure_shape(x, [size[0], size[1], channels]), y

        return self.map(resize)

    def for_model(self, model) -> LabeledData:
        """This data as `model` batches it: images without one common size are resized to
        the size the model resizes to itself (`tlkit.preprocessing.model_image_size`: the
        backbone's `InputInfo`), so the model sees what it would have seen anyway. Data of
        one size, or that are not images, come back unchanged (`self`).

        `tlkit.fine_tune` and the recipe runner call this; a size given to the loader
        (`image_size=`, recipes: `data.image_size`) makes the images one size and wins.

        Raises:
            ValueError: the images have different sizes and the model takes any size (nothing
                decides one): the message says to pass `image_size=`.

        Example:
        ```python
        data = tlkit.data.from_image_folder("photos/")   # photos of every size
        batches = data.for_model(model).pipeline("train", 32)
        ```
        """
        shape = self.input_shape
        if self.kind != "image" or len(shape) != 3 or None not in shape[:2]:
            return self
        from tlkit.preprocessing import model_image_size

        size = model_image_size(model)
        if size is None:
            sizes = self.image_sizes()
            if len(sizes) > 1:
                areas = sorted(sizes, key=lambda hw: hw[0] * hw[1])
                raise ValueError(
                    f"{self.name or 'The data'}: the images have {len(sizes)} different sizes "
                    f"({_hw(areas[0])} to {_hw(areas[-1])}, height x width) and the model takes any size, so "
                    "nothing decides the size to batch them at. Pass `image_size=(height, "
                    "width)` to the loader (recipes: data.image_size), or use a backbone with "
                    "a fixed input size."
                )
            return self
        logger.info("%s: images resized to %s (the model's input size) to batch them",
                    self.name or "data", _hw(size))
        return self.resized(size)

    def with_unlabeled(self, x, map_fn: Callable | None = None,
                       metadata: dict[str, np.ndarray] | None = None) -> LabeledData:
        """A copy that carries `x` as its unlabelled pool (replacing any pool it had).

        Args:
            x: the pool's inputs, or their sources (file paths), first axis = examples.
            map_fn: optional `(x, y) -> (x, y)` that makes an input of each entry (decode,
                resize), as the loaders' own; `y` is `NO_LABEL`.
            metadata: optional columns aligned with `x` (e.g. `{"path": paths}`).

        Example:
        ```python
        data = tlkit.data.fashion_mnist().with_unlabeled(extra_images)
        ```
        """
        x = np.asarray(x)
        if x.ndim == 0 or len(x) == 0:
            raise ValueError("The unlabelled pool is empty; pass at least one example.")
        pool = SplitSource(x, np.full(len(x), NO_LABEL, "int64"), map_fn)
        meta = dict(self.metadata)
        meta[UNLABELED] = {k: np.asarray(v) for k, v in (metadata or {}).items()}
        return dataclasses.replace(self, unlabeled=unlabeled_inputs(pool),
                                   sources={**self.sources, UNLABELED: pool},
                                   labels=dict(self.labels), metadata=meta)

    # -- picking examples ----------------------------------------------------------------------
    def select(self, split: str, indices) -> LabeledData:
        """Returns a copy whose `split` holds only the examples at `indices` (dataset order).

        With a `SplitSource` (all loaders but `from_tfds`) the examples are picked before
        decoding, in the order of `indices`; otherwise the dataset is filtered in one pass and
        keeps its own order.

        Args:
            split: `"train"`, `"val"` or `"test"`.
            indices: integer positions into the split.

        Returns:
            A new `LabeledData`; the other splits are shared.
        """
        ds = self.split(split)
        indices = np.asarray(indices, dtype="int64").reshape(-1)
        n = self.num_examples(split)
        if n is not None and indices.size and (indices.min() < 0 or indices.max() >= n):
            raise IndexError(f"Indices must be in [0, {n}) for split `{split}`.")
        if split in self.sources:
            source = self.sources[split].select(indices)
            new_ds = source.build()
            sources = {**self.sources, split: source}
        else:
            indices = np.unique(indices)
            total = n if n is not None else len(self.split_labels(split))
            mask = np.zeros(total, dtype=bool)
            mask[indices] = True
            keep = tf.constant(mask)
            new_ds = ds.enumerate().filter(lambda i, xy: keep[i]).map(lambda i, xy: xy)
            sources = dict(self.sources)
        labels = dict(self.labels)
        if split in self.sources:
            labels[split] = np.asarray(sources[split].y, dtype="int64")
        else:
            labels[split] = self.split_labels(split)[indices]
        metadata = dict(self.metadata)
        if split in metadata:
            metadata[split] = {k: np.asarray(v)[indices] for k, v in metadata[split].items()}
        return dataclasses.replace(
            self, **{split: new_ds}, labels=labels, metadata=metadata, sources=sources
        )


def unlabeled_inputs(source: SplitSource) -> tf.data.Dataset:
    """The unlabelled pool's dataset of inputs alone, from its `SplitSource`."""
    return source.build().map(lambda x, y: x)


def _hw(size) -> str:
    return f"{size[0]}x{size[1]}"  # height x width, as the data audit writes sizes
