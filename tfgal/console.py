"""What a ``tfgal-*`` command shows on stderr: its own messages, without TensorFlow's
C++ start-up log.

TensorFlow's CUDA builds log from C++ as soon as they load, before its own log level
(``TF_CPP_MIN_LOG_LEVEL``) is read: "Could not find cuda drivers", "failed call to
cuInit" and the like on every CPU machine. Those lines are written to file descriptor 2
by C++, so no Python setting reaches them. `hide_tensorflow_log` routes descriptor 2
through a pipe and a thread that forwards everything except lines in the C++ log format
(``I1130 00:53:05.123456  2590 file.cc:31] ...``), absl's "before InitializeLog"
notice and the two start-up lines of Apache Beam's local worker processes; Python
tracebacks, warnings, progress bars and the rest of child processes' output pass
unchanged. ``--verbose`` on any command keeps the whole log.

`device_line` then says in one line what TensorFlow runs on, so that hiding the log does
not hide a missing GPU.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading

__all__ = ["hide_tensorflow_log", "quiet_tensorflow", "is_tensorflow_log", "is_terminal",
           "terminal_columns", "device_line", "LOG_LINE"]

# C++ (absl / tsl) log lines: severity, MMDD, time, thread id, file:line]
LOG_LINE = re.compile(
    rb"^(?:[IWE]\d{4} [\d:.]+\s+\d+ [^\]\s]+:\d+\] "
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    # Apache Beam's local worker processes (--beam) say these as they start, before
    # tfgal's log level reaches them: nothing a user can act on.
    rb"|INFO:__main__:Logging handler created\.$"
    rb"|WARNING:root:apitools not found, and bigquery client libraries are not available)")

_active = []


def is_tensorflow_log(line):
    """Whether one line (bytes, without its newline) is a C++ log line that is hidden.

    Fatal lines (``F...``) always pass: they say why the process is about to die.
    """
    return bool(LOG_LINE.match(line))


def _may_become_log(tail):
    # An unfinished line waits for its end only while it could still be a log line.
    return tail[:1] in (b"I", b"W", b"E") and b"\r" not in tail and len(tail) < 4096


class _Filter:
    def __init__(self):
        sys.stderr.flush()
        self.target = os.dup(2)
        # what descriptor 2 was: progress bars still draw on a terminal behind the pipe
        self.terminal = os.isatty(self.target)
        read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        self.read = read
        self.broken = False
        self.thread = threading.Thread(target=self._pump, name="tfgal-stderr", daemon=True)
        self.thread.start()

    def _write(self, data):
        # A closed stderr (e.g. `| head`) must not stop the pump: a full pipe would block
        # every later write to descriptor 2, so output is then dropped, never held.
        while data and not self.broken:
            try:
                data = data[os.write(self.target, data):]
            except OSError:
                self.broken = True

    def _pump(self):
        pending = b""
        while True:
            try:
                chunk = os.read(self.read, 1 << 16)
            except OSError:
                break
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            out = b"".join(line + b"\n" for line in lines if not is_tensorflow_log(line))
            if pending and not _may_become_log(pending):
                out, pending = out + pending, b""
            self._write(out)
        if pending and not is_tensorflow_log(pending):
            self._write(pending)

    def stop(self):
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(self.target, 2)  # closes this process's write end: the pump sees EOF
        self.thread.join(timeout=5)
        os.close(self.read)


def quiet_tensorflow():
    """Asks TensorFlow for warnings and errors only (``TF_CPP_MIN_LOG_LEVEL=2``, unless set)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def is_terminal(file):
    """Whether `file` writes to a terminal, seeing through `hide_tensorflow_log`'s pipe:
    stderr (or anything on descriptor 2) is a terminal when it was one before the filter."""
    try:
        fd = file.fileno()
    except (AttributeError, OSError, ValueError):
        return bool(getattr(file, "isatty", lambda: False)())
    if fd == 2 and _active:
        return _active[0].terminal
    return os.isatty(fd)


def terminal_columns(file):
    """The width of the terminal `file` writes to (through the filter too), or None."""
    if not is_terminal(file):
        return None
    for fd in ([_active[0].target] if _active else []) + [2, 1]:
        try:
            return os.get_terminal_size(fd).columns
        except OSError:
            continue
    return None


def hide_tensorflow_log():
    """Filters TensorFlow's C++ log lines out of this process's stderr until it exits.

    Also sets ``TF_CPP_MIN_LOG_LEVEL=2`` (unless set) for what TensorFlow does filter
    itself. Idempotent; meant for command-line entry points only (a test runner that
    captures descriptor 2 itself should not be wrapped).
    """
    quiet_tensorflow()
    if _active:
        return
    _active.append(_Filter())
    atexit.register(_active[0].stop)


def device_line():
    """One line on what TensorFlow computes on, e.g. for the start of a command's log."""
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = []
        for gpu in gpus:
            try:
                names.append(tf.config.experimental.get_device_details(gpu).get("device_name")
                             or gpu.name)
            except (ValueError, RuntimeError):
                names.append(gpu.name)
        return f"tfgal: TensorFlow {tf.__version__} on {len(gpus)} GPU ({', '.join(names)})"
    return (f"tfgal: TensorFlow {tf.__version__} on CPU ({os.cpu_count()} cores; no GPU visible, "
            "--verbose shows TensorFlow's own start-up log)")
