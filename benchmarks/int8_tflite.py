"""Why full-integer int8 TFLite disagrees with float32 on a fine-tuned EfficientNet-Lite0.

Fine-tunes EfficientNet-Lite0 on Fashion-MNIST (head epoch, then all groups; the quickstart's
128 px and 100 images per class), then converts it to TFLite as float32, dynamic-range int8
(`tflite-dynamic`: int8 weights, float activations) and full-integer int8 (`tflite-int8`)
calibrated on 100 / 300 / 500 training images, and reports for each: size, size ratio to
float32, top-1 agreement with the Keras model and test accuracy on the official test images.
`tf.lite.experimental.QuantizationDebugger` then gives the per-layer error of the full-integer
model (RMSE of each quantized tensor / its scale), worst layers first, and the float model's
top-1 margins separate "int8 is lossy everywhere" from "int8 flips close calls".

    .venv/bin/python benchmarks/int8_tflite.py [--per-class 100] [--eval-per-class 100]
        [--epochs 1 1] [--model saved.keras]

Writes benchmarks/results/int8_tflite.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import write_json  # noqa: E402


def _train(args, data):
    import keras

    import tlkit

    keras.utils.set_random_seed(0)
    backbone = tlkit.backbones.get("efficientnet_lite0", image_size=args.image_size)
    model = tlkit.build_model(backbone, class_names=data.class_names,
                              input_shape=data.input_shape)
    tlkit.fine_tune(model, data.pipeline("train", 32, training=True, seed=0),
                    data.pipeline("val", 64), epochs=tuple(args.epochs), head_lr=3e-3, lr=3e-4,
                    unfreeze="all", early_stopping_patience=None, verbose=0)
    return model


def _arrays(data, split):
    import numpy as np

    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in data.pipeline(split, 64)])
    return np.concatenate(xs).astype("float32"), np.concatenate(ys)


def _debugger(model, calibration, folder, top=12):
    """Per-layer error of the full-integer model (QuantizationDebugger's layer statistics)."""
    import keras
    import tensorflow as tf

    shape = tuple(model.inputs[0].shape[1:])
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", lambda x: model(x, training=False),
                         [tf.TensorSpec((None, *shape), tf.float32)])
    saved = os.path.join(folder, "debug_sm")
    archive.write_out(saved, verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(saved)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]

    def representative():
        for example in calibration:
            yield [example[None]]

    converter.representative_dataset = representative
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=representative)
    debugger.run()
    path = os.path.join(folder, "debug.csv")
    with open(path, "w") as f:
        debugger.layer_statistics_dump(f)
    import csv

    with open(path) as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        scale = float(row["scale"]) if row.get("scale") else 0.0
        row["rmse_per_scale"] = (float(row["mean_squared_error"]) ** 0.5 / scale
                                 if scale else 0.0)
    rows.sort(key=lambda r: -r["rmse_per_scale"])
    keep = ("op_name", "tensor_name", "scale", "mean_squared_error", "rmse_per_scale",
            "mean_error", "max_abs_error")
    return {"num_layers": len(rows),
            "worst": [{k: r.get(k) for k in keep} for r in rows[:top]]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--eval-per-class", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, nargs=2, default=[1, 1])
    parser.add_argument("--calibration", type=int, nargs="+", default=[100, 300, 500])
    parser.add_argument("--model", help="a .keras file to reuse (written after training)")
    parser.add_argument("--no-debugger", action="store_true")
    args = parser.parse_args(argv)
    import keras
    import numpy as np

    import tlkit
    from tlkit.export import int8 as int8_export

    data = tlkit.data.fashion_mnist(num_per_class=args.per_class, seed=0, channels=3,
                                    eval_per_class=args.eval_per_class)
    if args.model and os.path.exists(args.model):
        model = keras.models.load_model(args.model)
    else:
        model = _train(args, data)
        if args.model:
            model.save(args.model)
    train_x, _ = _arrays(data, "train")
    test_x, test_y = _arrays(data, "test")
    probs = np.asarray(model.predict(test_x, verbose=0))
    top2 = np.sort(probs, axis=-1)[:, -2:]
    margins = top2[:, 1] - top2[:, 0]
    out = {"command": "benchmarks/int8_tflite.py " + " ".join(
        argv if argv is not None else sys.argv[1:]),
        "train_examples": len(train_x), "test_examples": len(test_x),
        "keras_accuracy": float(np.mean(probs.argmax(-1) == test_y)),
        "float_margin_quantiles": {str(q): float(np.quantile(margins, q))
                                   for q in (0.05, 0.1, 0.25, 0.5)},
        "variants": {}}
    with tempfile.TemporaryDirectory() as folder:
        variants = [("tflite", None), ("tflite-dynamic", None)] + [
            ("tflite-int8", n) for n in args.calibration]
        float_size = None
        for fmt, n in variants:
            path = os.path.join(folder, f"{fmt}_{n}.tflite")
            start = time.perf_counter()
            if fmt == "tflite-int8":
                result = int8_export.export_tflite_int8(
                    model, path, train_x, num_calibration=n, float_size_bytes=float_size)
            else:
                result = tlkit.export.export_tflite(
                    model, path, quantize="dynamic" if fmt == "tflite-dynamic" else None)
            seconds = time.perf_counter() - start
            float_size = float_size or result["size_bytes"]
            got = tlkit.export.tflite_predict(path, test_x)
            name = fmt if n is None else f"{fmt}_calib{n}"
            flipped = got.argmax(-1) != probs.argmax(-1)
            out["variants"][name] = {
                "size_bytes": result["size_bytes"], "size_ratio": float_size / result["size_bytes"],
                "top1_agreement": float(np.mean(~flipped)),
                "max_abs_diff": float(np.max(np.abs(got - probs))),
                "accuracy": float(np.mean(got.argmax(-1) == test_y)),
                "median_float_margin_of_flipped": float(np.median(margins[flipped]))
                if flipped.any() else None,
                "full_integer": result.get("full_integer"), "convert_seconds": seconds}
            print(name, out["variants"][name], flush=True)
            write_json("int8_tflite", out)
        if not args.no_debugger:
            out["debugger"] = _debugger(model, train_x[: max(args.calibration)], folder)
            for row in out["debugger"]["worst"]:
                print(row, flush=True)
    path = write_json("int8_tflite", out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
