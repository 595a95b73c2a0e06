"""What a run writes about itself for people: the model card (`reports/model_card.md`) and the
report page (`report.html`), and the record of its exports they list."""

from __future__ import annotations

import os

import numpy as np

from tlkit import trainability
from tlkit.optimizers import schedules
from tlkit.reports import model_card, write_html_report
from tlkit.runner.rundir import RunDir, atomic_write_text
from tlkit.training import strategies


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


# -- the model card's Training section ----------------------------------------------------------------
def training_record(recipe, model, data, strategy=None) -> dict:
    """How the run trained, for the model card's Training section (`model_card(training=)`);
    `strategy`: the `FineTuneResult.strategy` record of what ran."""
    config = recipe.fine_tune_config()
    ran = (strategy or {}).get("strategy")
    probed = ran is not None and strategies.get(ran).uses_probe
    if probed:  # the probe replaced the head epochs
        config = config.replace(head_epochs=0, fine_epochs=max(config.fine_epochs, 1))
    spec = recipe.data.augmentation if data.kind == "image" else {}
    augmentation = ", ".join(f"{k}: {v}" for k, v in spec.items())
    if augmentation and (recipe.data.cache_features or probed):
        augmentation += (" (fine-tuning epochs only: the linear probe fits on un-augmented "
                         "features)" if probed else
                         " (fine-tuning epochs only: the head phase trains on cached features)")
    optimizer = config.optimizer + (
        f", weight decay {config.weight_decay:g}" if config.weight_decay else "")
    batch_norm = None
    if trainability.has_batch_norm(model):
        batch_norm = {
            "frozen": "frozen (inference mode: statistics and gamma/beta fixed)",
            "train_affine": "statistics frozen, gamma/beta trained in unfrozen groups",
            "update": "statistics updated and gamma/beta trained in unfrozen groups",
        }.get(config.bn_policy, config.bn_policy)
    return {
        "input": input_description(model, data),
        "augmentation": augmentation,
        "batch_size": recipe.data.batch_size,
        "optimizer": optimizer,
        # No fit when the probe alone ran (not the probe kept after fine-tuning).
        "learning_rate": {} if ran == "linear_probe" and not strategy.get("probe_kept")
        else schedules.describe(config),
        "batch_norm": batch_norm,
        "seed": recipe.seed,
    }


def input_description(model, data) -> str:
    """E.g. `28x28x1 pixels in [0, 255] (resized to 128x128 px, 3 channels, scaled to [-1, 1]
    inside the model)`."""
    from tlkit.preprocessing import ImagePreprocessing

    if data.kind == "text":
        return "strings, tokenized inside the model"
    raw = "x".join(str(d) for d in data.input_shape) if data.input_shape else "any-size"
    layer = next((x for x in model._flatten_layers(include_self=False)
                  if isinstance(x, ImagePreprocessing)), None)
    if layer is None:
        return f"{raw} pixels in [0, 255]"
    info = layer.input_info
    size = ("resized to " + "x".join(map(str, info.image_size)) + " px" if info.image_size
            else "at the data's size")
    low, high = info.value_range
    return (f"{raw} pixels in [0, 255] ({size}, {info.channels} channels, scaled to "
            f"[{low:g}, {high:g}] inside the model)")
