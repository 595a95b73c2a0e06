"""`tlkit evaluate`: re-evaluate a finished run (same recipe, data and splits) and rewrite its
reports; with `--tta`, also with test-time augmentation."""

from __future__ import annotations

import logging

import numpy as np

from tlkit.inference import predict_tta
from tlkit.reports import classification_metrics
from tlkit.runner.evaluation import eval_split, evaluate
from tlkit.runner.records import recorded_exports, training_record, write_card
from tlkit.runner.reopen import reopen
from tlkit.runner.run_lock import run_lock
from tlkit.runner.run_model import load_run_model
from tlkit.runner.rundir import RecordError, RunDir, open_run

logger = logging.getLogger("tlkit")


def evaluate_run(path, verbose="auto", tta=None) -> dict:
    """Re-evaluates a finished run (same recipe, data and splits); rewrites its reports.

    `tta`: also evaluate with test-time augmentation (`tlkit.inference.predict_tta`), e.g.
    `{"flip": True, "crops": 0.9}`; its metrics go to `metrics_tta.json` beside `metrics.json`
    (which keeps the plain ones) and are returned under `"tta"`.
    """
    with run_lock(path, "evaluate"):
        return _evaluate_locked(path, verbose, tta)


def _evaluate_locked(path, verbose, tta) -> dict:
    run = open_run(path)
    recipe, model, data = reopen(run)
    metrics = evaluate(recipe, run, model, data, verbose=verbose)
    # Merged into the run's records: the from-scratch comparison, training time and exports
    # (Files) stay in metrics.json and the model card.
    merged = {**_previous_metrics(run), **metrics}
    run.write_json("metrics.json", merged)
    write_card(recipe, run, model, data, merged, recorded_exports(run),
               training_record(recipe, model, data, run.state.get("strategy")))
    if tta is not None:
        return {**merged, "tta": evaluate_tta(run, data, **tta)}
    return merged


def _previous_metrics(run: RunDir) -> dict:
    """The run's `metrics.json`, which `evaluate` rewrites: a damaged one is replaced (with a
    warning), not a reason to fail."""
    try:
        return run.read_json("metrics.json", {})
    except RecordError as err:
        logger.warning("%s (evaluate rewrites it now; the training time and comparisons it "
                       "held are lost)", str(err).split("; ")[0])
        return {}


def evaluate_tta(run: RunDir, data, flip: bool = True, crops: float | None = None) -> dict:
    """Metrics of the run's served model with test-time augmentation on its evaluation split,
    written to `metrics_tta.json` (`views`, accuracy, macro F1, ..., and `without_tta`: the
    same figures from `metrics.json`)."""
    if data.kind != "image":
        raise ValueError("--tta averages flipped / cropped views of images; this run's model "
                         "takes text")
    split = eval_split(data)
    x = np.stack([np.asarray(x) for x, _ in data.split(split).as_numpy_iterator()])
    probs = predict_tta(load_run_model(run), x, flip=flip, crops=crops)
    metrics = classification_metrics(data.split_labels(split), probs, data.class_names)
    views = 1 + bool(flip) + (5 if crops else 0)
    plain = run.read_json("metrics.json", {})
    record = {"split": split, "flip": bool(flip), "crops": crops, "views": views,
              **{k: metrics[k] for k in ("accuracy", "balanced_accuracy", "macro_f1",
                                         "weighted_f1", "num_examples") if k in metrics},
              "without_tta": {k: plain[k] for k in ("accuracy", "macro_f1") if k in plain}}
    run.write_json("metrics_tta.json", record)
    logger.info("test-time augmentation (%d views): %s accuracy %.4f (without: %s)", views,
                split, record["accuracy"], record["without_tta"].get("accuracy"))
    return record
