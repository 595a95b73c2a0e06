"""Helpers shared by the benchmark scripts: timing, JSON output, matmul peak."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def write_json(name: str, payload: dict) -> str:
    """Writes `payload` (plus machine info) to benchmarks/results/<name>.json atomically."""
    return write_json_to(os.path.join(RESULTS, f"{name}.json"), payload)


def write_json_to(path: str, payload: dict) -> str:
    """Writes `payload` (plus machine info) to `path` atomically."""
    import tensorflow as tf

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    payload = dict(payload)
    payload.setdefault("command", " ".join([os.path.relpath(sys.argv[0]), *sys.argv[1:]]))
    payload.setdefault("commit", git_commit())
    payload["machine"] = {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "gpus": [d.name for d in tf.config.list_logical_devices("GPU")],
        "tensorflow": tf.__version__,
    }
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2)
    os.replace(tmp, path)
    return path


def git_commit() -> str | None:
    """The checkout's commit (`+dirty` when tracked files differ from it), or `None`."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def bootstrap_ci(values, statistic, confidence=0.95, resamples=10_000) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic(values)` (`scipy.stats.bootstrap`)."""
    import numpy as np
    from scipy import stats

    values = np.asarray(values, dtype=float)
    if len(values) < 2 or np.all(values == values[0]):
        return float(values.min()), float(values.max())
    result = stats.bootstrap((values,), statistic, confidence_level=confidence,
                             n_resamples=resamples, method="percentile", random_state=0)
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def rss_mb() -> float:
    """This process's resident memory now (MB), from /proc/self/status."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def synthetic_images(n: int, size: int, batch: int, *, cache_prefetch: bool = True):
    """`n` random `size` x `size` RGB images in [0, 255] with 10 random labels, seeded, as a
    batched `tf.data.Dataset` (cached and prefetched unless `cache_prefetch` is False): the
    speed benchmarks' data."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (n, size, size, 3)).astype("float32")
    y = rng.integers(0, 10, n)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)
    return ds.cache().prefetch(tf.data.AUTOTUNE) if cache_prefetch else ds


def matmul_peak_gflops(n: int = 2048, repeats: int = 10) -> float:
    """Achieved GFLOP/s of a large float32 matmul: the machine's practical peak, same run."""
    import tensorflow as tf

    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))

    @tf.function
    def mm(a, b):
        return tf.matmul(a, b)

    mm(a, b).numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        out = mm(a, b)
    out.numpy()
    seconds = time.perf_counter() - start
    return 2.0 * n**3 * repeats / seconds / 1e9


def forward_flops_per_example(model, input_shape) -> float:
    """FLOPs of one forward pass of `model` on one example, from TF's graph profiler."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )
    from tensorflow.python.profiler import model_analyzer, option_builder

    spec = tf.TensorSpec((1, *input_shape), tf.float32)
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    frozen = convert_variables_to_constants_v2(concrete)
    options = option_builder.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    info = model_analyzer.profile(frozen.graph, options=options)
    return float(info.total_float_ops)




# -- fresh processes taking turns, epoch by epoch ------------------------------------------------
# Written by hand: timing A/B arms in separate processes one after another lets the machine's
# background load fall on one arm and not the other; no benchmark library here interleaves
# training processes at the epoch level.
def wait_turn(payload) -> None:
    """Child side of `take_turns`: prints `@wait <JSON payload>` and blocks until the parent
    says go. Call it before every epoch and after the last (a Keras callback)."""
    print("@wait", json.dumps(payload), flush=True)
    sys.stdin.readline()


def take_turns(commands: dict, epochs: int) -> dict:
    """Runs one fresh process per command side by side, never two at once: all start and
    build, then epoch k of every process runs in turn (the order rotates each epoch), then
    each finishes alone.

    Args:
        commands: name -> `(argv, env)`; each process calls `wait_turn` before each of its
            `epochs` epochs and after the last, then prints its result as one JSON line.
        epochs: the epochs each process trains.

    Returns:
        name -> `{"epochs": [the payload each process gave after each epoch], "result": its
        JSON result}`.
    """
    import tempfile

    names, procs, errors = list(commands), {}, {}

    def expect(name):
        for line in procs[name].stdout:
            if line.startswith("@wait "):
                return json.loads(line[len("@wait "):])
            if line.startswith("{"):
                return json.loads(line)
        procs[name].wait()
        errors[name].seek(0)
        raise RuntimeError(f"{name} failed:\n{errors[name].read()[-3000:]}")

    def go(name):
        procs[name].stdin.write("go\n")
        procs[name].stdin.flush()
        return expect(name)

    out = {name: {"epochs": []} for name in names}
    try:
        for name, (argv, env) in commands.items():
            errors[name] = tempfile.TemporaryFile("w+")
            procs[name] = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                           stderr=errors[name], text=True, env=env)
        for name in names:  # built, waiting before the first epoch
            expect(name)
        for epoch in range(epochs):
            shift = epoch % len(names)
            for name in names[shift:] + names[:shift]:
                out[name]["epochs"].append(go(name))
        for name in names:  # what follows training, one process at a time
            out[name]["result"] = go(name)
            procs[name].wait()
        return out
    finally:
        for name, proc in procs.items():
            if proc.poll() is None:
                proc.kill()
            errors[name].close()
