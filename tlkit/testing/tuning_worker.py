"""A tiny search run as its own process, for tests of parallel and distributed tuning.

`python -m tlkit.testing.tuning_worker --directory D --project-name P --max-trials 4` runs
`tlkit.tuning.tune` on a tiny CNN and tiny synthetic data and prints one line
`TLKIT_TUNE_RESULT {json}` (role, tuner id, trials this process ran, all trials when chief).

- keras-tuner's chief/worker mode comes from the environment (`KERASTUNER_TUNER_ID`,
  `KERASTUNER_ORACLE_IP`, `KERASTUNER_ORACLE_PORT`): start one chief and some workers with
  the same arguments.
- `--mirrored N` splits the CPU into N logical devices first (TensorFlow must not have started
  yet, hence a separate process) and runs every trial under `tf.distribute.MirroredStrategy`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

RESULT_PREFIX = "TLKIT_TUNE_RESULT "


def tiny_data(n=48, size=16, seed=0):
    """A learnable 3-class toy task: the class is the brightest third of the image."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 60, (n, size, size, 3)).astype("float32")
    y = rng.integers(0, 3, n)
    third = size // 3
    for i, label in enumerate(y):
        x[i, :, label * third:(label + 1) * third, :] += 150.0
    return x, y


def build_tiny(dropout):
    """The tiny model the tuning tests and this worker search over (2 conv blocks + head)."""
    import tlkit
    from tlkit.testing import tiny_cnn

    return tlkit.build_model(tiny_cnn(filters=(4, 8)), num_classes=3, input_shape=(16, 16, 3),
                             dropout=dropout, compile=False)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--directory", required=True)
    parser.add_argument("--project-name", default="search")
    parser.add_argument("--tuner", default="random", choices=("random", "bayesian", "hyperband"))
    parser.add_argument("--max-trials", type=int, default=4)
    parser.add_argument("--max-epochs", type=int, default=1)
    parser.add_argument("--mirrored", type=int, default=0)
    args = parser.parse_args(argv)

    if args.mirrored:
        from tlkit import distribute

        distribute.split_logical_cpus(args.mirrored)
    import tensorflow as tf

    from tlkit.tuning import tune

    strategy = None
    if args.mirrored:
        devices = [d.name for d in tf.config.list_logical_devices("CPU")][: args.mirrored]
        strategy = tf.distribute.MirroredStrategy(devices)
    x, y = tiny_data()
    train = tf.data.Dataset.from_tensor_slices((x[:32], y[:32])).batch(16)
    val = tf.data.Dataset.from_tensor_slices((x[32:], y[32:])).batch(16)

    result = tune(
        build_tiny, train, val,
        space={"lr": {"min": 1e-4, "max": 1e-2, "sampling": "log"},
               "dropout": {"min": 0.0, "max": 0.5, "step": 0.1}},
        tuner=args.tuner, max_trials=args.max_trials, max_epochs=args.max_epochs,
        directory=args.directory, project_name=args.project_name,
        distribution_strategy=strategy, fixed={"head_epochs": min(1, args.max_epochs - 1)},
    )
    print(RESULT_PREFIX + json.dumps({
        "role": result.role,
        "tuner_id": os.environ.get("KERASTUNER_TUNER_ID", "tuner0"),
        "trials_run": result.trials_run,
        "trials": [{"trial_id": r["trial_id"], "status": r["status"]} for r in result.trials],
        "best_trial_id": result.best_trial_id,
        "replicas": strategy.num_replicas_in_sync if strategy is not None else 1,
    }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
