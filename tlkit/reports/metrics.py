"""Classification metrics from labels and predicted probabilities (scikit-learn based)."""

from __future__ import annotations

import numpy as np

from tlkit.reports._predictions import as_predictions
from tlkit.reports.confusions import most_confused

# Slice rule (see `slice_warnings`): a slice this far below the overall accuracy, with at least
# this many examples, gets a warning.
SLICE_GAP = 0.10
SLICE_MIN_COUNT = 10

# Overfitting rule (see `overfitting_warning`).
OVERFIT_GAP = 0.10
OVERFIT_LOSS_RISE = 0.10
OVERFIT_PATIENCE = 2


def classification_metrics(y_true, probs, class_names) -> dict:
    """Accuracy, balanced accuracy, macro / weighted F1, per-class precision / recall / F1, the
    confusion matrix and its most-confused pairs.

    Args:
        y_true: integer labels, shape `(n,)`.
        probs: predicted class probabilities, shape `(n, num_classes)`.
        class_names: names of the classes, label order.

    Returns:
        `{"accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "num_examples",
        "per_class": {name: {precision, recall, f1, support}}, "confusion_matrix": [[...]],
        "confusion_matrix_axes": {rows, columns, labels}, "most_confused": [{true, predicted,
        count, share}]}` (plain JSON types). Rows of the confusion matrix are true classes,
        columns predicted classes, both in `labels` order (`confusion_matrix_axes` says so). Balanced accuracy is the
        mean recall over the classes present in `y_true`.

    Example:
    ```python
    m = classification_metrics([0, 1, 1], [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], ["a", "b"])
    m["accuracy"]  # 0.666...
    ```
    """
    from sklearn import metrics as skm

    y_true, probs = as_predictions(y_true, probs)
    y_pred = probs.argmax(axis=1)
    labels = list(range(len(class_names)))
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    per_class = {
        str(name): {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(class_names)
    }
    matrix = skm.confusion_matrix(y_true, y_pred, labels=labels)
    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        # sklearn averages recall over the classes present in y_true (absent ones have no recall).
        "balanced_accuracy": float(skm.balanced_accuracy_score(y_true, y_pred))
        if len(y_true)
        else 0.0,
        "macro_f1": float(
            skm.f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        ),
        "weighted_f1": float(
            skm.f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)
        ),
        "num_examples": int(len(y_true)),
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
        "confusion_matrix_axes": {"rows": "true class", "columns": "predicted class",
                                  "labels": [str(name) for name in class_names]},
        "most_confused": most_confused(matrix, class_names),
    }


def final_validation(history) -> dict | None:
    """The validation score of the last epoch that had one, and the best one:
    `{"epoch", "accuracy", "loss", "best_epoch", "best_accuracy"}` (epochs count from 1; keys
    without a value are left out), or `None` when no epoch was validated.

    Args:
        history: per-epoch records (`RunDir.history()`: dicts with `epoch` from 0 and Keras'
            `val_*` logs).
    """
    records = [r for r in history or () if "val_accuracy" in r or "val_loss" in r]
    if not records:
        return None
    last = records[-1]
    result = {"epoch": int(last.get("epoch", len(records) - 1)) + 1}
    for key in ("accuracy", "loss"):
        if f"val_{key}" in last:
            result[key] = float(last[f"val_{key}"])
    scored = [r for r in records if "val_accuracy" in r]
    if scored:
        best = max(scored, key=lambda r: r["val_accuracy"])
        result["best_epoch"] = int(best.get("epoch", records.index(best))) + 1
        result["best_accuracy"] = float(best["val_accuracy"])
    return result


def sliced_metrics(y_true, probs, groups, name: str = "group") -> dict:
    """Accuracy (and count) per value of a metadata column, e.g. per source or per camera, with
    each slice's gap to the overall accuracy.

    Args:
        y_true: integer labels `(n,)`.
        probs: probabilities `(n, num_classes)`.
        groups: the column, one value per example `(n,)`.
        name: the column's name (kept in the result).

    Returns:
        `{"column": name, "overall": accuracy, "slices": {value: {"accuracy", "count", "gap"}},
        "worst": value, "warnings": [...]}`; `gap` is the slice's accuracy minus the overall
        accuracy (negative: worse), `warnings` comes from `slice_warning`.
    """
    y_true = np.asarray(y_true).reshape(-1)
    y_pred = np.asarray(probs).argmax(axis=1)
    groups = np.asarray(groups).reshape(-1)
    if len(groups) != len(y_true):
        raise ValueError(
            f"Metadata column {name!r} has {len(groups)} values for {len(y_true)} examples."
        )
    correct = y_pred == y_true
    overall = float(correct.mean()) if len(correct) else 0.0
    slices = {}
    for value in np.unique(groups):
        mask = groups == value
        key = value.decode() if isinstance(value, bytes) else str(value)
        accuracy = float(correct[mask].mean())
        slices[key] = {"accuracy": accuracy, "count": int(mask.sum()), "gap": accuracy - overall}
    worst = min(slices, key=lambda k: slices[k]["accuracy"]) if slices else None
    result = {"column": name, "overall": overall, "slices": slices, "worst": worst}
    result["warnings"] = slice_warnings(result)
    return result


def slice_warnings(
    sliced: dict, gap: float = SLICE_GAP, min_count: int = SLICE_MIN_COUNT
) -> list[str]:
    """Warnings for slices much worse than the whole: accuracy more than `gap` (0.10) below the
    overall accuracy, on at least `min_count` (10) examples (smaller slices are noise).

    Args:
        sliced: `sliced_metrics(...)` output.

    Returns:
        One sentence per such slice, worst first.
    """
    bad = [
        (key, s)
        for key, s in sliced["slices"].items()
        if s["count"] >= min_count and s["accuracy"] < sliced["overall"] - gap
    ]
    bad.sort(key=lambda kv: kv[1]["accuracy"])
    return [
        f"slice {sliced['column']}={key!r} is much worse than the whole: accuracy "
        f"{s['accuracy']:.3f} vs {sliced['overall']:.3f} overall ({s['gap']:+.3f}, "
        f"{s['count']} examples); check for bias carried over from pretraining or a data "
        "difference"
        for key, s in bad
    ]


def overfitting_warning(
    history: list[dict],
    gap: float = OVERFIT_GAP,
    loss_rise: float = OVERFIT_LOSS_RISE,
    patience: int = OVERFIT_PATIENCE,
) -> str | None:
    """A warning when training and validation diverge, else `None`.

    The rule, on the per-epoch records of the *last* training stage that has validation data:

    1. **accuracy gap**: final `accuracy - val_accuracy > gap` (default 0.10), or
    2. **rising validation loss**: final `val_loss` is more than `loss_rise` (10%) above its
       minimum, that minimum is at least `patience` (2) epochs before the end, and the
       training loss still went down since then.

    Args:
        history: records `{"epoch", "stage", "loss", "val_loss", "accuracy", ...}` in epoch
            order (`RunDir.history()`).

    Returns:
        One sentence naming the rule that fired and the numbers, or `None`.
    """
    with_val = [r for r in history if r.get("val_loss") is not None]
    if not with_val:
        return None
    last_stage = with_val[-1].get("stage")
    records = [r for r in with_val if r.get("stage") == last_stage]
    final = records[-1]
    acc, val_acc = final.get("accuracy"), final.get("val_accuracy")
    if acc is not None and val_acc is not None and acc - val_acc > gap:
        return (
            f"possible overfitting: train accuracy {acc:.3f} exceeds validation accuracy "
            f"{val_acc:.3f} by {acc - val_acc:.3f} (> {gap}) at the end of stage {last_stage!r}"
        )
    losses = [r["val_loss"] for r in records]
    best = int(np.argmin(losses))
    if (
        len(records) - 1 - best >= patience
        and losses[-1] > losses[best] * (1 + loss_rise)
        and final.get("loss", np.inf) < records[best].get("loss", -np.inf)
    ):
        return (
            f"possible overfitting: validation loss rose from {losses[best]:.4f} (epoch "
            f"{records[best]['epoch']}) to {losses[-1]:.4f} while training loss kept falling "
            f"in stage {last_stage!r}"
        )
    return None


def format_report(metrics: dict, top: int = 50) -> str:
    """Per-class precision / recall / F1 as an aligned text table."""
    rows = list(metrics["per_class"].items())[:top]
    width = max([len(n) for n, _ in rows] + [5])
    lines = [f"{'class':<{width}}  precision  recall     f1  support"]
    for name, m in rows:
        lines.append(
            f"{name:<{width}}  {m['precision']:9.3f}  {m['recall']:6.3f}  {m['f1']:5.3f}  "
            f"{m['support']:7d}"
        )
    lines.append(
        f"accuracy {metrics['accuracy']:.4f}  balanced accuracy "
        f"{metrics.get('balanced_accuracy', float('nan')):.4f}  macro F1 "
        f"{metrics['macro_f1']:.4f}  ({metrics['num_examples']} examples)"
    )
    pairs = metrics.get("most_confused") or []
    if pairs:
        lines.append(
            "most confused (true -> predicted): "
            + ", ".join(f"{p['true']} -> {p['predicted']} {p['count']}" for p in pairs[:5])
        )
    return "\n".join(lines)
