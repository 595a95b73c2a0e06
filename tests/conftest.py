"""Shared fixtures: tiny SavedModels and Keras backbones built here, no network."""

import os
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The decode-check cache of image folders (tlkit/data/_decode_cache.py) goes to a temporary
# folder, not the user's ~/.cache, during tests.
os.environ.setdefault("TLKIT_CACHE_DIR", tempfile.mkdtemp(prefix="tlkit-test-cache-"))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tlkit.testing import make_image_savedmodel, make_text_savedmodel, tiny_cnn  # noqa: E402


def _recorded_seconds():
    """Seconds per test id from tests/test_durations.json (scripts/record_test_durations.py)."""
    import json

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "test_durations.json")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)["seconds"]
    except (OSError, ValueError, KeyError):
        return {}


@pytest.hookimpl(trylast=True)  # after `-m`/`-k` deselected: weigh only the tests that run
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist, the longest test files first (by their selected tests' recorded
    seconds, a test not recorded counting as the median one), each file's tests in their
    order. `make test` hands the files out in this order (`--dist loadfile
    --no-loadscope-reorder`), so the last ones to start are short and the workers finish
    together; xdist's own order (most tests first) left the one-test files that spawn processes
    for the end. Every worker sorts the same way, as xdist requires. A plain `pytest` run keeps
    the usual order."""
    if not os.environ.get("PYTEST_XDIST_WORKER") or not items:
        return
    recorded = _recorded_seconds()
    known = sorted(recorded.values())
    default = known[len(known) // 2] if known else 1.0
    weight = {}
    for item in items:
        path = item.nodeid.split("::")[0]
        weight[path] = weight.get(path, 0.0) + recorded.get(item.nodeid, default)
    items.sort(key=lambda item: -weight[item.nodeid.split("::")[0]])


@pytest.fixture(autouse=True)
def _one_pass_per_epoch(request, monkeypatch):
    """Tests train their tiny data one pass per epoch, as they were written: the default step
    floor (`min_steps_per_epoch`, 8 steps per epoch: #36) would multiply their steps and the
    suite's time. The floor itself is tested where marked `step_floor` (tests/training/test_budget.py,
    resume, the smoke recipe, the benchmark rows) and in CLI subprocesses."""
    if request.node.get_closest_marker("step_floor"):
        return
    from tlkit.training import fine_tuning

    real = fine_tuning.step_budget

    def step_budget(config, *args, **kwargs):
        return real(config.replace(min_steps_per_epoch=1), *args, **kwargs)

    monkeypatch.setattr(fine_tuning, "step_budget", step_budget)


@pytest.fixture(autouse=True)
def _localhost_ports(request):
    """Tests marked `localhost_ports` start processes that listen on free localhost ports
    (`tlkit.testing.free_ports` picks them, then the processes bind them). One such test runs at a
    time across pytest-xdist workers (and concurrent suites on the machine): an inter-process
    file lock, so two of them cannot be handed the same port between the pick and the bind."""
    if not request.node.get_closest_marker("localhost_ports"):
        yield
        return
    import fcntl

    with open(os.path.join(tempfile.gettempdir(), "tlkit-tests-localhost-ports.lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


SMOKE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recipes",
                     "smoke.yaml")
# The shortest finished smoke run: one head epoch, one fine-tuning epoch, no TensorBoard.
SMOKE_FAST = ["--set", "phases.head_epochs=1", "--set", "phases.fine_epochs=1",
              "--set", "output.tensorboard=false"]


@pytest.fixture(scope="session")
def smoke_run_template(tmp_path_factory):
    """A finished `tlkit -q train recipes/smoke.yaml` run with `SMOKE_FAST`, trained once per
    test process (xdist worker). Tests never touch it: they take a copy (`copy_smoke_run`)."""
    from tlkit import cli

    out = str(tmp_path_factory.mktemp("smoke_template") / "run")
    assert cli.main(["-q", "train", SMOKE, "--output", out, *SMOKE_FAST]) == 0
    return out


@pytest.fixture(scope="session")
def copy_smoke_run(smoke_run_template):
    """`copy_smoke_run(dest)` copies the finished smoke run to the folder `dest` (which must not
    exist) and returns `dest` as a string: a run the test may change, without training again."""

    def copy(dest):
        shutil.copytree(smoke_run_template, dest)
        return str(dest)

    return copy


@pytest.fixture(scope="session")
def image_savedmodel(tmp_path_factory):
    return make_image_savedmodel(tmp_path_factory.mktemp("hub") / "tiny_cnn")


@pytest.fixture(scope="session")
def text_savedmodel(tmp_path_factory):
    return make_text_savedmodel(tmp_path_factory.mktemp("hub") / "tiny_text")


@pytest.fixture
def tiny_cnn_model():
    keras.utils.set_random_seed(0)
    return tiny_cnn()


@pytest.fixture
def image_batch():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (16, 16, 16, 3)).astype("float32")
    y = rng.integers(0, 3, 16)
    return x, y


@pytest.fixture
def mixed_bfloat16():
    """Keras's global dtype policy set to `mixed_bfloat16` (TensorFlow runs bfloat16 on CPU) for
    one test; `float32` is always restored so no other test sees it."""
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        yield "mixed_bfloat16"
    finally:
        keras.config.set_dtype_policy("float32")
