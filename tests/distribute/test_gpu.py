"""GPU branch: MirroredStrategy over all visible GPUs, mixed_float16 with loss scaling, XLA.

These run where TensorFlow sees a GPU and are skipped with a reason elsewhere (CI has none).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tlkit
from tlkit import distribute
from tlkit.testing import tiny_cnn

GPUS = tf.config.list_logical_devices("GPU")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not GPUS, reason="no GPU visible to TensorFlow on this machine"),
]


def _data():
    rng = np.random.default_rng(0)
    return rng.uniform(0, 255, (64, 16, 16, 3)).astype("float32"), rng.integers(0, 3, 64)


def test_auto_plan_uses_mixed_float16_on_gpu():
    strategy = distribute.get_strategy("mirrored" if len(GPUS) > 1 else "gpu")
    plan = distribute.distribution_plan(strategy, per_replica_batch=16)
    assert plan.device == "gpu" and plan.dtype_policy == "mixed_float16"
    assert plan.replicas == len(GPUS) if len(GPUS) > 1 else plan.replicas == 1


@pytest.mark.parametrize("jit", [False, True])
def test_mixed_float16_with_loss_scaling_trains_on_gpu(jit):
    x, y = _data()
    strategy = distribute.get_strategy("mirrored" if len(GPUS) > 1 else "gpu")
    with distribute.dtype_policy("mixed_float16"), strategy.scope():
        model = tlkit.build_model(
            tlkit.backbones.from_keras(tiny_cnn()),
            num_classes=3,
            input_shape=(16, 16, 3),
            freeze_backbone=False,
            compile=False,
        )
        tlkit.compile_model(model, jit_compile=jit)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.output.dtype == "float32"  # the head's output stays float32
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert history.history["loss"][-1] < history.history["loss"][0]


@pytest.mark.parametrize("jit", [False, True])
def test_hub_savedmodel_fine_tunes_in_mixed_float16_on_gpu(image_savedmodel, jit):
    # The SavedModel was traced for float32: the hub layer feeds it float32 and hands float16 on.
    x, y = _data()
    with distribute.dtype_policy("mixed_float16"):
        model = tlkit.build_model(image_savedmodel, num_classes=3, input_shape=(16, 16, 3))
        result = tlkit.fine_tune(model, (x, y), epochs=(1, 1), unfreeze="all", batch_size=16,
                                 early_stopping_patience=None, verbose=0, jit_compile=jit)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert tlkit.trainability.find_backbone(model).compute_dtype == "float16"
    assert model.output.dtype == "float32"
    assert np.isfinite(result.history.history["loss"]).all()
