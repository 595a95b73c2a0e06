"""Reports of a trained classifier: metrics, plots and a model card.

`write_reports(folder, y_true, probs, class_names, ...)` writes everything at once:
`classification_report.json` / `.txt`, `confusion_matrix.png`, `learning_curves.png`,
`model_card.md`; the pieces (`classification_metrics`, `sliced_metrics`,
`overfitting_warning`, `plot_confusion_matrix`, `plot_learning_curves`, `model_card`) can be
used on their own. Interpretation (fastai's `ClassificationInterpretation`): `top_losses`,
`most_confused` (also in the metrics), calibration (`expected_calibration_error`,
`fit_temperature`, `plot_reliability_diagram`), slices with their gap (`sliced_metrics`), and
one self-contained page, `write_html_report`.
"""

from __future__ import annotations

from tlkit.reports.calibration import (
    apply_temperature,
    calibration_summary,
    expected_calibration_error,
    fit_temperature,
    reliability_curve,
)
from tlkit.reports.confusions import most_confused
from tlkit.reports.html_report import render_html_report, write_html_report
from tlkit.reports.metrics import (
    classification_metrics,
    final_validation,
    format_report,
    overfitting_warning,
    slice_warnings,
    sliced_metrics,
)
from tlkit.reports.model_card import model_card
from tlkit.reports.plots import (
    plot_confusion_matrix,
    plot_learning_curves,
    plot_reliability_diagram,
    plot_top_losses,
)
from tlkit.reports.report_files import write_reports
from tlkit.reports.show_results import show_results
from tlkit.reports.top_losses import TopLosses, top_losses, top_losses_from_predictions
from tlkit.reports.versions import library_versions

__all__ = [
    "TopLosses",
    "apply_temperature",
    "calibration_summary",
    "expected_calibration_error",
    "fit_temperature",
    "most_confused",
    "plot_reliability_diagram",
    "plot_top_losses",
    "reliability_curve",
    "show_results",
    "render_html_report",
    "slice_warnings",
    "top_losses",
    "top_losses_from_predictions",
    "write_html_report",
    "classification_metrics",
    "final_validation",
    "library_versions",
    "format_report",
    "model_card",
    "overfitting_warning",
    "plot_confusion_matrix",
    "plot_learning_curves",
    "sliced_metrics",
    "write_reports",
]
