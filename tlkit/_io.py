"""Atomic file writes: the ground floor that library and runner both use.

Files tlkit writes itself go through a temporary file in the same folder and `os.replace`, so an
interrupted process never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import uuid


def temp_name(path) -> str:
    """A unique hidden name next to `path` for a temporary file or folder."""
    folder, base = os.path.split(os.path.abspath(os.fspath(path)))
    return os.path.join(folder, f".{base}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


class DiskFullError(OSError):
    """A file could not be written for lack of disk space; the message names the file, the
    space needed and the space free. The previous version of the file is intact."""

    def __str__(self):
        return self.strerror


def _is_disk_full(err) -> bool:
    return (isinstance(err, OSError) and err.errno == errno.ENOSPC) or (
        "No space left on device" in str(err) or "Disk quota exceeded" in str(err))


def disk_full(path, err, needed=None) -> DiskFullError:
    """The `DiskFullError` for `path` after `err` (an `ENOSPC` `OSError` or TensorFlow's
    `ResourceExhaustedError` saying so); `needed`: bytes the file needs, when known."""
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    try:
        free = f"{shutil.disk_usage(folder).free / 1e6:.1f} MB free"
    except OSError:
        free = "free space unknown"
    need = f"about {needed / 1e6:.1f} MB needed, " if needed else ""
    return DiskFullError(
        errno.ENOSPC, f"could not write {path}: no space left on device ({need}{free} in "
        f"{folder}); free some space and run the command again (files written before are "
        "intact; an interrupted tlkit train resumes)")


_TEMP = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{8}\.tmp$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(folder) -> list[str]:
    """Removes the temporaries (`temp_name`) in `folder` left by processes that no longer run
    (killed mid-write); a live process's are kept. Returns the paths removed.

    Example:
    ```python
    remove_stale_temporaries("runs/smoke/export")  # e.g. ['.../.savedmodel.4242.1a2b3c4d.tmp']
    ```
    """
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        found = _TEMP.match(name)
        if found is None or int(found.group(1)) == os.getpid() or _alive(int(found.group(1))):
            continue
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.remove(path)
        removed.append(path)
    return removed


def atomic_write_text(path, text: str) -> str:
    """Writes `text` to `path` through a temporary file in the same folder and `os.replace`.

    The file gets the usual permissions (umask), unlike `tempfile.mkstemp`'s 0600. A full
    disk is a `DiskFullError` naming `path` (the previous version stays).
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = temp_name(path)
    try:
        with open(tmp, "x", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if _is_disk_full(err) and not isinstance(err, DiskFullError):
            raise disk_full(path, err, len(text.encode("utf-8"))) from None
        raise
    return path


def atomic_write_json(path, data) -> str:
    """`atomic_write_text` of `data` as indented JSON."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path next to `path` (same extension); on success it replaces `path`.

    For writers that take a file name (`model.save`, `save_weights`, PNGs).
    """
    path = os.fspath(path)
    folder, base = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    stem, ext = _split_ext(base)
    tmp = os.path.join(folder, f".{stem}.tmp{ext}")
    try:
        yield tmp
        os.replace(tmp, path)
    except Exception as err:
        if _is_disk_full(err) and not isinstance(err, DiskFullError):
            needed = os.path.getsize(path) if os.path.isfile(path) else None
            raise disk_full(path, err, needed) from None
        raise
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _split_ext(base):
    for ext in (".weights.h5", ".keras", ".tflite", ".json", ".png", ".md", ".yaml"):
        if base.endswith(ext):
            return base[: -len(ext)], ext
    return os.path.splitext(base)


class RecordError(ValueError):
    """A damaged record file: the message names the file, what is wrong with it and the fix."""


MAX_RECORD_BYTES = 64 << 20
"""JSON records larger than this are refused unread (tlkit's own are a few kB to a few MB)."""


def read_json(path, default=None, expect=None, fix=None):
    """JSON content of `path`, or `default` when the file does not exist.

    Args:
        path: the record file.
        default: returned when there is no such file.
        expect: optional check of the content's shape: a function returning `None` when the
            content is fine, else what was expected (e.g. `"a JSON object"`).
        fix: what the user should do about a damaged file (end of the error line).

    Raises:
        RecordError: the file is a folder, unreadable, not valid JSON (or not UTF-8), too large,
            or of the wrong shape; one line naming the file, the problem and `fix`.

    Example:
    ```python
    state = read_json("runs/smoke/state.json", {}, expect=lambda d: None if
                      isinstance(d, dict) else "a JSON object")
    ```
    """
    path = os.fspath(path)
    if not os.path.lexists(path):
        return default
    problem = None
    try:
        if os.path.getsize(path) > MAX_RECORD_BYTES:
            problem = f"{os.path.getsize(path)} bytes, more than a record can hold"
        else:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
    except IsADirectoryError:
        problem = "a folder where a file was expected"
    except UnicodeDecodeError:
        problem = "not UTF-8 text"
    except json.JSONDecodeError as err:
        problem = f"not valid JSON ({err.msg} at line {err.lineno} column {err.colno})"
    except OSError as err:
        problem = f"cannot be read ({err.strerror or err})"
    except (ValueError, RecursionError) as err:
        problem = f"not valid JSON ({type(err).__name__})"
    if problem is None and expect is not None:
        wanted = expect(data)
        if wanted:
            problem = f"expected {wanted}, got {short_repr(data)}"
    if problem is None:
        return data
    raise RecordError(f"{path}: damaged record: {problem}; {fix or 'restore or delete it'}")


def short_repr(value, limit=80) -> str:
    """`repr(value)` cut to `limit` characters, without building the repr of a huge value
    (`reprlib`): errors never echo a huge value."""
    import reprlib

    r = reprlib.Repr()
    r.maxstring = r.maxother = limit
    r.maxlist = r.maxdict = r.maxtuple = r.maxset = 8
    r.maxlevel = 3
    text = r.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
