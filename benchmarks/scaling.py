"""Scaling: MirroredStrategy over 2 logical CPU devices vs one device; GPU precision and XLA.

The CPU is split into 2 logical devices first thing in the process (before TensorFlow starts),
then the same small CNN trains with the same seed and data under `OneDeviceStrategy('/cpu:0')`
and under `MirroredStrategy` over both logical CPUs: correctness is the largest absolute weight
difference after the same SGD steps (should be float round-off; also reported after the longer
Adam run, where round-off grows), throughput is images/s (median epoch
after the first). Both logical devices share the same physical cores, so no speed-up is
expected on a CPU: the figure measures the strategy's overhead. Where a GPU is visible, also
images/s in float32 vs mixed_float16 and with vs without XLA (`jit_compile`); skipped with a
printed reason otherwise.

    .venv/bin/python benchmarks/scaling.py [--quick] [--images 2048] [--batch 64]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import write_json  # noqa: E402


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


def run_gpu(images=8192, size=64, batch=256, epochs=3):
    import keras
    import numpy as np
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if not gpus:
        return None, "no GPU visible to TensorFlow"
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (images, size, size, 3)).astype("float32")
    y = rng.integers(0, 10, images)
    strategy = tf.distribute.OneDeviceStrategy(gpus[0].name)
    out = {"device": gpus[0].name, "images": images, "image_size": size, "batch": batch}
    for dtype in ("float32", "mixed_float16"):
        for jit in (False, True):
            policy = keras.mixed_precision.DTypePolicy(dtype)
            _, _, ips = _train(strategy, x, y, batch, epochs, dtype=policy, jit_compile=jit)
            out[f"{dtype}{'_xla' if jit else ''}_img_per_s"] = ips
    base = out["float32_img_per_s"]
    out["speedups_vs_float32"] = {k: v / base for k, v in out.items() if k.endswith("_img_per_s")}
    return out, None


def main(argv=None):
    from tlkit import distribute

    distribute.split_logical_cpus(2)  # first thing: before TensorFlow initializes its devices
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1024 images, 2 epochs")
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64, help="global batch")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)
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
    gpu, reason = run_gpu(epochs=2 if args.quick else 3)
    if gpu is None:
        print(f"GPU mixed precision / XLA: skipped ({reason})")
    else:
        for key, value in gpu["speedups_vs_float32"].items():
            print(f"  {key:<32} {gpu[key]:>9.0f} img/s  ({value:.2f}x)")
    payload = {"cpu": cpu, "gpu": gpu, "gpu_skipped_reason": reason, "args": vars(args)}
    name = "scaling" + ("_quick" if args.quick else "")
    print("wrote", write_json(name, payload))


if __name__ == "__main__":
    main()
