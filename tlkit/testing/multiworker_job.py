"""One worker of a MultiWorkerMirroredStrategy job on localhost, for fault-tolerance tests.

    python -m tlkit.testing.multiworker_job --ports 23456,23457 --index 0 --backup DIR --out F

Trains a tiny model with gradual unfreezing and `AtomicBackupAndRestore`; `--die-at-epoch K`
makes this worker exit abruptly (`os._exit`, like a preempted VM) when epoch K begins. Writes the
per-epoch trainable groups and the final weights (`.npz`) so a test can compare runs.
"""

import argparse
import json
import os
import sys


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--ports", required=True)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--backup", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--die-at-epoch", type=int, default=-1)
    args = parser.parse_args(argv)
    from tlkit.testing.localhost_cluster import set_localhost_tf_config

    set_localhost_tf_config(args.ports, args.index)
    import keras
    import numpy as np
    import tensorflow as tf

    import tlkit
    from tlkit import distribute
    from tlkit.checkpoint import AtomicBackupAndRestore
    from tlkit.testing import tiny_cnn
    from tlkit.unfreeze import GradualUnfreezing, UnfreezeSchedule, prepare_optimizer

    tf.config.experimental.enable_op_determinism()
    strategy = distribute.get_strategy("multiworker")
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (64, 16, 16, 3)).astype("float32")
    y = rng.integers(0, 3, 64)
    ds = distribute.distribute_dataset(tf.data.Dataset.from_tensor_slices((x, y)).batch(16), "data")
    with strategy.scope():
        model = tlkit.build_model(tlkit.backbones.from_keras(tiny_cnn()), num_classes=3,
                                  input_shape=(16, 16, 3), dropout=0.0)
        prepare_optimizer(model)
    distribute.apply_keras_fixes(model)
    seen = {}

    class Record(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == args.die_at_epoch:
                os._exit(3)  # preempted: no cleanup, no flush
            seen[epoch] = [g.name for g in tlkit.layer_groups(self.model) if g.trainable]

    schedule = UnfreezeSchedule.table({0: 0, 1: 1, 2: 2, 3: "all"})
    model.fit(
        ds,
        epochs=args.epochs,
        verbose=0,
        callbacks=[GradualUnfreezing(schedule, verbose=0), AtomicBackupAndRestore(args.backup,
                   delete_checkpoint=False), Record()],
    )
    np.savez(args.out + ".npz", *[v.numpy() for v in model.weights])
    with open(args.out + ".json", "w") as f:
        json.dump({"trainable_by_epoch": seen}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
