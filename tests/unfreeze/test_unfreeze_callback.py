"""GradualUnfreezing inside one fit(): which variables change per phase, what is differentiated,
optimizer continuity, logging, initial_epoch, optimizer preparation and its errors."""

import logging

import keras
import numpy as np
import pytest

import tlkit
from tlkit.testing import check_serialization_round_trip, tiny_model
from tlkit.unfreeze import GradualUnfreezing, UnfreezeSchedule, prepare_optimizer

BLOCKS = ("block1", "block2", "block3")


def _model(optimizer="adam", **kwargs):
    model = tiny_model(compile=False, **kwargs)
    tlkit.compile_model(model, optimizer=optimizer, learning_rate=1e-2)
    return model


def _data(n=16):
    rng = np.random.default_rng(0)
    return rng.uniform(0, 255, (n, 16, 16, 3)).astype("float32"), np.arange(n) % 3


def _weights(model):
    return {v.path: np.array(v.numpy(), copy=True) for v in model.weights}


def _changed(before, after):
    return {p for p in before if not np.array_equal(before[p], after[p])}


class _Snapshots(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = {}
        self.batches = []
        self.train_begins = 0

    def on_train_begin(self, logs=None):
        self.train_begins += 1
        self.start = _weights(self.model)

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append(_weights(self.model))

    def on_epoch_end(self, epoch, logs=None):
        self.epochs[epoch] = _weights(self.model)


def _record_traces(model):
    """Wraps train_step to record, at each trace, the variables it differentiates."""
    traces = []
    original = model.train_step

    def train_step(data):
        traces.append([v.path for v in model.trainable_weights])
        return original(data)

    model.train_step = train_step
    return traces


def _group_of(path):
    return path.split("_")[0] if path.startswith("block") else "head"


@pytest.mark.slow  # over ~3 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_gradual_unfreezing_in_one_fit(caplog, capsys):
    model = _model()
    x, y = _data()
    traces = _record_traces(model)
    snaps = _Snapshots()
    optimizer = model.optimizer

    def no_recompile(*args, **kwargs):
        raise AssertionError("GradualUnfreezing must not recompile")

    model.compile = no_recompile
    callback = GradualUnfreezing(UnfreezeSchedule.gradual(head_epochs=1, first=1), verbose=1)
    with caplog.at_level(logging.INFO, logger="tlkit.unfreeze"):
        model.fit(
            x, y, batch_size=8, epochs=4, shuffle=False, verbose=0, callbacks=[callback, snaps]
        )

    # Which variables changed in each epoch: exactly the trainable groups; the others (and all
    # BatchNorm variables, policy "frozen") are bit-identical.
    expected = {
        0: {"head"},
        1: {"block3", "head"},
        2: {"block2", "block3", "head"},
        3: {"block1", "block2", "block3", "head"},
    }
    previous = snaps.start
    for epoch, groups in expected.items():
        changed = _changed(previous, snaps.epochs[epoch])
        assert {_group_of(p) for p in changed} == groups, (epoch, changed)
        assert not any("_bn/" in p for p in changed)
        assert all(("conv" in p) or p.startswith("head") for p in changed)
        previous = snaps.epochs[epoch]

    # The traced train steps differentiate only the trainable groups (one retrace per change).
    assert [sorted({_group_of(p) for p in t}) for t in traces[-4:]] == [
        sorted(g) for g in expected.values()
    ]
    assert not any(p.startswith("block") for p in traces[0])

    # Same optimizer, one fit: state and step count continue.
    assert model.optimizer is optimizer and snaps.train_begins == 1
    assert int(optimizer.iterations) == 8
    assert len(optimizer._trainable_variables) == 8  # built over every unfreezable variable
    assert [c["epoch"] for c in callback.changes] == [0, 1, 2, 3]
    assert [c["num_unfrozen"] for c in callback.changes] == [0, 1, 2, 3]
    assert callback.changes[1]["trainable_groups"] == ["block3", "head"]

    # Each change is logged and printed with the per-group parameter table.
    messages = [r.getMessage() for r in caplog.records if r.name == "tlkit.unfreeze"]
    assert len(messages) == 4 and "top 1 of 3 backbone groups" in messages[1]
    assert "trainable" in messages[1] and "block3" in messages[1]
    printed = capsys.readouterr().out
    assert printed.count("Unfreezing:") == 3 and "block1" in printed


@pytest.mark.slow  # over ~2 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_verbose_zero_prints_nothing(capsys):
    model = _model()
    x, y = _data(8)
    model.fit(
        x,
        y,
        batch_size=8,
        epochs=2,
        verbose=0,
        callbacks=[GradualUnfreezing({0: 0, 1: 1}, verbose=0)],
    )
    assert capsys.readouterr().out == ""


@pytest.mark.slow  # over ~3 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_step_schedule_unfreezes_mid_epoch():
    model = _model(optimizer="sgd")
    x, y = _data(32)
    snaps = _Snapshots()
    model.fit(
        x,
        y,
        batch_size=8,
        epochs=2,
        shuffle=False,
        verbose=0,
        callbacks=[
            GradualUnfreezing(UnfreezeSchedule.by_step({0: 0, 3: 1, 6: "all"}), verbose=0),
            snaps,
        ],
    )
    states = [snaps.start] + snaps.batches  # state after step k is states[k]
    for step in range(8):
        groups = {_group_of(p) for p in _changed(states[step], states[step + 1])}
        want = {"head"} if step < 3 else {"block3", "head"} if step < 6 else set(BLOCKS) | {"head"}
        assert groups == want, step


def test_initial_epoch_derives_the_state_from_the_epoch():
    model = _model()
    x, y = _data(8)
    seen = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_begin=lambda b, logs: seen.append(
            sorted({_group_of(v.path) for v in model.trainable_weights})
        )
    )
    model.fit(
        x,
        y,
        batch_size=8,
        epochs=3,
        initial_epoch=2,
        verbose=0,
        callbacks=[GradualUnfreezing(UnfreezeSchedule.gradual(head_epochs=1), verbose=0), record],
    )
    assert seen == [["block2", "block3", "head"]]


@pytest.mark.slow  # over ~2 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_stepped_optimizer_over_fewer_variables_is_a_clear_error():
    model = _model()
    x, y = _data(8)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # Adam now knows the head only
    with pytest.raises(ValueError, match=r"prepare_optimizer\(model\)"):
        model.fit(
            x,
            y,
            batch_size=8,
            epochs=1,
            verbose=0,
            callbacks=[GradualUnfreezing({0: 1}, verbose=0)],
        )
    old = model.optimizer
    prepare_optimizer(model, reset=True)
    assert model.optimizer is not old and type(model.optimizer) is type(old)
    before = _weights(model)
    model.fit(
        x, y, batch_size=8, epochs=1, verbose=0, callbacks=[GradualUnfreezing({0: 1}, verbose=0)]
    )
    assert {_group_of(p) for p in _changed(before, _weights(model))} == {"block3", "head"}


@pytest.mark.slow  # over ~2 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_built_but_unstepped_optimizer_is_rebuilt():
    model = _model()
    model.optimizer.build(model.trainable_variables)  # head only, no step yet
    old = model.optimizer
    x, y = _data(8)
    model.fit(
        x,
        y,
        batch_size=8,
        epochs=2,
        verbose=0,
        callbacks=[GradualUnfreezing({0: 0, 1: "all"}, verbose=0)],
    )
    assert model.optimizer is not old and int(model.optimizer.iterations) == 2
    assert len(model.optimizer._trainable_variables) == 8


@pytest.mark.slow  # over ~3 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_loss_scale_optimizer():
    model = _model(optimizer=keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(1e-2)))
    x, y = _data(8)
    optimizer = prepare_optimizer(model)
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    assert len(optimizer.inner_optimizer._trainable_variables) == 8
    snaps = _Snapshots()
    model.fit(
        x,
        y,
        batch_size=8,
        epochs=2,
        verbose=0,
        callbacks=[GradualUnfreezing({0: 0, 1: 1}, verbose=0), snaps],
    )
    assert {_group_of(p) for p in _changed(snaps.start, snaps.epochs[0])} == {"head"}
    assert {_group_of(p) for p in _changed(snaps.epochs[0], snaps.epochs[1])} == {"block3", "head"}


def test_hub_savedmodel_backbone(image_savedmodel):
    keras.utils.set_random_seed(0)
    model = tlkit.build_model(
        image_savedmodel, num_classes=3, input_shape=(16, 16, 3), dropout=0.0, learning_rate=1e-2
    )
    assert tlkit.trainability.group_names(model) == ["block_1", "block_2", "top", "head"]
    x, y = _data(8)
    snaps = _Snapshots()
    model.fit(
        x,
        y,
        batch_size=8,
        epochs=3,
        verbose=0,
        callbacks=[GradualUnfreezing(UnfreezeSchedule.gradual(head_epochs=1), verbose=0), snaps],
    )
    groups = {v.path: g.name for g in tlkit.layer_groups(model) for v in g.variables}
    phases = [snaps.start, snaps.epochs[0], snaps.epochs[1], snaps.epochs[2]]
    changed = [{groups[p] for p in _changed(a, b)} for a, b in zip(phases, phases[1:])]
    assert changed == [{"head"}, {"top", "head"}, {"block_2", "top", "head"}]
    # The SavedModel's BatchNorm statistics never move (bn_policy "frozen").
    assert not any("moving" in p for a, b in zip(phases, phases[1:]) for p in _changed(a, b))


def test_callback_config_round_trip():
    callback = GradualUnfreezing(
        UnfreezeSchedule.gradual(head_epochs=2, first=2), bn_policy="train_affine", verbose=0
    )
    restored = check_serialization_round_trip(callback)
    assert restored.schedule == callback.schedule and restored.bn_policy == "train_affine"
    with pytest.raises(ValueError, match="bn_policy"):
        GradualUnfreezing({0: 0}, bn_policy="train")



def test_step_schedule_walks_the_layer_groups_once_per_fit(monkeypatch):
    # A step schedule is checked before every batch; the model's layer groups do not change
    # during a fit, so they are walked at its start (and at each change), not per batch (#32).
    from tlkit import trainability

    original = trainability.layer_groups
    walks = []
    monkeypatch.setattr(trainability, "layer_groups", lambda m: walks.append(1) or original(m))
    model = _model(optimizer="sgd")
    x, y = _data(64)  # 8 batches
    unfreezing = GradualUnfreezing(UnfreezeSchedule.by_step({0: 0, 3: 1, 6: "all"}), verbose=0)
    seen = []  # walks so far, after GradualUnfreezing's check of each batch
    spy = keras.callbacks.LambdaCallback(on_train_batch_begin=lambda b, logs: seen.append(len(walks)))
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[unfreezing, spy])
    assert [c["step"] for c in unfreezing.changes] == [0, 3, 6]
    walked = [later - earlier for earlier, later in zip(seen, seen[1:])]  # batches 1..7
    assert [b for b, n in enumerate(walked, start=1) if n] == [3, 6], walked
