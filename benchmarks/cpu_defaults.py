"""CPU defaults for `tlkit.distribute.distribution_plan`: threads, batch per replica,
steps_per_execution and the input pipeline, measured on the full fine-tune (#32, item 3).

What tlkit sets on a CPU today (`distribution_plan`): 32 examples per replica, steps_per_execution
1, XLA off, float32, and no thread settings (TensorFlow's defaults: intra- and inter-op pools
sized to the cores). Each row below changes one of those for `tlkit.fine_tune` (every group
trainable, constant LR, no validation) on the same model and data; the first row is today's
defaults. Each row runs in its own fresh process (thread pools are fixed at TensorFlow's start);
within a repeat all rows' processes live side by side and take turns epoch by epoch, never two
at once (`_common.take_turns`), so the machine's background load falls on every row alike.
Each timed epoch's throughput (images per wall second, after a warm-up epoch) is divided by the
baseline's in the same round of turns; a repeat's ratio is the median over its epochs, and the
row's the median over `--repeats` with a bootstrap 95% interval (>1: faster than today). CPU
seconds per image and the fraction of a large-matmul peak are recorded too, with the load
average around each repeat.

    .venv/bin/python benchmarks/cpu_defaults.py [--backbone efficientnet_lite0] [--size 64] \
        [--n 512] [--epochs 5] [--repeats 3] [--rows baseline intra1_inter1 ...] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (  # noqa: E402
    bootstrap_ci,
    forward_flops_per_example,
    matmul_peak_gflops,
    synthetic_images,
    take_turns,
    wait_turn,
    write_json,
)

# name -> settings; unset keys keep today's defaults (threads 0 = TensorFlow's choice).
ROWS = {
    "baseline": {},
    "intra1_inter1": {"intra": 1, "inter": 1},
    "intra2_inter1": {"intra": 2, "inter": 1},
    "intra1_inter2": {"intra": 1, "inter": 2},
    "batch16": {"batch": 16},
    "batch64": {"batch": 64},
    "spe4": {"steps_per_execution": 4},
    "spe16": {"steps_per_execution": 16},
    "no_prefetch": {"pipeline": "no_prefetch"},
    "onednn_off": {"onednn": "0"},
    "onednn_on": {"onednn": "1"},
}
DEFAULTS = {"intra": 0, "inter": 0, "batch": 32, "steps_per_execution": 1,
            "pipeline": "cache_prefetch", "onednn": None}


def run_row(settings, backbone_name, size, n, epochs):
    """One row, in this (fresh) process: the full fine-tune's throughput after warm-up."""
    import tensorflow as tf

    if settings["intra"]:
        tf.config.threading.set_intra_op_parallelism_threads(settings["intra"])
    if settings["inter"]:
        tf.config.threading.set_inter_op_parallelism_threads(settings["inter"])
    import keras
    import numpy as np
    from training_overhead import _backbone

    import tlkit

    keras.utils.set_random_seed(0)
    ds = synthetic_images(n, size, settings["batch"],
                          cache_prefetch=settings["pipeline"] == "cache_prefetch")
    model = tlkit.build_model(_backbone(backbone_name, size, None), num_classes=10,
                              input_shape=(size, size, 3))
    per_epoch = []

    class EpochTimer(keras.callbacks.Callback):  # takes turns with the other rows' processes
        def on_epoch_begin(self, epoch, logs=None):
            wait_turn(per_epoch[-1] if per_epoch else None)
            self.wall, self.cpu = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            per_epoch.append({"img_per_s": n / (time.perf_counter() - self.wall),
                              "cpu_s_per_image": (time.process_time() - self.cpu) / n})
            if len(per_epoch) == epochs:
                wait_turn(per_epoch[-1])

    tlkit.fine_tune(model, ds, epochs=(0, epochs), unfreeze="all", lr_schedule="constant",
                    verbose=0, early_stopping_patience=None, min_steps_per_epoch=1,
                    steps_per_execution=settings["steps_per_execution"],
                    callbacks=[EpochTimer()])
    backbone = tlkit.trainability.find_backbone(model)
    timed = per_epoch[1:]  # the first epoch traces the step
    return {
        "img_per_s": float(np.median([e["img_per_s"] for e in timed])),
        "cpu_s_per_image": float(np.median([e["cpu_s_per_image"] for e in timed])),
        "epochs": per_epoch,
        "threads": {"intra": tf.config.threading.get_intra_op_parallelism_threads(),
                    "inter": tf.config.threading.get_inter_op_parallelism_threads()},
        "forward_flops": forward_flops_per_example(backbone, (size, size, 3)),
    }


def _command(args, name):
    settings = {**DEFAULTS, **ROWS[name]}
    env = dict(os.environ)
    if settings["onednn"] is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = settings["onednn"]
    return ([sys.executable, os.path.abspath(__file__), "--child", json.dumps(settings),
             "--backbone", args.backbone, "--size", str(args.size), "--n", str(args.n),
             "--epochs", str(args.epochs)], env)


def run(args):
    import numpy as np

    names = ["baseline", *[r for r in args.rows if r != "baseline"]]
    runs, ratios = {name: [] for name in names}, {name: [] for name in names}
    for repeat in range(args.repeats):
        order = names[repeat % len(names):] + names[:repeat % len(names)]  # rotated
        load_before = os.getloadavg()[0]
        ran = take_turns({name: _command(args, name) for name in order}, args.epochs)
        load_after = os.getloadavg()[0]
        base = ran["baseline"]["epochs"][1:]
        for name in names:
            runs[name].append({**ran[name]["result"], "load_before": load_before,
                               "load_after": load_after})
            ratios[name].append(float(np.median([
                e["img_per_s"] / b["img_per_s"]
                for e, b in zip(ran[name]["epochs"][1:], base)])))
            print(f"repeat {repeat + 1}/{args.repeats} {name}: "
                  f"{runs[name][-1]['img_per_s']:.1f} img/s, {ratios[name][-1]:.3f} x baseline, "
                  f"load {load_before:.1f}", flush=True)
    peak = matmul_peak_gflops()
    rows = {}
    for name in names:
        low, high = bootstrap_ci(ratios[name], np.median)
        img_s = float(np.median([r["img_per_s"] for r in runs[name]]))
        flops = float(np.median([r["forward_flops"] for r in runs[name]]))
        rows[name] = {
            "settings": {**DEFAULTS, **ROWS[name]},
            "img_per_s": img_s,
            "cpu_s_per_image": float(np.median([r["cpu_s_per_image"] for r in runs[name]])),
            "ratio_to_baseline": {"median": float(np.median(ratios[name])),
                                  "ci95": [low, high], "per_repeat": ratios[name]},
            "fraction_of_matmul_peak": 3 * flops * img_s / 1e9 / peak,
            "runs": runs[name],
        }
    return {"rows": rows, "matmul_peak_gflop_per_s": peak,
            "today": "distribution_plan on CPU: batch 32 per replica, steps_per_execution 1, "
                     "jit_compile False, float32, TensorFlow's default thread pools"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=5, help="epochs per row, the first a warm-up")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--out", default="cpu_defaults")
    parser.add_argument("--quick", action="store_true",
                        help="256 images, 3 epochs, 2 repeats of baseline, intra1_inter1, spe4, batch64")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.epochs, args.repeats = 256, 3, 2
        args.rows = ["baseline", "intra1_inter1", "spe4", "batch64"]
    if args.child:
        print(json.dumps(run_row(json.loads(args.child), args.backbone, args.size, args.n,
                                 args.epochs)))
        return
    results = run(args)
    print(f"{args.backbone} {args.size} px, {args.n} images, {args.repeats} repeats; "
          f"matmul peak {results['matmul_peak_gflop_per_s']:.1f} GFLOP/s")
    print(f"{'row':<15} {'img/s':>8} {'cpu s/img':>10} {'vs today [95% CI]':>24} {'of peak':>8}")
    for name, row in results["rows"].items():
        r = row["ratio_to_baseline"]
        print(f"{name:<15} {row['img_per_s']:>8.1f} {row['cpu_s_per_image']:>10.4f} "
              f"{r['median']:>7.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}] "
              f"{100 * row['fraction_of_matmul_peak']:>7.1f}%")
    results["args"] = {k: v for k, v in vars(args).items() if k != "child"}
    print("wrote", write_json(args.out, results))


if __name__ == "__main__":
    main()
