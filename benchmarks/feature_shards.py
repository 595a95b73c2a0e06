"""Head phase on a sharded feature cache: peak memory at N = 10k vs 100k (streamed vs in memory).

Synthetic 1280-d features (EfficientNet's pooled size) are written once per N as shards
(`tlkit.data.extract_feature_shards`, 4096 examples each). Then, each in a fresh subprocess so
its peak memory (`ru_maxrss`) is its own: one epoch of a Dense softmax head (batch 256) on the
shards streamed through tf.data (`ShardedFeatures.dataset`), and the same from one in-memory
array (`ShardedFeatures.arrays`). Streaming should leave the peak flat in N; in memory it grows
by N x 5 KB.

    .venv/bin/python benchmarks/feature_shards.py            # N = 10k, 100k (~1 GB of disk)
    .venv/bin/python benchmarks/feature_shards.py --quick    # N = 2k, 20k

The machine may be shared: the JSON records the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import rss_mb, write_json  # noqa: E402

DIM = 1280


def _dataset(n):
    import tensorflow as tf

    return tf.data.Dataset.range(n).map(
        lambda i: (tf.random.stateless_normal([DIM], seed=tf.stack([i, 0])), i % 10)
    )


def _shards(n, folder):
    import tlkit

    return tlkit.data.extract_feature_shards(
        lambda x: x, _dataset(n), folder, describe={"synthetic": DIM}, batch_size=1024
    )


def child(n: int, folder: str, mode: str) -> dict:
    import keras

    shards = _shards(n, folder)  # reused: the cache was built by the parent's first child
    keras.utils.set_random_seed(0)
    head = keras.Sequential([keras.Input((DIM,)), keras.layers.Dense(10, activation="softmax")])
    head.compile("adam", "sparse_categorical_crossentropy")
    before = rss_mb()
    start = time.perf_counter()
    if mode == "stream":
        ds = shards.dataset(shuffle=True, seed=0).batch(256)
        head.fit(ds, epochs=1, verbose=0)
    else:
        x, y = shards.arrays()
        head.fit(x, y, batch_size=256, epochs=1, verbose=0, shuffle=True)
    return {
        "n": n,
        "mode": mode,
        "seconds": time.perf_counter() - start,
        "cache_mb": shards.nbytes / 2**20,
        "rss_before_head_mb": before,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _run(n, folder, mode) -> dict:
    cmd = [sys.executable, __file__, "--child", str(n), "--folder", folder, "--mode", mode]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    row = json.loads(done.stdout.strip().splitlines()[-1])
    row["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 2k, 20k")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.folder, args.mode)))
        return
    sizes = [2_000, 20_000] if args.quick else [10_000, 100_000]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            folder = os.path.join(tmp, f"n{n}")
            start = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); "
                    f"import feature_shards as b; b._shards({n}, {folder!r})",
                ],
                check=True,
                capture_output=True,
            )
            build_s = time.perf_counter() - start
            for mode in ("stream", "memory"):
                row = _run(n, folder, mode)
                row["build_seconds"] = build_s
                rows.append(row)
                print(
                    f"N={n:>7}  {mode:<6}  head epoch {row['seconds']:6.1f} s  peak "
                    f"{row['peak_rss_mb']:6.0f} MB (before the head phase {row['rss_before_head_mb']:5.0f}"
                    f" MB; cache {row['cache_mb']:5.0f} MB)",
                    flush=True,
                )
    path = write_json(
        "feature_shards_quick" if args.quick else "feature_shards",
        {
            "command": "benchmarks/feature_shards.py" + (" --quick" if args.quick else ""),
            "runs": rows,
            "note": "machine shared with other engineers' tests; see loadavg_after per run",
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
