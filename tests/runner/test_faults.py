"""Fault injection (#30): a full disk, processes killed mid-run, concurrent writers.

Kept small for CI: the `smoke` recipe (tiny backbone, digits) with two epochs, one subprocess
(`tlkit train`, killed with SIGKILL) and a few short Python processes without TensorFlow.
A full disk is simulated by a write wrapper raising `ENOSPC` (no tmpfs mount needed).
"""

import contextlib
import errno
import fcntl
import glob
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile

import pytest

import tlkit._io
from tlkit import cli
from tlkit.runner.run_lock import RunLockedError, lock_path, run_lock

pytestmark = pytest.mark.slow

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
SMOKE = os.path.join(ROOT, "recipes", "smoke.yaml")
FAST = ["--set", "phases.head_epochs=1", "--set", "phases.fine_epochs=1",
        "--set", "output.tensorboard=false"]


class _FullDisk:
    """A file object whose writes fail as on a full disk."""

    def __init__(self, real):
        self.real = real

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.real.close()


def _temporaries(folder):
    return [p for p in glob.glob(os.path.join(folder, "**", ".*.tmp*"), recursive=True)]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A smoke run whose first attempt hit a full disk writing metrics.json (then finished)."""
    run = str(tmp_path_factory.mktemp("faults") / "run")
    real_open = open

    def full_disk_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if "metrics.json" in os.path.basename(str(file)) and "x" in mode:
            return _FullDisk(f)
        return f

    tlkit._io.open = full_disk_open
    try:
        with contextlib.redirect_stderr(io.StringIO()) as err:
            code = cli.main(["-q", "train", SMOKE, "--output", run, *FAST])
    finally:
        del tlkit._io.open
    return {"run": run, "code": code, "err": err.getvalue()}


def test_a_full_disk_is_one_line_naming_the_file_and_the_run_resumes(finished_run, capfd):
    # (the first attempt ran in the fixture; its stderr was captured there)
    run = finished_run["run"]
    assert finished_run["code"] == 1
    lines = finished_run["err"].strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in finished_run["err"], finished_run["err"]
    assert lines[0].startswith(f"tlkit: error: could not write {run}/metrics.json: no space "
                               "left on device (about 0.0")
    state = json.load(open(os.path.join(run, "state.json")))
    assert not state["complete"] and state["stages_done"] == ["head", "fine"]
    assert zipfile.is_zipfile(os.path.join(run, "model.keras"))  # written before the failure
    assert not os.path.exists(os.path.join(run, "metrics.json"))
    assert _temporaries(run) == []
    # Meanwhile the last stage's weights file got truncated: that stage trains again instead
    # of an HDF5 traceback. The same command again, disk freed, finishes the run.
    weights = os.path.join(run, "checkpoints", "fine.weights.h5")
    with open(weights, "r+b") as f:
        f.truncate(100)
    assert cli.main(["train", SMOKE, "--output", run, *FAST]) == 0
    err = capfd.readouterr().err
    assert f"{weights} is damaged" in err and "stage fine runs again" in err
    assert os.path.getsize(weights) > 100
    assert json.load(open(os.path.join(run, "state.json")))["complete"]
    assert "accuracy" in json.load(open(os.path.join(run, "metrics.json")))


def test_disk_full_error_names_file_and_space(tmp_path, monkeypatch, capsys):
    real_open = open
    monkeypatch.setattr(tlkit._io, "open", lambda f, mode="r", *a, **k: _FullDisk(
        real_open(f, mode, *a, **k)), raising=False)
    target = tmp_path / "metrics.json"
    target.write_text('{"accuracy": 0.5}\n')
    with pytest.raises(tlkit._io.DiskFullError) as info:
        tlkit._io.atomic_write_json(target, {"accuracy": 0.9, "pad": "x" * 3000})
    message = str(info.value)
    assert f"could not write {target}: no space left on device (about 0.0 MB needed" in message
    assert "MB free in" in message and "run the command again" in message
    assert json.loads(target.read_text()) == {"accuracy": 0.5}  # the previous version stays
    assert os.listdir(tmp_path) == ["metrics.json"]  # no temporary left


def _holder(path, seconds):
    """A Python process (no TensorFlow) holding `path`'s flock with a record naming itself."""
    code = (
        "import fcntl, json, os, sys, time\n"
        f"fd = os.open({path!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.write(fd, json.dumps({'pid': os.getpid(), 'verb': 'export', "
        "'since': time.time()}).encode())\n"
        "print('locked', flush=True)\n"
        f"time.sleep({seconds})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_live_holder_is_named_and_a_dead_ones_lock_is_taken_over(tmp_path):
    run = str(tmp_path / "run")
    proc = _holder(lock_path(run), 60)
    try:
        with pytest.raises(RunLockedError) as info, run_lock(run, "train"):
            pass
        assert f"{run} is in use by another tlkit process (pid {proc.pid}, tlkit export" in str(
            info.value)
        assert f"stop it (kill {proc.pid})" in str(info.value)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # The holder died (SIGKILL: no clean-up); its lock file and record stay behind, stale.
    assert str(proc.pid) in open(lock_path(run)).read()
    with run_lock(run, "train"):
        record = json.load(open(lock_path(run)))
        assert record["pid"] == os.getpid() and record["verb"] == "train"
        with run_lock(run, "export"):  # re-entrant within one process
            pass
    assert not os.path.exists(lock_path(run))  # removed on release


def test_lock_is_exclusive_between_two_openers(tmp_path):
    run = str(tmp_path / "run")
    with run_lock(run, "train"):
        fd = os.open(lock_path(run), os.O_RDWR)
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)


def test_concurrent_train_is_refused_and_a_terminated_run_resumes(tmp_path, capsys):
    """`tlkit train` in a subprocess: a second `train` on its folder gets one line naming the
    process; SIGTERM mid-training exits 143 after clean-up (lock released, no temporaries),
    leaving a resumable run (resuming is tested above; SIGKILL of a lock holder too)."""
    # 50 fine epochs: still training when SIGTERM comes however fast the machine (it ends the
    # run early, so they cost nothing); with 2 an idle machine could finish first.
    run = str(tmp_path / "run")
    argv = ["train", SMOKE, "--output", run, "--set", "phases.head_epochs=1", "--set",
            "phases.fine_epochs=50", "--set", "output.tensorboard=false"]
    proc = subprocess.Popen([sys.executable, "-m", "tlkit.cli", "-q", *argv],
                            env={**os.environ, "PYTHONPATH": ROOT},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    state_path = os.path.join(run, "state.json")
    try:
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None:
            try:
                done = json.load(open(state_path)).get("stages_done", [])
            except (OSError, ValueError):
                done = []
            if "head" in done:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read()
        assert cli.main(["-q", *argv]) == 1
        line = capsys.readouterr().err.strip()
        assert line.startswith("tlkit: error: ") and "\n" not in line
        assert f"in use by another tlkit process (pid {proc.pid}, tlkit train" in line
        assert proc.poll() is None, "the first run must still be training when it stops"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    err = proc.stderr.read()
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == ("tlkit: terminated (SIGTERM); run the same command "
                                            "again to resume")
    assert "Traceback" not in err
    state = json.load(open(state_path))
    assert not state["complete"] and "fine" not in state["stages_done"]
    assert not os.path.exists(lock_path(run)) and _temporaries(run) == []
    assert "failed" not in state  # it had a checkpoint: resumable (resuming: test above)


# -- damaged records and caches of a finished run ---------------------------------------------
@pytest.fixture
def run_copy(finished_run, tmp_path):
    copy = str(tmp_path / "run")
    shutil.copytree(finished_run["run"], copy)
    return copy


def test_damaged_caches_are_rebuilt(run_copy, capsys):
    """A corrupt predictions.npz (report) and metrics.json (evaluate) are rewritten with a
    warning naming the file, not a traceback."""
    with open(os.path.join(run_copy, "reports", "predictions.npz"), "wb") as f:
        f.write(b"\x93NUMPY pickled junk")
    assert cli.main(["report", run_copy]) == 0
    err = capsys.readouterr().err
    assert f"{run_copy}/reports/predictions.npz is damaged" in err and "predicting again" in err
    with zipfile.ZipFile(os.path.join(run_copy, "reports", "predictions.npz")) as z:
        assert "probs.npy" in z.namelist()
    with open(os.path.join(run_copy, "metrics.json"), "w") as f:
        f.write("[1, 2]")
    assert cli.main(["-q", "evaluate", run_copy]) == 0
    err = capsys.readouterr().err
    assert f"{run_copy}/metrics.json: damaged record: expected a JSON object" in err
    assert "accuracy" in json.load(open(os.path.join(run_copy, "metrics.json")))


def test_force_replaces_only_tlkit_runs(tmp_path, finished_run, capsys):
    """Marker-less folders are never replaced; a run from before the marker (recipe.yaml with
    a state.json holding stages_done) is recognised as a run."""
    from tlkit.runner.rundir import RUN_MARKER, RunDir

    decoy = tmp_path / "decoy"
    decoy.mkdir()
    (decoy / "precious.txt").write_text("keep")
    (decoy / "recipe.yaml").write_text("my own notes")  # a user's file of that name
    assert not RunDir(decoy).is_run
    assert cli.main(["-q", "train", SMOKE, "--output", str(decoy), "--force"]) == 1
    assert "not a tlkit run folder" in capsys.readouterr().err
    assert sorted(os.listdir(decoy)) == ["precious.txt", "recipe.yaml"]
    old = tmp_path / "old_run"
    shutil.copytree(finished_run["run"], old)
    os.remove(old / RUN_MARKER)
    assert RunDir(old).is_run
    (old / "state.json").write_text("[]")
    assert not RunDir(old).is_run  # damaged: not recognisable, so not replaced


def test_temporaries_of_dead_processes_are_removed(tmp_path):
    """An export killed part-way leaves `.savedmodel.<pid>.<id>.tmp`; the next export into the
    folder removes it (`export_model` calls this), and keeps a live process's."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        stale = tmp_path / f".savedmodel.{dead.pid}.1a2b3c4d.tmp"
        (stale / "variables").mkdir(parents=True)
        (tmp_path / f".model.tflite.{dead.pid}.0badf00d.tmp").write_bytes(b"half")
        kept = [tmp_path / f".savedmodel.{live.pid}.2b3c4d5e.tmp",
                tmp_path / f".export.json.{os.getpid()}.3c4d5e6f.tmp", tmp_path / "model.keras"]
        for path in kept:
            path.write_text("x")
        removed = tlkit._io.remove_stale_temporaries(tmp_path)
        assert sorted(removed) == sorted([str(stale), str(
            tmp_path / f".model.tflite.{dead.pid}.0badf00d.tmp")])
        assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in kept)
    finally:
        live.kill()
        live.wait()
