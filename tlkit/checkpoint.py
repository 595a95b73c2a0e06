"""Preemption-safe backups: Keras's `BackupAndRestore`, made atomic and multi-worker aware.

Keras 3's `BackupAndRestore` overwrites `latest.weights.h5` in place and then writes the epoch to
`training_metadata.json`; a process killed between (or during) the two writes leaves weights and
epoch out of step, or a truncated HDF5 file (keras#19179, #20712). Here each backup goes to a new
weights file, and only then does an atomic rename of the metadata file (which names that weights
file) commit it. A kill at any moment leaves the previous complete backup in force.

Everything else — when to save, restoring `initial_epoch`, optimizer state — is Keras's own.
The unfreeze schedule needs no extra state: `GradualUnfreezing` derives the trainable groups from
the restored epoch / optimizer step, so a resumed run continues with the same groups trainable.
"""

from __future__ import annotations

import json
import os
import uuid

import keras
import tensorflow as tf

_METADATA = "training_metadata.json"


def worker_backup_dir(backup_dir: str) -> str:
    """Per-worker subfolder under multi-worker training (`TF_CONFIG`), else `backup_dir` itself.

    Synchronous workers hold identical state, so each keeps its own copy: no two processes ever
    write the same file, and a worker restarted on another machine only needs its own folder.
    """
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return backup_dir
    task = json.loads(raw).get("task", {})
    if not task:
        return backup_dir
    return os.path.join(backup_dir, f"{task.get('type', 'worker')}-{task.get('index', 0)}")


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` with atomic commits and per-worker folders.

    Args: as `keras.callbacks.BackupAndRestore` (`backup_dir`, `save_freq`, `delete_checkpoint`).
        `backup_dir` may be local or `gs://`.

    Example:
    ```python
    model.fit(ds, epochs=10, callbacks=[tlkit.callbacks.GradualUnfreezing(schedule),
                                        AtomicBackupAndRestore("run/backup")])
    ```
    """

    def __init__(self, backup_dir, save_freq="epoch", delete_checkpoint=True):
        super().__init__(
            worker_backup_dir(backup_dir), save_freq=save_freq, delete_checkpoint=delete_checkpoint
        )
        self._metadata_path = os.path.join(self.backup_dir, _METADATA)

    def on_train_begin(self, logs=None):
        self._load_model()

    def _read_metadata(self):
        if not tf.io.gfile.exists(self._metadata_path):
            return None
        with tf.io.gfile.GFile(self._metadata_path, "r") as f:
            return json.loads(f.read())

    def _load_model(self):
        if not self.model.built:
            raise ValueError(
                "AtomicBackupAndRestore needs a built model before fit(); call it on a batch first."
            )
        metadata = self._read_metadata()
        if metadata is None:
            return
        weights = os.path.join(self.backup_dir, metadata["weights"])
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(weights)
        self.model._initial_epoch = metadata["epoch"]
        self._current_epoch = metadata["epoch"]

    def _save_model(self):
        tf.io.gfile.makedirs(self.backup_dir)
        previous = self._read_metadata()
        name = f"backup-{self._current_epoch:05d}-{uuid.uuid4().hex[:8]}.weights.h5"
        self.model.save_weights(os.path.join(self.backup_dir, name), overwrite=True)
        metadata = {"epoch": self._current_epoch, "batch": self._last_batch_seen, "weights": name}
        tmp = f"{self._metadata_path}.{uuid.uuid4().hex[:8]}.tmp"
        with tf.io.gfile.GFile(tmp, "w") as f:
            f.write(json.dumps(metadata))
        tf.io.gfile.rename(tmp, self._metadata_path, overwrite=True)  # the commit point
        if previous and previous.get("weights") != name:
            old = os.path.join(self.backup_dir, previous["weights"])
            if tf.io.gfile.exists(old):
                tf.io.gfile.remove(old)

    def on_train_end(self, logs=None):
        if self.delete_checkpoint and tf.io.gfile.exists(self.backup_dir):
            tf.io.gfile.rmtree(self.backup_dir)
