"""One progress helper for long work: a tqdm bar, or nothing when progress is off.

    with progress.bar(150, "attack", unit="galaxy") as bar:
        bar.update(5, successes=2)

`bar` is always an object with ``update(n, **postfix)``, so callers never test whether
progress is on. Postfix values are running totals the caller passes (shown as ``k=v``).
"""

from __future__ import annotations

import contextlib
import sys

from tfgal import console

__all__ = ["bar", "wanted"]


class _Silent:
    def update(self, n=1, **postfix):
        pass


class _Bar:
    def __init__(self, tqdm_bar):
        self._bar = tqdm_bar

    def update(self, n=1, **postfix):
        self._bar.update(n)
        if postfix:
            self._bar.set_postfix(postfix, refresh=False)


def wanted(enabled, file=None):
    """Whether to draw: `enabled` True or False as given; None: only when `file` (default
    stderr) is a terminal, as seen through the commands' stderr filter (`tfgal.console`)."""
    if enabled is not None:
        return bool(enabled)
    return console.is_terminal(sys.stderr if file is None else file)


@contextlib.contextmanager
def bar(total, desc, *, unit="galaxy", enabled=True, file=None):
    """A progress bar over `total` items named `desc`.

    `enabled`: True (always), False (silent) or None (only when `file` is a terminal).
    Writes to `file`, by default stderr, so that what a command prints on stdout (JSON)
    stays clean; refreshes at most every 2 s so that logs of batch jobs stay short.
    """
    file = sys.stderr if file is None else file
    if not wanted(enabled, file):
        yield _Silent()
        return
    from tqdm import tqdm
    with tqdm(total=total, desc=desc, unit=unit, mininterval=2.0, file=file,
              ncols=console.terminal_columns(file)) as t:
        yield _Bar(t)
