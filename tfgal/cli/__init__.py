"""Command-line entry points, one per stage of the flow:

* ``tfgal-data``: build mock datasets, import survey data, check and describe datasets;
* ``tfgal-train``: train a morphology classifier from a config and export it;
* ``tfgal-attack``: one-pixel attacks on an exported model over a dataset split;
* ``tfgal-study``: the whole robustness study, resumable, with figures and a report;
* ``tfgal-predict``: an exported model over a dataset or FITS cutouts, into a catalogue.

One module per command (`parser()` and `main(argv)`), and `common` for what they share.
Each command parses its arguments before anything imports TensorFlow (so ``--help`` and
usage errors answer at once), turns tfgal's errors into one readable line and exit status
2, and calls into the library; no science happens here. Results go to stdout (one JSON
document), everything else (progress, Keras' epoch lines, messages) to stderr.
"""

from __future__ import annotations

import importlib

# the commands' modules import no TensorFlow at import time (tests/test_cli_help.py)
from tfgal.cli import attack, data, predict, study, train
from tfgal.cli.common import run

__all__ = ["data_main", "train_main", "attack_main", "study_main", "predict_main",
           "attack", "data", "predict", "study", "train"]


def _main(command, argv):
    return run(importlib.import_module(f"tfgal.cli.{command}"), argv)


def data_main(argv=None):
    return _main("data", argv)


def train_main(argv=None):
    return _main("train", argv)


def attack_main(argv=None):
    return _main("attack", argv)


def study_main(argv=None):
    return _main("study", argv)


def predict_main(argv=None):
    return _main("predict", argv)
