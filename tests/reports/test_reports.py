"""Reports: metrics against hand-computed values, slicing, the overfitting rule, PNGs, card."""

import json
import os

import numpy as np
import pytest

from tlkit import reports
from tlkit.reports import (
    classification_metrics,
    model_card,
    overfitting_warning,
    plot_confusion_matrix,
    plot_learning_curves,
    sliced_metrics,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
Y = np.array([0, 0, 1, 1, 2, 2])
PROBS = np.eye(3)[[0, 1, 1, 1, 2, 0]]  # predictions 0 1 1 1 2 0


def test_classification_metrics_by_hand():
    m = classification_metrics(Y, PROBS, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class"]["b"] == pytest.approx(
        {"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2}
    )
    assert m["per_class"]["a"]["precision"] == pytest.approx(0.5)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["num_examples"] == 6
    json.dumps(m)  # plain JSON types


def test_metrics_shape_error():
    with pytest.raises(ValueError, match="Expected probs of shape"):
        classification_metrics(Y, PROBS[:3], ["a", "b", "c"])


def test_sliced_metrics_per_group():
    groups = np.array(["x", "x", "y", "y", "y", "x"])
    s = sliced_metrics(Y, PROBS, groups, name="source")
    assert s["column"] == "source"
    assert s["overall"] == pytest.approx(4 / 6)
    assert s["slices"]["x"] == {
        "accuracy": pytest.approx(1 / 3), "count": 3, "gap": pytest.approx(1 / 3 - 4 / 6)
    }
    assert s["slices"]["y"] == {"accuracy": 1.0, "count": 3, "gap": pytest.approx(1 / 3)}
    assert s["worst"] == "x"
    with pytest.raises(ValueError, match="has 2 values for 6 examples"):
        sliced_metrics(Y, PROBS, groups[:2])


def _history(train_acc, val_acc, loss, val_loss, stage="fine"):
    return [
        {"epoch": i, "stage": stage, "accuracy": a, "val_accuracy": va, "loss": lo, "val_loss": vl}
        for i, (a, va, lo, vl) in enumerate(zip(train_acc, val_acc, loss, val_loss))
    ]


def test_overfitting_rule_accuracy_gap():
    h = _history([0.8, 0.99], [0.8, 0.85], [0.5, 0.1], [0.5, 0.45])
    assert "exceeds validation accuracy" in overfitting_warning(h)
    assert overfitting_warning(h, gap=0.2) is None


def test_overfitting_rule_rising_validation_loss():
    h = _history([0.8] * 5, [0.78] * 5, [1.0, 0.8, 0.6, 0.4, 0.3], [0.9, 0.7, 0.8, 0.85, 0.9])
    assert "validation loss rose from 0.7000" in overfitting_warning(h)
    # Training loss not falling any more: not flagged by the loss rule.
    flat = _history([0.8] * 5, [0.78] * 5, [1.0, 0.6, 0.7, 0.8, 0.9], [0.9, 0.7, 0.8, 0.85, 0.9])
    assert overfitting_warning(flat) is None


def test_no_warning_on_healthy_or_missing_validation():
    h = _history([0.7, 0.8, 0.85], [0.7, 0.78, 0.82], [0.9, 0.6, 0.5], [0.9, 0.7, 0.6])
    assert overfitting_warning(h) is None
    assert overfitting_warning([{"epoch": 0, "loss": 1.0}]) is None


def test_pngs_are_written(tmp_path):
    from tlkit.data.builtin.fashion_mnist_idx import CLASS_NAMES

    names = list(CLASS_NAMES)  # long, real class names: the plots must stay readable
    matrix = np.random.default_rng(0).integers(0, 30, (10, 10))
    path = plot_confusion_matrix(matrix, names, str(tmp_path / "cm.png"))
    history = _history(
        [0.5, 0.7, 0.8, 0.9], [0.5, 0.6, 0.7, 0.75], [1.2, 0.9, 0.6, 0.4], [1.2, 1.0, 0.8, 0.7]
    )
    stages = [
        {"name": "s0", "short": "head", "start": 0, "end": 2},
        {"name": "s1", "short": "top 2", "start": 2, "end": 4},
    ]
    curves = plot_learning_curves(history, str(tmp_path / "lc.png"), stages=stages)
    for p in (path, curves):
        with open(p, "rb") as f:
            assert f.read(8) == PNG_MAGIC
        assert os.path.getsize(p) > 10_000


def test_plotting_leaves_the_matplotlib_backend_alone(tmp_path):
    import matplotlib

    before = matplotlib.get_backend()
    plot_confusion_matrix([[1, 0], [0, 1]], ["a", "b"], str(tmp_path / "cm.png"))
    assert matplotlib.get_backend() == before


def test_model_card_sections():
    m = classification_metrics(Y, PROBS, ["a", "b", "c"])
    card = model_card(
        "demo",
        m,
        ["a", "b", "c"],
        backbone="tiny",
        data={"description": "digits", "splits": {"train": 10, "test": 6}},
        stages=[{"name": "s0", "label": "head only", "start": 0, "end": 2}],
        warnings=["possible overfitting: ..."],
        slices=sliced_metrics(Y, PROBS, np.array(list("xxyyyx")), "source"),
    )
    for text in (
        "# Model card: demo",
        "## Data",
        "- train: 10 examples",
        "## Training",
        "epochs 1-2: head only",
        "## Metrics (test split, 6 examples)",
        "| b | 0.667 | 1.000 | 0.800 | 2 |",
        "### By `source`",
        "## Warnings",
        "## Limitations",
        "out-of-distribution",
    ):
        assert text in card


def test_write_reports(tmp_path):
    history = _history([0.8, 0.99], [0.8, 0.85], [0.5, 0.1], [0.5, 0.45])
    m = reports.write_reports(
        str(tmp_path),
        Y,
        PROBS,
        ["a", "b", "c"],
        history=history,
        slice_column="source",
        slice_values=np.array(list("xxyyyx")),
        card={"name": "demo"},
    )
    assert m["warnings"] and m["slices"]["worst"] == "x"
    for key in ("report_json", "report_txt", "confusion_matrix", "learning_curves", "model_card"):
        assert os.path.exists(m["files"][key]), key
    with open(m["files"]["report_json"]) as f:
        assert json.load(f)["accuracy"] == pytest.approx(4 / 6)
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]  # no temp files left


def test_model_card_reports_the_scratch_baseline():
    from tlkit.reports.metrics import classification_metrics
    from tlkit.reports.model_card import model_card

    y = np.array([0, 1, 1, 0])
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])
    metrics = classification_metrics(y, probs, ["a", "b"])
    card = model_card("run", metrics, ["a", "b"])
    assert "from scratch" not in card
    metrics["scratch"] = {"accuracy": 0.5, "epochs": 5, "seconds": 61.7, "split": "test"}
    card = model_card("run", metrics, ["a", "b"])
    assert "trained from scratch on the same data: accuracy 0.5000 (5 epochs, 62 s)" in card


def test_final_validation_is_the_last_validated_epoch_and_the_best():
    from tlkit.reports import final_validation

    history = [{"epoch": 0, "val_accuracy": 0.5, "val_loss": 1.0},
               {"epoch": 1, "val_accuracy": 0.75, "val_loss": 0.6},
               {"epoch": 2, "val_accuracy": 0.625, "val_loss": 0.7},
               {"epoch": 3, "loss": 0.1}]  # not validated
    assert final_validation(history) == {"epoch": 3, "accuracy": 0.625, "loss": 0.7,
                                         "best_epoch": 2, "best_accuracy": 0.75}
    assert final_validation([{"epoch": 0, "loss": 1.0}]) is None


def test_lr_schedule_is_described_per_phase_as_it_runs():
    from tlkit import FineTuneConfig
    from tlkit.optimizers.schedules import describe

    config = FineTuneConfig(head_epochs=2, fine_epochs=5, lr=3e-4, head_lr=3e-3, patience=None)
    assert describe(config) == {"head": "constant 0.003 for 2 epochs",
                                "fine": "cosine 0.0003 -> 3e-06 over 5 epochs"}
    one_cycle = config.replace(head_epochs=0, lr_schedule="one_cycle", layer_decay=0.75)
    assert describe(one_cycle) == {
        "fine": "one-cycle 6e-05 -> 0.0003 (first 30%) -> 3e-09 over 5 epochs, x0.75 per group "
                "below the top"}
    assert describe(config.replace(lr_schedule="constant", fine_epochs=1))["fine"] == (
        "constant 0.0003 over 1 epoch")


def test_model_card_training_section_says_what_was_done():
    from tlkit.reports.metrics import classification_metrics
    from tlkit.reports.model_card import model_card

    metrics = classification_metrics([0, 1], [[0.9, 0.1], [0.2, 0.8]], ["a", "b"])
    metrics["timings"] = {"head": 9.6, "fine": 150.2, "evaluation": 4.0}
    metrics["versions"] = {"tlkit": "0.1.0", "tensorflow": "2.21.0", "keras_hub": None}
    training = {"input": "strings, tokenized inside the model", "augmentation": "",
                "batch_size": 32, "optimizer": "adamw, weight decay 0.01",
                "learning_rate": {"head": "constant 0.003 for 2 epochs",
                                  "fine": "cosine 0.0003 -> 3e-06 over 5 epochs"},
                "batch_norm": None, "seed": 7}
    stages = [{"name": "s0", "label": "head only", "start": 0, "end": 2, "lr": 3e-3},
              {"name": "s1", "label": "all groups + head", "start": 2, "end": 7, "lr": 3e-4}]
    card = model_card("run", metrics, ["a", "b"], stages=stages, training=training)
    section = card.split("## Training\n")[1].split("\n## ")[0]
    assert section.strip().splitlines() == [
        "- Input: strings, tokenized inside the model",
        "- Augmentation: none",
        "- Batch size: 32",
        "- Optimizer: adamw, weight decay 0.01",
        "- Learning rate, head phase: constant 0.003 for 2 epochs",
        "- Learning rate, fine-tuning: cosine 0.0003 -> 3e-06 over 5 epochs",
        "- Seed: 7",
        "- epochs 1-2: head only",
        "- epochs 3-7: all groups + head",
        "- Time: head phase 10 s, fine-tuning 150 s, evaluation 4 s",
        "- Versions: tlkit 0.1.0, TensorFlow 2.21.0",
    ]
    assert "BatchNorm" not in card and "BN" not in card
