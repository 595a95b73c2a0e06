"""AtomicBackupAndRestore: a kill in the middle of a backup leaves the previous one in force."""

import json

import keras
import numpy as np
import pytest

import tlkit
from tlkit.checkpoint import AtomicBackupAndRestore, worker_backup_dir
from tlkit.testing import tiny_cnn


def _model():
    keras.utils.set_random_seed(0)
    return tlkit.build_model(
        tlkit.backbones.from_keras(tiny_cnn()), num_classes=3, input_shape=(16, 16, 3), dropout=0.0
    )


class _Crash(Exception):
    pass


@pytest.mark.slow  # over ~3 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_crash_during_backup_keeps_previous_backup(tmp_path, image_batch, monkeypatch):
    x, y = image_batch
    model = _model()
    backup = AtomicBackupAndRestore(str(tmp_path / "b"), delete_checkpoint=False)
    model.fit(x, y, epochs=2, verbose=0, callbacks=[backup])
    meta = json.loads((tmp_path / "b" / "training_metadata.json").read_text())
    assert meta["epoch"] == 2
    weights_after_2 = [v.numpy().copy() for v in model.weights]
    files_before = sorted(p.name for p in (tmp_path / "b").iterdir())

    real_save = keras.Model.save_weights

    def dying_save(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as f:  # a truncated, half-written file, then the process dies
            f.write(b"\x89HDF\r\n")
        raise _Crash()

    monkeypatch.setattr(keras.Model, "save_weights", dying_save)
    with pytest.raises(_Crash):
        model.fit(
            x,
            y,
            epochs=4,
            verbose=0,
            callbacks=[AtomicBackupAndRestore(str(tmp_path / "b"), delete_checkpoint=False)],
        )
    monkeypatch.setattr(keras.Model, "save_weights", real_save)
    meta = json.loads((tmp_path / "b" / "training_metadata.json").read_text())
    assert meta["epoch"] == 2 and meta["weights"] in files_before  # the commit never happened

    fresh = _model()
    restore = AtomicBackupAndRestore(str(tmp_path / "b"), delete_checkpoint=False)
    history = fresh.fit(x, y, epochs=2, verbose=0, callbacks=[restore])
    assert history.epoch == []  # epochs 0-1 were already done: restored, nothing left to run
    for a, b in zip(weights_after_2, fresh.weights):
        np.testing.assert_array_equal(a, b.numpy())


def test_old_backups_are_removed_and_per_worker_dirs(tmp_path, image_batch, monkeypatch):
    x, y = image_batch
    model = _model()
    model.fit(
        x,
        y,
        epochs=3,
        verbose=0,
        callbacks=[AtomicBackupAndRestore(str(tmp_path / "b"), delete_checkpoint=False)],
    )
    h5 = [p for p in (tmp_path / "b").iterdir() if p.suffix == ".h5"]
    assert len(h5) == 1
    monkeypatch.setenv(
        "TF_CONFIG",
        json.dumps({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}),
    )
    assert worker_backup_dir("ckpt").endswith("worker-1")
    monkeypatch.delenv("TF_CONFIG")
    assert worker_backup_dir("ckpt") == "ckpt"
