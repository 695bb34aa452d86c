"""A killed training, resumed, ends exactly where an uninterrupted one ends.

Every case trains the same tiny config twice: straight through, and killed (a callback
raising, or a real SIGKILL of a subprocess) then run again. With op determinism on (the
default) the histories, apart from wall-clock columns, and the exported weights must be
bit for bit the same.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from tfgal import config
from tfgal.model import callbacks, export, training

TIMING = ("epoch_seconds", "train_seconds")  # wall clock: the only columns that may differ


def _overrides(root):
    # 5 steps of 8 over 24 training galaxies: epochs straddle passes over the split; a
    # state every 2 steps puts mid-epoch states at steps 2 and 4.
    return [f'data.dir="{root}"', "data.mock=false", "train.epochs=3",
            "train.steps_per_epoch=5", "train.batch_size=8", "train.learning_rate=1e-3",
            "train.checkpoint_steps=2", "train.precise_bn_batches=2", "model.dropout=0.3",
            "log.images=0", "log.projector=0", 'name="tiny"']


@pytest.fixture()
def base_cfg(blob_dataset):
    return config.load(overrides=_overrides(blob_dataset.root))


def _at(cfg, tmp_path, tag):
    return config.merge(cfg, {"log": {"dir": str(tmp_path / tag / "run")},
                              "export": {"dir": str(tmp_path / tag / "model")}})


def _history(cfg):
    with open(os.path.join(cfg.log.dir, training.HISTORY)) as f:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]


def _weights(cfg):
    return export.load(cfg.export.dir).keras_replica().get_weights()


def _assert_same_run(a, b):
    assert _history(a) == _history(b)
    for x, y in zip(_weights(a), _weights(b), strict=True):
        np.testing.assert_array_equal(x, y)


class _KillAt(keras.callbacks.Callback):
    """Raises (as a kill would stop the process) after global step `step` (1-based)."""

    def __init__(self, step, steps_per_epoch):
        super().__init__()
        self.step, self.steps_per_epoch, self.epoch = step, steps_per_epoch, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch * self.steps_per_epoch + batch + 1 == self.step:
            raise KeyboardInterrupt


def _killed_then_resumed(cfg, monkeypatch, step):
    original = training._callbacks
    monkeypatch.setattr(training, "_callbacks",
                        lambda *a, **k: original(*a, **k) + [_KillAt(step, 5)])
    with pytest.raises(KeyboardInterrupt):
        training.train(cfg, verbose=0)
    monkeypatch.setattr(training, "_callbacks", original)
    assert not os.path.exists(cfg.export.dir)
    position = callbacks.load_state(os.path.join(cfg.log.dir, training.BACKUP))[0]
    training.train(cfg, verbose=0)
    return position


@pytest.mark.parametrize("recipe", ["streaming", "memory"])
def test_killed_mid_epoch_and_between_epochs_resumes_exactly(base_cfg, tmp_path, monkeypatch,
                                                             recipe, capfd):
    if recipe == "memory":  # the quick recipe: split in memory, one noise draw per galaxy
        base_cfg = config.merge(base_cfg, {"data": {"cache": True, "fresh_noise": False}})
    straight = _at(base_cfg, tmp_path, "straight")
    training.train(straight, verbose=0)
    assert len(_history(straight)) == 3

    # Killed after step 8 (epoch 2, step 3): the state of epoch 2, step 2 is resumed.
    mid = _at(base_cfg, tmp_path, "mid")
    assert _killed_then_resumed(mid, monkeypatch, 8) == {"epoch": 1, "step": 2}
    assert "resuming" in capfd.readouterr().err
    _assert_same_run(straight, mid)

    # Killed in the first step of epoch 3: the end-of-epoch-2 state is resumed.
    between = _at(base_cfg, tmp_path, "between")
    assert _killed_then_resumed(between, monkeypatch, 11) == {"epoch": 2, "step": 0}
    _assert_same_run(straight, between)


@pytest.mark.parametrize("defence", [
    {"data": {"depth_augment": True}},
    {"data": {"corrupt_augment": ["calibration", "trail"], "corrupt_prob": 0.5}}],
    ids=["depth-aug", "corruption-aug"])
def test_augmented_models_resume_exactly(base_cfg, tmp_path, monkeypatch, defence):
    cfg = config.merge(base_cfg, defence)
    straight = _at(cfg, tmp_path, "straight")
    training.train(straight, verbose=0)
    killed = _at(cfg, tmp_path, "killed")
    assert _killed_then_resumed(killed, monkeypatch, 9) == {"epoch": 1, "step": 4}
    _assert_same_run(straight, killed)


def test_a_state_is_written_whole_or_not_at_all(base_cfg, tmp_path):
    """The state file is replaced atomically and holds weights, optimizer and metrics."""
    cfg = _at(config.merge(base_cfg, {"train": {"epochs": 1}}), tmp_path, "one")
    keep = training.shutil.rmtree
    removed = []
    training.shutil.rmtree = lambda path, **k: removed.append(path)  # keep the last state
    try:
        training.train(cfg, verbose=0)
    finally:
        training.shutil.rmtree = keep
    meta, groups = callbacks.load_state(os.path.join(cfg.log.dir, training.BACKUP))
    assert meta == {"epoch": 1, "step": 0}
    assert groups["optimizer"][0] == 5  # the optimizer's step counter
    assert len(groups["model"]) > 10 and groups["metrics"]
    leftovers = [n for n in os.listdir(os.path.join(cfg.log.dir, training.BACKUP))
                 if ".tmp-" in n]
    assert leftovers == []


def test_sigkill_mid_epoch_then_rerun_matches_the_uninterrupted_run(blob_dataset, tmp_path):
    """A real SIGKILL of `tfgal-train` in a subprocess, then the same command again."""
    (tmp_path / "tiny.toml").write_text('name = "tiny"\n')
    sets = [a for o in _overrides(blob_dataset.root) + ["train.epochs=4",
                                                         "train.checkpoint_steps=1"]
            for a in ("--set", o)]
    straight, killed = (config.load(tmp_path / "tiny.toml", _overrides(blob_dataset.root) + [
        "train.epochs=4", "train.checkpoint_steps=1",
        f'log.dir="{tmp_path / tag / "run"}"', f'export.dir="{tmp_path / tag / "model"}"'])
        for tag in ("straight", "killed"))

    def cli(tag):
        return [sys.executable, "-c",
                "from tfgal.cli import train_main; raise SystemExit(train_main())",
                "--config", str(tmp_path / "tiny.toml"), *sets,
                "--logdir", str(tmp_path / tag / "run"), "--out", str(tmp_path / tag / "model")]
    first = subprocess.run(cli("straight"), capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    # stdout holds the summary alone; Keras' epoch lines and tfgal's messages go to stderr
    assert json.loads(first.stdout)["export_dir"] == straight.export.dir
    assert "Epoch 4/4" in first.stderr and "Epoch" not in first.stdout
    assert f"run {straight.log.dir}, export {straight.export.dir}" in first.stderr

    position = os.path.join(killed.log.dir, training.BACKUP, callbacks.POSITION)
    process = subprocess.Popen(cli("killed"), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    seen = None
    while time.monotonic() < deadline and process.poll() is None:
        if os.path.exists(position):
            seen = json.loads(open(position).read() or "{}")
            if seen.get("epoch") == 1 and seen.get("step", 0) >= 2:
                process.send_signal(signal.SIGKILL)
                break
        time.sleep(0.05)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not os.path.exists(killed.export.dir)

    again = subprocess.run(cli("killed"), capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "tfgal-train: resuming" in again.stderr and "epoch 2 of 4" in again.stderr
    _assert_same_run(straight, killed)

    # Run once more: finished, said so, nothing trained and no new event file.
    events = sorted(str(p) for p in (tmp_path / "killed" / "run").rglob("*tfevents*"))
    mtime = os.path.getmtime(os.path.join(killed.export.dir, "saved_model.pb"))
    third = subprocess.run(cli("killed"), capture_output=True, text=True,
                           timeout=600)
    assert third.returncode == 0, third.stderr[-2000:]
    assert "is finished" in third.stderr and killed.export.dir in third.stderr
    assert sorted(str(p) for p in (tmp_path / "killed" / "run").rglob("*tfevents*")) == events
    assert os.path.getmtime(os.path.join(killed.export.dir, "saved_model.pb")) == mtime


def test_one_writer_and_overwrite_starts_a_clean_run(base_cfg, tmp_path):
    from tfgal import locks
    from tfgal.errors import OutputBusy
    cfg = _at(config.merge(base_cfg, {"train": {"epochs": 1}}), tmp_path, "one")
    with locks.hold(cfg.log.dir, "another tfgal-train"):  # a run in progress on the output
        with pytest.raises(OutputBusy, match="another tfgal-train"):
            training.train(cfg, verbose=0)
    assert not os.path.exists(os.path.join(cfg.log.dir, training.HISTORY))

    def events():
        return sorted(str(p) for p in (tmp_path / "one" / "run").rglob("*tfevents*"))
    training.train(cfg, verbose=0)
    first = events()
    assert first and len(_history(cfg)) == 1
    training.train(cfg, verbose=0, overwrite=True)
    assert len(events()) == len(first) and set(events()).isdisjoint(first)
    assert len(_history(cfg)) == 1  # one run, one curve: the old one is gone


def test_an_export_of_another_run_is_refused_and_left_as_it_was(base_cfg, tmp_path):
    from tfgal import io
    from tfgal.errors import OutputExists
    first = _at(config.merge(base_cfg, {"train": {"epochs": 1}}), tmp_path, "first")
    training.train(first, verbose=0)
    pb = os.path.join(first.export.dir, "saved_model.pb")
    before = io.sha256_file(pb)
    other = config.merge(first, {"log": {"dir": str(tmp_path / "other" / "run")}})
    with pytest.raises(OutputExists, match="--overwrite"):
        training.train(other, verbose=0)
    assert io.sha256_file(pb) == before
    assert not os.path.exists(os.path.join(other.log.dir, training.HISTORY))
