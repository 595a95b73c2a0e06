"""Resume: a killed fine-tuning run resumes from its backup with the same trainable groups and
ends with the same weights as an uninterrupted run (unlike Lightning#21901, no re-freezing)."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from tlkit.testing import tiny_model
from tlkit.unfreeze import GradualUnfreezing, UnfreezeSchedule, prepare_optimizer

pytestmark = pytest.mark.slow

# Runs in a subprocess: deterministic ops are a process-wide TF setting.
SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import keras
    import numpy as np
    import tensorflow as tf

    import tlkit
    from tlkit.backbones import InputInfo, from_keras
    from tlkit.training.fine_tuning import fine_tune
    from tlkit.testing import tiny_cnn

    mode, backup, out = sys.argv[1], sys.argv[2], sys.argv[3]
    keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (32, 16, 16, 3)).astype("float32")
    y = (x[..., 0].mean(axis=(1, 2)) > 127).astype("int32") + (x.mean(axis=(1, 2, 3)) > 127)
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)  # no shuffle
    model = tlkit.build_model(from_keras(tiny_cnn(), input_info=InputInfo(value_range=(-1, 1))),
                              num_classes=3, input_shape=(16, 16, 3), dropout=0.0)
    events = {"epochs": {}, "first_batch": None}

    class Record(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if events["first_batch"] is None:
                events["first_batch"] = {
                    "epoch": self.epoch,
                    "step": int(self.model.optimizer.iterations),
                    "trainable": [v.path for v in self.model.trainable_weights],
                }

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
            events["epochs"][epoch] = [v.path for v in self.model.trainable_weights]

        def on_train_batch_end(self, batch, logs=None):
            if mode == "interrupted" and self.epoch == 2 and batch == 1:
                os._exit(3)  # preempted in the middle of epoch 3, after the 2nd unfreeze step

    # strategy="gradual": the subject is resuming the head phase and the unfreeze schedule.
    result = fine_tune(model, train, strategy="gradual", epochs=(1, 3), head_lr=1e-2, lr=1e-2,
                       unfreeze="gradual", layerwise_decay=2.0,
                       early_stopping_patience=None, checkpoint_dir=backup,
                       callbacks=[Record()], verbose=0)
    events["history_epochs"] = list(result.history.epoch)
    events["iterations"] = int(model.optimizer.iterations)
    np.savez(out + ".npz", **{v.path: v.numpy() for v in model.weights})
    with open(out + ".json", "w") as f:
        json.dump(events, f)
    """
)


def _start(script, mode, backup, out):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen(
        [sys.executable, str(script), mode, str(backup), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _finish(proc, expected_rc=0):
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == expected_rc, stderr[-3000:]


@pytest.mark.step_floor
def test_killed_fine_tune_resumes_with_same_groups_and_weights(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    # The uninterrupted and the interrupted run in parallel, then the resumed run.
    full = _start(script, "full", tmp_path / "backup_full", tmp_path / "full")
    killed = _start(script, "interrupted", tmp_path / "backup", tmp_path / "killed")
    _finish(killed, expected_rc=3)
    assert (tmp_path / "backup" / "training_metadata.json").exists()  # AtomicBackupAndRestore
    resumed = _start(script, "resumed", tmp_path / "backup", tmp_path / "resumed")
    _finish(full)
    _finish(resumed)

    full_events = json.loads((tmp_path / "full.json").read_text())
    events = json.loads((tmp_path / "resumed.json").read_text())
    # Resumed at epoch 3 (index 2), where head + top 2 groups train, not re-frozen to head-only.
    assert events["history_epochs"] == [2, 3]
    assert events["first_batch"]["epoch"] == 2
    # Optimizer state restored: 2 epochs x 16 steps (the 4 batches 4 times: gradual's floor,
    # min_steps_per_epoch null -> UNTRAINED_HEAD_MIN_STEPS).
    assert events["first_batch"]["step"] == 32
    assert events["first_batch"]["trainable"] == full_events["epochs"]["2"]
    assert any(p.startswith("block2_") for p in events["first_batch"]["trainable"])
    assert not any(p.startswith("block1_") for p in events["first_batch"]["trainable"])
    assert events["epochs"]["3"] == full_events["epochs"]["3"]
    assert events["iterations"] == full_events["iterations"] == 64  # 4 epochs x 16 steps

    full_weights = np.load(tmp_path / "full.npz")
    resumed_weights = np.load(tmp_path / "resumed.npz")
    assert sorted(full_weights.files) == sorted(resumed_weights.files)
    for name in full_weights.files:
        np.testing.assert_allclose(
            resumed_weights[name], full_weights[name], rtol=1e-6, atol=1e-7, err_msg=name
        )


def _model():
    return tiny_model()


def _data():
    rng = np.random.default_rng(1)
    return rng.uniform(0, 255, (16, 16, 16, 3)).astype("float32"), np.arange(16) % 3


def test_backup_restored_before_unfreezing_needs_prepare(tmp_path):
    x, y = _data()
    schedule = UnfreezeSchedule.by_step({0: 0, 3: 1, 6: "all"})
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "b"), delete_checkpoint=False)
    model = _model()
    model.fit(
        x,
        y,
        batch_size=8,
        epochs=2,
        shuffle=False,
        verbose=0,
        callbacks=[GradualUnfreezing(schedule, verbose=0), backup],
    )
    assert int(model.optimizer.iterations) == 4

    # BackupAndRestore first, optimizer not prepared: it builds the optimizer over the head only,
    # cannot load the saved state, and the unfreezing callback refuses to continue silently.
    fresh = _model()
    with pytest.warns(UserWarning, match="Skipping variable loading for optimizer"):
        with pytest.raises(ValueError, match="before `BackupAndRestore`"):
            fresh.fit(
                x,
                y,
                batch_size=8,
                epochs=4,
                shuffle=False,
                verbose=0,
                callbacks=[
                    keras.callbacks.BackupAndRestore(str(tmp_path / "b")),
                    GradualUnfreezing(schedule, verbose=0),
                ],
            )

    # Prepared: any callback order works; the step schedule resumes from the restored step.
    fresh = _model()
    prepare_optimizer(fresh)
    seen = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_begin=lambda b, logs: seen.append(
            (int(fresh.optimizer.iterations), len(fresh.trainable_weights))
        )
    )
    fresh.fit(
        x,
        y,
        batch_size=8,
        epochs=4,
        shuffle=False,
        verbose=0,
        callbacks=[
            keras.callbacks.BackupAndRestore(str(tmp_path / "b")),
            GradualUnfreezing(schedule, verbose=0),
            record,
        ],
    )
    # Step 4 is past the step-3 unfreeze point: block3 trains at once; step 6 -> all.
    assert seen[0] == (4, 4)
    assert seen[2] == (6, 8)
