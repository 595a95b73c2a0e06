"""Stochastic weight averaging as a fine-tuning setting (`swa_epochs`, #19)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tlkit
from tlkit import config as config_lib
from tlkit.recipes import Recipe, RecipeError
from tlkit.testing import tiny_image_data, tiny_model


class _EpochEnds(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(self.model.get_weights())


@pytest.mark.slow  # over ~3 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_final_weights_are_the_mean_of_the_last_epochs():
    x, y = tiny_image_data()
    model = tiny_model(num_classes=2, compile=False)
    ends = _EpochEnds()
    tlkit.fine_tune(model, (x, y), head_epochs=1, fine_epochs=3, swa_epochs=2, lr=1e-2,
                    unfreeze="all", patience=None, callbacks=[ends], batch_size=8, verbose=0)
    assert len(ends.weights) == 4
    mean = [(a + b) / 2 for a, b in zip(ends.weights[2], ends.weights[3])]
    changed = 0
    for final, expected, last in zip(model.get_weights(), mean, ends.weights[3]):
        np.testing.assert_allclose(final, expected, rtol=1e-5, atol=1e-6)
        changed += not np.allclose(final, last)
    assert changed


def test_update_batch_norm_is_the_average_over_the_training_batches():
    from tlkit.training.swa import update_batch_norm

    x, _ = tiny_image_data()
    keras.utils.set_random_seed(0)
    conv = keras.layers.Conv2D(4, 3)
    bn = keras.layers.BatchNormalization()
    model = keras.Sequential([keras.Input((16, 16, 3)), conv, bn])
    batches = tf.data.Dataset.from_tensor_slices(x).batch(8)  # 3 batches of 8
    assert update_batch_norm(model, batches) == 1
    features = np.asarray(conv(x))
    per_batch = features.reshape(3, 8, *features.shape[1:])
    np.testing.assert_allclose(bn.moving_mean.numpy(), features.mean(axis=(0, 1, 2)),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bn.moving_variance.numpy(),
                               per_batch.var(axis=(1, 2, 3)).mean(axis=0), rtol=1e-3)
    assert bn.momentum == 0.99  # restored
    bn.trainable = False  # statistics that do not train are left alone
    before = bn.moving_mean.numpy().copy()
    assert update_batch_norm(model, batches) == 0
    np.testing.assert_array_equal(bn.moving_mean.numpy(), before)


@pytest.mark.slow  # over 5 CPU-seconds (tests/ timings, #31)
def test_fine_tune_recomputes_batchnorm_statistics_only_when_they_train(caplog):
    import logging

    x, y = tiny_image_data()
    for policy, expected in (("update", True), ("frozen", False)):
        model = tiny_model(num_classes=2, compile=False)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="tlkit"):
            tlkit.fine_tune(model, (x, y), head_epochs=0, fine_epochs=2, swa_epochs=2,
                            unfreeze="all", bn_policy=policy, patience=None, batch_size=8,
                            verbose=0)
        assert ("BatchNorm statistics of 3 layers recomputed" in caplog.text) is expected
        assert "SWA: weights averaged over the last 2 epochs" in caplog.text


def test_swa_settings_are_checked():
    with pytest.raises(config_lib.ConfigError, match=r"swa_epochs: .*at most fine_epochs \(3\)"):
        tlkit.FineTuneConfig(fine_epochs=3, swa_epochs=4)
    with pytest.raises(RecipeError, match=r"phases.swa_epochs: expected an int >= 1"):
        Recipe.from_dict({"backbone": {"name": "tiny"}, "phases": {"swa_epochs": 0}})
