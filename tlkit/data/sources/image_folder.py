"""`from_image_folder`: one subfolder per class (optionally under train/, val/, test/)."""

from __future__ import annotations

import logging
import os

import numpy as np

from tlkit.config import TEST_FRACTION, VAL_FRACTION
from tlkit.data.sources import _assemble, _class_folders, _images, unlabeled_pool
from tlkit.data.sources.labeled_data import LabeledData

logger = logging.getLogger(__name__)


def from_image_folder(
    path,
    image_size=None,
    val_fraction: float = VAL_FRACTION,
    test_fraction: float = TEST_FRACTION,
    seed: int = 0,
    channels: int = 3,
    class_names=None,
    check: str | None = "decode",
    check_cache: bool = True,
    extensions=_class_folders.IMAGE_EXTENSIONS,
    interpolation: str = "bilinear",
    unlabeled=None,
) -> LabeledData:
    """Loads images stored as `path/<class>/<file>` or `path/{train,val,test}/<class>/<file>`.

    Files are checked before any epoch runs: with `check="decode"` every file is decoded once
    (in parallel on all cores, with the same TensorFlow decoder training uses; a later load of
    the same unchanged files reuses the remembered outcome), so a corrupt or truncated
    file is skipped, logged as a warning and listed in `LabeledData.skipped` instead of
    crashing an epoch. Images are decoded lazily in the pipeline as float32 pixels in
    `[0, 255]`; `metadata[split]` holds each example's `path`, `height` and `width`.

    Args:
        path: the folder.
        image_size: `(height, width)` (or an int) to resize to; `None` keeps the files' size
            (`tlkit.fine_tune` then resizes images of different sizes to the model's input
            size, see `LabeledData.for_model`).
        val_fraction: fraction of each class held out for validation when there is no `val/`
            folder (stratified, seeded); default `tlkit.config.VAL_FRACTION` (0.1), as recipes.
        test_fraction: same for a test split when there is no `test/` folder; default
            `tlkit.config.TEST_FRACTION` (0.1), so `tlkit.fine_tune` reports a test score.
        seed: seed of the split and of the order of examples.
        channels: 3 (grey repeated to RGB, alpha dropped), 1 (grey) or 4.
        class_names: optional class list (label order); default: sorted class folder names.
        check: `"decode"` (safe), `"header"` (cheap PIL verify; misses truncated files) or
            `None`.
        check_cache: remember each file's `"decode"` outcome in the tlkit cache folder
            (`$TLKIT_CACHE_DIR`, else `~/.cache/tlkit`) and skip decoding files whose size,
            mtime and ctime are unchanged on a later load. `False`: decode every file.
        extensions: file extensions to read; others are ignored.
        interpolation: resize method when `image_size` is set.
        unlabeled: optional folder of unlabelled images (every image file under it, at any
            depth), checked like the labelled ones and kept as `LabeledData.unlabeled`
            (`metadata["unlabeled"]` holds their `path`). Default `None`.

    Returns:
        A `LabeledData` of kind `"image"`.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: `unlabeled` is empty, is (inside) `path`, or none of its files decodes.
        ValueError: no class folders, a single class, no image files, class folders in
            val/test that are not in the class list, or a class without training examples
            (an empty class folder, or one whose files are all unreadable): refused with one
            line naming the class, never kept in the head with 0 examples.

    Example:
    ```python
    data = tlkit.data.from_image_folder("flowers/", image_size=(224, 224), val_fraction=0.2)
    print(data.summary(), data.skipped)
    ```
    """
    channels = _images.check_channels(channels)
    image_size = _images.check_image_size(image_size)
    layout = _class_folders.scan(path, extensions, class_names)
    _class_folders.require_classes(layout, extensions, "image")
    every_path = [p for files in layout.files.values() for p, _ in files]
    pool = None if unlabeled is None else unlabeled_pool.find_files(
        unlabeled, layout.root, extensions, "image")  # before any decoding: cheap errors first
    skipped, sizes = _images.find_unreadable(every_path, check, channels, cache=check_cache)
    _class_folders.require_readable(layout, skipped, "image")
    _images.log_skipped(layout.root, skipped)
    bad = {s.source for s in skipped}
    pool_good = []
    if pool is not None:
        pool_good, pool_skipped, pool_sizes = unlabeled_pool.readable_images(
            pool, unlabeled, channels, check, check_cache)
        skipped, sizes = skipped + pool_skipped, {**sizes, **pool_sizes}
    class_index = {c: i for i, c in enumerate(layout.class_names)}

    paths, labels, per_split = [], [], {}
    for split, files in layout.files.items():
        good = [(p, c) for p, c in files if p not in bad]
        paths.extend(p for p, _ in good)
        per_split[split] = np.asarray([class_index[c] for _, c in good], dtype="int64")
        labels.extend(per_split[split])
    if not paths:
        raise ValueError(
            f"None of the {len(every_path)} image files in {layout.root!r} could be decoded; "
            f"first problems: {[(s.source, s.reason) for s in skipped[:3]]}"
        )
    shape = None
    if image_size is None and sizes:
        shape = _images.common_size({p: sizes[p] for p in paths + pool_good if p in sizes})
        if shape is None:
            logger.info(
                "%s: images have %d different sizes; tlkit.fine_tune resizes them to the "
                "model's input size (`LabeledData.for_model`), or pass `image_size=`.",
                layout.root,
                len({sizes[p] for p in paths + pool_good if p in sizes}),
            )
    metadata = _file_columns(paths, sizes)
    split_indices = _assemble.layout_splits(per_split, val_fraction, test_fraction, seed)
    return _assemble.assemble(
        np.asarray(paths, dtype=object),
        np.asarray(labels, dtype="int64"),
        split_indices,
        layout.class_names,
        "image",
        map_fn=_images.decode_fn(channels, image_size, shape, interpolation),
        metadata=metadata,
        skipped=skipped,
        name=f"image folder {os.path.abspath(layout.root)}",
        unlabeled_x=np.asarray(pool_good, dtype=object) if pool_good else None,
        unlabeled_metadata=_file_columns(pool_good, sizes),
    )


def _file_columns(paths, sizes) -> dict[str, np.ndarray]:
    """Per-example metadata of image files: `path`, and `height` / `width` when checked."""
    columns = {"path": np.asarray(paths, dtype=object)}
    if sizes:
        columns["height"] = np.asarray([sizes.get(p, (-1, -1))[0] for p in paths], "int64")
        columns["width"] = np.asarray([sizes.get(p, (-1, -1))[1] for p in paths], "int64")
    return columns
