"""Remembered results of the image decode check, per file, so an unchanged folder is not decoded twice.

One SQLite file (Python's `sqlite3`: atomic transactions, safe with several processes) under
the tlkit cache folder: `$TLKIT_CACHE_DIR`, else `$XDG_CACHE_HOME/tlkit`, else `~/.cache/tlkit`.
A row holds a file's absolute path, the channels it was decoded to, its size, `st_mtime_ns` and
`st_ctime_ns` when it was checked, and the outcome (height and width, or the error). A row is
used only when all three still match the file: an edited, replaced or re-extracted file (whose
ctime changes even when a tool restores its mtime) is decoded again, never trusted stale.

When the cache cannot be opened or written (read-only home, corrupt file), the check runs
without it and says so in one warning.
"""

from __future__ import annotations

import logging
import os
import sqlite3

logger = logging.getLogger(__name__)

FILE_NAME = "decode_checks.sqlite"
_CHUNK = 900  # SQLite's default limit is 999 parameters per statement


def cache_dir() -> str:
    """The tlkit cache folder (`$TLKIT_CACHE_DIR`, else `$XDG_CACHE_HOME/tlkit`, else ~/.cache)."""
    if os.environ.get("TLKIT_CACHE_DIR"):
        return os.environ["TLKIT_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tlkit")


def _key(path: str) -> str:
    """The row key of `path`: its absolute path, or for a name that is not valid UTF-8 (kept
    by Python as surrogate escapes, which SQLite cannot store) `b:` and the hex of its bytes."""
    path = os.path.abspath(path)
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return "b:" + os.fsencode(path).hex()


def _stamp(path: str):
    try:
        st = os.stat(path)
    except OSError:
        return None  # the decode reports the missing file; nothing to remember
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns


class DecodeCheckCache:
    """Outcomes of earlier decode checks, valid while a file's size, mtime and ctime hold."""

    def __init__(self, path: str | None = None):
        self.path = path or os.path.join(cache_dir(), FILE_NAME)
        self._db = None
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30)
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS checks (path TEXT, channels INTEGER, size INTEGER, "
                "mtime_ns INTEGER, ctime_ns INTEGER, height INTEGER, width INTEGER, error TEXT, "
                "PRIMARY KEY (path, channels))"
            )
        except (sqlite3.Error, OSError) as err:
            self._disable(err)

    def _disable(self, err) -> None:
        logger.warning(
            "decode-check cache %s unusable (%s: %s); checking every file this time. Set "
            "TLKIT_CACHE_DIR to another writable folder (or delete a corrupt file) to remember the "
            "results.",
            self.path,
            type(err).__name__,
            err,
        )
        if self._db is not None:
            self._db.close()
        self._db = None

    def lookup(self, paths: list[str], channels: int):
        """`(known, stamps)`: `{path: (height, width, error)}` still valid, and each file's stamp."""
        stamps = {p: _stamp(os.path.abspath(p)) for p in paths}
        known = {}
        if self._db is None:
            return known, stamps
        by_abs = {_key(p): p for p in paths}
        keys = list(by_abs)
        try:
            for i in range(0, len(keys), _CHUNK):
                chunk = keys[i : i + _CHUNK]
                rows = self._db.execute(
                    "SELECT path, size, mtime_ns, ctime_ns, height, width, error FROM checks "
                    f"WHERE channels = ? AND path IN ({','.join('?' * len(chunk))})",
                    [channels, *chunk],
                )
                for path, size, mtime, ctime, height, width, error in rows:
                    original = by_abs[path]
                    if stamps[original] == (size, mtime, ctime):
                        known[original] = (height, width, error)
        except sqlite3.Error as err:
            self._disable(err)
            return {}, stamps
        return known, stamps

    def store(self, outcomes: dict, stamps: dict, channels: int) -> None:
        """Remembers `{path: (height, width, error)}` under the stamps taken before decoding."""
        if self._db is None:
            return
        rows = [
            (_key(p), channels, *stamps[p], h, w, error)
            for p, (h, w, error) in outcomes.items()
            if stamps.get(p) is not None
        ]
        try:
            with self._db:  # one transaction: all rows or none
                self._db.executemany(
                    "INSERT OR REPLACE INTO checks VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows
                )
        except sqlite3.Error as err:
            self._disable(err)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
