"""What a search leaves behind: the trials table (Markdown + CSV), the best hyperparameters as a
ready-to-run recipe (YAML), and a plot of the objective against the learning rates (PNG).
"""

from __future__ import annotations

import copy
import csv
import io
import math
import os

import yaml

from tlkit._handles import (
    KERAS_HUB_PREFIX,
    is_hub_handle,
    is_keras_hub_handle,
    is_uri,
    keras_hub_preset,
)
from tlkit._io import atomic_path, atomic_write_text
from tlkit.tuning import space as space_lib

_TUNER_KEYS = ("tuner/epochs", "tuner/initial_epoch", "tuner/bracket", "tuner/round",
               "tuner/trial_id")


def trial_rows(oracle, space) -> list[dict]:
    """One row per trial of a keras-tuner oracle, in the order the trials were created.

    Args:
        oracle: a keras-tuner `Oracle` (`tuner.oracle`) holding the trials.
        space: the `SearchSpace` (which hyperparameters to report).

    Returns:
        `[{"trial_id", "status", "score", "epochs", "initial_epoch", "continues",
        "hyperparameters": {name: value}}]`; `score` is the best objective value (`None` when
        the trial did not finish), `epochs` / `initial_epoch` / `continues` are Hyperband's
        round (`None` for other tuners).
    """
    rows = []
    for trial_id in sorted(oracle.trials, key=lambda t: (len(str(t)), str(t))):
        trial = oracle.trials[trial_id]
        values = trial.hyperparameters.values
        score = trial.score
        rows.append({
            "trial_id": trial_id,
            "status": str(trial.status),
            "score": None if score is None or not math.isfinite(score) else float(score),
            "epochs": values.get("tuner/epochs"),
            "initial_epoch": values.get("tuner/initial_epoch"),
            "continues": values.get("tuner/trial_id"),
            "hyperparameters": {n: values[n] for n in space.names if n in values},
        })
    return rows


def _columns(rows, space):
    rounds = ["epochs", "initial_epoch", "continues"]
    if not any(r[c] is not None for r in rows for c in rounds):  # not Hyperband
        rounds = []
    return ["trial_id", "status", "score", *rounds, *space.names]


def _flat(row):
    out = {k: v for k, v in row.items() if k != "hyperparameters"}
    out.update(row["hyperparameters"])
    return out


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def summary_csv(rows, space) -> str:
    """The trials table as CSV text (one column per searched hyperparameter)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_columns(rows, space), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        flat = _flat(row)
        writer.writerow({k: ("" if flat.get(k) is None else flat[k]) for k in writer.fieldnames})
    return buffer.getvalue()


def summary_markdown(rows, space, objective, best_trial_id=None) -> str:
    """The trials table as Markdown, best trial marked, with a header line on the objective."""
    columns = _columns(rows, space)
    done = [r for r in rows if r["score"] is not None]
    lines = [
        f"# Hyperparameter search: {len(rows)} trials ({len(done)} with a score), objective "
        f"`{objective}`",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for row in rows:
        flat = _flat(row)
        cells = [_cell(flat.get(c)) for c in columns]
        if row["trial_id"] == best_trial_id:
            cells[0] = f"**{cells[0]}** (best)"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def best_recipe(values, space, epochs, recipe=None, backbone=None) -> dict:
    """A recipe dict that trains with the best hyperparameters.

    Args:
        values: the best trial's values of *every* parameter (searched and fixed), by short name.
        space: the `SearchSpace` (its parameters, and the unfreezing ones, are written).
        epochs: the epoch budget (`phases.head_epochs + phases.fine_epochs`).
        recipe: optional input recipe (a `tlkit.recipes.Recipe` or a plain dict) to merge into;
            its `tune` section is dropped.
        backbone: a backbone spec string (written as `backbone.name`, `.path` or `.handle`)
            when there is no input recipe.

    Returns:
        A plain dict for `yaml.safe_dump` / `tlkit.recipes.Recipe.from_dict`.
    """
    if recipe is not None and hasattr(recipe, "to_dict"):
        recipe = recipe.to_dict()
    data = copy.deepcopy(recipe) if recipe else {}
    data.pop("tune", None)
    if not recipe and backbone is not None:
        data["backbone"] = _backbone_section(os.fspath(backbone))
    written = list(space.names)
    if any(n in space for n in ("head_epochs", "unfreeze_groups", "unfreeze_every",
                                "unfreeze_per_step")):
        written += ["head_epochs", "unfreeze_groups", "unfreeze_every", "unfreeze_per_step"]
        data.setdefault("phases", {})["schedule"] = "gradual"
    for name in dict.fromkeys(written):
        section, key = space_lib.TUNABLE[name].recipe_key.split(".")
        value = values[name]
        data.setdefault(section, {})[key] = _plain(value)
    phases = data.setdefault("phases", {})
    head = int(values["head_epochs"])
    phases["head_epochs"] = head
    phases["fine_epochs"] = int(epochs) - head
    return data


def _backbone_section(spec: str) -> dict:
    """A recipe `backbone` section for a `tlkit.backbones.get` spec string."""
    if os.path.exists(spec):
        return {"path": os.path.abspath(spec)}
    if is_keras_hub_handle(spec):
        return {"name": KERAS_HUB_PREFIX + keras_hub_preset(spec)}
    if is_hub_handle(spec) or is_uri(spec):  # a TF-Hub / Kaggle handle, a file:// URL
        return {"handle": spec}
    return {"name": spec}


def _plain(value):
    """A YAML-friendly scalar: numpy scalars unwrapped, float steps' round-off removed
    (0.30000000000000004 -> 0.3)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float):
        value = float(f"{value:.12g}")
    return value


def recipe_yaml(data, comment=None) -> str:
    """`yaml.safe_dump` of a recipe dict, with optional `#` comment lines on top."""
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
    if comment:
        text = "".join(f"# {line}\n" for line in comment.splitlines()) + text
    return text


def plot_objective(rows, space, objective, path=None, maximize=True, fixed_lr=None):
    """Scatter plot of each trial's score against its learning rate(s) (log scale).

    One panel per searched LR (`lr`, `head_lr`); with neither searched, the score against the
    trial number. The best trial is marked. Uses `matplotlib.figure.Figure` with the Agg
    canvas, so the global pyplot backend is never touched.

    Args:
        rows: `trial_rows` output.
        space: the `SearchSpace`.
        objective: the objective's name (axis label).
        path: save a PNG there (atomically) when given.
        maximize: whether a higher score is better (which trial is marked best).
        fixed_lr: shown in the title when no LR is searched.

    Returns:
        The `matplotlib.figure.Figure`.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator, NullFormatter

    scored = [r for r in rows if r["score"] is not None]
    panels = [n for n in ("lr", "head_lr") if n in space] or [None]
    fig = Figure(figsize=(5.5 * len(panels), 4.4), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    best = best_row(scored, maximize)
    for ax, name in zip(axes, panels):
        if name is None:
            xs = list(range(len(scored)))
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("trial")
            title = "score per trial" + (f" (lr fixed at {fixed_lr:g})" if fixed_lr else "")
        else:
            xs = [r["hyperparameters"][name] for r in scored]
            ax.set_xscale("log")
            param = space.params[name]
            low, high = (min(param.values), max(param.values)) if param.values else (
                param.min, param.max)
            ax.set_xlim(low / 1.5, high * 1.5)
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(f"{name} (log scale; limits: the searched range)")
            title = f"{objective} vs {name}"
        ys = [r["score"] for r in scored]
        rounds = len({r["epochs"] for r in scored}) > 1
        sizes = [20 + 15 * (r["epochs"] or 1) for r in scored] if rounds else 40
        ax.scatter(xs, ys, s=sizes, color="C0", alpha=0.6,
                   label="trial (marker size: epochs trained)" if rounds else "trial")
        for x, y, row in zip(xs, ys, scored):
            ax.annotate(row["trial_id"], (x, y), textcoords="offset points", xytext=(4, 4),
                        fontsize=7, color="0.3")
        if best is not None:
            i = scored.index(best)
            ax.scatter([xs[i]], [ys[i]], marker="*", s=260, color="C3", zorder=3,
                       label=f"best: trial {best['trial_id']} ({ys[i]:.4g})")
        ax.set_ylabel(objective)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.margins(y=0.15)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=8,
                  frameon=False)
    fig.tight_layout()
    if path is not None:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    return fig


def best_row(rows, maximize=True):
    """The row with the best score (`None` when no trial has one)."""
    scored = [r for r in rows if r["score"] is not None]
    if not scored:
        return None
    return max(scored, key=lambda r: r["score"] if maximize else -r["score"])


def write_reports(folder, rows, space, objective, best_trial_id, recipe_dict, recipe_comment,
                  maximize=True, plot_fixed_lr=None) -> dict:
    """Writes `trials.md`, `trials.csv`, `best_recipe.yaml` and `objective_vs_lr.png`.

    Returns:
        `{"summary_md", "summary_csv", "recipe", "plot"}` paths.
    """
    paths = {
        "summary_md": os.path.join(folder, "trials.md"),
        "summary_csv": os.path.join(folder, "trials.csv"),
        "recipe": os.path.join(folder, "best_recipe.yaml"),
        "plot": os.path.join(folder, "objective_vs_lr.png"),
    }
    atomic_write_text(paths["summary_md"],
                      summary_markdown(rows, space, objective, best_trial_id))
    atomic_write_text(paths["summary_csv"], summary_csv(rows, space))
    if recipe_dict is not None:
        atomic_write_text(paths["recipe"], recipe_yaml(recipe_dict, recipe_comment))
    else:
        paths["recipe"] = None
    plot_objective(rows, space, objective, paths["plot"], maximize=maximize,
                   fixed_lr=plot_fixed_lr)
    return paths
