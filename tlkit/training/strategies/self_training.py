"""`self_training` (pseudo-labels, as in Noisy Student, Xie et al. 2020, without its extra noise):
an LP-FT teacher labels the unlabelled pool, an LP-FT student trains on both.

1. The teacher: `tlkit.fine_tune(strategy="lp_ft")` on the labelled data (a converged probe,
   then every group fine-tunes).
2. Its pseudo-labels: each unlabelled example whose top probability reaches
   `pseudo_label_threshold`, class-balanced (`balanced_pseudo_labels`). With validation data
   the teacher's probabilities are temperature-scaled first (`tlkit.reports.fit_temperature`
   on validation): LP-FT divides the probe's logits by `probe_temperature` (3), which leaves
   the fine-tuned teacher under-confident, so a raw threshold would keep almost nothing (on a
   tiny smoke run: no example of 500 at 0.5).
3. The student starts again from the weights the model had before the teacher trained (the
   pretrained backbone, the untrained head) and runs LP-FT on labelled + pseudo-labelled data:
   the probe here, the fine-tuning in `fine_tune`'s own `fit` (`StrategyChoice.train`). The
   student's noise is the model's own (dropout, augmentation layers, when it has them).

The unlabelled pool comes from a `LabeledData` (`unlabeled=` of the loaders, recipes'
`data.unlabeled`) or `fine_tune(..., unlabeled=)`. The teacher's fit is a second full LP-FT
run: about twice `lp_ft`'s time, plus one pass over the pool.
"""

from __future__ import annotations

import logging

import numpy as np
import tensorflow as tf

from tlkit.config import ConfigError
from tlkit.training.strategies import probe
from tlkit.training.strategies.base import Strategy, StrategyChoice, StrategyContext
from tlkit.training.strategies.lp_ft import LpFt

logger = logging.getLogger("tlkit.training")


def balanced_pseudo_labels(probabilities, threshold: float, per_class: int | None = None):
    """`(indices, labels)` of the examples that get a pseudo-label, class-balanced.

    An example qualifies when its top probability is at least `threshold`; each class keeps
    its `per_class` most confident (default: the median over classes of the qualifying counts,
    so that no class floods the student; a class with fewer keeps all of its own).

    Example: probabilities `[[0.95, 0.05], [0.97, 0.03], [0.99, 0.01], [0.08, 0.92]]` at 0.9
    give class 0 three candidates and class 1 one; the median count is 2, so the two most
    confident of class 0 (rows 2 and 1) and row 3 are kept.
    """
    p = np.asarray(probabilities, dtype="float64")
    top, label = p.max(axis=1), p.argmax(axis=1)
    confident = np.flatnonzero(top >= threshold)
    counts = np.bincount(label[confident], minlength=p.shape[1])
    if per_class is None:
        present = counts[counts > 0]
        per_class = int(np.median(present)) if present.size else 0
    keep = []
    for c in range(p.shape[1]):
        mine = confident[label[confident] == c]
        keep.extend(mine[np.argsort(-top[mine], kind="stable")][:per_class])
    keep = np.sort(np.asarray(keep, dtype="int64"))
    return keep, label[keep].astype("int64")


class SelfTraining(Strategy):
    """An LP-FT teacher pseudo-labels the unlabelled pool; an LP-FT student trains on both.

    Example:
    ```python
    data = tlkit.data.from_image_folder("photos/labelled", unlabeled="photos/unlabelled")
    tlkit.fine_tune(model, data, strategy="self_training", pseudo_label_threshold=0.9)
    ```
    """

    name = "self_training"
    uses_probe = True

    def prepare(self, context) -> StrategyChoice:
        if context.unlabeled is None:
            raise ConfigError(
                "FineTuneConfig.strategy: self_training needs unlabelled data; load it with "
                "the data (unlabeled= / x_unlabeled=, recipes: data.unlabeled) or pass "
                "fine_tune(..., unlabeled=...)")
        fallback = probe.data_fallback(context.train)
        if fallback is not None:
            raise ConfigError(f"FineTuneConfig.strategy: self_training trains an LP-FT teacher, "
                              f"but {fallback.split(', so')[0]}")
        model, config = context.model, context.config
        start = model.get_weights()
        if context.fine_tune is None:
            raise ConfigError("FineTuneConfig.strategy: self_training runs inside "
                              "tlkit.fine_tune (it trains a teacher first)")
        teacher = context.fine_tune(context.train, context.validation,
                                    config.replace(strategy="lp_ft"))
        probabilities = model.predict(context.unlabeled.batch(context.batch_size), verbose=0)
        temperature = _calibration(model, context.validation, context.batch_size)
        if temperature is not None:
            from tlkit.reports.calibration import apply_temperature

            probabilities = apply_temperature(probabilities, temperature)
        chosen, labels = balanced_pseudo_labels(probabilities, config.pseudo_label_threshold,
                                                config.pseudo_labels_per_class)
        model.set_weights(start)  # the student starts where the teacher started
        if chosen.size == 0:
            logger.warning("self_training: no unlabelled example reached the teacher's "
                           "confidence %.2f; the student trains on the labelled data alone",
                           config.pseudo_label_threshold)
        train = _with_pseudo_labels(context.train, context.unlabeled, len(probabilities),
                                    chosen, labels, context.batch_size)
        # The student's probe reads the new training set (not the labelled set's cached features).
        student = StrategyContext(**{**vars(context), "train": train, "feature_cache": None})
        choice = LpFt().prepare(student)
        choice.name, choice.requested = self.name, config.strategy
        choice.train = train
        counts = np.bincount(labels, minlength=probabilities.shape[1]).tolist()
        teacher_val = (teacher.val_metrics or {}).get("accuracy")
        choice.extra = {"pseudo_labels": int(chosen.size), "pseudo_labels_per_class": counts,
                        "unlabeled_examples": int(len(probabilities)),
                        "teacher_val_accuracy": teacher_val,
                        "teacher_temperature": temperature}
        choice.reason = (f"LP-FT teacher (val accuracy {teacher_val:.3f})"
                         if teacher_val is not None else "LP-FT teacher") + (
            f": pseudo-labelled {chosen.size} of {len(probabilities)} unlabelled examples "
            f"(top probability >= {config.pseudo_label_threshold:g}"
            + (f" at the validation-fitted temperature {temperature:.2f}" if temperature else "")
            + ", class-balanced); the "
            "LP-FT student trains on labelled + pseudo-labelled data")
        choice.log()
        return choice

    def segments(self, config, num_groups, *, batch_norm=True, cached_features=False,
                 record=None) -> list[dict]:
        return LpFt().segments(config, num_groups, batch_norm=batch_norm,
                               cached_features=cached_features, record=record)


def _calibration(model, validation, batch_size) -> float | None:
    """The temperature that calibrates `model` on `validation` (`None` without validation)."""
    if validation is None:
        return None
    from tlkit.reports.calibration import fit_temperature

    labels, probabilities = [], []
    for x, y, *_ in probe.as_dataset(validation, batch_size):
        probabilities.append(model.predict_on_batch(x))
        labels.append(np.asarray(y).reshape(-1))
    if not labels:
        return None
    return fit_temperature(np.concatenate(labels), np.concatenate(probabilities))


def _with_pseudo_labels(train, unlabeled, pool_size, chosen, labels,
                        batch_size) -> tf.data.Dataset:
    """The labelled training examples and the pseudo-labelled ones, shuffled (seeded, each
    epoch) and batched; the pool's examples are picked without holding it in memory."""
    batches = probe.as_dataset(train, batch_size)
    labelled_count = int(batches.reduce(0, lambda n, element: n + tf.shape(element[1])[0]))
    labelled = batches.unbatch().map(lambda x, y, *rest: (x, tf.cast(y, tf.int64)))
    from tlkit.data.sources.pipeline import default_shuffle_buffer

    mask = np.zeros(int(pool_size), dtype=bool)
    target = np.zeros(int(pool_size), dtype="int64")
    mask[chosen], target[chosen] = True, labels
    keep, target = tf.constant(mask), tf.constant(target)
    pseudo = unlabeled.enumerate().filter(lambda i, x: keep[i]).map(
        lambda i, x: (x, target[i]))
    # The length is known (the fit's LR schedule needs it): one pass over the labels counted it.
    both = labelled.concatenate(pseudo).apply(
        tf.data.experimental.assert_cardinality(labelled_count + int(chosen.size)))
    return both.shuffle(default_shuffle_buffer(both), seed=0,
                        reshuffle_each_iteration=True).batch(batch_size)
