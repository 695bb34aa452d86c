"""Multi-worker training: two CPU workers on loopback ports under MultiWorkerMirroredStrategy."""

import csv
import json
import os
import sys
import threading
import time

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
import run_multiworker  # noqa: E402

from tfgal.model import export  # noqa: E402
from tfgal.data import pipeline
from tfgal.model import callbacks, training


def _train_args(blob_dataset, tmp_path, epochs):
    return ["--config", os.path.join(os.path.dirname(__file__), "..", "pipelines", "quick.toml"),
            "--set", f'data.dir="{blob_dataset.root}"', "--set", "data.mock=false",
            "--set", f"train.epochs={epochs}", "--set", "train.batch_size=8",
            "--set", "train.steps_per_epoch=12",  # what is tested is the cluster, not learning
            "--set", "train.patience=10", "--set", "log.projector=8", "--set", "log.images=2",
            "--logdir", str(tmp_path / "run"), "--out", str(tmp_path / "model")]


@pytest.fixture()
def worker_tmp(tmp_path, monkeypatch):
    """Workers' temporary directories land here, so leftovers can be checked."""
    path = tmp_path / "worker-tmp"
    path.mkdir()
    monkeypatch.setenv("TMPDIR", str(path))
    return path


def test_two_workers_train_and_only_the_chief_writes(blob_dataset, tmp_path, worker_tmp):
    statuses = run_multiworker.run(2, _train_args(blob_dataset, tmp_path, 2),
                                   log_dir=str(tmp_path / "logs"), timeout_s=600)
    logs = {i: (tmp_path / "logs" / f"worker-{i}.log").read_text()[-3000:] for i in range(2)}
    assert statuses == [0, 0], logs
    model = export.load(tmp_path / "model")
    images = pipeline.load_arrays(blob_dataset, "test", "Y10")
    probabilities = model.predict(images["images"])["probabilities"]
    assert probabilities.shape == (8, 3)
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-5)
    summary = json.loads((tmp_path / "run" / training.SUMMARY).read_text())
    assert set(summary["test_accuracy"]) == {"Y10", "Y1"}
    with open(tmp_path / "run" / training.HISTORY) as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0, 1]
    # One run directory and one export, written by the chief; the other worker's
    # temporary directory is gone.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs", "model", "run", "worker-tmp"]
    assert list(worker_tmp.iterdir()) == []


def test_a_killed_worker_rejoins_from_the_last_checkpoint(blob_dataset, tmp_path, worker_tmp):
    metadata = tmp_path / "run" / training.BACKUP / callbacks.POSITION
    killed = []

    def kill_worker_1_after_first_backup(index, process):
        if index != 1 or killed:
            return

        def watch():
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and process.poll() is None:
                if metadata.exists() and json.loads(metadata.read_text() or "{}").get("epoch", 0) >= 1:
                    process.kill()
                    killed.append(time.monotonic())
                    return
                time.sleep(0.2)
        threading.Thread(target=watch, daemon=True).start()

    statuses = run_multiworker.run(2, _train_args(blob_dataset, tmp_path, 4),
                                   log_dir=str(tmp_path / "logs"), restarts=6, timeout_s=900,
                                   on_start=kill_worker_1_after_first_backup)
    logs = {i: (tmp_path / "logs" / f"worker-{i}.log").read_text()[-3000:] for i in range(2)}
    assert killed, "worker 1 finished before it could be killed"
    assert statuses == [0, 0], logs
    with open(tmp_path / "run" / training.HISTORY) as f:
        epochs = [int(r["epoch"]) for r in csv.DictReader(f)]
    assert epochs[0] == 0 and epochs[-1] == 3
    assert len(epochs) <= 5  # resumed from the backup: at most one epoch done twice
    assert export.load(tmp_path / "model").n_classes == 3
