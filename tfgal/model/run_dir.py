"""A training run's directory: what is in it, and what a new run may do with it
(resume, start over, or say it is finished); see `tfgal.model.training`."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil

from tfgal import io
from tfgal.errors import ConfigError, OutputExists
from tfgal.model import callbacks as callbacks_lib, final_eval

__all__ = ["BACKUP", "BEST", "HISTORY", "SUMMARY", "CONFIG", "PREDICTIONS", "resumable",
           "prepare_run_dir", "truncate_history", "history_rows"]

BACKUP = "backup"
BEST = "best.weights.h5"
HISTORY = "history.csv"
SUMMARY = "summary.json"
CONFIG = "config.json"
PREDICTIONS = final_eval.PREDICTIONS

# What a run writes in its directory; a fresh start removes these, and nothing else.
_RUN_FILES = (HISTORY, SUMMARY, BEST, PREDICTIONS, CONFIG)
_RUN_DIRS = (BACKUP, "train", "validation", "examples", "projector", "hparams")


def resumable(run_dir, cfg):
    """Whether `run_dir` holds an interrupted run of `cfg` that `train` would resume."""
    return (callbacks_lib.has_state(os.path.join(run_dir, BACKUP))
            and _saved_config(run_dir) == cfg.to_dict())


def _saved_config(run_dir):
    """The config a run in `run_dir` was started with, or None."""
    saved = os.path.join(run_dir, CONFIG)
    if not os.path.exists(saved):
        return None
    with open(saved) as f:
        return json.load(f)


def _clear_run(run_dir):
    for name in _RUN_FILES:
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(run_dir, name))
    for name in _RUN_DIRS:
        shutil.rmtree(os.path.join(run_dir, name), ignore_errors=True)


def prepare_run_dir(run_dir, cfg, export_dir=None, overwrite=False):
    """What `train` does in `run_dir`: "resume" an interrupted run of this config, "fresh"
    (an empty, new or overwritten directory) or "finished" (a finished run of this config,
    not trained again without `overwrite`). Anything else there is refused, naming
    ``--overwrite``; so is an existing export of another run."""
    os.makedirs(run_dir, exist_ok=True)
    previous = _saved_config(run_dir)
    state = callbacks_lib.has_state(os.path.join(run_dir, BACKUP))
    finished = os.path.exists(os.path.join(run_dir, SUMMARY)) and not state
    if overwrite:
        _clear_run(run_dir)
    elif state and previous is not None:
        if previous != cfg.to_dict():
            raise ConfigError(
                f"{run_dir} holds an interrupted run with another config; rerun with the "
                "same config to resume it, with --overwrite to discard it, or choose "
                "another --logdir", key="log.dir")
        return "resume"
    elif finished:
        if previous != cfg.to_dict():
            raise OutputExists(
                f"{run_dir} holds a finished run of another config; rerun with --overwrite "
                "to replace it, or choose another --logdir")
        return "finished"
    else:
        _clear_run(run_dir)  # an empty directory, or a run killed before its first state
        if export_dir and os.path.exists(export_dir):
            raise OutputExists(f"{export_dir} exists; rerun with --overwrite to replace it, "
                               "or choose another --out")
    io.write_json(os.path.join(run_dir, CONFIG), cfg.to_dict())
    return "fresh"


def truncate_history(run_dir, epochs):
    """Keeps the first `epochs` rows of history.csv: rows written after the saved state
    (a kill between the two) are done again, not doubled."""
    rows = history_rows(run_dir)
    if len(rows) > epochs:
        io.write_csv(os.path.join(run_dir, HISTORY), rows[:epochs])


def history_rows(run_dir):
    """The per-epoch rows of a run's history.csv as dicts ([] before the first epoch)."""
    path = os.path.join(run_dir, HISTORY)
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
