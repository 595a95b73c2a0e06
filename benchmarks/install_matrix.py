"""The lowest and the highest TensorFlow minor that pyproject.toml allows, each installed with the
bare wheel in a fresh venv, then the smoke checks (`make install-matrix`).

The range is read from the `tensorflow>=A,<B` requirement in pyproject.toml, so it is written
once: the lowest minor is A's, the highest is the one before B. For each minor: a new venv,
`pip install WHEEL "tensorflow==2.X.*" pytest` (the bare wheel; pip picks the Keras, NumPy and
TensorBoard that fit), the checks of `benchmarks/install.py` from an empty folder
(`tlkit --version`, `tlkit init smoke`, `tlkit train smoke.yaml`, the missing-extra
one-liners), then `pip install "WHEEL[onnx]"` and the test
files `TESTS` of this checkout (its tlkit, on PYTHONPATH) against that venv's TensorFlow. Writes
`benchmarks/results/install_matrix.json` (seconds of each step, the versions pip chose).

    .venv/bin/python benchmarks/install_matrix.py [--minors 2.16 2.21] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from _common import write_json  # noqa: E402
from install import _canonical, _export, _run, build_wheel, smoke  # noqa: E402

TESTS = ["tests/export/test_export.py", "tests/test_distribution.py"]
"""Checkout tests run in each venv (export formats, CLI init/version): seconds, not minutes."""
REPORTED = ("tensorflow", "keras", "numpy", "ml-dtypes", "protobuf", "tensorboard", "tlkit")


def allowed_minors(pyproject: str = os.path.join(ROOT, "pyproject.toml")) -> list[str]:
    """`["2.16", "2.21"]` from `tensorflow>=2.16,<2.22` (lowest and highest allowed minor)."""
    with open(pyproject, "rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    spec = next(d for d in deps if re.match(r"tensorflow\s*[<>=]", d))
    low = re.search(r">=\s*(\d+)\.(\d+)", spec)
    high = re.search(r"<\s*(\d+)\.(\d+)", spec)
    if not (low and high):
        raise SystemExit(f"pyproject.toml: expected tensorflow>=X.Y,<X.Z; found {spec!r}")
    return [f"{low[1]}.{low[2]}", f"{high[1]}.{int(high[2]) - 1}"]


def check_minor(wheel: str, minor: str, base: str) -> dict:
    venv = os.path.join(base, f"venv_tf{minor}")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    py = os.path.join(venv, "bin", "python")
    proc = _run([py, "-m", "pip", "install", "-q", wheel, f"tensorflow=={minor}.*", "pytest"])
    record = {"install_seconds": round(time.perf_counter() - started, 1)}
    if proc.returncode:
        record["install_error"] = proc.stderr.strip().splitlines()[-3:]
        return record
    import json

    versions = {_canonical(p["name"]): p["version"] for p in json.loads(
        _run([py, "-m", "pip", "list", "--format=json"]).stdout)}
    record["versions"] = {name: versions.get(name) for name in REPORTED}
    work = os.path.join(base, f"work_tf{minor}")
    os.makedirs(work)
    started = time.perf_counter()
    record["smoke"] = smoke(venv, work)
    record["smoke_seconds"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()  # the onnx extra (small), so the ONNX test runs too
    proc = _run([py, "-m", "pip", "install", "-q", f"{wheel}[onnx]", f"tensorflow=={minor}.*"])
    record["onnx_extra_seconds"] = round(time.perf_counter() - started, 1)
    if proc.returncode:
        record["onnx_extra_error"] = proc.stderr.strip().splitlines()[-3:]
    started = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}
    tests = _run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS], cwd=ROOT, env=env)
    record["tests"] = {"files": TESTS, "returncode": tests.returncode,
                       "summary": (tests.stdout.strip().splitlines() or [""])[-1],
                       "seconds": round(time.perf_counter() - started, 1)}
    return record


def passed(record: dict) -> bool:
    smoke_ok = record.get("smoke", {}).get("train_smoke", {}).get("returncode") == 0 and all(
        m["one_line"] and m["names_extra"] and m["no_run_folder"]
        for m in record.get("smoke", {}).get("missing_extras", [{"one_line": False}]))
    return smoke_ok and record.get("tests", {}).get("returncode") == 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minors", nargs="+", help="TensorFlow minors (default: pyproject's "
                        "lowest and highest)")
    parser.add_argument("--keep", help="keep the venvs in this folder (default: deleted)")
    args = parser.parse_args(argv)
    minors = args.minors or allowed_minors()
    base = args.keep or tempfile.mkdtemp(prefix="tlkit-matrix-")
    os.makedirs(base, exist_ok=True)
    result = {"minors": minors, "load_average": [round(os.getloadavg()[0], 1)],
              # the wheel's commit (HEAD when it was built, not when the JSON is written)
              "commit": _run(["git", "-C", ROOT, "rev-parse", "HEAD"]).stdout.strip()}
    started = time.perf_counter()
    try:
        wheel = build_wheel(_export("HEAD", os.path.join(base, "src")), os.path.join(base, "wheel"))
        for minor in minors:
            result[minor] = check_minor(wheel, minor, base)
            result[minor]["passed"] = passed(result[minor])
            print(f"tensorflow {minor}: {'passed' if result[minor]['passed'] else 'FAILED'} "
                  f"({result[minor].get('versions')})", flush=True)
    finally:
        result["seconds"] = round(time.perf_counter() - started, 1)
        result["load_average"].append(round(os.getloadavg()[0], 1))
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print(write_json("install_matrix", result))
    return 0 if all(result[m].get("passed") for m in minors) else 1


if __name__ == "__main__":
    sys.exit(main())
