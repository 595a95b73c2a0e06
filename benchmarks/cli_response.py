"""How fast the CLI answers where nothing needs training: `--help`, a usage error, a missing
recipe, and an offline TFDS recipe (data not prepared, download host unreachable).

Each command runs as a fresh `python -m tlkit.cli` process (the real console cost, imports
included), `--repeats` times; the median wall seconds are printed and written to
`benchmarks/results/cli_response.json`.

    .venv/bin/python benchmarks/cli_response.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from _common import write_json  # noqa: E402


def timed(argv, env) -> tuple[float, int, str]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "tlkit.cli", *argv], capture_output=True,
                          text=True, env=env, cwd=ROOT)
    last = (proc.stderr.strip().splitlines() or [""])[-1]
    return time.perf_counter() - started, proc.returncode, last


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    with tempfile.TemporaryDirectory() as tmp:
        recipe = os.path.join(tmp, "flowers.yaml")
        with open(recipe, "w") as f:
            f.write("backbone: {name: tiny}\n"
                    f"data: {{source: tfds, name: tf_flowers, options: {{data_dir: '{tmp}'}}}}\n")
        commands = {
            "help": ["--help"],
            "usage error": ["train"],
            "missing recipe": ["train", os.path.join(tmp, "missing.yaml")],
            "offline TFDS recipe": ["train", recipe, "--output", os.path.join(tmp, "run")],
        }
        rows = []
        for name, argv in commands.items():
            runs = [timed(argv, env) for _ in range(args.repeats)]
            seconds = statistics.median(r[0] for r in runs)
            rows.append({"command": name, "argv": argv[:1], "median_seconds": round(seconds, 2),
                         "exit_code": runs[0][1], "last_line": runs[0][2][:200]})
            print(f"{name:22s} {seconds:6.2f} s  exit {runs[0][1]}  {runs[0][2][:90]}")
    write_json("cli_response", {"repeats": args.repeats, "rows": rows})


if __name__ == "__main__":
    main()
