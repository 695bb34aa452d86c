"""One writer per output: an exclusive lock beside each output a command writes.

`hold(path)` takes a non-blocking exclusive ``flock`` on ``<parent>/.<name>.lock``, a
hidden sibling of the output. It cannot live inside the output: datasets and SavedModels
are built elsewhere and published whole (`tfgal.io.publish_directory`), and a dataset
directory must be empty or refused. A second writer, in this process or another, is
refused at once with `OutputBusy`, one line naming the output and the holder (pid,
command, start time, host), which the holder writes into the lock file while it holds it.

The kernel drops a flock when its holder dies, SIGKILL included, so a lock file left by
a killed process never blocks: the next writer takes it over. A clean release removes
the file. Where ``fcntl`` is missing (Windows), or the file system refuses locks, `hold`
yields without locking.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import socket
import sys
import time

try:
    import fcntl
except ImportError:  # Windows: no flock; hold() does not lock there
    fcntl = None

from tfgal.errors import OutputBusy

__all__ = ["OutputBusy", "hold", "check", "holder", "lock_path"]

# File systems without flock support (some NFS mounts): run unlocked rather than fail.
_NO_LOCKING = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
_HELD = set()  # descriptors of the locks this process holds


def _close_in_child():
    # A forked child (mock rendering pools) must not keep its parent's lock alive after
    # the parent dies; closing the child's copy leaves the parent's lock in place.
    for fd in list(_HELD):
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_child)


def lock_path(path):
    """The lock file of output `path`: ``<parent>/.<basename>.lock``."""
    parent, name = os.path.split(os.path.abspath(os.fspath(path)))
    return os.path.join(parent, f".{name}.lock")


@contextlib.contextmanager
def hold(path, command=None):
    """Holds the exclusive lock of output `path` (a file or directory, existing or not)
    for the block; raises `OutputBusy` at once if another holder has it.

    Args:
      path: the output; its parent directory is created if missing.
      command: what the holder is doing, shown to a refused writer (default: this
        process's command line).
    """
    if fcntl is None:
        yield
        return
    lockfile = lock_path(path)
    os.makedirs(os.path.dirname(lockfile), exist_ok=True)
    fd = _acquire(path, lockfile)
    if fd is None:
        yield
        return
    owner = os.getpid()
    _HELD.add(fd)
    try:
        _write_info(fd, command)
        yield
    finally:
        if os.getpid() == owner:  # never in a forked child unwinding a copy of this frame
            _HELD.discard(fd)
            # Unlink while still holding, then close: nobody can lock the removed file
            # and believe it owns the output (see the inode check in `_acquire`).
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lockfile)
            os.close(fd)


def _acquire(path, lockfile):
    """A descriptor of `lockfile` holding its exclusive flock, or None (no locking here)."""
    while True:
        fd = os.open(lockfile, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _busy(path, lockfile) from None
        except OSError as e:
            os.close(fd)
            if e.errno in _NO_LOCKING:
                return None
            raise
        try:
            mine, named = os.fstat(fd), os.stat(lockfile)
            same = (mine.st_ino, mine.st_dev) == (named.st_ino, named.st_dev)
        except FileNotFoundError:
            same = False
        if same:
            return fd
        # The previous holder released and unlinked this file between our open and
        # flock: the lock we got guards nothing; open the path anew.
        os.close(fd)


def _write_info(fd, command):
    info = {"pid": os.getpid(), "host": socket.gethostname(),
            "command": " ".join((command or _command_line()).split()),  # one line
            "since": datetime.datetime.now().isoformat(timespec="seconds")}
    os.ftruncate(fd, 0)  # a stale holder's line, when taking over
    os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)


def _command_line():
    argv = [a for a in sys.argv if a] or ["python"]
    head = "python -c" if argv[0] == "-c" else os.path.basename(argv[0])
    return " ".join([head, *argv[1:]])[:200]


def _read(lockfile):
    try:
        with open(lockfile, encoding="utf-8") as f:
            info = json.loads(f.readline())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _busy(path, lockfile):
    info = None
    for _ in range(10):  # the holder may be between its flock and writing its line
        info = _read(lockfile)
        if info:
            break
        time.sleep(0.02)
    if info:
        who = (f"pid {info.get('pid', '?')} ({info.get('command', '?')}, since "
               f"{info.get('since', '?')}) on host {info.get('host', '?')}")
    else:
        who = "another process"
    return OutputBusy(f"{os.fspath(path)} is being written by {who}; wait for it to finish "
                      "or choose another output", path=path, holder=info)


def check(path):
    """Raises `OutputBusy` now if a live process holds `path`'s lock: a command's refusal
    before it reads any input. Creates nothing; the lock itself is taken later (`hold`)."""
    if holder(path) is not None:
        raise _busy(path, lock_path(path))


def holder(path):
    """The info (pid, host, command, since) of the live holder of `path`'s lock, or None.

    Read from the lock file, which only a holder (or a killed one) leaves behind; a holder
    on this host is checked alive by its pid, one on another host is taken as live.
    """
    info = _read(lock_path(path))
    if not info:
        return None
    if info.get("host") == socket.gethostname():
        try:
            os.kill(int(info.get("pid")), 0)
        except ProcessLookupError:
            return None
        except (PermissionError, TypeError, ValueError, OverflowError):
            pass  # alive under another user, or a line we cannot check
    return info
