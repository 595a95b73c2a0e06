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
