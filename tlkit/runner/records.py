"""What a run writes about itself for people: the model card (`reports/model_card.md`) and the
report page (`report.html`), and the record of its exports they list."""

from __future__ import annotations

import os

import numpy as np

from tlkit.reports import model_card, write_html_report
from tlkit.runner.rundir import RunDir, atomic_write_text


def write_report(recipe, run: RunDir, data, metrics, found, exports=None) -> str:
    """Writes `run/report.html` (one self-contained page) from the evaluation's results."""
    exports = exports if exports is not None else recorded_exports(run)
    files = {
        name: os.path.relpath(info["path"], run.path)
        for name, info in exports.items()
        if info.get("path")
    }

    def text(*parts):
        path = run.file(*parts)
        if not os.path.exists(path):
            return None
        with open(path, encoding="utf-8") as f:
            return f.read()

    summary = {
        "run": run.path,
        "backbone": recipe.backbone.spec,
        "data": f"{recipe.data.source} {recipe.data.name or recipe.data.path or ''}".strip(),
        "classes": len(data.class_names),
        "splits": ", ".join(f"{s} {data.num_examples(s)}" for s in data.splits),
        f"{found['split']} accuracy": f"{metrics['accuracy']:.4f}",
        "training time": f"{run.state.get('train_seconds', metrics.get('train_seconds', '?'))} s",
    }
    path = write_html_report(
        run.file("report.html"),
        title=f"tlkit report: {recipe.name}",
        summary=summary,
        metrics=metrics,
        class_names=data.class_names,
        history=run.history(),
        stages=run.state.get("segments"),
        top_losses=found["top_losses"],
        calibration=found["calibration"],
        slices=metrics.get("slices"),
        audit_text=text("reports", "data_audit.txt"),
        model_card=text("reports", "model_card.md"),
        files=files,
    )
    return path


def write_card(recipe, run, model, data, metrics, exports, training) -> None:
    """Writes the run's `reports/model_card.md` from its metrics and exports; `training`: the
    card's Training section (how the run trained, from the train verb)."""
    trainable = int(sum(np.prod(v.shape) for v in model.trainable_weights))
    source = recipe.data.name or recipe.data.path or ""
    budget = f", budget {recipe.data.per_class} per class" if recipe.data.per_class else ""
    text = model_card(
        name=recipe.name,
        metrics=metrics,
        class_names=data.class_names,
        backbone=recipe.backbone.spec,
        data={
            "description": f"{recipe.data.source} {source}".strip() + budget,
            "splits": {s: data.num_examples(s) for s in data.splits},
        },
        stages=run.state.get("segments"),
        params={"total": int(model.count_params()), "trainable": trainable},
        warnings=metrics.get("warnings", ()),
        slices=metrics.get("slices"),
        calibration=metrics.get("calibration"),
        training=training,
        evaluated_on=metrics.get("split", "test"),
        exports={k: v.get("path", v.get("skipped")) for k, v in (exports or {}).items()},
    )
    atomic_write_text(os.path.join(run.reports, "model_card.md"), text)


def recorded_exports(run: RunDir) -> dict:
    """`{format: record}` of everything exported from the run: `model.keras` and the formats
    listed in `export/export.json`."""
    return {"keras": {"path": run.model_path}, **run.read_json("export/export.json", {})}


def merge_card_files(run: RunDir) -> None:
    """Rewrites the `## Files` section (the last) of the run's model card from
    `recorded_exports`, keeping everything above it."""
    path = os.path.join(run.reports, "model_card.md")
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        text = f.read()
    head = text.split("\n## Files\n")[0].rstrip("\n")
    files = [
        f"- {fmt}: `{record.get('path', record.get('skipped'))}`"
        for fmt, record in recorded_exports(run).items()
    ]
    atomic_write_text(path, head + "\n\n## Files\n\n" + "\n".join(files) + "\n")
