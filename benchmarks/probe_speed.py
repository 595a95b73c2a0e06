"""The linear probe's solver time with one BLAS thread vs the BLAS library's default threads.

`tlkit.fit_linear_probe` on EfficientNet-Lite0 features of Fashion-MNIST (64 px, the strategies
benchmark's setting: 80/20 split of each class's budget, Cs 0.01/0.1/1/10), per budget. The
features are cached on disk by the first call, so the timed calls are the L-BFGS fits (and a
cache read). Both settings of `tlkit.head_training.PROBE_BLAS_THREADS` (1, None = the BLAS
default) run side by side in one process, alternating, best of `--reps`; the chosen C and the
validation accuracy of both are recorded (they should agree).

    .venv/bin/python benchmarks/probe_speed.py [--budgets 10 25 50 100 1000] [--reps 3] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import write_json  # noqa: E402


def run(budgets=(10, 25, 50, 100, 1000), reps=3, size=64, seed=0):
    import numpy as np
    import strategies as bench
    from threadpoolctl import threadpool_info

    import tlkit
    from tlkit import head_training
    from tlkit.data.builtin.fashion_mnist_idx import load_fashion_mnist_arrays

    x_pool, y_pool = load_fashion_mnist_arrays()["train"]
    model = bench.build(size, seed)
    settings = {"one_thread": 1, "blas_default": None}
    original = head_training.PROBE_BLAS_THREADS
    rows = []
    for budget in budgets:
        tr, va = bench.budget_split(y_pool, budget, seed)
        # Unshuffled, so that its fingerprint (and the cached features) stay the same.
        train = bench.eval_dataset(bench.as_input(x_pool[tr]), y_pool[tr])
        val = bench.eval_dataset(bench.as_input(x_pool[va]), y_pool[va])
        with tempfile.TemporaryDirectory() as cache:
            start = time.perf_counter()
            tlkit.fit_linear_probe(model, train, val, cache_dir=cache)  # extracts, caches
            first = time.perf_counter() - start
            best = {name: float("inf") for name in settings}
            result = {}
            try:
                for _ in range(reps):
                    for name, threads in settings.items():
                        head_training.PROBE_BLAS_THREADS = threads
                        start = time.perf_counter()
                        result[name] = tlkit.fit_linear_probe(model, train, val, cache_dir=cache)
                        best[name] = min(best[name], time.perf_counter() - start)
            finally:
                head_training.PROBE_BLAS_THREADS = original
        row = {"per_class": budget, "train_examples": int(len(tr)),
               "val_examples": int(len(va)), "first_call_seconds": round(first, 2),
               **{f"{name}_seconds": round(best[name], 3) for name in settings},
               "speedup": round(best["blas_default"] / best["one_thread"], 2),
               **{f"{name}_C": result[name]["C"] for name in settings},
               **{f"{name}_val_accuracy": result[name]["val_accuracy"] for name in settings}}
        rows.append(row)
        print(f"{budget:5d}/class ({len(tr):5d} train): one thread {best['one_thread']:6.2f} s, "
              f"BLAS default {best['blas_default']:6.2f} s ({row['speedup']:.1f}x); C "
              f"{row['one_thread_C']} / {row['blas_default_C']}, val "
              f"{row['one_thread_val_accuracy']:.3f} / {row['blas_default_val_accuracy']:.3f}; "
              f"first call (extraction) {first:.1f} s", flush=True)
    blas = [{k: info.get(k) for k in ("internal_api", "version", "num_threads")}
            for info in threadpool_info() if info.get("user_api") == "blas"]
    return {"size": size, "seed": seed, "reps": reps, "blas": blas,
            "feature_dim": int(np.prod(head_training.feature_model(model).output_shape[1:])),
            "rows": rows}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=[10, 25, 50, 100, 1000])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="budgets 10 and 100, one rep (results/probe_speed_quick.json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.budgets, args.reps = [10, 100], 1
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    out = run(args.budgets, args.reps)
    out["command"] = "benchmarks/probe_speed.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    print(write_json("probe_speed_quick" if args.quick else "probe_speed", out))


if __name__ == "__main__":
    main()
