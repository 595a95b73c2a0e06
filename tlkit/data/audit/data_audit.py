"""`audit`: class balance, corrupt files, odd sizes, duplicates and split leakage, before training.

Works on an image folder (one subfolder per class, optionally under `train/`, `val/`,
`test/`), on a `LabeledData`, or on NumPy arrays. Exact duplicates are found by hashing each
example's decoded content; near duplicates by the cosine similarity of embeddings when a
feature model is given. A duplicate in two splits is leakage: validation or test scores would
be inflated. `check_no_leakage` turns that into an error.
"""

from __future__ import annotations

import collections
import logging
import os

import numpy as np

from tlkit._extras import require
from tlkit._progress import progbar
from tlkit.data.audit._audit_sources import DatasetSource, FolderSource, Item, jsonable, leaks
from tlkit.data.audit._near_duplicates import embed_size, model_channels, near_duplicates
from tlkit.data.audit.audit_report import AuditReport
from tlkit.data.sources.labeled_data import LabeledData

logger = logging.getLogger(__name__)


def audit(
    data_or_path,
    splits=None,
    backbone_model=None,
    near_dup_threshold: float = 0.98,
    max_images: int | None = None,
    class_names=None,
    embed_image_size=None,
    batch_size: int = 32,
    seed: int = 0,
    progress: bool = False,
    embedding_cache_dir=None,
    worker: tuple[int, int] | None = None,
) -> AuditReport:
    """Audits a data set before training.

    Checks: examples per class and the imbalance ratio (largest / smallest class) per split;
    files that cannot be decoded; images whose size or mode differs from most (e.g. one
    grayscale or 500x20 image among RGB 32x32 ones; when sizes vary widely, only extreme
    aspect ratios and tiny images); exact duplicates within and across splits (hash of the
    decoded pixels / text / array); near duplicates (cosine of `backbone_model` embeddings
    >= `near_dup_threshold`); labels outside the class list. A `LabeledData`'s unlabelled
    pool (`.unlabeled`) is audited too, as split `"unlabeled"`: its copies in val or test are
    leakage (it is training data), its copies in train are duplicates.

    Args:
        data_or_path: an image folder path, a `LabeledData`, an `(x, y)` pair of arrays, or a
            dict `{split: (x, y)}`.
        splits: split names to audit (default: all present).
        backbone_model: optional feature model (Keras model / layer or callable) mapping a
            batch to embeddings; enables near-duplicate search. Images reach it as float32
            `[0, 255]` batches resized to `embed_image_size`, with 3 channels unless the model's
            `input_shape` says otherwise; texts as a batch of strings.
        near_dup_threshold: cosine similarity from which two examples are near duplicates.
        max_images: audit at most this many examples in total (a seeded sample, proportional
            per split; logged as a warning and noted in the report: duplicates and leakage
            outside the sample go unseen). Default `None`: every example.
        class_names: class list to check labels against (default: the folder's / data's).
        embed_image_size: `(height, width)` for the embeddings (default: the model's input
            size, else the most common image size).
        batch_size: batch size for `backbone_model`.
        seed: seed of the sample when `max_images` cuts.
        progress: show a `keras.utils.Progbar` while reading examples (the CLI turns it on).
        embedding_cache_dir: keep the embeddings there as a sharded feature cache
            (`tlkit.data.extract_feature_shards`: reused for the same model and data, resumed
            after a kill); local or `gs://`.
        worker: `(index, count)` in a multi-worker job: each worker embeds every `count`-th
            example into `embedding_cache_dir` (a folder all workers reach), the chief writes
            the manifest, and every worker then searches the whole cache (same report on all).

    Returns:
        An `AuditReport` (`.to_text()`, `.to_json()`, `.save(path)`, `.has_leakage`).

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the folder has no class subfolders, or the input is of an unknown type.

    Example:
    ```python
    report = tlkit.data.audit("data/", backbone_model=feature_model)
    print(report.to_text())
    tlkit.data.check_no_leakage(report)
    ```
    """
    if not 0.0 < float(near_dup_threshold) <= 1.0:
        raise ValueError(f"Expected 0 < `near_dup_threshold` <= 1. Received: {near_dup_threshold}")
    if backbone_model is not None:  # before reading any example
        require("faiss", "The near-duplicate search of the data audit (backbone_model=)")
    if isinstance(data_or_path, (str, os.PathLike)):
        source = FolderSource(data_or_path, splits, class_names)
    elif isinstance(data_or_path, LabeledData):
        source = DatasetSource.from_labeled(data_or_path, splits, class_names)
    elif isinstance(data_or_path, (tuple, list, dict)):
        source = DatasetSource.from_arrays(data_or_path, splits, class_names)
    else:
        raise ValueError(
            "Expected an image folder path, a LabeledData, an (x, y) pair of arrays or a dict "
            f"of them. Received: {type(data_or_path).__name__}"
        )
    notes = list(source.notes)
    limit = source.limit(max_images, seed)
    if limit is not None:
        message = (
            f"audited a seeded sample of {sum(limit.values())} of {source.total} examples "
            f"(max_images={max_images}); duplicates outside the sample are not seen"
        )
        logger.warning("%s; pass max_images=None to audit every example", message)
        notes.append(message)
    items: list[Item] = []
    total = sum(limit.values()) if limit is not None else source.total
    bar = progbar(total, unit_name="example") if progress and total else None
    for item, _ in source.iterate(limit, with_values=False):
        items.append(item)
        if bar is not None and len(items) % 256 == 0:
            bar.update(len(items))
    if bar is not None:
        bar.update(len(items), finalize=True)

    report = AuditReport(
        source=source.description,
        splits=list(source.split_names),
        class_names=list(source.class_names),
        class_counts={},
        imbalance_ratio={},
        num_examples={},
        near_dup_threshold=float(near_dup_threshold) if backbone_model is not None else None,
        notes=notes,
    )
    _count_classes(report, items, source.class_names)
    report.unreadable = [
        {"split": i.split, "item": i.ref, "reason": i.error} for i in items if i.error
    ]
    report.unknown_labels = [
        {"split": i.split, "item": i.ref, "label": jsonable(i.label)} for i in items if not i.known
    ]
    if source.kind == "image":
        _check_sizes(report, items)
    report.exact_duplicates, groups = _exact_duplicates(items)
    if backbone_model is not None:
        report.near_duplicates = near_duplicates(
            source,
            limit,
            items,
            groups,
            backbone_model,
            threshold=near_dup_threshold,
            size=embed_size(backbone_model, embed_image_size, report.dominant_size),
            channels=model_channels(backbone_model),
            batch_size=batch_size,
            notes=report.notes,
            cache_dir=embedding_cache_dir,
            worker=worker,
        )
    return report


# -- checks ------------------------------------------------------------------------------------
def _count_classes(report: AuditReport, items: list[Item], class_names) -> None:
    by_split: dict[str, collections.Counter] = {s: collections.Counter() for s in report.splits}
    for item in items:
        if item.known and item.label is not None:
            name = item.label if isinstance(item.label, str) else class_names[item.label]
            by_split[item.split][name] += 1
    for split in report.splits:
        report.num_examples[split] = sum(1 for i in items if i.split == split)
        if all(i.label is None for i in items if i.split == split) and split == "unlabeled":
            continue  # no labels to count
        counts = {c: int(by_split[split][c]) for c in class_names}
        report.class_counts[split] = counts
        values = list(counts.values())
        report.imbalance_ratio[split] = (
            round(max(values) / min(values), 4) if values and min(values) > 0 else None
        )


def _check_sizes(report: AuditReport, items: list[Item]) -> None:
    readable = [i for i in items if i.size is not None and not i.error]
    if not readable:
        return
    modes = collections.Counter(i.mode for i in readable)
    sizes = collections.Counter(i.size for i in readable)
    dominant_mode = modes.most_common(1)[0][0]
    dominant_size, dominant_count = sizes.most_common(1)[0]
    report.dominant_mode = dominant_mode
    report.dominant_size = list(dominant_size)
    uniform = dominant_count >= 0.5 * len(readable)
    if not uniform:
        heights, widths = [h for h, _ in sizes], [w for _, w in sizes]
        report.size_range = {"distinct": len(sizes), "height": [min(heights), max(heights)],
                             "width": [min(widths), max(widths)]}
        report.notes.append(
            f"image sizes vary ({len(sizes)} distinct); only extreme aspect ratios and tiny "
            "images are flagged"
        )
    areas = np.asarray([h * w for h, w in (i.size for i in readable)], dtype="float64")
    median_area = float(np.median(areas))
    for item in readable:
        issues = []
        if item.mode != dominant_mode:
            issues.append(f"mode {item.mode} (most are {dominant_mode})")
        h, w = item.size
        if uniform and item.size != dominant_size:
            issues.append(f"size {h}x{w} (most are {dominant_size[0]}x{dominant_size[1]})")
        elif not uniform:
            if max(h, w) > 4 * max(min(h, w), 1):
                issues.append(f"extreme aspect ratio {h}x{w}")
            if h * w < median_area / 16:
                issues.append(f"tiny image {h}x{w}")
        if issues:
            report.unexpected.append(
                {
                    "split": item.split,
                    "item": item.ref,
                    "issue": "; ".join(issues),
                    "size": [h, w],
                    "mode": item.mode,
                }
            )


def _exact_duplicates(items: list[Item]):
    groups: dict[str, list[int]] = collections.defaultdict(list)
    for k, item in enumerate(items):
        if item.digest is not None and not item.error:
            groups[item.digest].append(k)
    found = []
    group_of = {}
    for digest, members in groups.items():
        if len(members) < 2:
            continue
        for k in members:
            group_of[k] = digest
        labels = {str(items[k].label) for k in members if items[k].label is not None}
        found.append(
            {
                "items": [
                    {"split": items[k].split, "item": items[k].ref, "label": items[k].label}
                    for k in members
                ],
                "cross_split": leaks(items[k].split for k in members),
                # The same content under two classes: a labelling error, not just a copy.
                "label_conflict": len(labels) > 1,
            }
        )
    found.sort(key=lambda g: (not g["cross_split"], g["items"][0]["split"], g["items"][0]["item"]))
    return found, group_of
