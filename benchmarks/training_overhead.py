"""Training-loop overhead: tlkit's `fine_tune` vs plain `keras.Model.fit`, same model and data.

Two regimes:
- frozen: head-only training (backbone frozen): tlkit's head phase vs `fit` with the same freezing;
- full: full fine-tune (all groups trainable): tlkit (`unfreeze="all"`) vs `fit`.

A robust A/B: each arm runs in its own fresh process (no shared graph caches or allocator
state). The two processes of a pair live side by side and take turns: each blocks between
epochs until the parent tells it to go, so arm A's epoch k, then arm B's epoch k, then B's
epoch k+1, then A's (the order alternates), and never both at once. What the machine does in
the background then falls on both arms alike, epoch by epoch. The first epoch (tracing, the
phase switch) is a warm-up; each later epoch reports its median step's wall time (a callback
times every step) and its CPU time per step. A pair's ratio (tlkit speed / Keras speed, >1 =
tlkit faster) is the median over its epochs; `--pairs` pairs of fresh processes give the
median and a bootstrap 95% interval over pairs; the load average is recorded around each pair.
The full fine-tune's achieved GFLOP/s is compared with a large-matmul peak measured in the same
run (training FLOPs ~= 3x forward FLOPs).

Backbones: `efficientnet_lite0` (Keras), `hub_lite0` (the same network exported as a reusable
SavedModel and loaded with `tlkit.backbones.from_hub`), `tiny`.

    .venv/bin/python benchmarks/training_overhead.py [--backbones efficientnet_lite0 hub_lite0] \
        [--size 64] [--n 512] [--epochs 5] [--pairs 7]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
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

ARMS = ("keras", "tlkit")
REGIMES = ("frozen", "full")


# -- one arm, in a child process -----------------------------------------------------------------
def _backbone(name, size, hub_dir):
    import tlkit
    from tlkit.backbones.tiny_savedmodels import tiny_cnn

    if name == "tiny":
        return tlkit.backbones.from_keras(tiny_cnn((size, size, 3), filters=(16, 32, 64)))
    if name == "hub_lite0":
        info = tlkit.backbones.get("efficientnet_lite0", image_size=size).input_info
        return tlkit.backbones.from_hub(hub_dir, input_info=info)
    return tlkit.backbones.get(name, image_size=size)


def export_hub_lite0(folder, size):
    """Writes EfficientNet-Lite0 as a reusable SavedModel (`__call__(x, training)`, `variables`,
    `trainable_variables`): the TF-Hub format, for the `from_hub` rows."""
    import tensorflow as tf

    import tlkit

    net = tlkit.backbones.get("efficientnet_lite0", image_size=size).model

    class Reusable(tf.__internal__.tracking.AutoTrackable):
        def __init__(self):
            super().__init__()
            self.net = net

        @tf.function
        def __call__(self, x, training=False):
            return self.net(x, training=training)

    module = Reusable()
    spec = tf.TensorSpec([None, size, size, 3], tf.float32)
    for training in (True, False):
        module.__call__.get_concrete_function(spec, training=training)
    net.trainable = True  # the registry hands it frozen; a hub model marks what may train
    module.variables = [v.value for v in net.weights]
    module.trainable_variables = [v.value for v in net.trainable_weights]
    tf.saved_model.save(module, folder)


class StepTimer:
    """Keras callback: wall time of each training step and CPU time of each epoch. With
    `gate`, it waits for its turn (`_common.wait_turn`) before every epoch and after the last,
    handing over the figures of the epoch just ended (or null)."""

    def __init__(self, epochs, gate=False):
        import keras

        outer = self
        self.epochs, self.gate, self.per_epoch = epochs, gate, []

        def wait(payload):
            if outer.gate:
                wait_turn(payload)

        class CB(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                wait(outer.per_epoch[-1] if outer.per_epoch else None)
                outer._steps, outer._cpu, outer._last = [], time.process_time(), time.perf_counter()

            def on_train_batch_end(self, batch, logs=None):
                now = time.perf_counter()
                outer._steps.append(now - outer._last)
                outer._last = now

            def on_epoch_end(self, epoch, logs=None):
                import numpy as np

                outer.per_epoch.append({
                    "epoch": int(epoch), "steps": len(outer._steps),
                    "median_step_s": float(np.median(outer._steps)),
                    "cpu_s_per_step": (time.process_time() - outer._cpu) / max(len(outer._steps), 1)})
                if len(outer.per_epoch) == outer.epochs:
                    wait(outer.per_epoch[-1])

        self.callback = CB()


def _watch(model):
    """Records every train function Keras makes for `model` (each is traced on first use) and
    the callbacks each `fit` is given: `(made, callbacks)`, lists filled as training runs."""
    made, callbacks = [], []
    make, fit = model.make_train_function, model.fit

    def make_train_function(force=False):
        before = model.train_function
        result = make(force)
        if model.train_function is not before:
            made.append(model.train_function)
        return result

    def watched_fit(*args, **kwargs):
        callbacks.extend(kwargs.get("callbacks") or [])
        return fit(*args, **kwargs)

    model.make_train_function, model.fit = make_train_function, watched_fit
    return made, callbacks


def step_structure(model, made, callbacks):
    """What an arm's training step is, independent of the machine's load: the optimizer, the
    variables it differentiates and updates, how often the train step was traced, the ops in the
    traced step, and the callbacks run around every batch. Reads Keras 3's TF trainer closures
    (`one_step_on_data`); a field it cannot read is left out."""
    import keras

    out = {
        "optimizer": type(model.optimizer).__name__,
        "optimizer_variables": len(model.optimizer.variables),
        "trainable_variables": len(model.trainable_weights),
        "learning_rate": type(getattr(model.optimizer, "_learning_rate", None)).__name__,
        "jit_compile": bool(model.jit_compile),
        "steps_per_execution": int(model.steps_per_execution),
        "train_functions_made": len(made),
        "batch_hooks": sorted(
            type(c).__name__ for c in callbacks
            if any(getattr(type(c), hook) is not getattr(keras.callbacks.Callback, hook)
                   for hook in ("on_train_batch_begin", "on_train_batch_end"))),
    }
    try:
        steps = []
        for function in made:
            cells = dict(zip(function.__code__.co_freevars,
                             (c.cell_contents for c in function.__closure__)))
            step = cells["one_step_on_data"]
            steps.append(getattr(step, "__wrapped__", step))
        out["train_step_traces"] = sum(s.experimental_get_tracing_count() for s in steps)
        counts = []
        for concrete in steps[-1]._list_all_concrete_functions():
            graph = concrete.graph.as_graph_def()
            counts.append(len(graph.node) + sum(len(f.node_def) for f in graph.library.function))
        out["train_step_ops"] = sorted(counts)
    except (AttributeError, KeyError, TypeError, ValueError):
        pass
    return out


def run_arm(arm, regime, backbone_name, size, n, batch, epochs, hub_dir=None, gate=False):
    """Trains one arm; returns its per-epoch figures and the structure of its step (`gate`:
    take turns with the parent, `StepTimer`)."""
    import keras
    import numpy as np

    import tlkit

    keras.utils.set_random_seed(0)
    ds = synthetic_images(n, size, batch)
    freeze = regime == "frozen"
    model = tlkit.build_model(
        _backbone(backbone_name, size, hub_dir), num_classes=10, input_shape=(size, size, 3),
        freeze_backbone=True if arm == "tlkit" else freeze,
    )
    timer = StepTimer(epochs, gate=gate)
    made, callbacks = _watch(model)
    if arm == "keras":
        model.fit(ds, epochs=epochs, verbose=0, callbacks=[timer.callback])
    else:
        tlkit.fine_tune(
            model, ds, epochs=(epochs, 0) if freeze else (0, epochs), unfreeze="all",
            lr_schedule="constant", verbose=0, early_stopping_patience=None,
            callbacks=[timer.callback],
        )
    timed = timer.per_epoch[1:]  # the first epoch is the warm-up
    step = float(np.median([e["median_step_s"] for e in timed]))
    out = {
        "median_step_s": step,
        "img_per_s": batch / step,
        "cpu_s_per_step": float(np.median([e["cpu_s_per_step"] for e in timed])),
        "timed_steps": sum(e["steps"] for e in timed),
        "epochs": timer.per_epoch,
        "structure": step_structure(model, made,
                                    [c for c in callbacks if c is not timer.callback]),
    }
    if regime == "full" and arm == "tlkit":
        backbone = tlkit.trainability.find_backbone(model)
        out["forward_flops"] = forward_flops_per_example(backbone, (size, size, 3))
    return out


# -- the parent: interleaved pairs of fresh processes --------------------------------------------
def gated_pair(args, regime, backbone, hub_dir, order):
    """One pair of fresh processes taking turns epoch by epoch (`_common.take_turns`):
    `{arm: run_arm's figures}`."""
    commands = {arm: ([sys.executable, os.path.abspath(__file__), "--child", arm, regime,
                       "--backbones", backbone, "--size", str(args.size), "--n", str(args.n),
                       "--batch", str(args.batch), "--epochs", str(args.epochs),
                       "--hub-dir", hub_dir or "", "--gated"], None) for arm in order}
    return {arm: ran["result"] for arm, ran in take_turns(commands, args.epochs).items()}


def run(args):
    import numpy as np

    results = {"backbones": {}, "pairs": args.pairs}
    with tempfile.TemporaryDirectory() as tmp:
        for backbone in args.backbones:
            hub_dir = None
            if backbone == "hub_lite0":
                hub_dir = os.path.join(tmp, "hub_lite0")
                subprocess.run(
                    [sys.executable, os.path.abspath(__file__), "--export-hub", hub_dir,
                     "--size", str(args.size)], check=True, capture_output=True,
                )
            per = {}
            for regime in args.regimes:
                pairs = []
                for i in range(args.pairs):
                    order = ARMS if i % 2 == 0 else ARMS[::-1]
                    load_before = os.getloadavg()[0]
                    arms = gated_pair(args, regime, backbone, hub_dir, list(order))
                    epochs = list(zip(arms["keras"]["epochs"], arms["tlkit"]["epochs"]))[1:]
                    pairs.append({
                        "order": list(order),
                        "load_before": load_before,
                        "load_after": os.getloadavg()[0],
                        **arms,
                        "ratio_wall": float(np.median([k["median_step_s"] / t["median_step_s"]
                                                       for k, t in epochs])),
                        "ratio_cpu": float(np.median([k["cpu_s_per_step"] / t["cpu_s_per_step"]
                                                      for k, t in epochs])),
                    })
                    print(f"{backbone} {regime} pair {i + 1}/{args.pairs}: "
                          f"ratio {pairs[-1]['ratio_wall']:.3f} (cpu {pairs[-1]['ratio_cpu']:.3f}), "
                          f"load {load_before:.1f}", flush=True)
                summary = {}
                for key in ("ratio_wall", "ratio_cpu"):
                    values = [p[key] for p in pairs]
                    low, high = bootstrap_ci(values, np.median)
                    summary[key] = {"median": float(np.median(values)), "ci95": [low, high]}
                summary["structure"] = {arm: pairs[0][arm].get("structure") for arm in ARMS}
                summary["keras_img_per_s"] = float(np.median([p["keras"]["img_per_s"] for p in pairs]))
                summary["tlkit_img_per_s"] = float(np.median([p["tlkit"]["img_per_s"] for p in pairs]))
                per[regime] = {"summary": summary, "pairs": pairs}
            if "full" not in per:
                results["backbones"][backbone] = per
                continue
            flops = float(np.median([p["tlkit"]["forward_flops"] for p in per["full"]["pairs"]]))
            peak = matmul_peak_gflops()
            achieved = 3 * flops * per["full"]["summary"]["tlkit_img_per_s"] / 1e9
            per["flops"] = {
                "forward_gflop_per_image": flops / 1e9,
                "train_gflop_per_s": achieved,
                "matmul_peak_gflop_per_s": peak,
                "fraction_of_peak": achieved / peak,
            }
            results["backbones"][backbone] = per
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["efficientnet_lite0", "hub_lite0"])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=5, help="epochs per arm, the first a warm-up")
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=REGIMES)
    parser.add_argument("--out", default="training_overhead")
    parser.add_argument("--child", nargs=2, metavar=("ARM", "REGIME"), help=argparse.SUPPRESS)
    parser.add_argument("--hub-dir", default="", help=argparse.SUPPRESS)
    parser.add_argument("--export-hub", help=argparse.SUPPRESS)
    parser.add_argument("--gated", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--merge", nargs="+", metavar="FILE",
                        help="write results/<--out>.json from these results files (a later "
                        "file's backbones and regimes win), recording every run's command and commit")
    args = parser.parse_args(argv)
    if args.merge:
        merged = {"backbones": {}, "runs": []}
        for path in args.merge:
            with open(path, encoding="utf-8") as f:
                part = json.load(f)
            for backbone, per in part["backbones"].items():  # a later file's regimes win
                merged["backbones"].setdefault(backbone, {}).update(per)
            merged["runs"].append({k: part.get(k) for k in ("command", "commit", "machine",
                                                           "pairs", "args")}
                                  | {"backbones": sorted(part["backbones"])})
        merged["pairs"] = merged["runs"][-1]["pairs"]
        print("wrote", write_json(args.out, merged))
        return
    if args.export_hub:
        export_hub_lite0(args.export_hub, args.size)
        return
    if args.child:
        arm, regime = args.child
        figures = run_arm(arm, regime, args.backbones[0], args.size, args.n, args.batch,
                          args.epochs, args.hub_dir or None, gate=args.gated)
        print(json.dumps(figures), flush=True)
        return
    results = run(args)
    print(f"images={args.n} batch={args.batch} size={args.size} pairs={args.pairs}")
    print(f"{'backbone':<18} {'regime':<7} {'keras img/s':>11} {'tlkit img/s':>11} "
          f"{'ratio [95% CI]':>22} {'cpu ratio':>10}")
    for backbone, per in results["backbones"].items():
        for regime in args.regimes:
            s = per[regime]["summary"]
            w, c = s["ratio_wall"], s["ratio_cpu"]
            print(f"{backbone:<18} {regime:<7} {s['keras_img_per_s']:>11.1f} {s['tlkit_img_per_s']:>11.1f} "
                  f"{w['median']:>6.3f} [{w['ci95'][0]:.3f}, {w['ci95'][1]:.3f}] {c['median']:>10.3f}")
            st = per[regime]["summary"]["structure"]
            differ = {k: (st["keras"].get(k), st["tlkit"].get(k)) for k in st["tlkit"]
                      if st["keras"].get(k) != st["tlkit"].get(k)}
            print(f"  {regime} step structure, keras vs tlkit where they differ: {differ}")
        f = per.get("flops")
        if f:
            print(f"{backbone}: full fine-tune {f['train_gflop_per_s']:.1f} GFLOP/s = "
                  f"{100 * f['fraction_of_peak']:.1f}% of matmul peak "
                  f"{f['matmul_peak_gflop_per_s']:.1f}")
    results["args"] = {k: v for k, v in vars(args).items() if k not in ("child", "hub_dir", "export_hub")}
    print("wrote", write_json(args.out, results))


if __name__ == "__main__":
    main()
