"""The `tlkit` command line (minimal first version: `tlkit train RECIPE`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile


def _train(args) -> int:
    import numpy as np
    import yaml

    with open(args.recipe, encoding="utf-8") as f:
        recipe = yaml.safe_load(f) or {}
    import keras

    import tlkit
    from tlkit.testing import make_image_savedmodel

    out_dir = args.output or recipe.get("output", "runs/quickstart")
    os.makedirs(out_dir, exist_ok=True)
    backbone = recipe.get("backbone", "tiny")
    if backbone == "tiny":
        backbone = make_image_savedmodel(os.path.join(tempfile.mkdtemp(), "tiny_cnn"))
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images[..., None] * (255.0 / 16.0)).astype("float32")
    y = digits.target
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    split = int(0.8 * len(x))
    keras.utils.set_random_seed(0)
    model = tlkit.build_model(backbone, num_classes=10, input_shape=(8, 8, 1))
    epochs = int(recipe.get("epochs", 3))
    model.fit(x[:split], y[:split], validation_data=(x[split:], y[split:]), epochs=epochs, verbose=2)
    tlkit.unfreeze_all(model)
    tlkit.compile_model(model, learning_rate=float(recipe.get("fine_tune_lr", 1e-4)))
    history = model.fit(x[:split], y[:split], validation_data=(x[split:], y[split:]),
                        epochs=epochs, verbose=2)
    metrics = {k: float(v[-1]) for k, v in history.history.items()}
    with open(os.path.join(out_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=2)
    model.save(os.path.join(out_dir, "model.keras"))
    print(f"results in {out_dir}: {metrics}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="tlkit", description="Transfer learning for Keras 3.")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train from a recipe")
    train.add_argument("recipe")
    train.add_argument("--output", default=None)
    train.set_defaults(func=_train)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
