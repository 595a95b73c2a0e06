"""Regularization and weight averaging settings of `fine_tune`, paired over seeds (#19).

EfficientNet-Lite0 (ImageNet, offline) on Fashion-MNIST label budgets; every variant of one
seed sees the same training subset, validation split (used by WiSE-FT to choose alpha) and test
images (never used for any choice). Variants: plain `fine_tune`, `mixup=0.2`, `cutmix=1.0`,
`label_smoothing=0.1`, `swa_epochs=2`, `wise_ft_alphas=(0.25, 0.5, 0.75, 1.0)`, and the plain
model evaluated with test-time augmentation (`tlkit.inference.predict_tta`, image + mirror).
Reports test accuracy per seed, mean and std, the paired difference to plain (mean and a 95%
t-interval over seeds), and wall seconds.

    .venv/bin/python benchmarks/regularization.py [--quick] [--per-class 20 100] [--seeds 5]
        [--epochs HEAD FINE] [--variants plain mixup ...] [--name regularization_long]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import write_json  # noqa: E402

VARIANTS = {
    "plain": {},
    "mixup": {"mixup": 0.2},
    "cutmix": {"cutmix": 1.0},
    "label_smoothing": {"label_smoothing": 0.1},
    "swa": {"swa_epochs": 2},
    "wise_ft": {"wise_ft_alphas": [0.25, 0.5, 0.75, 1.0]},
}


def _one(data, settings, size, epochs, seed, batch=32):
    import keras
    import numpy as np

    import tlkit

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    model = tlkit.build_model(tlkit.backbones.get("efficientnet_lite0", image_size=size),
                              num_classes=data.num_classes, input_shape=data.input_shape,
                              class_names=data.class_names)
    start = time.perf_counter()
    result = tlkit.fine_tune(model, data.pipeline("train", batch, training=True, seed=seed),
                             data.pipeline("val", 64), epochs=tuple(epochs), head_lr=1e-3,
                             lr=1e-4, unfreeze="all", patience=None, verbose=0, **settings)
    seconds = time.perf_counter() - start
    test = data.pipeline("test", 64)
    accuracy = float(model.evaluate(test, verbose=0, return_dict=True)["accuracy"])
    record = {"accuracy": accuracy, "seconds": seconds}
    if result.wise_ft is not None:
        record["alpha"] = result.wise_ft["alpha"]
    return model, record, np.concatenate([y for _, y in test.as_numpy_iterator()])


def _tta_accuracy(model, data):
    import numpy as np

    from tlkit.inference import predict_tta

    pairs = list(data.split("test").as_numpy_iterator())
    x = np.stack([p[0] for p in pairs])
    y = np.asarray([p[1] for p in pairs])
    start = time.perf_counter()
    probs = predict_tta(model, x, flip=True)
    return float((probs.argmax(axis=1) == y).mean()), time.perf_counter() - start


def _summary(per_seed, base="plain"):
    import numpy as np
    from scipy import stats

    out = {}
    for name, records in per_seed.items():
        acc = np.array([r["accuracy"] for r in records])
        entry = {"mean": float(acc.mean()), "std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
                 "seconds_mean": float(np.mean([r["seconds"] for r in records]))}
        if name != base:
            diff = acc - np.array([r["accuracy"] for r in per_seed[base]])
            half = (float(stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff)))
                    if len(diff) > 1 else float("nan"))
            entry["paired_diff"] = {"mean": float(diff.mean()), "ci95": [float(diff.mean() - half),
                                                                       float(diff.mean() + half)]}
        out[name] = entry
    return out


def run(per_class=(20,), seeds=3, size=48, epochs=(2, 4), eval_per_class=50, variants=None):
    import tlkit

    variants = {n: VARIANTS[n] for n in (variants or VARIANTS)}
    if "plain" not in variants:
        variants = {"plain": {}, **variants}
    budgets = {}
    for budget in per_class:
        per_seed = {name: [] for name in [*variants, "plain_tta"]}
        for seed in range(seeds):
            data = tlkit.data.fashion_mnist(num_per_class=budget, eval_per_class=eval_per_class,
                                            seed=seed)
            for name, settings in variants.items():
                model, record, _ = _one(data, settings, size, epochs, seed)
                per_seed[name].append(record)
                if name == "plain":
                    accuracy, seconds = _tta_accuracy(model, data)
                    per_seed["plain_tta"].append({"accuracy": accuracy, "seconds": seconds})
                print(f"  {budget}/class seed {seed} {name:<16} test {record['accuracy']:.3f}  "
                      f"{record['seconds']:.0f} s", flush=True)
            print(f"  {budget}/class seed {seed} plain + TTA       test "
                  f"{per_seed['plain_tta'][-1]['accuracy']:.3f}", flush=True)
        budgets[str(budget)] = {"per_seed": per_seed, "summary": _summary(per_seed)}
        for name, entry in budgets[str(budget)]["summary"].items():
            diff = entry.get("paired_diff")
            text = "" if diff is None else (f"  vs plain {diff['mean']:+.3f} "
                                            f"[{diff['ci95'][0]:+.3f}, {diff['ci95'][1]:+.3f}]")
            print(f"{budget}/class {name:<16} {entry['mean']:.3f} ± {entry['std']:.3f}{text}",
                  flush=True)
    return {
        "dataset": "Fashion-MNIST", "backbone": "efficientnet_lite0", "image_size": size,
        "epochs": list(epochs), "seeds": seeds, "eval_per_class": eval_per_class,
        "fine_tune": {"head_lr": 1e-3, "lr": 1e-4, "unfreeze": "all", "patience": None},
        "variants": variants, "budgets": budgets,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 per class, 3 seeds")
    parser.add_argument("--per-class", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--epochs", type=int, nargs=2, default=[2, 4], metavar=("HEAD", "FINE"))
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=None)
    parser.add_argument("--name", default=None, help="results file name (default: "
                        "regularization, or regularization_quick with --quick)")
    args = parser.parse_args(argv)
    per_class, seeds = ((20,), 3) if args.quick else (tuple(args.per_class), args.seeds)
    payload = run(per_class=per_class, seeds=seeds, size=args.size, epochs=tuple(args.epochs),
                  variants=args.variants)
    payload["command"] = " ".join(["benchmarks/regularization.py", *(argv or sys.argv[1:])])
    name = args.name or ("regularization" + ("_quick" if args.quick else ""))
    print(write_json(name, payload))


if __name__ == "__main__":
    main()
