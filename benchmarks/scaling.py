"""Scaling: MirroredStrategy over 2 logical CPU devices vs one device; GPU precision and XLA.

The CPU is split into 2 logical devices first thing in the process (before TensorFlow starts),
then the same small CNN trains with the same seed and data under `OneDeviceStrategy('/cpu:0')`
and under `MirroredStrategy` over both logical CPUs: correctness is the largest absolute weight
difference after the same SGD steps (should be float round-off; also reported after the longer
Adam run, where round-off grows), throughput is images/s (median epoch
after the first). Both logical devices share the same physical cores, so no speed-up is
expected on a CPU: the figure measures the strategy's overhead. Where a GPU is visible, also
the accelerator rows (`run_accelerator`): full fine-tune images/s of a ResNet50-backbone tlkit
model in float32 vs mixed_float16, XLA off vs on, and `tlkit.fine_tune` vs plain Keras `fit`;
skipped with a printed reason otherwise. `scripts/device_check.sh` runs only those rows
(`--accelerator-only benchmarks/results/gpu.json`; `--tiny` is its CPU fallback).

    .venv/bin/python benchmarks/scaling.py [--quick] [--images 2048] [--batch 64]
    .venv/bin/python benchmarks/scaling.py --accelerator-only OUT.json [--tiny] [--budget-s 120]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import write_json, write_json_to  # noqa: E402


def _cnn(input_shape, num_classes, dtype=None):
    import keras

    layers = keras.layers
    return keras.Sequential([
        keras.Input(input_shape),
        layers.Rescaling(1 / 255.0, dtype=dtype),
        layers.Conv2D(32, 3, padding="same", activation="relu", dtype=dtype),
        layers.MaxPooling2D(dtype=dtype),
        layers.Conv2D(64, 3, padding="same", activation="relu", dtype=dtype),
        layers.MaxPooling2D(dtype=dtype),
        layers.Conv2D(128, 3, padding="same", activation="relu", dtype=dtype),
        layers.GlobalAveragePooling2D(dtype=dtype),
        layers.Dense(num_classes, dtype="float32"),
    ])


class _EpochTimer:
    def __init__(self):
        import keras

        seconds = self.seconds = []

        class CB(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self._t = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                seconds.append(time.perf_counter() - self._t)

        self.callback = CB()

    def images_per_second(self, n):
        import numpy as np

        timed = self.seconds[1:] or self.seconds
        return n / float(np.median(timed))


def _train(strategy, x, y, batch, epochs, dtype=None, jit_compile=False, sgd=False):
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = _cnn(x.shape[1:], int(y.max()) + 1, dtype=dtype)
        optimizer = keras.optimizers.SGD(0.01) if sgd else keras.optimizers.Adam(1e-3)
        model.compile(optimizer=optimizer,
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"], jit_compile=jit_compile)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).cache().prefetch(2)
    timer = _EpochTimer()
    history = model.fit(ds, epochs=epochs, verbose=0, callbacks=[timer.callback])
    return model, history.history["loss"], timer.images_per_second(len(x))


def run_cpu(images=2048, size=32, batch=64, epochs=3, correctness_images=512):
    import numpy as np
    import tensorflow as tf

    from tlkit import distribute

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (images, size, size, 3)).astype("float32")
    y = rng.integers(0, 10, images)
    one_device = tf.distribute.OneDeviceStrategy("/cpu:0")
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    mirrored_strategy = distribute.get_strategy("mirrored") if not tf.config.list_logical_devices(
        "GPU") else tf.distribute.MirroredStrategy(cpus)
    # Correctness: one epoch of plain SGD on the first `correctness_images` (Adam's per-weight
    # normalization amplifies round-off over many steps on random labels, hiding real bugs).
    n = min(correctness_images, images)
    checks = {}
    for opt, sgd, k in (("sgd", True, n), ("adam", False, images)):
        single, loss_1, _ = _train(one_device, x[:k], y[:k], batch, 1 if sgd else epochs, sgd=sgd)
        mirrored, loss_2, _ = _train(mirrored_strategy, x[:k], y[:k], batch,
                                     1 if sgd else epochs, sgd=sgd)
        checks[opt] = {
            "steps": (k // batch) * (1 if sgd else epochs),
            "max_weight_diff": max(float(np.abs(a.numpy() - b.numpy()).max())
                                   for a, b in zip(single.weights, mirrored.weights)),
            "max_weight": max(float(np.abs(a.numpy()).max()) for a in single.weights),
            "loss_one_device": loss_1, "loss_mirrored": loss_2,
        }
    _, loss_1, ips_1 = _train(one_device, x, y, batch, epochs)
    _, loss_2, ips_2 = _train(mirrored_strategy, x, y, batch, epochs)
    return {
        "model": "small CNN (3 conv, 93k params)",
        "images": images, "image_size": size, "global_batch": batch, "epochs": epochs,
        "logical_cpus": cpus,
        "one_device": {"img_per_s": ips_1, "loss": loss_1},
        "mirrored": {"replicas": mirrored_strategy.num_replicas_in_sync, "img_per_s": ips_2,
                     "loss": loss_2},
        "mirrored_speedup": ips_2 / ips_1,
        "max_weight_diff": checks["sgd"]["max_weight_diff"],
        "correctness": checks,
    }


def _tlkit_model(backbone, size):
    import keras

    import tlkit
    from tlkit.backbones.tiny_savedmodels import tiny_cnn

    keras.utils.set_random_seed(0)
    if backbone == "tiny":
        base = tlkit.backbones.from_keras(tiny_cnn((size, size, 3), filters=(16, 32, 64)))
    else:  # a keras.applications name, random init (nothing to download)
        base = tlkit.backbones.from_keras(backbone, weights=None, input_shape=(size, size, 3))
    return tlkit.build_model(base, num_classes=10, input_shape=(size, size, 3), dropout=0.0,
                             freeze_backbone=False, compile=False)


def _full_fine_tune(runner, policy, jit, backbone, size, ds, epochs, images):
    """Images/s of a full fine-tune (every group trainable) of the same tlkit model, either by
    `tlkit.fine_tune` or by plain `keras.Model.fit`, under dtype `policy` and XLA `jit`."""
    import keras

    import tlkit
    from tlkit import distribute

    with distribute.dtype_policy(policy):
        model = _tlkit_model(backbone, size)
        timer = _EpochTimer()  # the first epoch (tracing, XLA compilation) is left out
        if runner == "tlkit":
            tlkit.fine_tune(model, ds, epochs=(0, epochs), unfreeze="all", lr=1e-4,
                            lr_schedule="constant", early_stopping_patience=None, verbose=0,
                            jit_compile=jit, callbacks=[timer.callback])
        else:
            tlkit.compile_model(model, optimizer=keras.optimizers.Adam(1e-4), jit_compile=jit)
            model.fit(ds, epochs=epochs, verbose=0, callbacks=[timer.callback])
        ran = {  # what actually ran, so a row can't claim a setting Keras dropped
            "loss_scaled": isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer),
            "xla": bool(model.jit_compile),
            "backbone_compute_dtype": tlkit.trainability.find_backbone(model).compute_dtype,
        }
    return {"img_per_s": timer.images_per_second(images), **ran}


def run_accelerator(backbone="ResNet50", images=2048, size=128, batch=128, epochs=4,
                    budget_s=None, on_row=None):
    """The accelerator rows: full fine-tune images/s in float32 vs mixed precision, XLA off vs
    on, `tlkit.fine_tune` vs plain Keras `fit` on the same model. Runs on any device: mixed
    precision is `mixed_float16` on a GPU (loss scaling), `mixed_bfloat16` elsewhere (the CPU
    fallback of `scripts/device_check.sh`, with a tiny model). The rows the targets need come
    first; rows that would start after `budget_s` seconds are skipped and listed. `on_row(result)`
    gets the result so far after each row (to write it before a time limit can strike)."""
    import numpy as np
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    mixed = "mixed_float16" if gpus else "mixed_bfloat16"
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (images, size, size, 3)).astype("float32")
    y = rng.integers(0, 10, images)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).cache().prefetch(tf.data.AUTOTUNE)
    result = {
        "device": gpus[0].name if gpus else "cpu",
        "backbone": backbone, "images": images, "image_size": size, "batch": batch,
        "epochs": epochs, "mixed_policy": mixed, "rows": [], "skipped": [],
        "targets": {"tlkit_vs_keras": ">= 1.0", "mixed_vs_float32": ">= 1.8 (GPU)"},
    }
    started = time.perf_counter()
    plan = [(runner, policy, False) for policy in ("float32", mixed) for runner in ("tlkit", "keras")]
    plan += [("tlkit", policy, True) for policy in ("float32", mixed)]
    for runner, policy, jit in plan:
        name = f"{runner}_{policy}{'_xla' if jit else ''}"
        if budget_s is not None and time.perf_counter() - started > budget_s:
            result["skipped"].append(name)
            continue
        row = _full_fine_tune(runner, policy, jit, backbone, size, ds, epochs, images)
        result["rows"].append(
            {"name": name, "runner": runner, "policy": policy, "jit_compile": jit, **row}
        )
        result["ratios"] = _accelerator_ratios(result["rows"], mixed)
        result["seconds"] = time.perf_counter() - started
        if on_row is not None:
            on_row(result)
    return result


def _accelerator_ratios(rows, mixed):
    by_name = {r["name"]: r["img_per_s"] for r in rows}

    def ratio(a, b):
        return by_name[a] / by_name[b] if a in by_name and b in by_name else None

    return {
        "tlkit_vs_keras_float32": ratio("tlkit_float32", "keras_float32"),
        "tlkit_vs_keras_mixed": ratio(f"tlkit_{mixed}", f"keras_{mixed}"),
        "mixed_vs_float32": ratio(f"tlkit_{mixed}", "tlkit_float32"),
        "mixed_xla_vs_float32": ratio(f"tlkit_{mixed}_xla", "tlkit_float32"),
        "xla_vs_no_xla_float32": ratio("tlkit_float32_xla", "tlkit_float32"),
    }


def print_accelerator(result):
    print(f"full fine-tune, {result['backbone']} {result['image_size']}px, batch {result['batch']}, "
          f"{result['images']} images, on {result['device']}")
    print(f"{'row':<34} {'img/s':>9}")
    for row in result["rows"]:
        print(f"{row['name']:<34} {row['img_per_s']:>9.0f}")
    for key, value in result["ratios"].items():
        if value is not None:
            print(f"{key:<34} {value:>9.2f}x")
    if result["skipped"]:
        print("skipped (time budget):", ", ".join(result["skipped"]))


def main(argv=None):
    from tlkit import distribute

    distribute.split_logical_cpus(2)  # first thing: before TensorFlow initializes its devices
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1024 images, 2 epochs")
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64, help="global batch")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--accelerator-only", metavar="JSON",
                        help="only the accelerator rows (scripts/device_check.sh), written to JSON")
    parser.add_argument("--tiny", action="store_true",
                        help="with --accelerator-only: a tiny CNN, 32 images, 16 px (CPU fallback)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="with --accelerator-only: skip rows that would start after this")
    args = parser.parse_args(argv)
    if args.accelerator_only:
        sizes = dict(backbone="tiny", images=32, size=16, batch=16, epochs=4) if args.tiny else {}
        def save(result):
            return write_json_to(args.accelerator_only, {"accelerator": result, "args": vars(args)})

        result = run_accelerator(budget_s=args.budget_s, on_row=save, **sizes)
        print_accelerator(result)
        print("wrote", save(result))
        return
    images, epochs = (1024, 2) if args.quick else (args.images, args.epochs)
    cpu = run_cpu(images, args.size, args.batch, epochs)
    print(f"small CNN, {images} images {args.size}px, global batch {args.batch}, {epochs} epochs")
    print(f"{'strategy':<28} {'img/s':>8}")
    print(f"{'OneDevice /cpu:0':<28} {cpu['one_device']['img_per_s']:>8.0f}")
    print(f"{'Mirrored, 2 logical CPUs':<28} {cpu['mirrored']['img_per_s']:>8.0f}")
    print(f"mirrored / one device: {cpu['mirrored_speedup']:.2f}x")
    for opt, c in cpu["correctness"].items():
        print(f"max weight difference after {c['steps']} {opt} steps: {c['max_weight_diff']:.2e} "
              f"(largest weight {c['max_weight']:.2f}); final loss {c['loss_one_device'][-1]:.4f} "
              f"vs {c['loss_mirrored'][-1]:.4f}")
    import tensorflow as tf

    gpu, reason = None, "no GPU visible to TensorFlow"
    if tf.config.list_logical_devices("GPU"):
        gpu, reason = run_accelerator(epochs=3 if args.quick else 4), None
        print_accelerator(gpu)
    else:
        print(f"GPU mixed precision / XLA: skipped ({reason})")
    payload = {"cpu": cpu, "gpu": gpu, "gpu_skipped_reason": reason, "args": vars(args)}
    name = "scaling" + ("_quick" if args.quick else "")
    print("wrote", write_json(name, payload))


if __name__ == "__main__":
    main()
