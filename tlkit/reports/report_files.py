"""`write_reports`: every report file of an evaluated classifier, written into one folder."""

from __future__ import annotations

import os

from tlkit.reports.metrics import (
    classification_metrics,
    final_validation,
    format_report,
    overfitting_warning,
    sliced_metrics,
)
from tlkit.reports.model_card import model_card
from tlkit.reports.plots import (
    plot_confusion_matrix,
    plot_learning_curves,
    plot_reliability_diagram,
)


def write_reports(
    folder,
    y_true,
    probs,
    class_names,
    history=None,
    stages=None,
    slice_column=None,
    slice_values=None,
    card=None,
    calibration=None,
) -> dict:
    """Computes metrics and writes all report files into `folder`.

    Args:
        folder: output folder (created).
        y_true, probs: labels `(n,)` and probabilities `(n, k)` of the evaluated split.
        class_names: the `k` class names.
        history: per-epoch records (`RunDir.history()`); enables learning curves and the
            overfitting check.
        stages: training stages for the learning curves (see `plot_learning_curves`).
        slice_column, slice_values: optional metadata column name and its per-example values.
        card: keyword arguments for `model_card` (`name`, `backbone`, `data`, `params`, ...);
            no card when `None`.
        calibration: `calibration_summary(...)` output; adds `reliability_diagram.png` and
            `"calibration"` (ECE before / after temperature scaling) to the metrics.

    Returns:
        The metrics dict (`classification_metrics`) plus `"warnings"`, `"slices"` when given,
        and `"files"`: `{what: path}`.
    """
    from tlkit._io import atomic_path, atomic_write_json, atomic_write_text

    os.makedirs(folder, exist_ok=True)
    metrics = classification_metrics(y_true, probs, class_names)
    files = {}
    files["report_json"] = atomic_write_json(
        os.path.join(folder, "classification_report.json"), metrics
    )
    files["report_txt"] = atomic_write_text(
        os.path.join(folder, "classification_report.txt"), format_report(metrics) + "\n"
    )
    target = os.path.join(folder, "confusion_matrix.png")
    with atomic_path(target) as tmp:
        plot_confusion_matrix(metrics["confusion_matrix"], class_names, tmp)
    files["confusion_matrix"] = target
    warnings = []
    if history:
        target = os.path.join(folder, "learning_curves.png")
        with atomic_path(target) as tmp:
            plot_learning_curves(history, tmp, stages=stages)
        files["learning_curves"] = target
        warning = overfitting_warning(history)
        if warning:
            warnings.append(warning)
        validation = final_validation(history)
        if validation is not None:
            metrics["final_validation"] = validation
    if calibration is not None:
        target = os.path.join(folder, "reliability_diagram.png")
        with atomic_path(target) as tmp:
            plot_reliability_diagram(calibration, tmp)
        files["reliability_diagram"] = target
        metrics["calibration"] = {
            k: calibration[k] for k in ("bins", "ece", "temperature", "ece_scaled")
        }
    if slice_values is not None:
        metrics["slices"] = sliced_metrics(y_true, probs, slice_values, name=slice_column)
        warnings.extend(metrics["slices"]["warnings"])
    metrics["warnings"] = warnings
    if card is not None:
        text = model_card(
            metrics=metrics,
            class_names=class_names,
            warnings=warnings,
            slices=metrics.get("slices"),
            stages=stages,
            calibration=calibration,
            **card,
        )
        files["model_card"] = atomic_write_text(os.path.join(folder, "model_card.md"), text)
    metrics["files"] = files
    return metrics
