"""Trains one tiny model on 1 device and under MirroredStrategy over 2 logical CPUs; prints JSON.

`--lora`: with LoRA adapters on its convolutions (`tlkit.peft.lora`), base kernels frozen.

Run as a script (`python -m tlkit.testing.mirrored_check`): the CPU must be split into logical
devices before TensorFlow starts, so this cannot run inside an already-initialized process.
"""

import json
import sys


def main():
    from tlkit import distribute

    lora = "--lora" in sys.argv[1:]

    distribute.split_logical_cpus(2)
    import keras
    import numpy as np
    import tensorflow as tf

    import tlkit
    from tlkit.testing import tiny_cnn

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (64, 16, 16, 3)).astype("float32")
    y = rng.integers(0, 3, 64)

    def run(strategy):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = tlkit.build_model(
                tlkit.backbones.from_keras(tiny_cnn()), num_classes=3, input_shape=(16, 16, 3),
                freeze_backbone=False, dropout=0.0,
            )
        if lora:
            tlkit.peft.lora(model, rank=2, targets=["Conv2D"])
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
        history = model.fit(ds, epochs=2, verbose=0)
        return model, history.history["loss"]

    single, loss_1 = run(tf.distribute.OneDeviceStrategy("/cpu:0"))
    mirrored_strategy = distribute.get_strategy("mirrored")
    mirrored, loss_2 = run(mirrored_strategy)
    diffs = [float(np.abs(a.numpy() - b.numpy()).max()) for a, b in zip(single.weights, mirrored.weights)]
    print(json.dumps({
        "replicas": mirrored_strategy.num_replicas_in_sync,
        "loss_single": loss_1,
        "loss_mirrored": loss_2,
        "max_weight_diff": max(diffs),
        "trained_adapters": sum(
            1 for v in mirrored.weights if "lora_kernel_b" in v.path and np.any(v.numpy())
        ),
    }))


if __name__ == "__main__":
    sys.exit(main())
