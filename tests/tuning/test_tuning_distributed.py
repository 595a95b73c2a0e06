"""tlkit.tuning under tf.distribute strategies and keras-tuner's parallel (chief/worker) mode."""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tlkit.testing.tuning_worker import RESULT_PREFIX, build_tiny, tiny_data
from tlkit.tuning import tune

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


_build = build_tiny  # one tiny builder for the tests and the worker script


def _datasets():
    x, y = tiny_data()
    train = tf.data.Dataset.from_tensor_slices((x[:32], y[:32])).batch(16)
    val = tf.data.Dataset.from_tensor_slices((x[32:], y[32:])).batch(16)
    return train, val


def test_trials_run_under_a_one_device_strategy(tmp_path):
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    train, val = _datasets()
    result = tune(
        _build,
        train,
        val,
        {"lr": {"min": 1e-4, "max": 1e-2, "sampling": "log"}},
        tuner="random",
        max_trials=2,
        max_epochs=2,
        directory=tmp_path,
        project_name="one",
        distribution_strategy=strategy,
        load_best_model=True,
    )
    assert [r["status"] for r in result.trials] == ["COMPLETED"] * 2
    assert result.best_model.distribute_strategy is strategy
    x, y = tiny_data()
    loss, accuracy = result.best_model.evaluate(x[32:], y[32:], verbose=0)
    assert np.isfinite(loss) and 0.0 <= accuracy <= 1.0


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args, env_extra, log_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO, **env_extra}
    log = open(log_path, "w")  # noqa: SIM115 - closed by the caller through proc.log
    proc = subprocess.Popen(
        [sys.executable, "-m", "tlkit.testing.tuning_worker", *args],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    proc.log = log
    proc.log_path = log_path
    return proc


def _result(proc):
    proc.log.close()
    with open(proc.log_path, encoding="utf-8") as f:
        text = f.read()
    lines = [line for line in text.splitlines() if line.startswith(RESULT_PREFIX)]
    assert lines, f"no result from {proc.args}; output:\n{text[-3000:]}"
    return json.loads(lines[-1][len(RESULT_PREFIX) :])


def _wait_all(procs, timeout):
    deadline = time.monotonic() + timeout
    for proc in procs:
        remaining = max(1.0, deadline - time.monotonic())
        rc = proc.wait(timeout=remaining)
        if rc != 0:
            proc.log.close()
            with open(proc.log_path, encoding="utf-8") as f:
                raise AssertionError(f"{proc.args} exited with {rc}:\n{f.read()[-3000:]}")


@pytest.mark.localhost_ports  # the chief listens on a free port (the one-device test: none)
def test_chief_and_two_mirrored_workers_run_each_trial_exactly_once(tmp_path):
    """keras-tuner's parallel mode: one chief (the oracle) and two workers, each worker running
    its trials under MirroredStrategy over 2 logical CPUs (a one-machine, several-device worker,
    the kind of strategy keras-tuner supports per worker)."""
    port = _free_port()
    common = [
        "--directory",
        str(tmp_path),
        "--project-name",
        "parallel",
        "--max-trials",
        "4",
        "--max-epochs",
        "1",
    ]
    oracle = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(port)}
    procs = []
    try:
        procs.append(
            _start(common, {**oracle, "KERASTUNER_TUNER_ID": "chief"}, tmp_path / "chief.log")
        )
        for i in range(2):
            procs.append(
                _start(
                    [*common, "--mirrored", "2"],
                    {**oracle, "KERASTUNER_TUNER_ID": f"tuner{i}"},
                    tmp_path / f"worker{i}.log",
                )
            )
        _wait_all(procs, timeout=240)
        chief, *workers = [_result(p) for p in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
            if not proc.log.closed:
                proc.log.close()

    assert chief["role"] == "chief" and chief["trials_run"] == []
    assert [(w["role"], w["replicas"]) for w in workers] == [("worker", 2), ("worker", 2)]
    ran = [t for w in workers for t in w["trials_run"]]
    assert sorted(ran) == ["0", "1", "2", "3"]  # each of the 4 trials exactly once
    assert sorted(t["trial_id"] for t in chief["trials"]) == ["0", "1", "2", "3"]
    assert {t["status"] for t in chief["trials"]} == {"COMPLETED"}
    assert chief["best_trial_id"] in ran
    project = tmp_path / "parallel"
    assert sorted(p.name for p in project.glob("trial_*")) == [f"trial_{i}" for i in range(4)]
    assert (project / "trials.csv").read_text().count("\n") == 1 + 4
    assert (project / "best_recipe.yaml").exists()
