"""LR tools: the LR range test (restores the model bit-identically), warmup-cosine, one-cycle,
combined schedules and momentum scheduling, and their composition with unfreezing."""

import json

import keras
import numpy as np
import pytest

import tlkit
from tlkit.lr_finder import LRFinderResult, lr_find, suggest
from tlkit.optimizers import layerwise
from tlkit.optimizers.schedules import CombinedSchedule, MomentumScheduler, OneCycle, warmup_cosine
from tlkit.testing import tiny_model
from tlkit.unfreeze import GradualUnfreezing


def _model(optimizer="adam", freeze_backbone=True):
    model = tiny_model(compile=False, freeze_backbone=freeze_backbone)
    tlkit.compile_model(model, optimizer=optimizer, learning_rate=1e-3)
    return model


def _data(n=32):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (n, 16, 16, 3)).astype("float32")
    return x, (x[..., 0].mean(axis=(1, 2)) > 127).astype("int32") + (x.mean(axis=(1, 2, 3)) > 127)


# -- LR finder ---------------------------------------------------------------------------------
@pytest.mark.slow  # over 5 CPU-seconds (tests/ timings, #31)
def test_lr_find_restores_model_and_optimizer(tmp_path):
    model = _model(freeze_backbone=False)
    x, y = _data()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # the optimizer has state now
    optimizer = model.optimizer
    weights = [np.array(v.numpy(), copy=True) for v in model.variables]
    slots = [np.array(v.numpy(), copy=True) for v in optimizer.variables]
    history = model.history

    result = lr_find(
        model,
        (x, y),
        min_lr=1e-6,
        max_lr=1e3,
        num_steps=40,
        batch_size=8,
        plot_path=tmp_path / "lr.png",
    )

    assert isinstance(result, LRFinderResult)
    assert model.optimizer is optimizer and model.history is history
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(weights, model.variables))
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(slots, optimizer.variables))
    # Exponential sweep from min_lr, stopped when the loss blew up at huge LRs.
    assert result.lrs[0] == pytest.approx(1e-6)
    ratios = np.array(result.lrs[1:]) / np.array(result.lrs[:-1])
    np.testing.assert_allclose(ratios, (1e3 / 1e-6) ** (1 / 39), rtol=1e-6)
    assert result.diverged and len(result.lrs) < 40
    assert len(result.losses) == len(result.smoothed_losses) == len(result.lrs)
    assert 1e-6 <= result.suggestion <= 1e3 and result.method in ("steepest", "min/10")
    assert (tmp_path / "lr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.plot_path == str(tmp_path / "lr.png")
    # The model trains on as before.
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert int(optimizer.iterations) == 8


def test_lr_find_with_layerwise_optimizer_and_dataset():
    import tensorflow as tf

    model = _model(optimizer="sgd")
    tlkit.compile_model(model, optimizer=layerwise(keras.optimizers.SGD(1e-3), model, decay=2.0))
    x, y = _data(16)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)  # 2 batches: repeated
    result = lr_find(model, dataset, num_steps=6, stop_factor=None)
    assert len(result.lrs) == 6 and not result.diverged
    assert not model.optimizer.built  # the sweep ran on a copy


def test_suggest():
    lrs = np.logspace(-6, 1, 50)
    loss = 2.0 - np.tanh(np.log10(lrs) + 3) + np.where(lrs > 1e-1, 50 * (lrs - 1e-1), 0)
    value, method = suggest(lrs, loss)
    assert method == "steepest" and value == pytest.approx(1e-3, rel=0.4)
    value, method = suggest(lrs, loss, method="min/10")
    assert method == "min/10" and value == pytest.approx(lrs[np.argmin(loss)] / 10)
    value, method = suggest(lrs[:3], loss[:3])  # too few points before the minimum
    assert method == "min/10"
    with pytest.raises(ValueError, match="method"):
        suggest(lrs, loss, method="valley")


def test_lr_find_errors():
    model = _model()
    x, y = _data(8)
    with pytest.raises(ValueError, match="min_lr < max_lr"):
        lr_find(model, (x, y), min_lr=1.0, max_lr=0.1)


# -- schedules ---------------------------------------------------------------------------------
def test_warmup_cosine_is_keras_cosine_decay():
    schedule = warmup_cosine(1e-3, total_steps=110, warmup_steps=10, initial_lr=0.0, final_lr=1e-5)
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
    values = [float(schedule(s)) for s in (0, 5, 10, 60, 110, 200)]
    assert values[0] == pytest.approx(0.0, abs=1e-12)
    assert values[1] == pytest.approx(5e-4)
    assert values[2] == pytest.approx(1e-3)
    assert values[3] == pytest.approx((1e-3 + 1e-5) / 2, rel=1e-3)
    assert values[4] == pytest.approx(1e-5, rel=1e-3) and values[5] == pytest.approx(1e-5)
    assert float(warmup_cosine(1.0, 10)(0)) == pytest.approx(1.0)


def test_one_cycle_lr_and_momentum():
    schedule = OneCycle(1e-2, total_steps=100, pct_start=0.25, div_factor=25, final_div_factor=1e4)
    lr = [float(schedule(s)) for s in (0, 25, 100, 150)]
    assert lr == pytest.approx([1e-2 / 25, 1e-2, 1e-6, 1e-6], rel=1e-4)
    assert max(float(schedule(s)) for s in range(100)) == pytest.approx(1e-2)
    assert [schedule.momentum(s) for s in (0, 25, 100)] == pytest.approx([0.95, 0.85, 0.95])
    restored = keras.optimizers.schedules.deserialize(
        json.loads(json.dumps(keras.optimizers.schedules.serialize(schedule)))
    )
    assert isinstance(restored, OneCycle) and restored.get_config() == schedule.get_config()


def test_combined_schedule():
    inner = keras.optimizers.schedules.CosineDecay(1e-3, decay_steps=10)
    schedule = CombinedSchedule([5], [1e-2, inner])
    assert [float(schedule(s)) for s in (0, 4)] == pytest.approx([1e-2, 1e-2])
    assert float(schedule(5)) == pytest.approx(1e-3)  # the next schedule starts at its step 0
    assert float(schedule(10)) == pytest.approx(float(inner(5)))
    restored = keras.optimizers.schedules.deserialize(
        json.loads(json.dumps(keras.optimizers.schedules.serialize(schedule)))
    )
    assert [float(restored(s)) for s in range(12)] == pytest.approx(
        [float(schedule(s)) for s in range(12)]
    )
    with pytest.raises(ValueError, match="one more schedule"):
        CombinedSchedule([5, 6], [1e-2, 1e-3])


@pytest.mark.slow  # over 5 CPU-seconds (tests/ timings, #31)
@pytest.mark.parametrize(
    "make,attribute",
    [
        (lambda m: keras.optimizers.SGD(0.1, momentum=m), "momentum"),
        (lambda m: keras.optimizers.Adam(1e-2, beta_1=m), "beta_1"),
    ],
    ids=["sgd", "adam"],
)
def test_momentum_scheduler_drives_the_traced_step(make, attribute):
    x, y = _data(16)

    def train(optimizer, callbacks):
        model = _model(freeze_backbone=False)
        tlkit.compile_model(model, optimizer=optimizer)
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=callbacks)
        return [v.numpy() for v in model.weights], model

    # Scheduling momentum 0.5 on an optimizer created with 0.9 gives the run with 0.5 exactly.
    reference, _ = train(make(0.5), [])
    scheduled, model = train(make(0.9), [MomentumScheduler(lambda step: 0.5)])
    for a, b in zip(reference, scheduled):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    value = getattr(model.optimizer, attribute)
    assert type(value) is float and value == 0.9  # the original float is back after fit


def test_momentum_scheduler_needs_momentum():
    model = _model(optimizer="sgd")
    x, y = _data(8)
    with pytest.raises(ValueError, match="momentum > 0"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[MomentumScheduler(lambda s: 0.9)])


@pytest.mark.slow  # over ~2 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_one_cycle_composes_with_layerwise_and_unfreezing():
    x, y = _data(16)
    model = _model()
    schedule = OneCycle(1e-2, total_steps=8)
    optimizer = layerwise(keras.optimizers.SGD(schedule, momentum=0.9), model, decay=2.0)
    tlkit.compile_model(model, optimizer=optimizer)
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            o = self.model.optimizer
            seen.append(
                (
                    int(o.iterations),
                    float(o.learning_rate),
                    float(o.momentum.variable),
                    len(self.model.trainable_weights),
                )
            )

    model.fit(
        x,
        y,
        batch_size=8,
        epochs=4,
        shuffle=False,
        verbose=0,
        callbacks=[
            GradualUnfreezing({0: 0, 2: 1}, verbose=0),
            MomentumScheduler(schedule.momentum),
            Record(),
        ],
    )
    for step, lr, momentum, num_trainable in seen:
        assert lr == pytest.approx(float(schedule(step)), rel=1e-5)
        assert momentum == pytest.approx(schedule.momentum(step), rel=1e-5)
        assert num_trainable == (2 if step < 4 else 4)
