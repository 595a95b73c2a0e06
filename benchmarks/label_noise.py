"""How often "suspected wrong label" is right: the top-loss flag against planted label noise.

Protocol (per seed): EfficientNet-Lite0 features (ImageNet weights, 64 px, the strategies
benchmark's frozen model, `strategies.build`) of Fashion-MNIST's official train set:
`--train-per-class` (100) images per class train a linear probe (scikit-learn's L-BFGS
logistic regression on features scaled to unit mean squared norm, C from tlkit's grid chosen on
a 20% hold-out, as `tlkit.fit_linear_probe` does) and form the neighbour bank; a disjoint
evaluation split of `--eval` (2,000) images gets `--noise` (5%) of its labels flipped to another
class, uniformly. Every rule flags examples of the evaluation split; precision and recall are
against the planted flips, on the whole split ("all") and on the 16 top losses the report shows
("top16", recall there is out of the flips among them). Variant `noisy_train`: 5% of the
training labels are flipped as well (the probe and the bank both see them).

Rules: `confidence>=p` (the old flag: predicted as another class with probability >= p) and
`confidence>=p & a/k neighbours` (the new one: and at least a of the k nearest training
examples, cosine on the probe's features, carry the predicted class; `tlkit.reports.neighbours`).

    PYTHONPATH=. .venv/bin/python benchmarks/label_noise.py [--seeds 0 1 2] [--size 64]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import write_json  # noqa: E402

TOP = 16
PROBABILITIES = (0.5, 0.7, 0.9, 0.99)
NEIGHBOUR_RULES = ((5, 3), (5, 4), (5, 5), (10, 8))  # (k, a): a of the k nearest agree


def flip(labels, fraction, num_classes, rng):
    """A copy of `labels` with `fraction` of them moved to another class; `(noisy, flipped)`."""
    noisy = labels.copy()
    flipped = np.zeros(len(labels), bool)
    chosen = rng.choice(len(labels), int(round(fraction * len(labels))), replace=False)
    noisy[chosen] = (labels[chosen] + rng.integers(1, num_classes, len(chosen))) % num_classes
    flipped[chosen] = True
    return noisy, flipped


def fit_probe(features, labels, seed):
    """Probabilities function of an L-BFGS logistic regression, C chosen on a 20% hold-out
    from `tlkit.head_training.PROBE_CS` (features scaled to unit mean squared norm)."""
    from sklearn.linear_model import LogisticRegression

    from tlkit.head_training import PROBE_CS

    scale = 1.0 / np.sqrt(np.mean(np.sum(features**2, axis=1)))
    x = features * scale
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    held, fit = order[: len(x) // 5], order[len(x) // 5:]
    best = max(PROBE_CS, key=lambda c: LogisticRegression(C=c, max_iter=500)
               .fit(x[fit], labels[fit]).score(x[held], labels[held]))
    clf = LogisticRegression(C=best, max_iter=500).fit(x, labels)
    return (lambda f: clf.predict_proba(f * scale)), best


def score(flags, flipped):
    hits = int((flags & flipped).sum())
    return {"flagged": int(flags.sum()), "hits": hits,
            "precision": hits / flags.sum() if flags.sum() else None,
            "recall": hits / flipped.sum() if flipped.sum() else None}


def evaluate_rules(probs, observed, flipped, votes_by_k):
    """`{rule: {"all": score, "top16": score}}` for every rule."""
    pred = probs.argmax(axis=1)
    confidence = probs[np.arange(len(pred)), pred]
    wrong = pred != observed
    losses = -np.log(np.clip(probs[np.arange(len(pred)), observed], 1e-12, 1.0))
    top = np.argsort(-losses, kind="stable")[:TOP]  # the report's top losses
    rules = {}
    for p in PROBABILITIES:
        rules[f"confidence>={p}"] = wrong & (confidence >= p)
        for k, a in NEIGHBOUR_RULES:
            agree = votes_by_k[k][np.arange(len(pred)), pred] >= a
            rules[f"confidence>={p} & {a}/{k} neighbours"] = wrong & (confidence >= p) & agree
    return {name: {"all": score(flags, flipped), "top16": score(flags[top], flipped[top])}
            for name, flags in rules.items()}


def summarize(rows):
    """Mean and min-max over seeds per variant, rule and scope."""
    out = {}
    for row in rows:
        for rule, scopes in row["rules"].items():
            for scope, s in scopes.items():
                cell = out.setdefault(row["variant"], {}).setdefault(rule, {}).setdefault(
                    scope, {"precision": [], "recall": [], "flagged": []})
                for key in cell:
                    if s[key] is not None:
                        cell[key].append(s[key])
    for rules in out.values():
        for scopes in rules.values():
            for cell in scopes.values():
                for key, values in list(cell.items()):
                    cell[key] = ({"mean": float(np.mean(values)), "min": float(np.min(values)),
                                  "max": float(np.max(values)), "seeds": len(values)}
                                 if values else None)
    return out


def table(summary):
    def fmt(c):
        return "   -  " if c is None else f"{c['mean']:.2f} ({c['min']:.2f}-{c['max']:.2f})"

    lines = []
    for variant, rules in summary.items():
        lines.append(f"\n{variant}: precision / recall / flagged (all) | precision / flagged "
                     f"(top {TOP})")
        for rule, scopes in rules.items():
            a, t = scopes["all"], scopes["top16"]
            lines.append(f"  {rule:38s} {fmt(a['precision'])} {fmt(a['recall'])} "
                         f"{fmt(a['flagged'])} | {fmt(t['precision'])} {fmt(t['flagged'])}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--size", type=int, default=64, help="input size of the backbone (px)")
    parser.add_argument("--train-per-class", type=int, default=100)
    parser.add_argument("--eval", type=int, default=2000, help="evaluation split size")
    parser.add_argument("--noise", type=float, default=0.05, help="share of labels flipped")
    parser.add_argument("--out", default="label_noise", help="results/<out>.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import strategies as bench

    from tlkit.data.builtin.fashion_mnist_idx import load_fashion_mnist_arrays
    from tlkit.head_training import feature_model
    from tlkit.reports.neighbours import neighbour_votes

    started = time.perf_counter()
    x_pool, y_pool = load_fashion_mnist_arrays()["train"]
    k_classes = int(y_pool.max()) + 1
    picks = {}
    for seed in args.seeds:
        rng = np.random.default_rng(seed)
        train = bench.stratified(y_pool, args.train_per_class, seed=seed)
        rest = np.setdiff1d(np.arange(len(y_pool)), train)
        picks[seed] = (train, rng.choice(rest, args.eval, replace=False))
    wanted = np.unique(np.concatenate([np.concatenate(p) for p in picks.values()]))
    extractor = feature_model(bench.build(args.size, 0))
    t0 = time.perf_counter()
    feats = extractor.predict(bench.as_input(x_pool[wanted]), batch_size=256, verbose=0)
    extract_seconds = time.perf_counter() - t0
    print(f"features of {len(wanted)} images in {extract_seconds:.0f} s", flush=True)
    where = {int(i): j for j, i in enumerate(wanted)}

    def features(idx):
        return feats[[where[int(i)] for i in idx]]

    rows = []
    for seed in args.seeds:
        train, ev = picks[seed]
        rng = np.random.default_rng(100 + seed)
        y_eval, flipped = flip(y_pool[ev], args.noise, k_classes, rng)
        for variant in ("clean_train", "noisy_train"):
            y_train = y_pool[train]
            if variant == "noisy_train":
                y_train, _ = flip(y_train, args.noise, k_classes, rng)
            predict, c = fit_probe(features(train), y_train, seed)
            probs = predict(features(ev))
            votes = {k: neighbour_votes(features(train), y_train, features(ev),
                                        num_classes=k_classes, k=k)
                     for k in sorted({k for k, _ in NEIGHBOUR_RULES})}
            rows.append({"seed": seed, "variant": variant, "C": c,
                         "eval_accuracy_vs_true": float((probs.argmax(1) == y_pool[ev]).mean()),
                         "planted": int(flipped.sum()),
                         "rules": evaluate_rules(probs, y_eval, flipped, votes)})
            print(f"seed {seed} {variant}: C={c} accuracy {rows[-1]['eval_accuracy_vs_true']:.3f}",
                  flush=True)
    summary = summarize(rows)
    from tlkit.reports.neighbours import NEIGHBOUR_AGREEMENT, NEIGHBOURS
    from tlkit.reports.top_losses import SUSPECT_LABEL_PROBABILITY

    library_rule = (f"confidence>={SUSPECT_LABEL_PROBABILITY} & "
                    f"{round(NEIGHBOUR_AGREEMENT * NEIGHBOURS)}/{NEIGHBOURS} neighbours")
    print(table(summary))
    print(f"tlkit's rule: {library_rule}")
    path = write_json(args.out, {
        "size": args.size, "train_per_class": args.train_per_class, "eval": args.eval,
        "noise": args.noise, "seeds": args.seeds, "top": TOP,
        "probabilities": list(PROBABILITIES), "neighbour_rules": list(NEIGHBOUR_RULES),
        "features_seconds": round(extract_seconds, 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "library_rule": library_rule, "old_rule": f"confidence>={SUSPECT_LABEL_PROBABILITY}",
        "rows": rows, "summary": summary})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
