"""Atomic file writes: the ground floor that library and runner both use.

Files tlkit writes itself go through a temporary file in the same folder and `os.replace`, so an
interrupted process never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid


def temp_name(path) -> str:
    """A unique hidden name next to `path` for a temporary file or folder."""
    folder, base = os.path.split(os.path.abspath(os.fspath(path)))
    return os.path.join(folder, f".{base}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def atomic_write_text(path, text: str) -> str:
    """Writes `text` to `path` through a temporary file in the same folder and `os.replace`.

    The file gets the usual permissions (umask), unlike `tempfile.mkstemp`'s 0600.
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = temp_name(path)
    try:
        with open(tmp, "x", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
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
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _split_ext(base):
    for ext in (".weights.h5", ".keras", ".tflite", ".json", ".png", ".md", ".yaml"):
        if base.endswith(ext):
            return base[: -len(ext)], ext
    return os.path.splitext(base)


def read_json(path, default=None):
    """JSON content of `path`, or `default` when the file does not exist."""
    if not os.path.exists(path):
        return default
    with open(path, encoding="utf-8") as f:
        return json.load(f)
