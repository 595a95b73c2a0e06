"""Is the input pipeline the bottleneck? Steps/s of the pipeline alone vs. pipeline + training.

Measures, at the same batch size:

1. `pipeline`: batches/s that `LabeledData.pipeline` delivers (shuffle, decode, per-example
   resize to RGB, per-batch augmentation, prefetch) with nothing consuming them but the loop;
   `batch_fn_*`: the same through `tlkit.data.batch` on the decoded split, which shuffles
   after decoding;
2. `train_with_pipeline`: steps/s of `model.fit` on a small Keras CNN fed by that pipeline;
3. `train_in_memory`: steps/s of the same model on one batch repeated from memory (no input
   work at all).

When (1) is well above (2) and (2) is close to (3), the pipeline is not the bottleneck.
`first_batch_s` is the wait for the first batch of an epoch (while the shuffle buffer fills).

Usage:
    python benchmarks/input_pipeline.py --steps 100
    python benchmarks/input_pipeline.py --source folder   # decode PNG files instead

Writes `benchmarks/results/input_pipeline.json`.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tlkit import data as tld  # noqa: E402
from tlkit.backbones import InputInfo  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed blocks per measurement; the best counts"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument(
        "--source",
        choices=("fashion_mnist", "folder", "generated"),
        default="fashion_mnist",
        help="Fashion-MNIST IDX files; PNG files written to a temp folder; or random arrays",
    )
    parser.add_argument("--no-augment", action="store_true", help="skip the augmentation map")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=os.path.join(RESULTS, "input_pipeline.json"))
    return parser.parse_args(argv)


def load(source: str, seed: int, tmp: str) -> tld.LabeledData:
    if source == "fashion_mnist":
        try:
            return tld.fashion_mnist(val_fraction=0.0, seed=seed)
        except FileNotFoundError as err:
            print(f"Fashion-MNIST unavailable ({err}); using generated images instead.")
            source = "generated"
    if source == "folder":
        root = tld.make_image_folder(
            os.path.join(tmp, "images"),
            class_names=[f"c{i}" for i in range(10)],
            per_class=100,
            image_size=(28, 28),
            seed=seed,
        )
        return tld.from_image_folder(root, val_fraction=0.0, seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (10_000, 28, 28, 1), dtype=np.uint8)
    return tld.from_numpy(x, np.arange(10_000) % 10, val_fraction=0.0, seed=seed)


def make_pipeline(data: tld.LabeledData, args, shuffle_first: bool = True) -> tf.data.Dataset:
    """The training pipeline: resize + grey→RGB per example, augmentation per batch.

    `shuffle_first=True` uses `LabeledData.pipeline` (raw entries shuffled before decoding);
    `False` uses `tlkit.data.batch` on the decoded split (the generic path).
    """
    size = (args.image_size, args.image_size)
    prep = tld.preprocess_for(InputInfo(image_size=size, channels=3))
    aug = None if args.no_augment else tld.augmentation({"flip": "horizontal", "rotation": 0.05})

    def per_example(x, y):
        return prep(x), y

    def per_batch(x, y):
        return aug(x, training=True), y

    kwargs = dict(
        map_fn=per_example,
        batch_map_fn=None if aug is None else per_batch,
        drop_remainder=True,
    )
    if shuffle_first:
        ds = data.pipeline("train", args.batch_size, training=True, seed=args.seed, **kwargs)
    else:
        ds = tld.batch(data.train, args.batch_size, training=True, seed=args.seed, **kwargs)
    return ds.repeat()


def small_cnn(image_size: int, num_classes: int) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((image_size, image_size, 3)),
            keras.layers.Rescaling(1.0 / 255),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(num_classes),
        ]
    )
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def time_iteration(
    ds: tf.data.Dataset, steps: int, warmup: int, repeats: int
) -> tuple[float, float]:
    """`(best steps/s of `repeats` blocks after warmup, seconds to the first batch)`; the first
    batch waits for the shuffle buffer to fill, once per epoch."""
    start = time.perf_counter()
    iterator = iter(ds)
    next(iterator)
    first = time.perf_counter() - start
    for _ in range(warmup):
        next(iterator)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            next(iterator)
        rates.append(steps / (time.perf_counter() - start))
    return max(rates), first


class _EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def time_fit(model: keras.Model, ds: tf.data.Dataset, steps: int, repeats: int) -> float:
    """Best steady-state train steps/s over `repeats` epochs of `steps`; epoch 1 (tracing,
    shuffle buffer fill) is not counted; all epochs draw from one iterator."""
    timer = _EpochTimer()
    model.fit(ds, steps_per_epoch=steps, epochs=1 + repeats, verbose=0, callbacks=[timer])
    return max(steps / seconds for seconds in timer.seconds[1:])


def main(argv=None) -> dict:
    args = parse_args(argv)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        data = load(args.source, args.seed, tmp)
        # Baseline first, while no pipeline threads exist: one batch repeated from memory.
        one_batch = next(iter(make_pipeline(data, args).take(1)))
        in_memory = tf.data.Dataset.from_tensors(one_batch).repeat()
        memory_rate = time_fit(
            small_cnn(args.image_size, data.num_classes), in_memory, args.steps, args.repeats
        )
        gc.collect()

        generic = make_pipeline(data, args, shuffle_first=False)
        generic_rate, generic_first_s = time_iteration(
            generic, args.steps, args.warmup, args.repeats
        )
        del generic
        gc.collect()
        pipeline = make_pipeline(data, args)
        pipeline_rate, first_batch_s = time_iteration(
            pipeline, args.steps, args.warmup, args.repeats
        )
        gc.collect()

        model = small_cnn(args.image_size, data.num_classes)
        train_rate = time_fit(model, pipeline, args.steps, args.repeats)

    gpus = tf.config.list_physical_devices("GPU")
    result = {
        "benchmark": "input_pipeline",
        "data": data.name,
        "train_examples": data.num_examples("train"),
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "augment": not args.no_augment,
        "steps": args.steps,
        "repeats": args.repeats,
        "statistic": "best of repeats (steps/s)",
        "pipeline_steps_per_s": round(pipeline_rate, 2),
        "train_with_pipeline_steps_per_s": round(train_rate, 2),
        "train_in_memory_steps_per_s": round(memory_rate, 2),
        "pipeline_headroom": round(pipeline_rate / train_rate, 2),
        "first_batch_s": round(first_batch_s, 2),
        "batch_fn_steps_per_s": round(generic_rate, 2),
        "batch_fn_first_batch_s": round(generic_first_s, 2),
        "pipeline_overhead": round(1.0 - train_rate / memory_rate, 3),
        "load_average_1min_before": round(load_before, 2),
        "device": gpus[0].name if gpus else f"CPU ({os.cpu_count()} cores)",
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    tmp_path = f"{args.output}.tmp"
    with open(tmp_path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    os.replace(tmp_path, args.output)
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    print(f"written to {args.output}")
    return result


if __name__ == "__main__":
    main()
