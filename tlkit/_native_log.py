"""TensorFlow's C++ log lines, kept off the CLI's stderr unless `tlkit --verbose`.

TensorFlow logs from C++ through absl before Python can configure anything: "WARNING: All log
messages before absl::InitializeLog() is called are written to STDERR", the oneDNN notice, CUDA
probes on a machine without a GPU ("Could not find cuda drivers", "failed call to cuInit"), and
later tf.data notices. Since the move to absl logging, `TF_CPP_MIN_LOG_LEVEL` no longer silences
the start-up lines (tensorflow/tensorflow#100442; on TF 2.21 they print with it set to 3 before
the import), and absl's threshold is a C++ flag with no environment variable. So the CLI filters
its own stderr at the file-descriptor level (hand-written: neither TF nor absl offers a switch):
fd 2 becomes a pipe, and a thread forwards everything but lines in absl / TSL log format
(`I0000 00:00:1796072947.595640    6374 port.cc:153] ...`, `2025-09-17 14:44:05.157831: I
external/...cc:32] ...`), the InitializeLog notice and TFLite's `INFO:` lines. Fatal (`F`)
lines pass. Child processes
(`tlkit bench`) inherit the filtered fd.

The library never calls this: importing tlkit changes no global setting.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading

_NATIVE = re.compile(
    rb"(?:[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^\s\]]+:\d+\]"  # absl (seconds unpadded before init)
    rb"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] [^\s\]]+:\d+\]"  # TSL
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|INFO: "  # TFLite's own logger ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.")
    rb"|To enable the following instructions: .* rebuild TensorFlow)"  # 2nd line of a CPU notice
)
# A line starting with anything else is forwarded at once, before its newline arrives.
_MAY_START_NATIVE = frozenset(b"IWET0123456789")


def is_native_log_line(line: bytes) -> bool:
    """Whether `line` is one of TensorFlow's C++ (absl / TSL) info, warning or error lines."""
    return _NATIVE.match(line) is not None


def _forward(read_fd: int, out_fd: int) -> None:
    """Copies the pipe to `out_fd`, dropping native log lines, until the pipe closes."""
    pending, passing = b"", False
    try:
        while chunk := os.read(read_fd, 65536):
            data = pending + chunk
            pending = b""
            while data:
                end = data.find(b"\n")
                if passing or data[0] not in _MAY_START_NATIVE:
                    # This line is not a native one: write what there is of it now.
                    piece = data if end < 0 else data[: end + 1]
                    os.write(out_fd, piece)
                    passing = end < 0
                elif end < 0:
                    pending = data  # decide once the line is complete
                    break
                elif not is_native_log_line(data[: end + 1]):
                    os.write(out_fd, data[: end + 1])
                data = b"" if end < 0 else data[end + 1 :]
        if pending and not is_native_log_line(pending):
            os.write(out_fd, pending)
    finally:
        os.close(read_fd)
        os.close(out_fd)


@contextlib.contextmanager
def filtered_stderr():
    """Within the block, fd 2 (the process's stderr) drops TensorFlow's native log lines.

    A no-op when fd 2 is not open. Python's `sys.stderr` writes through fd 2, so tlkit's
    own lines keep their order.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    read_fd, write_fd = os.pipe()
    thread = threading.Thread(target=_forward, args=(read_fd, os.dup(saved)), daemon=True,
                              name="tlkit-stderr-filter")
    thread.start()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end here: the thread sees EOF
        os.close(saved)
        thread.join(timeout=5)  # a child process still holding the pipe keeps it open
