"""The quickstart end to end: `tlkit train recipes/quickstart.yaml` in a fresh run folder.

Runs the README's one command as a user does (a subprocess of the `tlkit` CLI, the run folder
new, so nothing is reused) and records what the README quotes: the test accuracy of the
pretrained run and of the same architecture from scratch, the seconds each took
(`metrics.json`: `train_seconds` covers data, audit, both phases and the evaluation;
`scratch.seconds` the baseline), the wall time of the whole command and the machine's load
average before and after (the shared 2-core machine's figures depend on it).

    .venv/bin/python benchmarks/quickstart.py           # the recipe as shipped (~4-5 min, 2 cores)
    .venv/bin/python benchmarks/quickstart.py --quick   # 1 fine + 1 scratch epoch (smoke test)
    .venv/bin/python benchmarks/quickstart.py --set phases.strategy=full --name quickstart_full

Writes benchmarks/results/quickstart.json (quickstart_quick.json with `--quick`; `--name` names
another file, for a variant given by `--set`, the CLI's recipe overrides).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _common import write_json  # noqa: E402

RECIPE = os.path.join(os.path.dirname(HERE), "recipes", "quickstart.yaml")
QUICK = ["--set", "phases.fine_epochs=1", "--set", "compare.scratch_epochs=1",
         "--set", "output.export=[keras]"]


def run_quickstart(folder: str, extra=()) -> dict:
    """Runs `tlkit train` on the quickstart recipe into `folder`; returns the figures."""
    command = [sys.executable, "-m", "tlkit.cli", "-q", "train", RECIPE, "--output", folder,
               "--force", *extra]
    load_before = os.getloadavg()
    start = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "PYTHONPATH": os.path.dirname(HERE)})
    wall = time.perf_counter() - start
    load_after = os.getloadavg()
    with open(os.path.join(folder, "metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    scratch = metrics.get("scratch") or {}
    return {
        "pretrained": {
            "accuracy": metrics["accuracy"],
            "macro_f1": metrics["macro_f1"],
            "split": metrics.get("split", "test"),
            "num_examples": metrics["num_examples"],
            "train_seconds": metrics["train_seconds"],
        },
        "scratch": {
            "accuracy": scratch.get("accuracy"),
            "epochs": scratch.get("epochs"),
            "seconds": scratch.get("seconds"),
        },
        "wall_seconds": round(wall, 1),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="1 fine-tuning and 1 from-scratch epoch, Keras export only")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a recipe override passed to `tlkit train` (repeatable)")
    parser.add_argument("--name", default=None, help="results file name (default: quickstart"
                        "[_quick])")
    parser.add_argument("--output", default=None,
                        help="run folder (default: a temporary folder, removed afterwards)")
    args = parser.parse_args(argv)
    extra = (QUICK if args.quick else []) + [a for kv in args.set for a in ("--set", kv)]
    with tempfile.TemporaryDirectory() as tmp:
        result = run_quickstart(args.output or os.path.join(tmp, "quickstart"), extra)
    result["command"] = " ".join(["benchmarks/quickstart.py",
                                  *(argv if argv is not None else sys.argv[1:])])
    result["recipe"] = "recipes/quickstart.yaml" + (" " + " ".join(extra) if extra else "")
    path = write_json(args.name or ("quickstart_quick" if args.quick else "quickstart"), result)
    p, s = result["pretrained"], result["scratch"]
    print(f"pretrained: {p['split']} accuracy {p['accuracy']:.4f} in {p['train_seconds']:.0f} s")
    if s["accuracy"] is not None:
        print(f"from scratch: accuracy {s['accuracy']:.4f} ({s['epochs']} epochs, "
              f"{s['seconds']:.0f} s)")
    print(f"wall: {result['wall_seconds']:.0f} s, load average before "
          f"{result['load_average_before'][0]:.2f}, after {result['load_average_after'][0]:.2f}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
