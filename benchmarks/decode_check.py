"""`from_image_folder`'s decode check: first load vs a second load of the unchanged folder.

A synthetic folder of N JPEGs (10 classes, 96x96, written here) is loaded with `check=None`,
`check="header"`, `check="decode"` with an empty cache (every file decoded, tf.data parallel
map on all cores), and `check="decode"` again (outcomes reused from the cache: only `os.stat`
per file). The cache folder is a fresh temporary one.

    .venv/bin/python benchmarks/decode_check.py [--n 10000]
    .venv/bin/python benchmarks/decode_check.py --quick     # N = 1000

The machine may be shared: the JSON records the load average.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import write_json  # noqa: E402


def make_folder(root: str, n: int, size: int = 96) -> str:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for k in range(n):
        folder = os.path.join(root, f"class_{k % 10}")
        os.makedirs(folder, exist_ok=True)
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(os.path.join(folder, f"{k}.jpg"), quality=90)
    return root


def run(n: int) -> dict:
    import tlkit

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TLKIT_CACHE_DIR"] = os.path.join(tmp, "cache")
        root = make_folder(os.path.join(tmp, "images"), n)
        tlkit.data.from_image_folder(root, image_size=(96, 96), check=None)  # warm-up: TF init
        seconds = {}
        for name, kwargs in (
            ("none", {"check": None}),
            ("header", {"check": "header"}),
            ("decode_first_load", {"check": "decode"}),
            ("decode_second_load", {"check": "decode"}),
            ("decode_no_cache", {"check": "decode", "check_cache": False}),
        ):
            start = time.perf_counter()
            tlkit.data.from_image_folder(root, image_size=(96, 96), **kwargs)
            seconds[name] = time.perf_counter() - start
            print(f"N={n}  check {name:<20} {seconds[name]:7.2f} s", flush=True)
    return {
        "n": n,
        "seconds": seconds,
        "second_load_speedup": seconds["decode_first_load"] / seconds["decode_second_load"],
        "cpus": os.cpu_count(),
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="N = 1000")
    args = parser.parse_args(argv)
    n = 1000 if args.quick else args.n
    load_before = [round(v, 2) for v in os.getloadavg()]
    result = run(n)
    result["loadavg_before"] = load_before
    result["command"] = "benchmarks/decode_check.py" + (" --quick" if args.quick else f" --n {n}")
    result["note"] = "machine shared with other engineers' tests; see loadavg_*"
    print(f"second load {result['second_load_speedup']:.1f}x faster than the first")
    path = write_json("decode_check_quick" if args.quick else "decode_check", result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
