#!/usr/bin/env bash
# Device check: what to run on the first machine with an accelerator, in at most 4 minutes.
#
# With a GPU visible to TensorFlow: the GPU tests (tests/distribute/test_gpu.py: MirroredStrategy,
# mixed_float16 with loss scaling, XLA) and the accelerator rows of benchmarks/scaling.py (full
# fine-tune images/s: float32 vs mixed_float16, XLA off/on, tlkit.fine_tune vs plain Keras fit),
# written to benchmarks/results/gpu.json.
# Without one: the CPU fallback runs the same two steps in seconds (the GPU tests skip with their
# reason; the benchmark rows use a tiny CNN, few steps and mixed_bfloat16), writing
# $DEVICE_CHECK_OUT/device_check_cpu.json (default: a temporary folder; its figures are no
# measurements, 2 steps per epoch), so this script stays tested
# on CPU-only CI and no CPU figure lands in benchmarks/results/gpu.json.
#
#   scripts/device_check.sh                  # auto: GPU if TensorFlow sees one, else CPU fallback
#   DEVICE_CHECK_MODE=cpu scripts/device_check.sh
# Environment: PYTHON (default .venv/bin/python, else python3), DEVICE_CHECK_MODE (auto|gpu|cpu),
# DEVICE_CHECK_OUT (CPU fallback output folder). Exit code: non-zero when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"

mode="${DEVICE_CHECK_MODE:-auto}"
if [[ "$mode" == auto ]]; then
  gpus=$("$PYTHON" -c 'import tensorflow as tf; print(len(tf.config.list_physical_devices("GPU")))' 2>/dev/null | tail -n 1)
  if [[ "${gpus:-0}" -gt 0 ]]; then mode=gpu; else mode=cpu; fi
fi
started=$SECONDS

case "$mode" in
  gpu)
    echo "device_check: GPU mode"
    # Budgets: tests <= 90 s, benchmark rows stop starting new runs after 100 s (<= 240 s in all).
    timeout 90 "$PYTHON" -m pytest -q -m gpu tests/distribute/test_gpu.py
    timeout 140 "$PYTHON" benchmarks/scaling.py --accelerator-only benchmarks/results/gpu.json \
      --budget-s 100
    ;;
  cpu)
    out="${DEVICE_CHECK_OUT:-$(mktemp -d)}"
    echo "device_check: no GPU visible, CPU fallback (results in $out)"
    # Limits against a hang only: seconds on idle cores, but several minutes on a CPU shared
    # with other jobs (tests/distribute/test_device_check.py runs this inside the suite).
    timeout 300 "$PYTHON" -m pytest -q -p no:cacheprovider tests/distribute/test_gpu.py -rs
    timeout 300 "$PYTHON" benchmarks/scaling.py --accelerator-only "$out/device_check_cpu.json" --tiny
    ;;
  *)
    echo "device_check: DEVICE_CHECK_MODE must be auto, gpu or cpu, not '$mode'" >&2
    exit 2
    ;;
esac
echo "device_check: done in $((SECONDS - started)) s"
