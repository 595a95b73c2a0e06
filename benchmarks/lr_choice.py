"""How to pick the fine-tuning LR: `tlkit.lr_find` vs a keras-tuner search vs a small grid.

All three choose the same knob: the fine-tuning learning rate `lr` of `tlkit.fine_tune` (the
head phase runs at a fixed `--head-lr`). Everything else is fixed: the same tiny backbone (the
smoke recipe's `tiny` SavedModel, random weights, re-created identically for every training of a
seed), `epochs=(head, fine)`, gradual unfreezing of one group per epoch, cosine LR decay, no
early stopping. Data: scikit-learn's 8x8 digits (`tlkit.data.digits`, stratified 60/20/20
train/val/test split). The whole comparison is repeated for several seeds (split, weights,
data order); the table shows the mean (and spread) over seeds.

1. `lr_find`: the LR range test on the model with its backbone unfrozen (as `tlkit lr-find`
   does), its suggestion used as `lr`, then one training. Cost: the sweep + one training.
2. `tuner`: `tlkit.tuning.tune`, random search over `lr` (log-uniform), one full training per
   trial; the trial with the best validation accuracy is kept.
3. `grid`: one training per LR of a small log grid; the best validation accuracy is kept.

For each: the chosen `lr`, validation and test accuracy of the kept model, wall seconds and
training epochs spent (the LR sweep counted as `sweep steps / steps per epoch`). Compute is
measured side by side in one process on the same machine; the first training of the run pays
TensorFlow's start-up and is *not* counted (a warm-up training runs first). The tuner's wall
time includes keras-tuner's per-trial overhead (model rebuild, checkpoints, reports).

Usage:
    python benchmarks/lr_choice.py            # 3 seeds, about 2 minutes on 2 CPU cores
    python benchmarks/lr_choice.py --quick    # 1 seed, smaller budget: under a minute

Writes `benchmarks/results/lr_choice.json`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tlkit  # noqa: E402
from tlkit import data as tld  # noqa: E402
from tlkit.backbones.tiny_savedmodels import make_image_savedmodel  # noqa: E402
from tlkit.lr_finder import lr_find  # noqa: E402
from tlkit.training.fine_tuning import fine_tune  # noqa: E402
from tlkit.tuning import tune  # noqa: E402
from tlkit.unfreeze import UnfreezeSchedule  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
METHODS = ("lr_find", "grid", "tuner")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller budget (under a minute)")
    parser.add_argument("--head-epochs", type=int, default=None)
    parser.add_argument("--fine-epochs", type=int, default=None)
    parser.add_argument("--trials", type=int, default=None, help="tuner trials")
    parser.add_argument("--grid", type=float, nargs="+", default=None, help="grid of LRs")
    parser.add_argument("--sweep-steps", type=int, default=None, help="lr_find batches")
    parser.add_argument("--head-lr", type=float, default=1e-3, help="LR of the head phase")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--output", default=os.path.join(RESULTS, "lr_choice.json"))
    args = parser.parse_args(argv)
    quick = args.quick
    args.head_epochs = args.head_epochs if args.head_epochs is not None else (1 if quick else 2)
    args.fine_epochs = args.fine_epochs if args.fine_epochs is not None else (2 if quick else 4)
    args.trials = args.trials or (3 if quick else 6)
    args.grid = args.grid or [1e-4, 1e-3, 1e-2]
    args.sweep_steps = args.sweep_steps or (40 if quick else 80)
    args.seeds = args.seeds or ([0] if quick else [0, 1, 2])
    return args


class Setup:
    """Data, the backbone's SavedModel folder and the fixed training settings."""

    def __init__(self, args, folder, seed):
        self.args = args
        self.seed = seed
        data = tld.digits(val_fraction=0.2, test_fraction=0.2, seed=seed)
        self.data = data
        bs = args.batch_size
        self.train = tld.batch(data.split("train"), bs, training=True, seed=seed)
        self.val = tld.batch(data.val, bs, training=False, seed=seed)
        self.test = tld.batch(data.test, bs, training=False, seed=seed)
        self.steps = int(self.train.cardinality())
        self.backbone = make_image_savedmodel(os.path.join(folder, f"tiny{seed}"), seed=seed)
        self.epochs = (args.head_epochs, args.fine_epochs)

    def build(self, dropout=0.2):
        keras.utils.set_random_seed(self.seed)
        return tlkit.build_model(self.backbone, class_names=self.data.class_names,
                                 input_shape=self.data.input_shape, dropout=dropout,
                                 compile=False)

    def train_once(self, lr):
        """One fine-tuning run at `lr`; returns (model, best val accuracy)."""
        model = self.build()
        result = fine_tune(
            model, self.train, self.val, epochs=self.epochs,
            head_lr=self.args.head_lr, lr=lr,
            unfreeze=UnfreezeSchedule.gradual(head_epochs=self.epochs[0], first=1, every=1,
                                              per_step=1),
            early_stopping_patience=None, verbose=0,
        )
        return model, float(max(result.history.history["val_accuracy"]))

    def test_accuracy(self, model):
        tlkit.compile_model(model)
        return float(model.evaluate(self.test, verbose=0)[1])


def run_lr_find(setup):
    started = time.perf_counter()
    model = setup.build()
    tlkit.unfreeze_all(model)
    tlkit.compile_model(model, learning_rate=1e-3)
    sweep = lr_find(model, setup.train, min_lr=1e-6, max_lr=1.0,
                    num_steps=setup.args.sweep_steps)
    lr = float(sweep.suggestion)
    sweep_s = time.perf_counter() - started
    model, val = setup.train_once(lr)
    wall = time.perf_counter() - started
    return {
        "lr": lr, "val_accuracy": val, "test_accuracy": setup.test_accuracy(model),
        "wall_s": wall, "sweep_s": sweep_s, "trainings": 1,
        "epochs": sum(setup.epochs) + len(sweep.lrs) / setup.steps,
        "sweep_steps": len(sweep.lrs), "diverged": sweep.diverged, "method": sweep.method,
    }


def run_grid(setup):
    started = time.perf_counter()
    candidates, best = [], None
    for lr in setup.args.grid:
        model, val = setup.train_once(lr)
        candidates.append({"lr": lr, "val_accuracy": val})
        if best is None or val > best[1]:
            best = (model, val, lr)
    wall = time.perf_counter() - started
    model, val, lr = best
    return {
        "lr": lr, "val_accuracy": val, "test_accuracy": setup.test_accuracy(model),
        "wall_s": wall, "trainings": len(candidates),
        "epochs": len(candidates) * sum(setup.epochs), "candidates": candidates,
    }


def run_tuner(setup, folder):
    args = setup.args
    started = time.perf_counter()
    result = tune(
        setup.build, setup.train, setup.val,
        {"lr": {"min": min(args.grid) / 10, "max": max(args.grid) * 10, "sampling": "log"}},
        tuner="random", max_trials=args.trials, max_epochs=sum(setup.epochs),
        directory=folder, project_name=f"lr_choice_{setup.seed}", overwrite=True,
        fixed={"head_lr": args.head_lr, "head_epochs": setup.epochs[0], "unfreeze_groups": 1,
               "unfreeze_every": 1, "unfreeze_per_step": 1},
        # keras-tuner's oracle draws trial k with seed `seed + k`: far-apart seeds keep the
        # runs' draws independent. (`setup.build` seeds the weights itself.)
        load_best_model=True, seed=1000 * (setup.seed + 1),
    )
    wall = time.perf_counter() - started
    return {
        "lr": float(result.best_hyperparameters["lr"]), "val_accuracy": result.best_score,
        "test_accuracy": setup.test_accuracy(result.best_model),
        "wall_s": wall, "trainings": len(result.trials),
        "epochs": sum(len(t["epochs"]) for t in result.trial_log),
        "trials": [{"lr": r["hyperparameters"]["lr"], "val_accuracy": r["score"]}
                   for r in result.trials],
        "report": result.paths,
    }


def summarize(per_seed) -> dict:
    """Mean and spread over seeds of each method's figures."""
    summary = {}
    for name in METHODS:
        runs = [seed_results[name] for seed_results in per_seed.values()]
        entry = {"lrs": [r["lr"] for r in runs]}
        for key in ("val_accuracy", "test_accuracy", "wall_s", "epochs", "trainings"):
            values = np.array([r[key] for r in runs], dtype=float)
            entry[key] = float(values.mean())
            entry[f"{key}_std"] = float(values.std())
        summary[name] = entry
    return summary


def _mean_std(entry, key, spread) -> str:
    text = f"{entry[key]:.3f}"
    return text + (f" ±{entry[key + '_std']:.3f}" if spread else "")


def table(summary, num_seeds) -> str:
    spread = num_seeds > 1
    header = (f"{'method':<8} {'chosen lr (per seed)':<30} {'val acc':>13} {'test acc':>13} "
              f"{'trainings':>9} {'epochs':>7} {'wall s':>7}")
    lines = [header, "-" * len(header)]
    for name, r in summary.items():
        val, test = (_mean_std(r, key, spread) for key in ("val_accuracy", "test_accuracy"))
        lrs = ", ".join(f"{lr:.1e}" for lr in r["lrs"])
        lines.append(
            f"{name:<8} {lrs:<30} {val:>13} {test:>13} "
            f"{r['trainings']:>9.0f} {r['epochs']:>7.1f} {r['wall_s']:>7.1f}"
        )
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    total_started = time.perf_counter()
    per_seed, warmup_s = {}, None
    with tempfile.TemporaryDirectory() as folder:
        for seed in args.seeds:
            setup = Setup(args, folder, seed)
            if warmup_s is None:
                warm = time.perf_counter()
                setup.train_once(1e-3)  # TensorFlow start-up is not charged to a method
                warmup_s = time.perf_counter() - warm
            results = {
                "lr_find": run_lr_find(setup),
                "grid": run_grid(setup),
                "tuner": run_tuner(setup, os.path.join(folder, "tuning")),
            }
            for r in results.values():
                r.pop("report", None)
            per_seed[str(seed)] = results
    summary = summarize(per_seed)
    print(f"digits: {setup.data.num_examples('train')} train / "
          f"{setup.data.num_examples('val')} val / {setup.data.num_examples('test')} test, "
          f"{setup.steps} steps per epoch; epochs (head, fine) = {setup.epochs}, head_lr = "
          f"{args.head_lr:g}; seeds {args.seeds} (mean ± std over seeds)")
    print(table(summary, len(args.seeds)))
    output = {
        "benchmark": "lr_choice",
        "quick": args.quick,
        "settings": {
            "data": "scikit-learn digits (tlkit.data.digits), 60/20/20 split",
            "backbone": "tlkit.backbones.tiny_savedmodels.make_image_savedmodel (tiny CNN SavedModel, random init)",
            "epochs": list(setup.epochs), "batch_size": args.batch_size, "seeds": args.seeds,
            "head_lr": args.head_lr, "grid": args.grid, "tuner_trials": args.trials,
            "tuner_range": [min(args.grid) / 10, max(args.grid) * 10],
            "sweep_steps": args.sweep_steps, "steps_per_epoch": setup.steps,
        },
        "summary": summary,
        "per_seed": per_seed,
        "warmup_s": round(warmup_s, 2),
        "total_s": round(time.perf_counter() - total_started, 1),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "tensorflow": tf.__version__, "keras": keras.__version__,
                    "gpus": len(tf.config.list_physical_devices("GPU"))},
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(output, f, indent=2, default=_json_default)
        f.write("\n")
    print(f"total {output['total_s']} s; wrote {args.output}")
    return output


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


if __name__ == "__main__":
    main()
