"""Frozen-feature caching: 10 head epochs with cached features vs the full pipeline.

Same model (EfficientNet-Lite0, frozen), same Fashion-MNIST subset, side by side in one run.
Reports wall seconds of each, the speed ratio (goal >= 20x) and both validation accuracies; then
the on-disk sharded cache (`cache_dir`): a first run (extract + write shards) and a second one
that reuses the shards. The cached run's time is split into the one extraction pass over
train + val and the head training (the rest): since the extraction pass costs about what one
uncached epoch's forward passes cost, `uncached / extraction` bounds the in-memory speed-up;
it is printed with the rest. Also the extraction's ms per image by batch size (what
`tlkit.head_training.CPU_EXTRACTION_BATCH` is chosen from).

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


def extraction_ms_per_image(extractor, batches=(16, 32, 64, 128, 256), images=256, reps=3):
    """`{batch: ms per image}` of `predict_on_batch`, best of `reps` (interleaved)."""
    import numpy as np

    shape = tuple(extractor.input_shape[1:])
    xs = {b: np.random.default_rng(0).uniform(0, 255, (b, *shape)).astype("float32")
          for b in batches}
    for x in xs.values():
        extractor.predict_on_batch(x)  # trace each shape once
    best = {b: float("inf") for b in batches}
    for _ in range(reps):
        for b, x in xs.items():
            calls = max(1, images // b)
            start = time.perf_counter()
            for _ in range(calls):
                extractor.predict_on_batch(x)
            best[b] = min(best[b], (time.perf_counter() - start) / (calls * b) * 1e3)
    return best


def run(backbone="efficientnet_lite0", per_class=100, size=128, epochs=10, batch=64):
    import keras

    import tlkit
    from tlkit.data import extract_feature_arrays
    from tlkit.head_training import (
        extraction_batch_size,
        feature_model,
        train_head_on_features,
    )

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

    # The cached run's extraction pass alone (same extractor, batch and data), timed again.
    extractor = feature_model(build())
    extract_batch = extraction_batch_size(batch)
    extract_feature_arrays(extractor, val.unbatch().take(extract_batch), batch_size=extract_batch,
                           progress=False)  # trace it first, as the cached run did
    start = time.perf_counter()
    for ds in (train, val):
        extract_feature_arrays(extractor, ds.unbatch(), batch_size=extract_batch, progress=False)
    extraction_s = time.perf_counter() - start
    per_image = extraction_ms_per_image(extractor)

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
        "extraction_batch": extract_batch,
        "extraction_seconds": extraction_s,
        "head_seconds": max(cached_s - extraction_s, 0.0),
        "speedup_bound": uncached_s / extraction_s,
        "extraction_ms_per_image_by_batch": {str(k): v for k, v in per_image.items()},
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
    print(f"speedup:  {r['speedup']:.1f}x  (extraction pass {r['extraction_seconds']:.1f} s at "
          f"batch {r['extraction_batch']}, head ~{r['head_seconds']:.1f} s; bound "
          f"uncached / extraction = {r['speedup_bound']:.1f}x)")
    print("extraction ms/image by batch: " + ", ".join(
        f"{k}: {v:.1f}" for k, v in r["extraction_ms_per_image_by_batch"].items()))
    same = abs(r["cached_val_accuracy"] - r["uncached_val_accuracy"]) <= 0.02
    print(f"val accuracy cached vs uncached: {r['cached_val_accuracy']:.3f} vs "
          f"{r['uncached_val_accuracy']:.3f} ({'same' if same else 'DIFFERENT'} within 0.02)")
    print(f"on-disk shards, first run: {r['disk_first_seconds']:.1f} s  val acc "
          f"{r['disk_first_val_accuracy']:.3f}; reused: {r['disk_reused_seconds']:.1f} s  val acc "
          f"{r['disk_reused_val_accuracy']:.3f} ({r['disk_reused_speedup']:.1f}x vs uncached)")
    print("wrote", write_json("feature_caching", r))


if __name__ == "__main__":
    main()
