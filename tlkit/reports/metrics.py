"""Classification metrics from labels and predicted probabilities (scikit-learn based)."""

from __future__ import annotations

import numpy as np

# Overfitting rule (see `overfitting_warning`).
OVERFIT_GAP = 0.10
OVERFIT_LOSS_RISE = 0.10
OVERFIT_PATIENCE = 2


def classification_metrics(y_true, probs, class_names) -> dict:
    """Accuracy, macro / weighted F1, per-class precision / recall / F1 and the confusion matrix.

    Args:
        y_true: integer labels, shape `(n,)`.
        probs: predicted class probabilities, shape `(n, num_classes)`.
        class_names: names of the classes, label order.

    Returns:
        `{"accuracy", "macro_f1", "weighted_f1", "num_examples", "per_class": {name: {precision,
        recall, f1, support}}, "confusion_matrix": [[...]]}` (plain JSON types). Rows of the
        confusion matrix are true classes, columns predicted classes.

    Example:
    ```python
    m = classification_metrics([0, 1, 1], [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], ["a", "b"])
    m["accuracy"]  # 0.666...
    ```
    """
    from sklearn import metrics as skm

    y_true = np.asarray(y_true).astype("int64").reshape(-1)
    probs = np.asarray(probs)
    if probs.ndim != 2 or len(probs) != len(y_true):
        raise ValueError(
            f"Expected probs of shape (n, num_classes) with n={len(y_true)}. "
            f"Received: probs.shape={probs.shape}"
        )
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
    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "macro_f1": float(
            skm.f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        ),
        "weighted_f1": float(
            skm.f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)
        ),
        "num_examples": int(len(y_true)),
        "per_class": per_class,
        "confusion_matrix": skm.confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def sliced_metrics(y_true, probs, groups, name: str = "group") -> dict:
    """Accuracy (and count) per value of a metadata column, e.g. per source or per camera.

    Args:
        y_true: integer labels `(n,)`.
        probs: probabilities `(n, num_classes)`.
        groups: the column, one value per example `(n,)`.
        name: the column's name (kept in the result).

    Returns:
        `{"column": name, "slices": {value: {"accuracy", "count"}}, "worst": value}`.
    """
    y_true = np.asarray(y_true).reshape(-1)
    y_pred = np.asarray(probs).argmax(axis=1)
    groups = np.asarray(groups).reshape(-1)
    if len(groups) != len(y_true):
        raise ValueError(
            f"Metadata column {name!r} has {len(groups)} values for {len(y_true)} examples."
        )
    slices = {}
    for value in np.unique(groups):
        mask = groups == value
        key = value.decode() if isinstance(value, bytes) else str(value)
        slices[key] = {
            "accuracy": float((y_pred[mask] == y_true[mask]).mean()),
            "count": int(mask.sum()),
        }
    worst = min(slices, key=lambda k: slices[k]["accuracy"]) if slices else None
    return {"column": name, "slices": slices, "worst": worst}


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
        f"accuracy {metrics['accuracy']:.4f}  macro F1 {metrics['macro_f1']:.4f}  "
        f"({metrics['num_examples']} examples)"
    )
    return "\n".join(lines)
