"""Transfer vs from scratch on Fashion-MNIST: accuracy and wall time per label budget and method.

EfficientNet-Lite0 (ImageNet weights, or `weights=None` for from scratch) at a small image size,
trained on 5, 10, 50 and a capped "all" labels per class (the cap, 100 per class by default, keeps
the run to ~15 minutes on 2 CPU cores; `--all-per-class`), evaluated every epoch on a fixed set
from the official test split (50 per class). Methods:

- scratch: same architecture, random init, all trainable, BN updating (momentum 0.9), Adam 1e-3,
  more epochs;
- feature_extraction: frozen backbone, head trained on cached features;
- full_fine_tune: `fine_tune(unfreeze="all")`;
- gradual: `fine_tune(unfreeze="gradual")`;
- gradual_layerwise: `fine_tune(unfreeze="gradual", layerwise_decay=2.6)`;
- prototype: `PrototypeClassifier` on the frozen backbone's pooled embeddings (no training).

Budgets below `--min-steps` batches per epoch repeat their examples within an epoch (feature
extraction gets proportionally more head epochs) so small budgets still get enough updates.
Accuracy is the last epoch's (no early stopping, no best-epoch pick on the eval set). Time to
target: the wall seconds (from the start of the method, model build excluded, per-epoch eval
included) until a transfer method first reaches from-scratch's best accuracy, against the
seconds from scratch needed to reach it (goal: transfer <= 1/5 of from scratch).

    .venv/bin/python benchmarks/transfer_vs_scratch.py [--quick] [--size 48] [--all-per-class 100]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import RESULTS, write_json  # noqa: E402

METHODS = ("scratch", "feature_extraction", "full_fine_tune", "gradual", "gradual_layerwise",
           "prototype")
TRANSFER = METHODS[1:]


def _clock(start, record):
    """A Keras callback appending (seconds since `start`, val accuracy) after each epoch."""
    import keras

    class Clock(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            acc = logs.get("val_accuracy")
            record.append((time.perf_counter() - start, None if acc is None else float(acc)))

    return Clock()


def _result(start, curve):
    accs = [a for _, a in curve]
    return {
        "accuracy": accs[-1],
        "best_accuracy": max(accs),
        "seconds": time.perf_counter() - start,
        "curve": [{"seconds": s, "accuracy": a} for s, a in curve],
    }


def _build(data, size, pretrained, freeze):
    import keras

    import tlkit

    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    backbone = tlkit.pretrained.efficientnet_lite0_backbone(
        weights="imagenet" if pretrained else None, image_size=size)
    return tlkit.build_model(
        backbone, num_classes=data.num_classes, input_shape=data.input_shape,
        class_names=data.class_names, freeze_backbone=freeze,
        bn_policy="frozen" if pretrained else "update", learning_rate=1e-3)


def run_budget(data, method, size, epochs, batch=32, min_steps=16):
    import keras

    import tlkit
    from tlkit.head_training import feature_model, train_head_on_features

    # Small budgets: an "epoch" repeats the examples up to >= min_steps batches, so every method
    # gets a fair number of updates without more (costly) evaluations of the fixed eval set.
    steps = -(-int(data.num_examples("train")) // batch)
    repeats = max(1, -(-min_steps // steps))
    train = data.pipeline("train", batch, training=True, seed=0).repeat(repeats)
    evaluation = data.pipeline("test", 64, training=False)
    curve = []
    if method == "scratch":
        model = _build(data, size, pretrained=False, freeze=False)
        # BN momentum 0.9 (Keras default 0.99): with a few hundred steps the 0.99 moving
        # statistics still hold their initial values, and from scratch evaluates at chance.
        for layer in model._flatten_layers():
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = 0.9
        start = time.perf_counter()
        model.fit(train, validation_data=evaluation, epochs=epochs["scratch"], verbose=0,
                  callbacks=[_clock(start, curve)])
        return _result(start, curve)
    model = _build(data, size, pretrained=True, freeze=True)
    start = time.perf_counter()
    if method == "prototype":
        clf = tlkit.data.PrototypeClassifier(feature_model=feature_model(model), batch_size=64)
        clf.fit(data.split("train"), None, num_classes=data.num_classes)
        acc = clf.evaluate(data.split("test"))["accuracy"]
        return _result(start, [(time.perf_counter() - start, acc)])
    if method == "feature_extraction":
        train_head_on_features(model, data.pipeline("train", 64, training=False), evaluation,
                               epochs=epochs["features"] * repeats, batch_size=batch, verbose=0,
                               callbacks=[_clock(start, curve)])
        return _result(start, curve)
    kwargs = {
        "full_fine_tune": {"unfreeze": "all"},
        "gradual": {"unfreeze": "gradual"},
        "gradual_layerwise": {"unfreeze": "gradual", "layerwise_decay": 2.6},
    }[method]
    tlkit.fine_tune(model, train, evaluation, epochs=epochs["fine_tune"], head_lr=1e-3, lr=1e-4,
                    early_stopping_patience=None, verbose=0, callbacks=[_clock(start, curve)],
                    **kwargs)
    return _result(start, curve)


def time_to_target(results):
    """Per budget: from scratch's best accuracy, its seconds to reach it, and each transfer
    method's seconds to reach it (None: never reached)."""
    out = {}
    for budget, per_method in results.items():
        scratch = per_method.get("scratch")
        if scratch is None:
            continue
        target = scratch["best_accuracy"]
        scratch_s = next(p["seconds"] for p in scratch["curve"] if p["accuracy"] >= target)
        reach = {}
        for method in TRANSFER:
            r = per_method.get(method)
            if r is not None:
                reach[method] = next(
                    (p["seconds"] for p in r["curve"] if p["accuracy"] >= target), None)
        trained = [m for m in TRANSFER if m in per_method]
        best = max(trained, key=lambda m: per_method[m]["accuracy"]) if trained else None
        reached = {m: s for m, s in reach.items() if s is not None}
        fastest = min(reached, key=reached.get) if reached else None
        out[budget] = {
            "target_accuracy": target,
            "scratch_at_chance": target <= 0.12,
            "scratch_seconds": scratch_s,
            "scratch_total_seconds": scratch["seconds"],
            "transfer_seconds": reach,
            "best_transfer_method": best,
            "best_transfer_seconds": reach.get(best),
            "best_transfer_ratio": (reach[best] / scratch_s) if reach.get(best) else None,
            "fastest_transfer_method": fastest,
            "fastest_transfer_seconds": reached.get(fastest),
            "fastest_ratio": (reached[fastest] / scratch_s) if fastest else None,
        }
    return out


def plot(results, budgets, labels, path, title, num_eval=500, num_classes=10):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for method in METHODS:
        points = [(b, results[str(b)][method]["accuracy"]) for b in budgets
                  if method in results.get(str(b), {})]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=method,
                    linestyle="--" if method == "scratch" else "-")
    ax.axhline(1 / num_classes, color="grey", linewidth=0.8, linestyle=":", label="chance")
    ax.set_xscale("log")
    ax.set_xticks(budgets)
    ax.set_xticklabels(labels)
    ax.minorticks_off()
    ax.set_xlabel("labelled examples per class")
    ax.set_ylabel(f"accuracy ({num_eval} official test images)")
    ax.set_ylim(0, 1)
    ax.grid(True, alpha=0.3)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    return path


def _title(size, eval_per_class, cap):
    return (f"Fashion-MNIST, EfficientNet-Lite0 {size}px, eval {10 * eval_per_class} test "
            f"images; all* = capped at {cap}/class (2 CPUs)")


def replot(name):
    """Redraws benchmarks/results/<name>.png from <name>.json."""
    import json

    with open(os.path.join(RESULTS, f"{name}.json"), encoding="utf-8") as f:
        r = json.load(f)
    budgets, cap = r["budgets_per_class"], r["all_per_class_cap"]
    labels = [("all*" if b == cap else str(b)) for b in budgets]
    eval_per_class = int(r["eval"].split()[0])
    path = plot(r["results"], budgets, labels, os.path.join(RESULTS, f"{name}.png"),
                _title(r["image_size"], eval_per_class, cap), num_eval=10 * eval_per_class)
    print("wrote", path)
    return path


def run(budgets, size, epochs, methods, eval_per_class=50, min_steps=16, seed=0):
    import tlkit

    base = tlkit.data.fashion_mnist(num_per_class=max(budgets), eval_per_class=eval_per_class,
                                    seed=seed)
    results = {}
    for budget in budgets:
        data = base if budget == max(budgets) else tlkit.data.subsample(base, budget, seed=seed)
        results[str(budget)] = {}
        for method in methods:
            r = run_budget(data, method, size, epochs, min_steps=min_steps)
            results[str(budget)][method] = r
            print(f"  {budget:>4}/class {method:<19} acc {r['accuracy']:.3f} "
                  f"(best {r['best_accuracy']:.3f})  {r['seconds']:6.1f} s", flush=True)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="budgets 5 and 50, fewer epochs (~4 minutes)")
    parser.add_argument("--budgets", type=int, nargs="+", default=None,
                        help="labels per class (default 5 10 50, plus --all-per-class)")
    parser.add_argument("--all-per-class", type=int, default=100,
                        help='cap of the "all" budget (labels per class) on this machine')
    parser.add_argument("--size", type=int, default=48, help="image size in pixels")
    parser.add_argument("--eval-per-class", type=int, default=50)
    parser.add_argument("--scratch-epochs", type=int, default=None)
    parser.add_argument("--head-epochs", type=int, default=None)
    parser.add_argument("--fine-epochs", type=int, default=None)
    parser.add_argument("--feature-epochs", type=int, default=None)
    parser.add_argument("--min-steps", type=int, default=16,
                        help="repeat small budgets so an epoch has at least this many batches")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--replot", action="store_true",
                        help="only redraw the PNG from the JSON of an earlier run")
    args = parser.parse_args(argv)
    if args.replot:
        return replot("transfer_vs_scratch" + ("_quick" if args.quick else ""))
    if args.budgets:
        budgets = sorted(set(args.budgets))
    elif args.quick:
        budgets = [5, 50]
    else:
        budgets = sorted({5, 10, 50, args.all_per_class})
    quick = args.quick
    epochs = {
        "scratch": args.scratch_epochs or (6 if quick else 15),
        "fine_tune": (args.head_epochs or (1 if quick else 2), args.fine_epochs or (3 if quick else 4)),
        "features": args.feature_epochs or (20 if quick else 30),
    }
    labels = [("all*" if b == args.all_per_class else str(b)) for b in budgets]
    print(f"Fashion-MNIST, EfficientNet-Lite0 at {args.size}px, budgets {budgets} per class "
          f'("all" capped at {args.all_per_class}/class on this 2-CPU machine), eval '
          f"{args.eval_per_class}/class of the official test split; epochs {epochs}", flush=True)
    start = time.perf_counter()
    results = run(budgets, args.size, epochs, args.methods, args.eval_per_class, args.min_steps)
    total = time.perf_counter() - start
    targets = time_to_target(results)

    width = 10
    print("\naccuracy (last epoch) / wall seconds")
    print(f"{'method':<19}" + "".join(f"{lab:>{2 * width}}" for lab in labels))
    for method in args.methods:
        cells = []
        for b in budgets:
            r = results[str(b)][method]
            cells.append(f"{r['accuracy']:.3f} / {r['seconds']:.0f}s")
        print(f"{method:<19}" + "".join(f"{c:>{2 * width}}" for c in cells))
    if targets:
        print("\ntime to reach from scratch's best accuracy")
        for b, lab in zip(budgets, labels):
            t = targets.get(str(b))
            if t is None:
                continue
            best = t["best_transfer_method"]
            bs = t["best_transfer_seconds"]
            fast = t["fastest_transfer_method"]
            print(f"  {lab:>5}/class: target {t['target_accuracy']:.3f}, scratch "
                  f"{t['scratch_seconds']:.0f}s; best transfer ({best}) "
                  + (f"{bs:.0f}s = {bs / t['scratch_seconds']:.2f}x" if bs else "never")
                  + (f"; fastest ({fast}) {t['fastest_transfer_seconds']:.0f}s = "
                     f"{t['fastest_ratio']:.2f}x" if fast else "; none reached it"))
    print(f"\ntotal {total:.0f} s")

    name = "transfer_vs_scratch" + ("_quick" if quick else "")
    title = _title(args.size, args.eval_per_class, args.all_per_class)
    os.makedirs(RESULTS, exist_ok=True)
    png = plot(results, budgets, labels, os.path.join(RESULTS, f"{name}.png"), title,
               num_eval=10 * args.eval_per_class)
    payload = {
        "dataset": "Fashion-MNIST (offline IDX files)",
        "backbone": "efficientnet_lite0",
        "image_size": args.size,
        "budgets_per_class": budgets,
        "all_per_class_cap": args.all_per_class,
        "all_is_capped": True,
        "all_note": (f'"all" is capped at {args.all_per_class} labels per class (of ~5400) so '
                     "the run fits ~15 minutes on 2 shared CPU cores"),
        "eval": f"{args.eval_per_class} per class of the official test split, every epoch",
        "min_steps_per_epoch": args.min_steps,
        "batch_size": 32,
        "epochs": {k: (list(v) if isinstance(v, tuple) else v) for k, v in epochs.items()},
        "quick": quick,
        "results": results,
        "time_to_scratch_best": targets,
        "goal": "transfer reaches from-scratch's best accuracy in <= 1/5 of its time",
        "total_seconds": total,
        "plot": os.path.relpath(png, os.path.dirname(RESULTS)),
        "ratio_note": "ratios are transfer seconds / scratch seconds to the target; null: never",
    }
    print("wrote", write_json(name, payload), "and", png)


if __name__ == "__main__":
    main()
