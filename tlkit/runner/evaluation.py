"""Evaluating a run's model: predict the evaluation split once, derive what the reports show
(calibration, slices, top losses) and write `run/reports` (`train`, `evaluate`, `report`)."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import zipfile

import numpy as np

import tlkit.data as tdata
from tlkit import reports
from tlkit.reports import neighbours
from tlkit.reports.top_losses import gather_inputs, split_refs
from tlkit.runner.rundir import RunDir, atomic_path

logger = logging.getLogger("tlkit")


TOP_LOSSES = 16


def evaluate(recipe, run: RunDir, model, data, verbose="auto", _found=None) -> dict:
    """Evaluates on test (else val) and writes `run/reports` (all but the model card, which
    the caller writes with everything the run knows); returns the metrics."""
    found = _found or interpret(recipe, run, model, data, verbose)
    metrics = write_metrics_reports(run, data, found)
    for warning in metrics["warnings"]:
        logger.warning("%s", warning)
    return metrics


def interpret(
    recipe, run: RunDir, model, data, verbose, temperature="fit", reuse=False
) -> dict:
    """Predicts the evaluation split once and derives everything the reports show from it.

    `temperature`: `"fit"` fits one on the validation split when the recipe asks
    (`output.temperature_scaling`) and stores it in the run; otherwise the run's stored one.
    The probabilities returned (and reported) are the ones the served model gives: with the
    temperature applied. `reuse`: read the saved predictions of the same model when present.
    """
    split = eval_split(data)
    logger.info("evaluating on %s (%s examples)", split, data.num_examples(split))
    probs = _split_predictions(run, model, data, split, recipe, verbose, reuse)
    y_true = data.split_labels(split)
    if temperature == "fit":
        temperature = None
        if recipe.output.temperature_scaling:
            if data.val is None or split == "val":
                raise ValueError(
                    "output.temperature_scaling needs a validation split apart from the "
                    "evaluation split: set data.splits.val_fraction"
                )
            temperature = reports.fit_temperature(
                data.split_labels("val"), _predict(model, data, "val", recipe, 0)
            )
            logger.info("temperature scaling: T = %.3f (fitted on val)", temperature)
        run.write_json("calibration.json", {"temperature": temperature})
    calibration = reports.calibration_summary(y_true, probs, temperature)
    if temperature is not None:
        probs = reports.apply_temperature(probs, temperature)
    slice_values, column = None, recipe.data.slice_by
    if column:
        columns = data.metadata.get(split, {})
        if column not in columns:
            raise ValueError(
                f"data.slice_by: no metadata column {column!r} in the {split} split "
                f"(available: {sorted(columns) or 'none'})"
            )
        slice_values = columns[column]
    audit = None
    if os.path.exists(run.file("reports", "data_audit.json")):
        audit = run.read_json(os.path.join("reports", "data_audit.json"))
    losses = reports.top_losses_from_predictions(
        y_true, probs, data.class_names, n=TOP_LOSSES, split=split,
        refs=split_refs(data, split), audit=audit,
        # "suspected wrong label" needs the top losses' nearest training examples to agree
        neighbour_votes=functools.partial(
            neighbours.model_neighbour_votes, model, data, split, batch_size=recipe.data.batch_size,
        ),
    )
    losses.inputs = gather_inputs(data, split, losses.index)
    return {
        "split": split,
        "y_true": y_true,
        "probs": probs,
        "calibration": calibration,
        "slice_column": column,
        "slice_values": slice_values,
        "top_losses": losses,
    }


def write_metrics_reports(run: RunDir, data, found: dict) -> dict:
    metrics = reports.write_reports(
        run.reports,
        found["y_true"],
        found["probs"],
        data.class_names,
        history=run.history(),
        stages=run.state.get("segments"),
        slice_column=found["slice_column"],
        slice_values=found["slice_values"],
        calibration=found["calibration"],
    )
    metrics["split"] = found["split"]
    metrics["top_losses"] = found["top_losses"].to_records()
    return metrics


def eval_split(data) -> str:
    """The split a run is evaluated on: test, else val; an empty one is an error."""
    if data.test is None and data.val is None:
        raise ValueError("no test or validation split to evaluate on: set data.splits")
    split = "test" if data.test is not None else "val"
    if not len(data.split_labels(split)):
        raise ValueError(f"the {split} split is empty: nothing to evaluate or report on")
    return split


def _predict(model, data, split, recipe, verbose):
    ds = tdata.batch(data.split(split), recipe.data.batch_size, training=False, seed=recipe.seed)
    return np.asarray(model.predict(ds.map(_inputs_only), verbose=verbose))


def _inputs_only(x, y):
    return x


def _model_digest(run: RunDir) -> str:
    digest = hashlib.sha256()
    with open(run.model_path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _split_predictions(run: RunDir, model, data, split, recipe, verbose, reuse) -> np.ndarray:
    """The model's probabilities on `split`, saved in `reports/predictions.npz` with the digest
    of `model.keras`; with `reuse`, saved ones of the same model, split and labels are read
    back instead of predicting again (`tlkit report` after training)."""
    path = run.file("reports", "predictions.npz")
    y_true = data.split_labels(split)
    digest = _model_digest(run) if os.path.exists(run.model_path) else None
    if reuse and digest and os.path.exists(path):
        try:
            with np.load(path, allow_pickle=False) as saved:
                if (
                    str(saved["model_sha256"]) == digest
                    and str(saved["split"]) == split
                    and np.array_equal(saved["y_true"], y_true)
                ):
                    logger.info("reusing the %s predictions in %s", split, path)
                    return np.asarray(saved["probs"])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            # A cache: predicted again and rewritten below.
            logger.warning("%s is damaged (%s); predicting again", path, str(err)[:100])
    probs = _predict(model, data, split, recipe, verbose)
    if digest:
        with atomic_path(path) as tmp:
            np.savez(tmp, probs=probs, y_true=y_true, split=split, model_sha256=digest)
    return probs
