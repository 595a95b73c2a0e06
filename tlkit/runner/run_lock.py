"""An exclusive lock on a run folder for every command that writes into it.

Two `tlkit train` (or `train` and `evaluate`, `export`, `report`, `lr-find`, `tune`) on one run
folder at once would interleave their checkpoints and records. `run_lock(folder, verb)` takes
an OS file lock (`fcntl.flock`, `LOCK_EX | LOCK_NB`) on a lock file *beside* the folder
(`<parent>/.<name>.tlkit-lock`, so `train --force` can move the folder aside while holding it)
and writes the holder's pid, verb and start time into it. A second process gets one line:

```
runs/smoke is in use by another tlkit process (pid 4242, tlkit train since 16:55:02); wait
for it to finish, or stop it (kill 4242), then run the command again
```

The kernel releases an `flock` when its process exits, however it exits (SIGKILL included), so
a lock file left by a dead process is stale by construction: the next command takes the lock
and overwrites the record (logged at debug level). The file is removed on release; a process
that locked a file another one just removed checks the inode and tries again.

Within one process the lock is re-entrant (a verb that calls another on the same folder).

Example:
```python
with run_lock("runs/smoke", "train"):
    ...  # no other tlkit process writes runs/smoke meanwhile
```
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time

from tlkit.runner.rundir import RunError

logger = logging.getLogger("tlkit")

_HELD: dict[str, int] = {}  # lock file -> depth, in this process


class RunLockedError(RunError):
    """The run folder is locked by another process (the message names its pid)."""


def lock_path(folder) -> str:
    """The lock file of run folder `folder`: `<parent>/.<name>.tlkit-lock`."""
    parent, name = os.path.split(os.path.abspath(os.fspath(folder)))
    return os.path.join(parent, f".{name}.tlkit-lock")


def _holder(path) -> str:
    """What the lock file says about its holder, e.g. `pid 4242, tlkit train since 16:55:02`."""
    try:
        with open(path, encoding="utf-8") as f:
            record = json.loads(f.read(4096))
        since = time.strftime("%H:%M:%S", time.localtime(float(record["since"])))
        return f"pid {int(record['pid'])}, tlkit {record['verb']} since {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "pid unknown: it has not written its record yet"


def _pid(path):
    try:
        with open(path, encoding="utf-8") as f:
            return int(json.loads(f.read(4096))["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _acquire(path, folder, verb) -> int:
    for _ in range(10):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = _holder(path)
            pid = _pid(path)
            stop = f"stop it (kill {pid})" if pid else "stop it"
            raise RunLockedError(
                f"{folder} is in use by another tlkit process ({holder}); wait for it to "
                f"finish, or {stop}, then run the command again"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the holder removed this file as we opened it: lock the new one
            os.close(fd)
            continue
        stale = os.read(fd, 4096)
        if stale:
            logger.debug("%s: took over the lock of a process that has exited (%s)", folder,
                         stale.decode("utf-8", "replace").strip())
        record = json.dumps({"pid": os.getpid(), "verb": verb, "since": time.time()})
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode() + b"\n", 0)
        return fd
    raise RunLockedError(f"{folder}: could not take the run lock {path} (it keeps changing)")


@contextlib.contextmanager
def run_lock(folder, verb: str):
    """Holds the exclusive lock of run folder `folder` for the block (see the module docstring).

    Args:
        folder: the run folder (it need not exist yet; its parent is created).
        verb: the command that holds it (`train`, `export`, ...), for the other process's
            message.

    Raises:
        RunLockedError: another process holds the lock; the message names its pid and verb.
    """
    path = lock_path(folder)
    if _HELD.get(path):
        _HELD[path] += 1
        try:
            yield
        finally:
            _HELD[path] -= 1
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = _acquire(path, os.fspath(folder), verb)
    _HELD[path] = 1
    try:
        yield
    finally:
        _HELD.pop(path, None)
        with contextlib.suppress(OSError):
            os.remove(path)  # while still locked: the next process creates a fresh file
        os.close(fd)  # releases the flock
