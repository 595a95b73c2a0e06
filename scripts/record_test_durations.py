"""Records each test's seconds from a pytest JUnit XML into tests/test_durations.json.

`tests/conftest.py` reads that file to send the longest test files to the pytest-xdist workers
first (`make test` runs `--dist loadfile --no-loadscope-reorder`): with two workers, a long file
started last would keep one worker busy while the other waits. The figures only order the files,
so a run on a busy machine is good enough (relative times matter); refresh them when files are
added or change a lot.

Usage (from the repository root):

```
python -m pytest -q -n auto --dist loadfile --junitxml=/tmp/junit.xml tests
python scripts/record_test_durations.py /tmp/junit.xml --command "the pytest command above"
```
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "test_durations.json")


def node_id(classname: str, name: str) -> str:
    """`tests.runner.test_resume` + `test_x[a]` -> `tests/runner/test_resume.py::test_x[a]`
    (a test class's name stays in the id: `tests/x/test_y.py::TestZ::test_w`)."""
    parts = classname.split(".")
    for cut in range(len(parts), 0, -1):
        path = "/".join(parts[:cut]) + ".py"
        if os.path.isfile(os.path.join(ROOT, path)):
            return "::".join([path, *parts[cut:], name])
    raise ValueError(f"no test file for JUnit classname {classname!r}")


def read_junit(path: str) -> dict[str, float]:
    """Seconds per test id (setup + call + teardown, as pytest's JUnit XML reports them);
    skipped tests are left out."""
    seconds = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        if case.find("skipped") is not None:
            continue
        seconds[node_id(case.get("classname"), case.get("name"))] = round(
            float(case.get("time")), 2)
    return dict(sorted(seconds.items()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("junit", help="a pytest --junitxml file of the whole suite")
    parser.add_argument("--command", required=True, help="the pytest command that wrote it")
    parser.add_argument("--machine", default=f"{platform.node()}, {os.cpu_count()} CPUs",
                        help="where it ran, and how busy that machine was")
    parser.add_argument("--commit", help="the commit the suite ran on (default: this HEAD)")
    parser.add_argument("--out", default=OUT, help=f"default {os.path.relpath(OUT, ROOT)}")
    args = parser.parse_args(argv)
    commit = args.commit or subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                           capture_output=True, text=True).stdout.strip()
    seconds = read_junit(args.junit)
    record = {
        "what": "seconds per test, read by tests/conftest.py to order files for pytest-xdist",
        "command": args.command,
        "commit": commit,
        "machine": args.machine,
        "recorded": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": seconds,
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=0)
        f.write("\n")
    print(f"wrote {len(seconds)} tests, {sum(seconds.values()):.0f} s in all, to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
