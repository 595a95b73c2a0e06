"""`TF_CONFIG` for one worker of a multi-worker job on localhost (the tests' worker processes)."""

import json
import os


def set_localhost_tf_config(ports: str, index: int) -> None:
    """Sets `TF_CONFIG` for worker `index` of a cluster on `127.0.0.1` at `ports` ("p1,p2,...").

    Call it before the strategy is created (`tlkit.distribute.get_strategy("multiworker")`).
    """
    workers = [f"127.0.0.1:{p}" for p in str(ports).split(",")]
    os.environ["TF_CONFIG"] = json.dumps(
        {"cluster": {"worker": workers}, "task": {"type": "worker", "index": int(index)}}
    )


def cache_job_worker(argv=None):
    """For a worker job taking `--ports --index --cache --out`: parses them, joins the cluster
    (a `MultiWorkerMirroredStrategy`) and returns `(args, (task_id, worker_count))`."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--ports", required=True)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--cache", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    set_localhost_tf_config(args.ports, args.index)
    from tlkit import distribute

    resolver = distribute.get_strategy("multiworker").cluster_resolver
    return args, (resolver.task_id, len(resolver.cluster_spec().as_dict()["worker"]))
