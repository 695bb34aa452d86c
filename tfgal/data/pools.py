"""Process pools of the data wing (mock rendering, statmorph): worker count and start method."""

from __future__ import annotations

import multiprocessing
import os
import sys

import numpy as np

from tfgal.errors import ConfigError

__all__ = ["check_workers", "start_method"]


def check_workers(workers):
    """`workers` as a process count (None: all cores); anything else but an int >= 1 is a
    `ConfigError` naming it."""
    if workers is None:
        return os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ConfigError(f"workers must be an integer >= 1 or None; received "
                          f"workers={workers!r}", key="workers")
    return int(workers)


def start_method():
    # Fork is fast and needs no `if __name__ == "__main__"` guard in the caller's script,
    # but forking a process where TensorFlow's thread pools run can deadlock the child.
    # Either way every worker computes the same results.
    if "tensorflow" in sys.modules or "fork" not in multiprocessing.get_all_start_methods():
        return "spawn"
    return "fork"
