"""Sharded feature extraction across 2 MultiWorkerMirroredStrategy worker processes on localhost."""

import json
import subprocess
import sys

import numpy as np
import pytest

from tlkit.testing import free_ports

pytestmark = [pytest.mark.slow, pytest.mark.localhost_ports]


def _run_two_workers(module, tmp_path, suffix):
    """Runs `python -m module` as workers 0 and 1 on localhost, sharing `tmp_path/cache`."""
    ports = free_ports(2)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", module, "--ports", ports, "--index", str(i),
             "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / f"out{i}.{suffix}")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for i in range(2)
    ]
    for p in procs:
        out, _ = p.communicate(timeout=240)
        assert p.returncode == 0, out[-3000:]


def test_two_workers_each_extract_half_and_share_one_cache(tmp_path):
    _run_two_workers("tlkit.testing.shard_extraction_job", tmp_path, "npz")
    seen = [np.load(tmp_path / f"out{i}.npz") for i in range(2)]
    for result in seen:  # both workers see the whole cache
        order = np.argsort(result["labels"])
        np.testing.assert_array_equal(result["labels"][order], np.arange(45))
        np.testing.assert_array_equal(
            result["features"][order], 10.0 * np.arange(90, dtype="float32").reshape(45, 2)
        )
    files = list(seen[0]["files"])
    assert files == list(seen[1]["files"])
    # 23 examples for worker 0 (3 shards), 22 for worker 1 (3 shards), each written by its worker.
    assert sum("-w0of2-" in f for f in files) == 3 and sum("-w1of2-" in f for f in files) == 3
    manifests = sorted(p.name for p in (tmp_path / "cache").glob("manifest-*.json"))
    assert len(manifests) == 3  # the chief's whole-cache manifest and one part per worker


def test_two_workers_share_the_audit_embedding_pass(tmp_path):
    from tlkit import data as tld
    from tlkit.testing.audit_embedding_job import planted_arrays

    _run_two_workers("tlkit.testing.audit_embedding_job", tmp_path, "json")
    seen = [json.loads((tmp_path / f"out{i}.json").read_text()) for i in range(2)]
    # Each worker embedded its half of the 160 examples, no more.
    assert [s["embedded"] for s in seen] == [80, 80]
    alone = tld.audit(planted_arrays(), backbone_model=lambda x: x, batch_size=16)
    expected = sorted(
        sorted([f"{p['a']['split']}{p['a']['item']}", f"{p['b']['split']}{p['b']['item']}"])
        for p in alone.near_duplicates
    )
    assert len(expected) == 4
    assert seen[0]["pairs"] == seen[1]["pairs"] == expected
