"""LoRA fine-tuning, then a merged int8 TFLite model for phones and edge devices.

    python examples/lora_int8.py             # EfficientNet-Lite0 on Fashion-MNIST (offline)
    python examples/lora_int8.py --tiny      # seconds: random images, a tiny Keras CNN

LoRA trains small low-rank adapters beside the frozen pretrained weights (`tlkit.peft.lora`);
`tlkit.peft.save_adapters` keeps only those (a small file), `tlkit.peft.merge` folds them into
the kernels, and `tlkit.export.export_model` writes a full-integer int8 TFLite model calibrated
on training images, with its size and top-1 agreement against the Keras model.
"""

import argparse
import json
import os

import keras
import numpy as np

import tlkit


def tiny_backbone():
    """A small random CNN with 1x1 convolutions (where LoRA goes in a CNN)."""
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="stem")(inputs)
    x = keras.layers.Conv2D(16, 1, activation="relu", name="expand")(x)
    x = keras.layers.Conv2D(16, 1, activation="relu", name="project")(x)
    return tlkit.backbones.from_keras(keras.Model(inputs, x, name="tiny_cnn"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/lora_int8", help="output folder")
    parser.add_argument("--tiny", action="store_true", help="random data, tiny CNN (smoke run)")
    args = parser.parse_args(argv)

    if args.tiny:
        rng = np.random.default_rng(0)
        images = rng.uniform(0, 255, (30, 16, 16, 3)).astype("float32")
        data = tlkit.data.from_numpy(images, np.arange(30) % 3)
        backbone, epochs = tiny_backbone(), (1, 1)
    else:
        data = tlkit.data.fashion_mnist(num_per_class=100, eval_per_class=50)
        backbone, epochs = tlkit.backbones.get("efficientnet_lite0", image_size=64), (2, 3)

    model = tlkit.build_model(backbone, data)
    report = tlkit.peft.lora(model)  # rank 4 on the 1x1 convolutions; base weights frozen
    print(f"LoRA: {report.trainable_params:,} trainable parameters")
    tlkit.fine_tune(model, data, epochs=epochs, lr=tlkit.peft.LORA_LR)

    os.makedirs(args.out, exist_ok=True)
    tlkit.peft.save_adapters(model, os.path.join(args.out, "adapters.npz"))
    x_train = np.stack([x for x, _ in data.pipeline("train", 32).unbatch().take(100)])
    merged = tlkit.peft.merge(model, x_train[:16])  # adapters folded into the kernels
    print(f"merged; max |diff| {merged.max_abs_diff:.2e}")
    results = tlkit.export.export_model(model, os.path.join(args.out, "export"),
                                        formats=("tflite-int8",),  # float32 size alongside
                                        sample_inputs=x_train[:32],
                                        representative_inputs=x_train)
    print(json.dumps(results["tflite-int8"], indent=1, default=str))
    return results


if __name__ == "__main__":
    main()
