"""The `self_training` strategy: class-balanced pseudo-labels, and a teacher -> student run."""

import numpy as np
import pytest

import tlkit
from tlkit.training.strategies.self_training import balanced_pseudo_labels


def test_pseudo_labels_are_confident_and_class_balanced():
    p = np.array([[0.95, 0.05], [0.97, 0.03], [0.99, 0.01], [0.08, 0.92], [0.6, 0.4]])
    keep, labels = balanced_pseudo_labels(p, 0.9)
    assert keep.tolist() == [1, 2, 3] and labels.tolist() == [0, 0, 1]  # median count 2
    keep, labels = balanced_pseudo_labels(p, 0.9, per_class=1)
    assert keep.tolist() == [2, 3]
    keep, _ = balanced_pseudo_labels(p, 0.999)
    assert keep.size == 0


@pytest.mark.slow  # over ~3 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_self_training_teacher_labels_the_pool_and_the_student_trains_on_it():
    from tlkit.testing import tiny_image_data, tiny_model

    x, y = tiny_image_data(n=32)
    pool, _ = tiny_image_data(n=24, seed=3)
    data = tlkit.data.from_numpy(x, y, x_unlabeled=pool, val_fraction=0.25, test_fraction=0)
    model = tiny_model(num_classes=2)
    result = tlkit.fine_tune(model, data, strategy="self_training", fine_epochs=1,
                             min_steps_per_epoch=1, pseudo_label_threshold=0.5, jit_compile=False,
                             verbose=0)
    record = result.strategy
    assert record["strategy"] == "self_training" and record["unlabeled_examples"] == 24
    # threshold 0.5: every pool example qualifies; balanced to the median class count
    counts = record["pseudo_labels_per_class"]
    assert record["pseudo_labels"] == sum(counts) > 0 and max(counts) - min(counts) <= max(counts)
    assert "pseudo-labelled" in record["reason"] and record["teacher_temperature"] > 0
    with pytest.raises(tlkit.ConfigError, match="self_training needs unlabelled data"):
        tlkit.fine_tune(tiny_model(num_classes=2), (x, y), strategy="self_training", verbose=0)
