"""MultiWorkerMirroredStrategy with 2 worker processes on localhost: preempt one, resume the job.

The resumed job must continue from the backup with the unfreeze schedule intact (same groups
trainable at each epoch as an uninterrupted job) and end with the same weights.
"""

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from tlkit.testing import free_ports

pytestmark = [pytest.mark.slow, pytest.mark.localhost_ports]


def _start(tmp, tag, backup, die_worker=None, die_at=-1):
    ports = free_ports(2)
    procs = []
    for index in range(2):
        cmd = [
            sys.executable,
            "-m",
            "tlkit.testing.multiworker_job",
            "--ports",
            ports,
            "--index",
            str(index),
            "--backup",
            str(backup),
            "--out",
            str(tmp / f"{tag}-{index}"),
        ]
        if index == die_worker:
            cmd += ["--die-at-epoch", str(die_at)]
        procs.append(
            subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        )
    return procs


def _wait(procs, timeout=240):
    deadline = time.time() + timeout
    for p in procs:
        p.wait(timeout=max(1, deadline - time.time()))
    return [p.returncode for p in procs]


def test_preempted_worker_job_resumes_with_schedule_and_same_result(tmp_path):
    # Uninterrupted reference job.
    ref = _start(tmp_path, "ref", tmp_path / "ref_backup")
    codes = _wait(ref)
    assert codes == [0, 0], [p.stdout.read()[-2000:] for p in ref]

    # Job 2: worker 1 is preempted when epoch 3 begins (after the 2nd unfreeze step).
    backup = tmp_path / "backup"
    job = _start(tmp_path, "run", backup, die_worker=1, die_at=3)
    job[1].wait(timeout=240)
    assert job[1].returncode == 3
    time.sleep(2)
    job[0].kill()  # worker 0 is stuck in a collective with a dead peer: the job is down
    job[0].wait()
    metadata = json.loads((backup / "worker-1" / "training_metadata.json").read_text())
    assert metadata["epoch"] == 3

    # Restart the whole job: both workers restore from their backups.
    resumed = _start(tmp_path, "run", backup)
    codes = _wait(resumed)
    assert codes == [0, 0], [p.stdout.read()[-2000:] for p in resumed]

    ref_log = json.loads((tmp_path / "ref-0.json").read_text())["trainable_by_epoch"]
    run_log = json.loads((tmp_path / "run-0.json").read_text())["trainable_by_epoch"]
    assert sorted(run_log) == ["3", "4"]  # only the remaining epochs ran after the restart
    for epoch in ("3", "4"):
        assert run_log[epoch] == ref_log[epoch], epoch  # not re-frozen (Lightning#21901)
    assert ref_log["1"] == ["block3", "head"] and ref_log["2"] == ["block2", "block3", "head"]
    ref_w = np.load(tmp_path / "ref-0.npz")
    run_w = np.load(tmp_path / "run-0.npz")
    for key in ref_w.files:
        np.testing.assert_allclose(run_w[key], ref_w[key], rtol=1e-5, atol=1e-6, err_msg=key)
