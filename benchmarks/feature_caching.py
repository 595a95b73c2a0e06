"""Frozen-feature caching: 10 head epochs with cached features vs the full pipeline.

Same model (EfficientNet-Lite0, frozen), same Fashion-MNIST subset, side by side in one run.
Reports wall seconds of each, the speed ratio (goal >= 5x) and both validation accuracies; then
the on-disk sharded cache (`cache_dir`): a first run (extract + write shards) and a second one
that reuses the shards.

    .venv/bin/python benchmarks/feature_caching.py [--per-class 100] [--size 128] [--epochs 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import write_json  # noqa: E402


def run(backbone="efficientnet_lite0", per_class=100, size=128, epochs=10, batch=64):
    import keras

    import tlkit
    from tlkit.head_training import train_head_on_features

    data = tlkit.data.fashion_mnist(num_per_class=per_class, eval_per_class=20, seed=0)
    train = data.pipeline("train", batch, training=False)
    val = data.pipeline("val", batch, training=False)

    def build():
        keras.utils.set_random_seed(0)
        return tlkit.build_model(tlkit.backbones.get(backbone, image_size=size), num_classes=10,
                                 input_shape=data.input_shape, class_names=data.class_names)

    model = build()
    start = time.perf_counter()
    model.fit(data.pipeline("train", batch, training=True, seed=0), validation_data=val,
              epochs=epochs, verbose=0)
    uncached_s = time.perf_counter() - start
    uncached_acc = float(model.evaluate(val, verbose=0)[1])

    model = build()
    start = time.perf_counter()
    train_head_on_features(model, train, val, epochs=epochs, batch_size=batch, verbose=0)
    cached_s = time.perf_counter() - start
    cached_acc = float(model.evaluate(val, verbose=0)[1])

    # The on-disk sharded cache (`cache_dir`): a first run extracts and writes the shards, a
    # second run (same backbone, data) reuses them and only trains the head.
    disk = {}
    with tempfile.TemporaryDirectory() as cache_dir:
        for name in ("first", "reused"):
            model = build()
            start = time.perf_counter()
            train_head_on_features(model, train, val, epochs=epochs, batch_size=batch,
                                   cache_dir=cache_dir, verbose=0)
            disk[f"disk_{name}_seconds"] = time.perf_counter() - start
            disk[f"disk_{name}_val_accuracy"] = float(model.evaluate(val, verbose=0)[1])
    return {
        "backbone": backbone,
        "train_images": int(data.num_examples("train")),
        "image_size": size,
        "epochs": epochs,
        "uncached_seconds": uncached_s,
        "cached_seconds": cached_s,
        "speedup": uncached_s / cached_s,
        "uncached_val_accuracy": uncached_acc,
        "cached_val_accuracy": cached_acc,
        **disk,
        "disk_reused_speedup": uncached_s / disk["disk_reused_seconds"],
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--size", type=int, default=128)  # the quickstart's size
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args(argv)
    r = run(args.backbone, args.per_class, args.size, args.epochs)
    print(f"{r['epochs']} head epochs on {r['train_images']} images at {r['image_size']}px "
          f"({r['backbone']} frozen)")
    print(f"uncached: {r['uncached_seconds']:.1f} s  val acc {r['uncached_val_accuracy']:.3f}")
    print(f"cached:   {r['cached_seconds']:.1f} s  val acc {r['cached_val_accuracy']:.3f}")
    print(f"speedup:  {r['speedup']:.1f}x")
    print(f"on-disk shards, first run: {r['disk_first_seconds']:.1f} s  val acc "
          f"{r['disk_first_val_accuracy']:.3f}; reused: {r['disk_reused_seconds']:.1f} s  val acc "
          f"{r['disk_reused_val_accuracy']:.3f} ({r['disk_reused_speedup']:.1f}x vs uncached)")
    print("wrote", write_json("feature_caching", r))


if __name__ == "__main__":
    main()
