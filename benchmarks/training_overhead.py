"""Training-loop overhead: tlkit's `fine_tune` vs plain `keras.Model.fit`, same model and data.

Two regimes, each measured side by side in this one run (ratios, since machines are noisy):
- frozen: head-only training (backbone frozen) — tlkit's head phase vs fit with the same freezing;
- full: full fine-tune (all groups trainable) — tlkit (unfreeze="all") vs fit.
Also reports achieved GFLOP/s of the full fine-tune as a fraction of a large-matmul peak measured
in the same run (training FLOPs ~= 3x forward FLOPs).

    .venv/bin/python benchmarks/training_overhead.py [--backbone efficientnet_lite0] [--size 64] [--n 512] [--epochs 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import forward_flops_per_example, matmul_peak_gflops, write_json  # noqa: E402


def _build(backbone_name, size, freeze):
    import keras

    import tlkit
    from tlkit.testing import tiny_cnn

    keras.utils.set_random_seed(0)
    if backbone_name == "tiny":
        backbone = tlkit.backbones.from_keras(tiny_cnn((size, size, 3), filters=(16, 32, 64)))
    else:
        backbone = tlkit.backbones.get(backbone_name, image_size=size)
    return tlkit.build_model(backbone, num_classes=10, input_shape=(size, size, 3),
                             freeze_backbone=freeze)


class _Timer:
    """Keras callback timing whole epochs after the first (warm-up, tracing) epoch."""

    def __init__(self):
        import keras

        outer = self

        class CB(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                outer._start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                if epoch > 0:
                    outer.seconds.append(time.perf_counter() - outer._start)

        self.seconds = []
        self.callback = CB()


def _images_per_second(timer, n):
    import numpy as np

    return n / float(np.median(timer.seconds))


def _plain(backbone_name, size, freeze, ds, epochs, n):
    model = _build(backbone_name, size, freeze)
    timer = _Timer()
    model.fit(ds, epochs=epochs, verbose=0, callbacks=[timer.callback])
    return _images_per_second(timer, n), model


def _tlkit(backbone_name, size, freeze, ds, epochs, n):
    from tlkit.training.fine_tuning import fine_tune

    model = _build(backbone_name, size, True)
    timer = _Timer()
    epochs_arg = (epochs, 0) if freeze else (0, epochs)
    fine_tune(model, ds, epochs=epochs_arg, unfreeze="all", lr_schedule="constant", verbose=0,
              early_stopping_patience=None, callbacks=[timer.callback])
    return _images_per_second(timer, n), model


def run(backbone_name="efficientnet_lite0", size=64, n=256, batch=32, epochs=3, repeats=2):
    """Plain fit and tlkit's fine_tune, alternating which goes first on each repeat (the
    machine speeds up / slows down over a run; one fixed order biases the ratio)."""
    import numpy as np
    import tensorflow as tf

    import tlkit

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (n, size, size, 3)).astype("float32")
    y = rng.integers(0, 10, n)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).cache().prefetch(tf.data.AUTOTUNE)
    results = {}
    for regime, freeze in (("frozen", True), ("full", False)):
        plain, ours = [], []
        for r in range(repeats):
            order = (_plain, _tlkit) if r % 2 == 0 else (_tlkit, _plain)
            for fn in order:
                ips, model = fn(backbone_name, size, freeze, ds, epochs, n)
                (plain if fn is _plain else ours).append(ips)
        ratios = [o / p for o, p in zip(ours, plain)]
        results[regime] = {
            "keras_img_per_s": float(np.median(plain)),
            "tlkit_img_per_s": float(np.median(ours)),
            "ratio": float(np.median(ratios)),
            "ratios": ratios,
        }
    flops = forward_flops_per_example(tlkit.trainability.find_backbone(model), (size, size, 3))
    peak = matmul_peak_gflops()
    achieved = 3 * flops * results["full"]["tlkit_img_per_s"] / 1e9
    results["flops"] = {
        "forward_gflop_per_image": flops / 1e9,
        "train_gflop_per_s": achieved,
        "matmul_peak_gflop_per_s": peak,
        "fraction_of_peak": achieved / peak,
    }
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    results = run(args.backbone, args.size, args.n, args.batch, args.epochs, args.repeats)
    print(f"backbone={args.backbone} size={args.size} images={args.n} batch={args.batch}")
    print(f"{'regime':<8} {'keras img/s':>12} {'tlkit img/s':>12} {'ratio':>7}")
    for regime in ("frozen", "full"):
        r = results[regime]
        print(f"{regime:<8} {r['keras_img_per_s']:>12.1f} {r['tlkit_img_per_s']:>12.1f} {r['ratio']:>7.2f}")
    f = results["flops"]
    print(f"full fine-tune: {f['train_gflop_per_s']:.1f} GFLOP/s = {100 * f['fraction_of_peak']:.1f}% "
          f"of matmul peak {f['matmul_peak_gflop_per_s']:.1f} GFLOP/s")
    results["args"] = vars(args)
    print("wrote", write_json("training_overhead", results))


if __name__ == "__main__":
    main()
