"""Near-duplicate search of `tlkit.data.audit` at N = 10k, 50k, 100k: time, memory, growth, recall.

Synthetic embeddings generated here (1280-d like EfficientNet's pooled features): clusters of
similar rows (as same-class images are) with 1% planted near copies whose cosine to their
original spreads from about 0.97 to 0.999 around the audit's default threshold 0.98. Each N runs
in its own subprocess, so its peak memory (`ru_maxrss`) is its own. Times are of the search only
(`tlkit.data.audit._similar_pairs.similar_pairs`, which `audit` calls on the embeddings), not of the
embedding pass. Recall: pairs the IVF index finds / pairs the exact search finds, at 20k (5k
with `--quick`), and the same for the planted pairs alone.

    .venv/bin/python benchmarks/audit_scale.py            # N = 10k, 50k, 100k (about 5 min)
    .venv/bin/python benchmarks/audit_scale.py --quick    # N = 2k, 5k, 10k (smoke test)

The machine may be shared: the JSON records the load average before and after each run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import rss_mb, write_json  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
MODULE = os.path.join(HERE, os.pardir, "tlkit", "data", "audit", "_similar_pairs.py")
THRESHOLD = 0.98


def _similar_pairs():
    # Loaded from its file so the child does not import TensorFlow (via `tlkit/__init__`): its
    # peak memory is then the search's, not TensorFlow's.
    spec = importlib.util.spec_from_file_location("_similar_pairs", MODULE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.similar_pairs


def make_embeddings(n: int, dim: int, seed: int = 0):
    """`(matrix, planted)`: unit rows in clusters of ~100, 1% of them near copies of another."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(n // 100, 10), dim), dtype="float32")
    x = np.empty((n, dim), dtype="float32")
    for start in range(0, n, 8192):  # in chunks: peak memory stays near the matrix's own size
        stop = min(n, start + 8192)
        x[start:stop] = centres[rng.integers(0, len(centres), stop - start)]
        x[start:stop] += rng.standard_normal((stop - start, dim), dtype="float32")
    copies = n // 100
    chosen = rng.choice(n, size=2 * copies, replace=False)
    originals, targets = chosen[:copies], chosen[copies:]
    noise = rng.uniform(0.05, 0.35, (copies, 1)).astype("float32")
    x[targets] = x[originals] + noise * rng.standard_normal((copies, dim), dtype="float32")
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    planted = {(int(min(a, b)), int(max(a, b))) for a, b in zip(originals, targets)}
    return x, planted


def _cpu_seconds() -> float:
    """User + system CPU time of this process, all threads: less sensitive to a shared machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(n: int, dim: int, index: str, recall: bool) -> dict:
    """One measurement, in this (fresh) process."""
    similar_pairs = _similar_pairs()
    x, planted = make_embeddings(n, dim)
    before = rss_mb()
    cpu = _cpu_seconds()
    start = time.perf_counter()
    a, b, _ = similar_pairs(x, THRESHOLD, index=index)
    seconds = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu
    out = {
        "n": n,
        "dim": dim,
        "index": index,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "pairs": int(len(a)),
        "matrix_mb": x.nbytes / 2**20,
        "rss_before_search_mb": before,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if recall:
        start = time.perf_counter()
        ea, eb, esim = similar_pairs(x, THRESHOLD, index="exact")
        out["exact_seconds"] = time.perf_counter() - start
        exact = set(zip(ea.tolist(), eb.tolist()))
        found = set(zip(a.tolist(), b.tolist()))
        truth = {p for p in planted if p in exact}  # planted pairs at or above the threshold
        out["exact_pairs"] = len(exact)
        out["recall_vs_exact"] = len(found & exact) / max(len(exact), 1)
        out["planted_at_threshold"] = len(truth)
        out["recall_planted"] = len(found & truth) / max(len(truth), 1)
    return out


def _run_child(n, dim, index, recall=False) -> dict:
    cmd = [sys.executable, __file__, "--child", str(n), "--dim", str(dim), "--index", index]
    load_before = os.getloadavg()
    done = subprocess.run(
        cmd + (["--recall"] if recall else []), check=True, capture_output=True, text=True
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["loadavg_before"] = [round(v, 2) for v in load_before]
    result["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
    return result


def fit_exponent(rows, key="seconds") -> float | None:
    """Least-squares slope of log(rows[key]) over log(N)."""
    if len(rows) < 2:
        return None
    xs = [math.log(r["n"]) for r in rows]
    ys = [math.log(r[key]) for r in rows]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 2k, 5k, 10k; recall at 5k")
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--index", default="auto", help=argparse.SUPPRESS)
    parser.add_argument("--recall", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.dim, args.index, args.recall)))
        return None

    sizes = [2_000, 5_000, 10_000] if args.quick else [10_000, 50_000, 100_000]
    recall_n = 5_000 if args.quick else 20_000
    runs = {"auto": [], "ivf": []}
    for n in sizes:
        for index in ("auto", "ivf"):
            row = _run_child(n, args.dim, index)
            runs[index].append(row)
            print(
                f"N={n:>7}  {index:<4}  {row['seconds']:7.2f} s (CPU {row['cpu_seconds']:6.1f} s)  peak {row['peak_rss_mb']:7.0f} MB"
                f"  (matrix {row['matrix_mb']:5.0f} MB)  pairs {row['pairs']}"
                f"  load {row['loadavg_before'][0]:.1f}",
                flush=True,
            )
    rec = _run_child(recall_n, args.dim, "ivf", recall=True)
    print(
        f"recall at N={recall_n}: IVF vs exact {rec['recall_vs_exact']:.4f}, planted pairs "
        f"{rec['recall_planted']:.4f} ({rec['planted_at_threshold']} at cosine >= {THRESHOLD}); "
        f"IVF {rec['seconds']:.2f} s, exact {rec['exact_seconds']:.2f} s"
    )
    exponents = {k: fit_exponent(v) for k, v in runs.items()}
    cpu_exponents = {k: fit_exponent(v, "cpu_seconds") for k, v in runs.items()}
    print(
        "growth exponent (time ~ N^k), wall: "
        + ", ".join(f"{k} {v:.2f}" for k, v in exponents.items())
        + "; CPU: "
        + ", ".join(f"{k} {v:.2f}" for k, v in cpu_exponents.items())
    )
    path = write_json(
        "audit_scale_quick" if args.quick else "audit_scale",
        {
            "command": "benchmarks/audit_scale.py" + (" --quick" if args.quick else ""),
            "threshold": THRESHOLD,
            "runs": runs,
            "growth_exponent": exponents,
            "growth_exponent_cpu": cpu_exponents,
            "recall": rec,
            "note": "machine shared with other engineers' tests; see loadavg_* per run",
        },
    )
    print(f"wrote {path}")
    return exponents


if __name__ == "__main__":
    main()
