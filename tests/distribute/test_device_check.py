"""`scripts/device_check.sh`: its CPU fallback runs the GPU tests (skipped) and the accelerator
benchmark rows on a tiny model, and writes them outside `benchmarks/results/`."""

import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "scripts", "device_check.sh")


def _run(tmp_path, **env):
    env = dict(os.environ, PYTHON=sys.executable, DEVICE_CHECK_OUT=str(tmp_path), **env)
    # Above the script's own limits (the GPU probe, then 300 s per CPU-fallback step): on a
    # loaded machine a step can take minutes (a failure shows the output tail below).
    return subprocess.run(["bash", SCRIPT], env=env, capture_output=True, text=True, timeout=720)


@pytest.mark.slow
@pytest.mark.skipif(bool(tf.config.list_physical_devices("GPU")),
                    reason="a GPU is visible: the script would run its GPU mode")
def test_cpu_fallback_runs_every_row(tmp_path):
    gpu_json = os.path.join(ROOT, "benchmarks", "results", "gpu.json")
    before = os.path.getmtime(gpu_json) if os.path.exists(gpu_json) else None
    proc = _run(tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "CPU fallback" in proc.stdout
    assert "no GPU visible to TensorFlow" in proc.stdout  # the GPU tests ran and skipped
    result = json.load(open(tmp_path / "device_check_cpu.json"))["accelerator"]
    assert result["device"] == "cpu" and result["mixed_policy"] == "mixed_bfloat16"
    assert not result["skipped"]
    rows = {r["name"]: r for r in result["rows"]}
    assert set(rows) == {
        "tlkit_float32", "tlkit_float32_xla", "tlkit_mixed_bfloat16", "tlkit_mixed_bfloat16_xla",
        "keras_float32", "keras_mixed_bfloat16",
    }
    for row in rows.values():  # each row ran what it says
        assert row["img_per_s"] > 0
        assert row["xla"] == row["jit_compile"]
        assert row["backbone_compute_dtype"] == ("float32" if row["policy"] == "float32" else "bfloat16")
    assert all(v is not None and v > 0 for v in result["ratios"].values())
    after = os.path.getmtime(gpu_json) if os.path.exists(gpu_json) else None
    assert after == before  # no CPU figure lands in the GPU results file


def test_unknown_mode_is_one_clear_error(tmp_path):
    proc = _run(tmp_path, DEVICE_CHECK_MODE="tpu")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "device_check: DEVICE_CHECK_MODE must be auto, gpu or cpu, not 'tpu'"
