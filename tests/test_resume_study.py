"""A study killed inside a training stage, or inside a later stage, and run again writes
the `results.json` of a study never interrupted: every number, timings and dates aside."""

import json
import os

import keras
import pytest

from tfgal import study
from tfgal.model import training

from test_study import tiny_study

# Two models, two epochs of 12 steps with a state every 5 steps, and small attacks.
TOML = """
seed = 0
[data]
dir = "{data}"
mock = false
[train]
epochs = 2
steps_per_epoch = 12
checkpoint_steps = 5
batch_size = 16
learning_rate = 1e-3
[log]
images = 0
projector = 0
[loss]
mmd_weight = 0.01
[study]
models = ["baseline", "mmd"]
attack_n = 8
attack_popsize = 10
attack_iters = 3
attack_threshold = 0.9
curve_per_decade = 1
isomap_n = 12
isomap_neighbors = 8
church_windows = 1
church_grid = 5
"""

# What differs between two runs of one study whatever they compute: clocks, dates and
# where the files are.
VOLATILE = {"run_times", "wall_time_s", "date", "created", "command", "out", "run_dir",
            "export_dir", "path", "started", "finished", "seconds", "root", "dir", "reused"}


def _differences(a, b, where=""):
    """The paths at which two results differ, volatile keys aside."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = (set(a) | set(b)) - VOLATILE
        return [d for k in sorted(keys, key=str)
                for d in _differences(a.get(k), b.get(k), f"{where}/{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, f"{where}/{i}")]
    return [] if a == b else [where]


class _KillMmdInEpoch2(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if self.model.mmd_weight and self.model.optimizer.iterations.numpy() == 19:
            raise KeyboardInterrupt  # step 7 of epoch 2; its state: after step 5


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    _, _, cfg, out = tiny_study(tmp_path_factory.mktemp("straight"), TOML)
    return cfg, study.run(cfg, out, progress=False, train_verbose=0)


def test_killed_inside_a_training_stage(straight, tmp_path, monkeypatch):
    _, _, cfg, out = tiny_study(tmp_path, TOML)
    original = training._callbacks
    monkeypatch.setattr(training, "_callbacks",
                        lambda *a, **k: original(*a, **k) + [_KillMmdInEpoch2()])
    with pytest.raises(KeyboardInterrupt):
        study.run(cfg, out, progress=False, train_verbose=0)
    monkeypatch.setattr(training, "_callbacks", original)
    position = json.loads(open(os.path.join(out, "runs", "mmd", training.BACKUP,
                                            "position.json")).read())
    assert position == {"epoch": 1, "step": 5}
    resumed = study.run(cfg, out, progress=False, train_verbose=0)
    diff = _differences(resumed, straight[1])
    assert diff == [], diff


def test_killed_inside_a_later_stage(straight, tmp_path, monkeypatch):
    _, _, cfg, out = tiny_study(tmp_path, TOML)
    from tfgal.study import attacks
    original = attacks.Latent.run

    def interrupted(self, ctx, inputs):
        raise KeyboardInterrupt
    monkeypatch.setattr(attacks.Latent, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        study.run(cfg, out, progress=False, train_verbose=0)
    monkeypatch.setattr(attacks.Latent, "run", original)
    resumed = study.run(cfg, out, progress=False, train_verbose=0)
    diff = _differences(resumed, straight[1])
    assert diff == [], diff
