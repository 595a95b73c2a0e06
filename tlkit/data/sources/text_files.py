"""`from_text_files`: one subfolder of `.txt` files per class (optionally under train/, val/, test/)."""

from __future__ import annotations

import logging
import os

import numpy as np

from tlkit.config import TEST_FRACTION, VAL_FRACTION
from tlkit.data.sources import _assemble, _class_folders, unlabeled_pool
from tlkit.data.sources._text_io import read_text
from tlkit.data.sources.labeled_data import LabeledData, Skipped

logger = logging.getLogger(__name__)


def from_text_files(
    path,
    val_fraction: float = VAL_FRACTION,
    test_fraction: float = TEST_FRACTION,
    seed: int = 0,
    class_names=None,
    encoding: str = "utf-8",
    extensions=_class_folders.TEXT_EXTENSIONS,
    strip: bool = True,
    unlabeled=None,
) -> LabeledData:
    """Loads texts stored as `path/<class>/<file>.txt` (or under `train/`, `val/`, `test/`).

    Each file is one example. Files that cannot be decoded with `encoding`, or are empty, are
    skipped, logged as a warning and listed in `LabeledData.skipped`.

    Args:
        path: the folder.
        val_fraction, test_fraction: held-out fractions per class when there is no `val/` /
            `test/` folder (stratified, seeded).
        seed: seed of the split and of the order of examples.
        class_names: optional class list (label order); default: sorted class folder names.
        encoding: text encoding of the files.
        extensions: file extensions to read.
        strip: strip leading and trailing whitespace.
        unlabeled: optional folder of unlabelled text files (every file with one of
            `extensions` under it, at any depth), read like the labelled ones and kept as
            `LabeledData.unlabeled` (`metadata["unlabeled"]["path"]`). Default `None`.

    Returns:
        A `LabeledData` of kind `"text"` (scalar `tf.string` inputs); `metadata[split]["path"]`
        names each example's file.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: no class folders, a single class, or no text files; `unlabeled` is
            empty, is (inside) `path`, or none of its files is readable.

    Example:
    ```python
    data = tlkit.data.from_text_files("reviews/", val_fraction=0.1)
    ```
    """
    layout = _class_folders.scan(path, extensions, class_names)
    _class_folders.require_classes(layout, extensions, "text")
    class_index = {c: i for i, c in enumerate(layout.class_names)}
    texts, paths, per_split, skipped = [], [], {}, []
    for split, files in layout.files.items():
        labels = []
        for file_path, class_name in files:
            text, problem = read_text(file_path, encoding, strip)
            if problem:
                skipped.append(Skipped(file_path, problem))
                continue
            texts.append(text)
            paths.append(file_path)
            labels.append(class_index[class_name])
        per_split[split] = np.asarray(labels, dtype="int64")
    pool_texts, pool_paths = [], []
    if unlabeled is not None:
        pool = unlabeled_pool.find_files(unlabeled, layout.root, extensions, "text")
        pool_texts, pool_paths, pool_skipped = unlabeled_pool.readable_texts(
            pool, unlabeled, encoding, strip)
        skipped.extend(pool_skipped)
    if skipped:
        listed = "; ".join(f"{s.source} ({s.reason})" for s in skipped[:10])
        logger.warning("%s: skipped %d text file(s): %s", layout.root, len(skipped), listed)
    if not texts:
        raise ValueError(f"No readable text files in {layout.root!r}; see the warnings above.")
    split_indices = _assemble.layout_splits(per_split, val_fraction, test_fraction, seed)
    return _assemble.assemble(
        np.asarray(texts, dtype=object),
        np.concatenate(list(per_split.values())),
        split_indices,
        layout.class_names,
        "text",
        metadata={"path": np.asarray(paths, dtype=object)},
        skipped=skipped,
        name=f"text folder {os.path.abspath(layout.root)}",
        unlabeled_x=np.asarray(pool_texts, dtype=object) if pool_texts else None,
        unlabeled_metadata={"path": np.asarray(pool_paths, dtype=object)},
    )
