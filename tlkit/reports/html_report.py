"""`report.html`: one self-contained page per run (images embedded as base64 PNG, no scripts,
styles or fonts fetched from anywhere), written atomically so a partial page never replaces a
complete one."""

from __future__ import annotations

import base64
import html
import io
import os

import numpy as np

_STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0 auto;
max-width:1100px;padding:1em 2em;color:#222}
h1{border-bottom:2px solid #444}h2{margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .6em;
text-align:right}th{background:#f2f2f2}td.l,th.l{text-align:left}
.warn{background:#fff4e5;border-left:4px solid #f0a030;padding:.4em .8em;margin:.4em 0}
.gallery{display:flex;flex-wrap:wrap;gap:.6em}.tile{width:150px;font-size:12px;
overflow-wrap:anywhere}
.tile img{width:150px;height:150px;object-fit:contain;image-rendering:pixelated;
background:#eee}.note{color:#b00}pre{background:#f7f7f7;padding:.8em;overflow-x:auto;
white-space:pre-wrap}img.plot{max-width:100%;max-height:640px}nav a{margin-right:1em}
"""

SECTIONS = (
    ("summary", "Run summary"),
    ("curves", "Learning curves"),
    ("metrics", "Metrics"),
    ("confusion", "Confusion matrix"),
    ("top-losses", "Top losses"),
    ("calibration", "Calibration"),
    ("slices", "Slices"),
    ("audit", "Data audit"),
    ("card", "Model card"),
    ("files", "Exported models"),
)


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def figure_data_uri(draw) -> str:
    """`draw(buffer)` writes a PNG into a buffer (the `plot_*` functions accept one as `path`);
    returns it as a `data:` URI."""
    buffer = io.BytesIO()
    result = draw(buffer)
    if hasattr(result, "savefig"):  # a Figure returned instead of written
        result.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def image_data_uri(image) -> str:
    """An image array in `[0, 255]` (`(h, w)`, `(h, w, 1)` or `(h, w, 3)`) as a PNG `data:` URI."""
    from PIL import Image

    array = np.clip(np.asarray(image, dtype="float32"), 0, 255).astype("uint8")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _table(header, rows, left=1) -> str:
    head = "".join(f"<th{' class=l' if i < left else ''}>{_esc(h)}</th>" for i, h in enumerate(header))
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=l' if i < left else ''}>{_esc(c)}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(uri, alt) -> str:
    return f'<img class="plot" alt="{_esc(alt)}" src="{uri}">'


def render_html_report(
    title: str,
    summary: dict,
    metrics: dict,
    class_names,
    history=None,
    stages=None,
    top_losses=None,
    calibration=None,
    slices=None,
    audit_text: str | None = None,
    model_card: str | None = None,
    files: dict | None = None,
) -> str:
    """The report page as an HTML string (see `write_html_report` for the arguments)."""
    from tlkit.reports import plots

    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        f"<title>{_esc(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_esc(title)}</h1><nav>",
        "".join(f'<a href="#{key}">{_esc(label)}</a>' for key, label in SECTIONS),
        "</nav>",
    ]

    def section(key, body):
        label = dict(SECTIONS)[key]
        parts.append(f'<section id="{key}"><h2>{_esc(label)}</h2>{body}</section>')

    warnings = list(metrics.get("warnings", []))
    section(
        "summary",
        _table(["", "value"], [[k, v] for k, v in summary.items()])
        + "".join(f'<div class="warn">warning: {_esc(w)}</div>' for w in warnings),
    )
    if history:
        uri = figure_data_uri(lambda b: plots.plot_learning_curves(history, b, stages=stages))
        section("curves", _img(uri, "learning curves") + f"<p>{_esc(curves_caption(stages))}</p>")
    else:
        section("curves", "<p>No training history in this run.</p>")
    rows = [
        ["accuracy", f"{metrics['accuracy']:.4f}"],
        ["balanced accuracy", f"{metrics.get('balanced_accuracy', float('nan')):.4f}"],
        ["macro F1", f"{metrics['macro_f1']:.4f}"],
        ["weighted F1", f"{metrics['weighted_f1']:.4f}"],
        ["examples", metrics["num_examples"]],
    ]
    per_class = [
        [c, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", m["support"]]
        for c, m in metrics["per_class"].items()
    ]
    section(
        "metrics",
        _table(["metric", "value"], rows)
        + _table(["class", "precision", "recall", "F1", "support"], per_class),
    )
    uri = figure_data_uri(
        lambda b: plots.plot_confusion_matrix(metrics["confusion_matrix"], class_names, b)
    )
    pairs = [
        [p["true"], p["predicted"], p["count"], f"{p['share']:.2f}"]
        for p in metrics.get("most_confused", [])
    ]
    section(
        "confusion",
        _img(uri, "confusion matrix")
        + "<h3>Most confused pairs</h3>"
        + (_table(["true", "predicted as", "count", "share of true"], pairs, left=2)
           if pairs else "<p>No confusions.</p>"),
    )
    section("top-losses", _top_losses_html(top_losses))
    if calibration:
        from tlkit.reports.model_card import calibration_sentence

        uri = figure_data_uri(lambda b: plots.plot_reliability_diagram(calibration, b))
        section("calibration", f"<p>{_esc(calibration_sentence(calibration))}.</p>"
                + _img(uri, "reliability diagram"))
    else:
        section("calibration", "<p>Not measured.</p>")
    if slices:
        rows = [
            [k, f"{s['accuracy']:.3f}", f"{s.get('gap', 0):+.3f}", s["count"]]
            for k, s in slices["slices"].items()
        ]
        body = f"<p>By <code>{_esc(slices['column'])}</code>; overall accuracy "
        body += f"{slices.get('overall', metrics['accuracy']):.3f}.</p>"
        body += _table(["value", "accuracy", "gap to overall", "count"], rows)
        body += "".join(f'<div class="warn">{_esc(w)}</div>' for w in slices.get("warnings", []))
        section("slices", body)
    else:
        section("slices", "<p>No metadata column to slice by (recipe key data.slice_by).</p>")
    section("audit", f"<pre>{_esc(audit_text)}</pre>" if audit_text else "<p>No audit.</p>")
    section("card", markdown_html(model_card) if model_card else "<p>No model card.</p>")
    links = "".join(
        f'<li>{_esc(k)}: <a href="{_esc(v)}">{_esc(v)}</a></li>' for k, v in (files or {}).items()
    )
    section("files", f"<ul>{links}</ul>" if links else "<p>No exported models.</p>")
    parts.append("</body></html>\n")
    return "".join(parts)


def curves_caption(stages) -> str:
    """What the learning curves' dotted lines mark, for the strategy that ran (`stages`: the
    run's segments, `tlkit.runner.train.plan_segments`)."""
    stages = list(stages or [])
    if stages and stages[0].get("short") == "probe":
        rest = "; ".join(s["label"] for s in stages[1:])
        return ("The linear probe set the head before the first epoch (the dotted line; no "
                "epochs of its own)" + (f"; then {rest}." if rest else "; no fine-tuning epochs."))
    changes = [s for s in stages[1:] if s.get("start", 0) > 0]
    if not changes:
        only = stages[0]["label"] if stages else "one phase"
        return f"One phase ({only}): no change of what trains, so no dotted lines."
    marks = "; ".join(f"epoch {s['start'] + 1}: {s['label']}" for s in changes)
    return f"Dotted lines: where what trains changes ({marks})."


def markdown_html(text: str) -> str:
    """Markdown (the model card) as HTML with Python-Markdown (tables included); characters
    that would be HTML are escaped first, so names in the card cannot inject markup."""
    import markdown

    return markdown.markdown(html.escape(text, quote=False), extensions=["tables"])


def _top_losses_html(losses) -> str:
    if losses is None or not len(losses):
        return "<p>No examples.</p>"
    images = losses.inputs is not None and np.asarray(losses.inputs).ndim >= 3
    intro = (
        f"<p>The {len(losses)} {_esc(losses.split)} examples with the highest loss. Notes link "
        "them to the data audit (duplicates across splits) and flag suspected wrong labels: "
        "predicted confidently as another class whose nearest training examples mostly carry "
        "that class.</p>"
    )
    if images:
        tiles = []
        for i, rec in enumerate(losses.to_records()):
            notes = "".join(f'<div class="note">{_esc(n)}</div>' for n in rec["notes"])
            ref = str(rec["ref"])
            name = os.path.basename(ref) or ref  # the full path: the tile's tooltip
            tiles.append(
                f'<div class="tile" title="{_esc(ref)}"><img alt="{_esc(ref)}" '
                f'src="{image_data_uri(losses.inputs[i])}"><div>true <b>{_esc(rec["true"])}'
                f"</b><br>pred <b>{_esc(rec['predicted'])}</b> {rec['probability']:.2f}<br>"
                f"loss {rec['loss']:.2f} &middot; {_esc(name)}</div>{notes}</div>"
            )
        return intro + f'<div class="gallery">{"".join(tiles)}</div>'
    texts = losses.inputs if losses.inputs is not None else losses.refs
    rows = []
    for i, rec in enumerate(losses.to_records()):
        text = texts[i].decode() if isinstance(texts[i], bytes) else str(texts[i])
        rows.append([text, rec["true"], rec["predicted"], f"{rec['probability']:.2f}",
                     f"{rec['loss']:.2f}", "; ".join(rec["notes"])])
    return intro + _table(["input", "true", "predicted", "prob.", "loss", "notes"], rows)


def write_html_report(path, **content) -> str:
    """Writes `render_html_report(**content)` to `path` atomically; returns `path`.

    Args:
        path: the HTML file (e.g. `runs/<name>/report.html`).
        title: page title.
        summary: `{label: value}` rows of the run summary.
        metrics: `classification_metrics(...)` output, with `"warnings"`.
        class_names: class names.
        history, stages: for the learning curves (`RunDir.history()`, the run's segments).
        top_losses: a `TopLosses` (with inputs for the image gallery).
        calibration: `calibration_summary(...)` output.
        slices: `sliced_metrics(...)` output.
        audit_text: the data audit as text.
        model_card: the model card (Markdown, rendered).
        files: `{name: relative path}` links to the exported models.
    """
    from tlkit._io import atomic_write_text

    return atomic_write_text(os.fspath(path), render_html_report(**content))
