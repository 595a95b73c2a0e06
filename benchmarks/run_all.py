"""Runs every benchmark script (`benchmarks/*.py` but this one and `_common`), each in a subprocess.

Scripts whose argparse has a `--quick` flag get it unless `--full` is given. A failing script
does not stop the others; the summary lists each script's exit code and wall seconds, and is
written to `benchmarks/results/run_all.json`. The exit code is 1 when any script failed.

    .venv/bin/python benchmarks/run_all.py [--full] [--only NAME ...] [--skip NAME ...]
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _common import write_json  # noqa: E402

EXCLUDED = {"run_all", "_common"}


def scripts() -> list[str]:
    """The benchmark scripts, by name (file stem), sorted."""
    names = (os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(HERE, "*.py")))
    return sorted(n for n in names if n not in EXCLUDED and not n.startswith("_"))


def supports_quick(name: str) -> bool:
    with open(os.path.join(HERE, f"{name}.py"), encoding="utf-8") as f:
        return '"--quick"' in f.read()


def run(names, quick=True, timeout=None, extra_env=None) -> list[dict]:
    env = dict(os.environ, **(extra_env or {}))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    results = []
    for name in names:
        cmd = [sys.executable, os.path.join(HERE, f"{name}.py")]
        if quick and supports_quick(name):
            cmd.append("--quick")
        print(f"=== {name}: {' '.join(cmd[1:])}", flush=True)
        start = time.perf_counter()
        try:
            rc = subprocess.run(cmd, env=env, timeout=timeout, check=False).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        seconds = time.perf_counter() - start
        results.append({"script": name, "args": cmd[2:], "returncode": rc, "seconds": seconds})
        print(f"=== {name}: {'ok' if rc == 0 else f'FAILED ({rc})'} in {seconds:.0f} s", flush=True)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="do not pass --quick")
    parser.add_argument("--only", nargs="+", default=None, help="script names to run")
    parser.add_argument("--skip", nargs="+", default=[], help="script names to leave out")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per script")
    parser.add_argument("--list", action="store_true", help="list the scripts and exit")
    args = parser.parse_args(argv)
    available = scripts()
    if args.list:
        for name in available:
            print(name, "(--quick)" if supports_quick(name) else "")
        return 0
    unknown = set(args.only or []) | set(args.skip)
    unknown -= set(available)
    if unknown:
        parser.error(f"unknown script(s) {sorted(unknown)}; available: {available}")
    names = [n for n in (args.only or available) if n not in args.skip]
    results = run(names, quick=not args.full, timeout=args.timeout)
    print(f"\n{'script':<24} {'status':>10} {'seconds':>8}")
    for r in results:
        status = "ok" if r["returncode"] == 0 else f"rc={r['returncode']}"
        print(f"{r['script']:<24} {status:>10} {r['seconds']:>8.0f}")
    print("wrote", write_json("run_all", {"quick": not args.full, "runs": results}))
    return 0 if all(r["returncode"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
