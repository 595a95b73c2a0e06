"""How the linear probe's C is chosen when the caller has no validation split.

`tlkit.fit_linear_probe` tries its `Cs` (0.01, 0.1, 1, 10) and keeps the best on validation data.
Without validation data it has to choose another way; this compares, on EfficientNet-Lite0
features of Fashion-MNIST (64 px), for each label budget and seed (the strategies benchmark's
subsets, paired): every budget's examples train the final probe, and C comes from

- `split`: the strategies benchmark's protocol: the 80/20 split of each class chooses C, then
  the probe retrains on the whole budget with it;
- `cv`: stratified k-fold cross-validation on the whole budget (scikit-learn's `GridSearchCV`,
  k = min(5, smallest class count); with one example per class, C=0.01);
- `largest`: the weakest regularization of the grid (what `fit_linear_probe` does without
  validation data);
- `C=<c>`: each C of the grid, fixed (the oracle is the best of them on the test set, which no
  rule may look at).

Accuracy on the strategies benchmark's fixed clean test set (200 per class) and its shifted copy.

    .venv/bin/python benchmarks/probe_c.py [--budgets 1 2 5 10 25 100] [--seeds 0 1 2 3 4] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import strategies as bench  # noqa: E402
from _common import write_json  # noqa: E402

CS = (0.01, 0.1, 1.0, 10.0)


def _fit(x, y, C):
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    from tlkit.head_training import PROBE_BLAS_THREADS

    with threadpool_limits(limits=PROBE_BLAS_THREADS, user_api="blas"):  # as the library's probe
        return LogisticRegression(C=C, max_iter=1000).fit(x, y)


def choose_by_cv(x, y, folds=5):
    """`(C, how)`: the C of `CS` with the best mean stratified k-fold accuracy (ties: the
    smaller C), k = min(`folds`, smallest class count); one example in a class: the smallest C."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from threadpoolctl import threadpool_limits

    from tlkit.head_training import PROBE_BLAS_THREADS

    smallest = int(np.bincount(y).min())
    if smallest < 2:
        return min(CS), "one example per class: the smallest C"
    k = min(folds, smallest)
    search = GridSearchCV(LogisticRegression(max_iter=1000), {"C": sorted(CS)},
                          cv=StratifiedKFold(k, shuffle=True, random_state=0), refit=False)
    with threadpool_limits(limits=PROBE_BLAS_THREADS, user_api="blas"):
        search.fit(x, y)
    return float(search.best_params_["C"]), f"{k}-fold cross-validation"


def run(budgets, seeds, size=64, test_per_class=200):
    import numpy as np

    from tlkit.data.builtin.fashion_mnist_idx import load_fashion_mnist_arrays
    from tlkit.head_training import feature_model

    arrays = load_fashion_mnist_arrays()
    x_pool, y_pool = arrays["train"]
    x_all, y_all = arrays["test"]
    test = bench.stratified(y_all, test_per_class, seed=12345)
    x_test, y_test = x_all[test], y_all[test]
    extractor = feature_model(bench.build(size, 0))

    def features(x):
        return extractor.predict(bench.as_input(x), batch_size=256, verbose=0).reshape(len(x), -1)

    f_clean, f_shift = features(x_test), features(bench.corrupt(x_test))
    rows = []
    for seed in seeds:
        for budget in budgets:
            tr, va = bench.budget_split(y_pool, budget, seed)
            every = tr if va is None else np.concatenate([tr, va])
            x, y = features(x_pool[every]), y_pool[every]
            chosen, seconds = {}, {}
            if va is not None:
                start = time.perf_counter()
                xt, yt, xv, yv = x[: len(tr)], y[: len(tr)], x[len(tr):], y[len(tr):]
                scores = [_fit(xt, yt, C).score(xv, yv) for C in CS]
                chosen["split"] = CS[int(np.argmax(scores))]  # ties: the smaller C
                seconds["split"] = time.perf_counter() - start
            start = time.perf_counter()
            chosen["cv"], how = choose_by_cv(x, y)
            seconds["cv"] = time.perf_counter() - start
            chosen["largest"] = max(CS)
            by_c = {}
            for C in CS:
                clf = _fit(x, y, C)
                by_c[C] = {"clean": float(clf.score(f_clean, y_test)),
                           "shifted": float(clf.score(f_shift, y_test))}
            row = {"budget": budget, "seed": seed, "how_cv": how,
                   **{f"C={C}": by_c[C] for C in CS},
                   **{rule: {**by_c[C], "C": C, "seconds": seconds.get(rule)}
                      for rule, C in chosen.items()}}
            rows.append(row)
            shown = ", ".join(f"{rule} C={row[rule]['C']} {row[rule]['clean']:.3f}"
                              for rule in chosen)
            print(f"budget {budget:4d} seed {seed}: {shown}; "
                  f"oracle {max(v['clean'] for v in by_c.values()):.3f}", flush=True)
    return {"size": size, "test_images": int(len(y_test)), "Cs": list(CS), "rows": rows,
            "summary": summarize(rows)}


def summarize(rows):
    """Per budget and rule: mean clean / shifted accuracy, and the paired difference of `cv`
    to each other rule (mean and 95% t-interval)."""
    import numpy as np

    out = {}
    for budget in sorted({r["budget"] for r in rows}):
        cell = [r for r in rows if r["budget"] == budget]
        rules = [k for k in cell[0] if isinstance(cell[0][k], dict)]
        out[str(budget)] = {
            rule: {"clean": float(np.mean([r[rule]["clean"] for r in cell])),
                   "shifted": float(np.mean([r[rule]["shifted"] for r in cell])),
                   "cv_minus_this_clean": bench.t_interval([r["cv"]["clean"] - r[rule]["clean"]
                                                      for r in cell]),
                   "cv_minus_this_shifted": bench.t_interval([r["cv"]["shifted"] - r[rule]["shifted"]
                                                        for r in cell])}
            for rule in rules}
        out[str(budget)]["seeds"] = len(cell)
    return out


def table(summary) -> str:
    rules = ["split", "cv", "largest", *[f"C={C}" for C in CS]]
    budgets = list(summary)
    lines = ["| probe C rule: clean · shifted (cv − rule, clean) | "
             + " | ".join(f"{b}/class" for b in budgets) + " |",
             "|---|" + "---|" * len(budgets)]
    for rule in rules:
        cells = []
        for b in budgets:
            entry = summary[b].get(rule)
            if entry is None:
                cells.append("")
                continue
            diff = entry["cv_minus_this_clean"]
            tail = "" if rule == "cv" or diff[1] is None else (
                f" ({diff[0]:+.3f} [{diff[1]:+.3f}, {diff[2]:+.3f}])")
            cells.append(f"{entry['clean']:.3f} · {entry['shifted']:.3f}{tail}")
        lines.append(f"| {rule} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=[1, 2, 5, 10, 25, 100])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--table", action="store_true", help="print the saved results' table")
    parser.add_argument("--quick", action="store_true",
                        help="budgets 1 and 10, seeds 0 and 1 (results/probe_c_quick.json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.budgets, args.seeds = [1, 10], [0, 1]
    if args.table:
        import json

        from _common import RESULTS

        with open(os.path.join(RESULTS, "probe_c.json"), encoding="utf-8") as f:
            print(table(json.load(f)["summary"]))
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    out = run(args.budgets, args.seeds)
    out["command"] = "benchmarks/probe_c.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    print(table(out["summary"]))
    print(write_json("probe_c_quick" if args.quick else "probe_c", out))


if __name__ == "__main__":
    main()
