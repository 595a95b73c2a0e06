"""fine_tune: head phase then unfreezing in ONE fit(), LR drop, history, early stopping, errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tlkit.optimizers import LayerwiseAdamW
from tlkit.testing import frozen_weights_unchanged, tiny_model
from tlkit.training.fine_tuning import FineTuneResult, fine_tune
from tlkit.training.plan import PhaseAwareEarlyStopping


def _model():
    return tiny_model()


def _data(n=16):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (n, 16, 16, 3)).astype("float32")
    y = (x[..., 0].mean(axis=(1, 2)) > 127).astype("int32") + (x.mean(axis=(1, 2, 3)) > 127)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(8), x, y


class _Probe(keras.callbacks.Callback):
    """Per epoch: LR at the epoch's first step, trainable groups, weights; fit() count."""

    def __init__(self):
        super().__init__()
        self.train_begins, self.lrs, self.groups, self.weights = 0, [], [], []

    def on_train_begin(self, logs=None):
        self.train_begins += 1
        self.weights.append({v.path: v.numpy().copy() for v in self.model.weights})

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            self.lrs.append(float(self.model.optimizer.learning_rate))
            self.groups.append(
                sorted(
                    {
                        v.path.split("_")[0] if v.path.startswith("block") else "head"
                        for v in self.model.trainable_weights
                    }
                )
            )

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append({v.path: v.numpy().copy() for v in self.model.weights})


@pytest.mark.step_floor
@pytest.mark.slow  # over ~3 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_gradual_fine_tune_in_one_fit():
    train, _, _ = _data()
    model = _model()
    probe = _Probe()
    result = fine_tune(
        model,
        train,
        validation=train,
        strategy="gradual",  # the subject: the head phase, then the unfreeze schedule
        epochs=(1, 2),
        head_lr=1e-2,
        lr=1e-3,
        lr_schedule="constant",
        early_stopping_patience=None,
        callbacks=[probe],
        verbose=0,
    )
    assert isinstance(result, FineTuneResult) and result.model is model
    assert probe.train_begins == 1  # one fit(): callbacks and optimizer continue
    # 3 epochs of 16 steps: gradual's step floor (16; min_steps_per_epoch null) repeats the 2
    # batches within each epoch.
    assert int(model.optimizer.iterations) == 3 * 16
    # 3 groups over 2 fine epochs: 2 then all 3.
    assert probe.groups == [
        ["head"],
        ["block2", "block3", "head"],
        ["block1", "block2", "block3", "head"],
    ]
    assert result.unfreeze_epochs == [1, 2]
    assert result.history.history["unfrozen_groups"] == [0, 2, 3]
    assert probe.lrs == pytest.approx([1e-2, 1e-3, 1e-3])
    assert set(result.history.history) >= {"loss", "val_loss", "accuracy", "val_accuracy"}
    assert len(result.history.history["val_loss"]) == 3
    # The head phase leaves the backbone bit-identical.
    head_phase = [
        p for p in probe.weights[0] if not np.array_equal(probe.weights[0][p], probe.weights[1][p])
    ]
    assert head_phase == ["head/out/kernel", "head/out/bias"]


def test_unfreeze_all_cosine_and_layerwise_adamw():
    train, x, y = _data()
    model = _model()
    probe = _Probe()
    result = fine_tune(
        model,
        (x, y),
        epochs=(1, 2),
        head_lr=1e-2,
        lr=1e-3,
        unfreeze="all",
        layerwise_decay=2.6,
        optimizer=keras.optimizers.AdamW(weight_decay=0.01),
        batch_size=8,
        callbacks=[probe],
        verbose=0,
    )
    assert isinstance(model.optimizer, LayerwiseAdamW)
    assert model.optimizer.lr_multipliers["block1_conv/kernel"] == pytest.approx(1 / 2.6**3)
    assert result.unfreeze_epochs == [1]
    assert probe.groups[1] == ["block1", "block2", "block3", "head"]
    # Cosine within the fine phase: starts at lr, then decays.
    assert probe.lrs[1] == pytest.approx(1e-3) and probe.lrs[2] < 1e-3
    assert model.loss == "sparse_categorical_crossentropy"  # the model's own loss is kept


def test_unfreeze_top_n_and_one_cycle():
    train, _, _ = _data()
    model = _model()
    probe = _Probe()
    with frozen_weights_unchanged(model, ["block1", "block2"]):
        fine_tune(
            model,
            train,
            epochs=(0, 2),
            lr=1e-3,
            unfreeze=1,
            lr_schedule="one_cycle",
            early_stopping_patience=None,
            callbacks=[probe],
            verbose=0,
        )
    assert probe.groups == [["block3", "head"], ["block3", "head"]]
    assert type(model.optimizer.beta_1) is float  # momentum scheduling cleaned up


def test_early_stopping_waits_for_fine_tuning():
    model = _model()
    stopper = PhaseAwareEarlyStopping(3, restore_head_epoch="always", monitor="val_loss",
                                      patience=1, restore_best_weights=True)
    stopper.set_model(model)
    stopper.on_train_begin()
    for epoch, loss in enumerate([1.0, 2.0, 3.0]):  # worse and worse during the head phase
        stopper.on_epoch_begin(epoch)
        stopper.on_epoch_end(epoch, {"val_loss": loss})
        assert not model.stop_training
    stopper.on_epoch_begin(3)  # patience restarts when fine-tuning begins
    stopper.on_epoch_end(3, {"val_loss": 4.0})
    # With restore_head_epoch="always" the best weights may be head-only (the default,
    # "never": tests/training/test_early_stopping.py).
    assert model.stop_training and stopper.best_epoch == 0


@pytest.mark.slow  # over ~3 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_early_stopping_restores_best_weights():
    train, _, _ = _data()
    model = _model()
    result = fine_tune(
        model,
        train,
        validation=train,
        strategy="gradual",  # the subject: early stopping over the two phases
        epochs=(1, 3),
        head_lr=1e-2,
        lr=50.0,
        lr_schedule="constant",
        early_stopping_patience=1,
        restore_best_from=0,  # the subject is restoring: choose on this small split
        verbose=0,
    )
    assert result.best_epoch is not None
    best = result.history.history["val_loss"][result.best_epoch]
    assert model.evaluate(train, verbose=0, return_dict=True)["loss"] == pytest.approx(
        best, rel=1e-4
    )


def test_errors():
    train, _, _ = _data()
    model = _model()
    with pytest.raises(ValueError, match=r"\(head_epochs, fine_epochs\)"):
        fine_tune(model, train, epochs=(1, 2, 3))
    with pytest.raises(ValueError, match="`unfreeze`"):
        fine_tune(model, train, unfreeze="half")
    with pytest.raises(ValueError, match="lr_schedule"):
        fine_tune(model, train, lr_schedule="linear")
    unknown = train.filter(lambda x, y: True)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        fine_tune(model, unknown)


def _traces_and_fit_callbacks(model):
    """Counts traces of `model.train_step` and records the callbacks `fit` is given."""
    traces, callbacks = [], []
    step, fit = model.train_step, model.fit

    def train_step(data):
        traces.append(len(model.trainable_weights))
        return step(data)

    def watched_fit(*args, **kwargs):
        callbacks.extend(kwargs.get("callbacks") or [])
        return fit(*args, **kwargs)

    model.train_step, model.fit = train_step, watched_fit
    return traces, callbacks


def test_full_fine_tune_runs_plain_fits_step_traced_once_per_phase():
    # #32: with one LR (no layer-wise decay), every group unfrozen at once and a constant LR,
    # the step `fine_tune` runs is plain Keras' for the same trainable variables: a plain Adam,
    # and no callback that waits on every batch's logs (Keras dispatches batch ends
    # asynchronously then). The train step is traced once per phase (the head, then all
    # groups): the compiled metrics are built before `fit`, where a plain `fit` builds them in
    # its first trace and TensorFlow traces that step a second time.
    train, _, _ = _data()
    plain = tiny_model(freeze_backbone=False)  # the same model, every group trainable
    plain_traces, _ = _traces_and_fit_callbacks(plain)
    plain.fit(train, epochs=1, verbose=0, shuffle=False)
    assert len(plain_traces) == 2  # Keras: the metrics' variables made in the first trace

    model = _model()
    traces, callbacks = _traces_and_fit_callbacks(model)
    fine_tune(model, train, epochs=(1, 1), unfreeze="all", lr_schedule="constant",
              early_stopping_patience=None, min_steps_per_epoch=1, verbose=0)
    assert type(model.optimizer) is keras.optimizers.Adam
    assert traces == [2, len(plain.trainable_weights)]  # head kernel + bias, then every group
    assert [v.path for v in model.trainable_weights] == [v.path for v in plain.trainable_weights]
    batch_end = keras.callbacks.Callback.on_train_batch_end
    assert callbacks and not [c for c in callbacks if type(c).on_train_batch_end is not batch_end]


def test_compiled_state_built_before_fit_from_arrays_and_datasets():
    from tlkit.training.step_build import batch_spec, build_before_fit

    _, x, y = _data()
    assert batch_spec((x, y))[0].shape.as_list() == [None, 16, 16, 3]
    assert batch_spec(keras.utils.PyDataset()) is None
    model = _model()
    assert not model._compile_metrics.built
    assert build_before_fit(model, (x, y))
    assert model._compile_metrics.built and model._compile_loss.built
    assert not build_before_fit(model, (x, y))  # nothing left to build
    traces, _ = _traces_and_fit_callbacks(model)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert len(traces) == 1
