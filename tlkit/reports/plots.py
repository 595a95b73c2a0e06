"""PNG plots: confusion matrix and learning curves with the unfreezing points marked.

Figures are made with `matplotlib.figure.Figure` directly (no `pyplot`), so no matplotlib
backend or other global state is chosen or changed.
"""

from __future__ import annotations

import numpy as np


def _figure(width, height):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def plot_confusion_matrix(matrix, class_names, path, title="Confusion matrix") -> str:
    """Writes a confusion matrix PNG: colour = share of the true class, text = counts.

    Args:
        matrix: `(k, k)` counts, rows = true class, columns = predicted class.
        class_names: the `k` class names.
        path: PNG file to write.
        title: figure title.

    Returns:
        `path`.
    """
    matrix = np.asarray(matrix)
    k = len(class_names)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    size = min(4.0 + 0.55 * k, 18.0)
    fig = _figure(size + 1.2, size)
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    cbar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    cbar.set_label("share of true class")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    font = 9 if k <= 15 else 7
    ax.set_xticklabels(class_names, rotation=45, ha="right", rotation_mode="anchor", fontsize=font)
    ax.set_yticklabels(class_names, fontsize=font)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    ax.set_title(f"{title} (accuracy {accuracy:.3f}, n={int(matrix.sum())})")
    if k <= 30:
        for i in range(k):
            for j in range(k):
                if matrix[i, j] == 0 and i != j:
                    continue
                color = "white" if share[i, j] > 0.55 else "black"
                ax.text(
                    j,
                    i,
                    str(int(matrix[i, j])),
                    ha="center",
                    va="center",
                    color=color,
                    fontsize=font,
                )
    fig.savefig(path)
    return path


def plot_learning_curves(history, path, stages=None, title="Learning curves") -> str:
    """Writes learning curves (loss and, when present, accuracy) per epoch, train and validation.

    Each training stage is shaded and labelled above the plot (its `short` label, e.g.
    `head`, `top 2`, `all`), with a dotted line where the unfreezing changes.

    Args:
        history: records `{"epoch", "stage", "loss", "val_loss", "accuracy", ...}`
            (`RunDir.history()`); epochs count across stages.
        path: PNG file to write.
        stages: optional `[{"name", "label", "short", "start", "end"}]` (epochs
            `[start, end)`); default:
            taken from the records' `stage` field.
        title: figure title.

    Returns:
        `path`.
    """
    from matplotlib.ticker import MaxNLocator

    records = sorted(history, key=lambda r: r["epoch"])
    metrics = ["loss"] + [m for m in ("accuracy",) if any(m in r for r in records)]
    fig = _figure(6.0 * len(metrics), 4.2)
    axes = np.atleast_1d(fig.subplots(1, len(metrics)))
    # Stages without epochs (the linear probe before fine-tuning) have no span to mark.
    stages = [s for s in stages or () if s["end"] > s["start"]] or _stages_from_records(records)
    if records:  # early stopping may end a run before its last planned stage
        last = max(r["epoch"] for r in records) + 1
        stages = [dict(s, end=min(s["end"], last)) for s in stages if s["start"] < last]
    for ax, metric in zip(axes, metrics):
        for key, style, label in ((metric, "-o", "train"), (f"val_{metric}", "--s", "validation")):
            points = [(r["epoch"] + 1, r[key]) for r in records if r.get(key) is not None]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, style, label=label, markersize=4)
        _mark_stages(ax, stages)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(metric, pad=26 if stages else 6)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        if records:
            ax.set_xlim(0.5, max(r["epoch"] for r in records) + 1.5)
    fig.suptitle(title)
    fig.savefig(path)
    return path


def _stages_from_records(records):
    stages = []
    for r in records:
        if not stages or stages[-1]["name"] != r.get("stage"):
            stages.append(
                {
                    "name": r.get("stage"),
                    "label": r.get("stage"),
                    "start": r["epoch"],
                    "end": r["epoch"] + 1,
                }
            )
        else:
            stages[-1]["end"] = r["epoch"] + 1
    return stages


def _mark_stages(ax, stages):
    """Shades every other stage, draws a dotted line at each change (unfreezing point) and
    writes the stage labels in a band above the axes (staggered so neighbours don't collide)."""
    from matplotlib.transforms import blended_transform_factory

    trans = blended_transform_factory(ax.transData, ax.transAxes)
    for i, stage in enumerate(stages):
        left, right = stage["start"] + 0.5, stage["end"] + 0.5
        if i % 2:
            ax.axvspan(left, right, color="0.92", zorder=0)
        if i:
            ax.axvline(
                left,
                color="tab:red",
                linestyle=":",
                linewidth=1.2,
                label="unfreezing step" if i == 1 else None,
            )
        ax.text(
            (left + right) / 2,
            1.015 + 0.055 * (i % 2),
            stage.get("short") or stage.get("label") or stage["name"],
            transform=trans,
            ha="center",
            va="bottom",
            fontsize=7,
            color="tab:red" if i else "0.3",
            clip_on=False,
        )


def plot_reliability_diagram(calibration, path=None, title="Reliability diagram"):
    """Accuracy against confidence per bin (the diagonal is perfect calibration), before and,
    when fitted, after temperature scaling; the bars below count the examples per bin.

    Args:
        calibration: `tlkit.reports.calibration_summary(...)` output.
        path: PNG file to write, or `None` to only return the figure.

    Returns:
        `path`, or the `Figure` when `path` is `None`.
    """
    fig = _figure(5.2, 5.4)
    ax, hist = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    ax.plot([0, 1], [0, 1], ":", color="0.5", label="perfect calibration")
    curves = [("curve", "-o", f"model (ECE {calibration['ece']:.3f})")]
    if calibration.get("curve_scaled"):
        curves.append(
            (
                "curve_scaled",
                "-s",
                f"T = {calibration['temperature']:.2f} (ECE {calibration['ece_scaled']:.3f})",
            )
        )
    for key, style, label in curves:
        curve = calibration[key]
        points = [
            (c, a) for c, a in zip(curve["confidence"], curve["accuracy"]) if c is not None
        ]
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, style, markersize=4, label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy in bin")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    curve = calibration["curve"]
    edges = np.asarray(curve["edges"])
    hist.bar(edges[:-1], curve["count"], width=np.diff(edges), align="edge", color="0.6")
    hist.set_xlabel("confidence (top-1 probability)")
    hist.set_ylabel("examples")
    if path is None:
        return fig
    fig.savefig(path)
    return path


def plot_top_losses(losses, columns: int = 4, path=None):
    """The top-loss examples: an image grid, or a table for texts.

    Args:
        losses: a `tlkit.reports.TopLosses` (with `inputs` for images).
        columns: images per row.
        path: PNG file to write, or `None` to only return the figure.

    Returns:
        `path`, or the `Figure` when `path` is `None`.
    """
    n = len(losses)
    inputs = losses.inputs
    is_image = inputs is not None and np.asarray(inputs).ndim >= 3
    if is_image:
        from tlkit._image_grid import image_grid

        fig = image_grid(
            inputs[:n],
            [f"true {losses.true[i]}\npred {losses.predicted[i]} {losses.probability[i]:.2f}"
             f"\nloss {losses.loss[i]:.2f}" for i in range(n)],
            columns,
            colors=["tab:red" if losses.notes[i] else "black" for i in range(n)],
        )
    else:
        fig = _figure(9.0, 0.35 * n + 0.8)
        ax = fig.subplots()
        ax.axis("off")
        texts = inputs if inputs is not None else losses.refs
        cells = [
            [_short(texts[i]), losses.true[i], losses.predicted[i],
             f"{losses.probability[i]:.2f}", f"{losses.loss[i]:.2f}"]
            for i in range(n)
        ]
        table = ax.table(
            cells, colLabels=["input", "true", "predicted", "prob.", "loss"], loc="upper center"
        )
        table.auto_set_font_size(False)
        table.set_fontsize(7)
    fig.suptitle(f"Top {n} losses ({losses.split} split)")
    if path is None:
        return fig
    fig.savefig(path)
    return path


def _short(value, width=60):
    text = value.decode() if isinstance(value, bytes) else str(value)
    return text if len(text) <= width else text[: width - 3] + "..."
