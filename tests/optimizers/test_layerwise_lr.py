"""Layer-wise learning rates: the multiplier scales the update (not the gradient), with Adam,
SGD, AdamW weight decay, LR schedules, mixed precision, serialization and MirroredStrategy."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import tlkit
from tlkit.optimizers import (
    LayerwiseAdam,
    LayerwiseAdamW,
    LayerwiseSGD,
    group_lr_multipliers,
    layerwise,
    variable_lr_multipliers,
)
from tlkit.optimizers.schedules import OneCycle
from tlkit.testing import check_save_reload_parity, tiny_model


def _model(**kwargs):
    return tiny_model(compile=False, freeze_backbone=False, **kwargs)


def _data(n=16):
    rng = np.random.default_rng(0)
    return rng.uniform(0, 255, (n, 16, 16, 3)).astype("float32"), np.arange(n) % 3


def _one_step_deltas(make_optimizer, decay=None):
    model = _model()
    optimizer = make_optimizer()
    if decay is not None:
        optimizer = layerwise(optimizer, model, decay=decay)
    tlkit.compile_model(model, optimizer=optimizer)
    before = {v.path: v.numpy().copy() for v in model.trainable_weights}
    x, y = _data()
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    return {v.path: v.numpy() - before[v.path] for v in model.trainable_weights}, model


def _assert_ratio(scaled, plain, expected):
    moved = np.abs(plain) > 1e-9
    assert moved.any()
    ratio = scaled[moved] / plain[moved]
    # Deltas are differences of float32 weights: compare robustly (median, most elements).
    assert np.median(ratio) == pytest.approx(expected, rel=1e-3)
    assert np.mean(np.abs(ratio / expected - 1) < 1e-2) > 0.9


def test_group_multipliers():
    model = _model()
    assert group_lr_multipliers(model, decay=2.0) == {
        "block1": 0.125,
        "block2": 0.25,
        "block3": 0.5,
        "head": 1.0,
    }
    assert group_lr_multipliers(model, decay=2.0, multipliers={"block1": 0.01}) == {
        "block1": 0.01,
        "block2": 0.25,
        "block3": 0.5,
        "head": 1.0,
    }
    assert group_lr_multipliers(model, multipliers={"head": 2.0})["block3"] == 1.0
    per_variable = variable_lr_multipliers(model, decay=2.6)
    assert per_variable["block3_conv/kernel"] == pytest.approx(1 / 2.6)
    assert per_variable["block1_bn/gamma"] == pytest.approx(1 / 2.6**3)
    with pytest.raises(ValueError, match=r"Unknown layer group\(s\) \['block_16'\]"):
        group_lr_multipliers(model, multipliers={"block_16": 0.5})
    with pytest.raises(ValueError, match="Pass `decay="):
        group_lr_multipliers(model)


@pytest.mark.slow  # over 5 CPU-seconds (tests/ timings, #31)
@pytest.mark.parametrize(
    "make_optimizer",
    [lambda: keras.optimizers.SGD(0.05), lambda: keras.optimizers.Adam(1e-3)],
    ids=["sgd", "adam"],
)
def test_update_ratio_equals_multiplier(make_optimizer):
    plain, _ = _one_step_deltas(make_optimizer)
    scaled, model = _one_step_deltas(make_optimizer, decay=2.0)
    assert type(model.optimizer).__name__.startswith("Layerwise")
    expected = variable_lr_multipliers(model, decay=2.0)
    for path, delta in plain.items():
        _assert_ratio(scaled[path], delta, expected[path])


@pytest.mark.slow  # over ~2 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_adam_scales_the_update_not_the_gradient():
    # Adam's first step moves every weight by ~lr whatever the gradient's scale, so a scaled
    # gradient would leave group updates equal; the multiplier must show in the update itself.
    deltas, _ = _one_step_deltas(lambda: keras.optimizers.Adam(1e-3), decay=4.0)
    head = np.abs(deltas["head/out/bias"]).mean()
    block3 = np.abs(deltas["block3_conv/bias"]).mean()
    assert head == pytest.approx(1e-3, rel=1e-2)
    assert head / block3 == pytest.approx(4.0, rel=1e-2)


def _variables():
    a = keras.Variable(np.ones(3, "float32"), name="a")
    b = keras.Variable(np.ones(3, "float32"), name="b")
    return a, b


def test_adamw_decoupled_weight_decay_is_scaled():
    a, b = _variables()
    zero = [np.zeros(3, "float32")] * 2  # Adam's step is 0 for zero gradients: decay only
    optimizer = LayerwiseAdamW(learning_rate=0.1, weight_decay=0.5, lr_multipliers={a.path: 0.25})
    optimizer.apply(zero, [a, b])
    np.testing.assert_allclose(a.numpy(), 1 - 0.1 * 0.5 * 0.25, rtol=1e-6)
    np.testing.assert_allclose(b.numpy(), 1 - 0.1 * 0.5, rtol=1e-6)

    a, b = _variables()
    unscaled = LayerwiseAdamW(
        learning_rate=0.1, weight_decay=0.5, lr_multipliers={a.path: 0.25}, scale_weight_decay=False
    )
    unscaled.apply(zero, [a, b])
    np.testing.assert_allclose(a.numpy(), b.numpy())


def test_schedule_times_multiplier():
    a, b = _variables()
    schedule = OneCycle(1.0, total_steps=10)
    optimizer = LayerwiseSGD(learning_rate=schedule, lr_multipliers={a.path: 0.1})
    grads = [np.ones(3, "float32")] * 2
    for step in range(3):
        before_a, before_b = a.numpy().copy(), b.numpy().copy()
        optimizer.apply(grads, [a, b])
        lr = float(schedule(step))
        np.testing.assert_allclose(before_b - b.numpy(), lr, rtol=1e-5)
        np.testing.assert_allclose(before_a - a.numpy(), 0.1 * lr, rtol=1e-5)


@pytest.mark.slow  # over ~3 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_loss_scale_optimizer_is_rewrapped():
    plain, _ = _one_step_deltas(
        lambda: keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.05))
    )
    scaled, model = _one_step_deltas(
        lambda: keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.05)), decay=2.0
    )
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert isinstance(model.optimizer.inner_optimizer, LayerwiseSGD)
    _assert_ratio(scaled["block2_conv/kernel"], plain["block2_conv/kernel"], 0.25)


@pytest.mark.slow  # over ~3 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_serialization_and_saved_model(tmp_path):
    model = _model()
    optimizer = layerwise(
        keras.optimizers.AdamW(1e-3, weight_decay=0.01),
        model,
        multipliers={"block1": 0.1, "block3": 0.5},
    )
    assert isinstance(optimizer, LayerwiseAdamW)
    config = json.loads(json.dumps(keras.optimizers.serialize(optimizer)))
    restored = keras.optimizers.deserialize(config)
    assert type(restored) is LayerwiseAdamW
    assert restored.lr_multipliers == optimizer.lr_multipliers
    assert restored.lr_multipliers["block1_conv/kernel"] == 0.1
    assert restored.weight_decay == 0.01

    tlkit.compile_model(model, optimizer=optimizer)
    x, y = _data(8)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    loaded = check_save_reload_parity(model, x, tmp_path, rtol=1e-5)
    assert type(loaded.optimizer) is LayerwiseAdamW
    assert loaded.optimizer.lr_multipliers == optimizer.lr_multipliers


def test_errors():
    model = _model()
    built = keras.optimizers.Adam()
    built.build(model.trainable_variables)
    with pytest.raises(ValueError, match="already built"):
        layerwise(built, model, decay=2.0)
    with pytest.raises(ValueError, match="multipliers >= 0"):
        LayerwiseAdam(lr_multipliers={"x": -1})
    with pytest.raises(ValueError, match="decay` > 0"):
        layerwise("adam", model, decay=0)


# Runs in a subprocess: logical devices must be configured before TensorFlow starts.
MIRRORED = textwrap.dedent(
    """
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np

    import tlkit
    from tlkit.backbones import InputInfo, from_keras
    from tlkit.optimizers import layerwise, variable_lr_multipliers
    from tlkit.testing import tiny_cnn
    from tlkit.unfreeze import GradualUnfreezing

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (16, 16, 16, 3)).astype("float32")
    y = np.arange(16) % 3

    def run(decay):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = tlkit.build_model(
                from_keras(tiny_cnn(), input_info=InputInfo(value_range=(-1, 1))),
                num_classes=3, input_shape=(16, 16, 3), dropout=0.0, compile=False)
            optimizer = keras.optimizers.SGD(0.05)
            if decay:
                optimizer = layerwise(optimizer, model, decay=decay)
            tlkit.compile_model(model, optimizer=optimizer)
        snaps = [{v.path: v.numpy().copy() for v in model.weights}]
        keep = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: snaps.append(
            {v.path: v.numpy().copy() for v in model.weights}))
        model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0,
                  callbacks=[GradualUnfreezing({0: 0, 1: 1}, verbose=0), keep])
        return model, snaps

    model, lw = run(2.0)
    _, plain = run(None)
    changed = [sorted(p for p in a if not np.array_equal(a[p], b[p]))
               for a, b in zip(lw, lw[1:])]
    # Epoch 2 is block3's first step: its update ratio to plain SGD is its multiplier.
    k = "block3_conv/kernel"
    d_lw, d_plain = lw[2][k] - lw[1][k], plain[2][k] - plain[1][k]
    moved = np.abs(d_plain) > 1e-9
    print(json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "optimizer": type(model.optimizer).__name__,
        "changed": changed,
        "ratio": float(np.median(d_lw[moved] / d_plain[moved])),
        "multiplier": variable_lr_multipliers(model, decay=2.0)[k],
    }))
    """
)


@pytest.mark.slow
def test_layerwise_and_unfreezing_under_mirrored_strategy(tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=240, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["optimizer"] == "LayerwiseSGD"
    assert result["changed"][0] == ["head/out/bias", "head/out/kernel"]
    assert result["changed"][1] == [
        "block3_conv/bias",
        "block3_conv/kernel",
        "head/out/bias",
        "head/out/kernel",
    ]
    assert result["ratio"] == pytest.approx(result["multiplier"], rel=1e-3)
