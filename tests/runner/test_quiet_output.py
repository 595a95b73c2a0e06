"""The CLI's output: no TensorFlow C++ log lines unless `--verbose`, no ANSI codes in files."""

import os
import re
import subprocess
import sys

import pytest

from tlkit import _native_log, cli

pytestmark = pytest.mark.slow

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
SMOKE = os.path.join(ROOT, "recipes", "smoke.yaml")
ENV = {**os.environ, "PYTHONPATH": ROOT}
# What TensorFlow 2.21 prints at start-up on a CPU machine (absl and TSL formats).
NATIVE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796072947.595640    6374 port.cc:153] oneDNN custom operations are on.",
    "E0000 00:00:1796072952.066674    6374 cuda_platform.cc:52] failed call to cuInit: INTERNAL",
    "W1130 21:09:07.123456   6374 local_rendezvous.cc:404] Local rendezvous is aborting",
    "2025-09-17 14:44:05.157831: I external/local_xla/xla/tsl/cuda/cudart_stub.cc:32] Could not",
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow "
    "with the appropriate compiler flags.",
]
NATIVE_LINE = re.compile(
    r"^([IWE]\d{4} \d\d:\d\d|\d{4}-\d\d-\d\d .*: [IWE] |INFO: |To enable)|absl::InitializeLog")


def test_native_log_lines_are_recognised():
    for line in NATIVE:
        assert _native_log.is_native_log_line(line.encode()), line
    for line in ("Epoch 1/5", "tlkit: error: recipe not found", "I have 3 classes",
                 "F0000 00:00:1796072952.066674 6374 x.cc:1] fatal", "WARNING: low disk"):
        assert not _native_log.is_native_log_line(line.encode()), line


def test_filtered_stderr_drops_native_lines_and_keeps_the_rest():
    code = (
        "import os, sys\n"
        "from tlkit._native_log import filtered_stderr\n"
        f"native = {NATIVE!r}\n"
        "with filtered_stderr():\n"
        "    os.write(2, (native[0] + '\\n' + native[1] + '\\nkept 1\\n').encode())\n"
        "    print('kept 2', file=sys.stderr)\n"
        "    os.write(2, (native[2] + '\\n' + native[3] + '\\n').encode())\n"
        "    os.write(2, b'Input partial')\n"
        "    os.write(2, (' line\\n' + native[4] + '\\n').encode())\n"
        "    sys.stderr.write('no newline at the end')\n"
        "print('after', file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV,
                         check=True, timeout=60)
    assert out.stderr == "kept 1\nkept 2\nInput partial line\nno newline at the endafter\n"


def test_verbose_leaves_stderr_alone():
    assert cli._native_log_filter(verbose=True).__class__.__name__ == "nullcontext"


def test_train_output_in_a_log_file_is_plain_text(tmp_path):
    """`tlkit train ... > train.log 2>&1`: no TensorFlow start-up lines, no ANSI codes."""
    log = tmp_path / "train.log"
    with open(log, "w") as f:
        subprocess.run(
            [sys.executable, "-m", "tlkit.cli", "train", SMOKE, "--output", str(tmp_path / "run"),
             "--set", "phases.head_epochs=1", "--set", "phases.fine_epochs=1",
             "--set", "output.tensorboard=false"],
            stdout=f, stderr=subprocess.STDOUT, env=ENV, check=True, timeout=300,
        )
    text = log.read_text()
    assert "test accuracy" in text and "data audit:" in text, text
    assert "\x1b[" not in text, text
    assert not [line for line in text.splitlines() if NATIVE_LINE.search(line)], text
    assert "trainable parameters per group" not in text  # DEBUG: not on the console...
    run_log = (tmp_path / "run" / "train.log").read_text()
    assert "trainable parameters per group" in run_log  # ...but in the run's own log file
    assert "INFO tlkit: data audit:" in run_log and "\x1b[" not in run_log
