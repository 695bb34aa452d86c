"""Training callbacks: a NaN stop, the exact training state saved for a resume, precise
batch norm, and early stopping whose state survives a resumed run."""

from __future__ import annotations

import csv
import json
import math
import os
import time
import weakref

import keras
import numpy as np
import tensorflow as tf

from tfgal import io
from tfgal.errors import TfgalError

__all__ = ["TrainingDiverged", "NaNGuard", "EpochTimer", "TrainingState", "state_arrays",
           "save_state", "has_state", "load_state", "restore_state", "RestoreMetrics",
           "recalibrate_batch_norm", "PreciseBatchNorm", "ResumableEarlyStopping",
           "best_and_wait"]


class TrainingDiverged(TfgalError, RuntimeError):
    """The loss became NaN or infinite."""


class _StepCallback(keras.callbacks.Callback):
    """Knows the epoch and the step within it: `self.offset + batch` is the step of Keras'
    `batch`, counted from `first_step` in the first epoch of a fit that resumes an epoch
    part-way (Keras numbers that fit's batches from 0) and from 0 in later ones."""

    def __init__(self, first_step=0):
        super().__init__()
        self.epoch = None
        self.offset = first_step

    def on_epoch_begin(self, epoch, logs=None):
        if self.epoch is not None:
            self.offset = 0
        self.epoch = epoch


class NaNGuard(_StepCallback):
    """Aborts on a NaN/inf loss before the epoch ends, so no checkpoint holds bad weights."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise TrainingDiverged(
                f"loss became {float(loss)} at epoch {self.epoch + 1}, batch "
                f"{self.offset + batch + 1}; "
                "training stopped, the last good checkpoints are kept. Lower "
                "train.learning_rate or the loss weights and rerun the same command to resume.")


class EpochTimer(keras.callbacks.Callback):
    """Adds ``epoch_seconds`` (this epoch, its validation and recalibration included) and
    ``train_seconds`` (all epochs so far, of every run of a resumed job) to the epoch's
    logs, so that history.csv and TensorBoard hold learning curves against time."""

    def __init__(self, history_path):
        super().__init__()
        self.history_path = history_path
        self.before = 0.0
        self.start = 0.0

    def on_train_begin(self, logs=None):
        self.before = _last_value(self.history_path, "train_seconds")

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self.start
            self.before += logs["epoch_seconds"]
            logs["train_seconds"] = self.before


def _last_value(history_path, column):
    if not os.path.exists(history_path):
        return 0.0
    with open(history_path, newline="") as f:
        values = [row.get(column) for row in csv.DictReader(f)]
    return float(values[-1]) if values and values[-1] not in (None, "") else 0.0


STATE = "state.npz"        # the exact training state (one file, replaced atomically)
POSITION = "position.json"  # its epoch and step, for people and watchers


def _state_groups(model):
    """Every variable the rest of a run depends on, by group, in a fixed order: weights,
    batch-norm statistics and dropout seeds; the optimizer's slots, step counter and loss
    scale; and the running sums of the epoch's metrics."""
    return {"model": model.variables, "optimizer": model.optimizer.variables,
            "metrics": model.metrics_variables}


def state_arrays(model):
    """The values of the training state's variables, by key. Every worker of a
    multi-worker run must call it together: metric sums are all-reduced when read."""
    return {f"{group}/{i:05d}": tf.convert_to_tensor(v.value).numpy()
            for group, variables in _state_groups(model).items()
            for i, v in enumerate(variables)}


def save_state(directory, model, epoch, step, arrays=None):
    """Writes the training state after `step` steps of epoch `epoch` (0-based; step 0:
    the epoch has not begun) to ``directory/state.npz``, atomically."""
    arrays = dict(state_arrays(model) if arrays is None else arrays)
    meta = {"epoch": int(epoch), "step": int(step)}
    arrays["meta"] = np.array(json.dumps(meta))
    io.write_npz(os.path.join(directory, STATE), arrays)
    io.write_json(os.path.join(directory, POSITION), meta)


def has_state(directory):
    """Whether `directory` holds a saved training state (without reading it)."""
    return os.path.exists(os.path.join(directory, STATE))


def load_state(directory):
    """(meta, {group: [arrays]}) of a saved training state, or None when there is none."""
    if not has_state(directory):
        return None
    with np.load(os.path.join(directory, STATE)) as f:
        meta = json.loads(str(f["meta"]))
        groups = {}
        for key in sorted(k for k in f.files if k != "meta"):
            group = key.split("/")[0]
            groups.setdefault(group, []).append(f[key])
    return meta, groups


def restore_state(model, groups, names=("model", "optimizer")):
    """Assigns saved arrays to the model's variables (see `_state_groups`); a state saved
    by another model is refused, naming the first variable that differs."""
    current = _state_groups(model)
    for group in names:
        variables, arrays = current[group], groups.get(group, [])
        if len(variables) != len(arrays):
            raise TfgalError(f"the saved training state has {len(arrays)} {group} "
                             f"variables, this model {len(variables)}: not this run's state")
        for v, value in zip(variables, arrays):
            if tuple(v.shape) != value.shape:
                raise TfgalError(f"the saved training state's {group} variable {v.path} has "
                                 f"shape {value.shape}, the model's {tuple(v.shape)}")
            v.assign(value)


class TrainingState(_StepCallback):
    """Saves the exact training state at the end of every epoch and, with `every`, every
    `every` steps within one, so that a resumed run continues the very same computation.

    `first_step`: the step the first epoch of this fit starts at (a resumed epoch).
    `write`: False on non-chief workers, which restore the chief's state but never write.
    """

    def __init__(self, directory, steps_per_epoch, *, every=0, first_step=0, write=True):
        super().__init__(first_step)
        self.directory = directory
        self.steps_per_epoch = steps_per_epoch
        self.every = every
        self.write = write

    def on_train_batch_end(self, batch, logs=None):
        step = self.offset + batch + 1
        if self.every and step % self.every == 0 and step < self.steps_per_epoch:
            self._save(self.epoch, step)

    def on_epoch_end(self, epoch, logs=None):
        self._save(epoch + 1, 0)

    def _save(self, epoch, step):
        arrays = state_arrays(self.model)  # on every worker: reading may all-reduce
        if self.write:
            save_state(self.directory, self.model, epoch, step, arrays)


class RestoreMetrics(keras.callbacks.Callback):
    """Puts a mid-epoch state's running metric sums back after Keras has reset them at the
    start of the resumed epoch: its logged means then cover the whole epoch."""

    def __init__(self, arrays):
        super().__init__()
        self.arrays = arrays

    def on_epoch_begin(self, epoch, logs=None):
        if self.arrays is not None:
            restore_state(self.model, {"metrics": self.arrays}, names=("metrics",))
            self.arrays = None


# Built once per encoder, not once per epoch; kept off the encoder, whose tracked
# attributes the SavedModel export walks (and would trace the probe for).
_PROBES = weakref.WeakKeyDictionary()


def _probe(encoder, norms):
    """A compiled function: images -> (mean, variance) of every norm layer's input."""
    cached = _PROBES.get(encoder)
    if cached is not None:
        return cached
    inputs = keras.Model(encoder.inputs, [layer.input for layer in norms])

    @tf.function(reduce_retracing=True)
    def probe(images):
        out = []
        for x in inputs(images, training=True):
            x = tf.cast(x, tf.float32)  # float16 under mixed precision: its variance overflows
            axes = list(range(len(x.shape) - 1))
            out.append((tf.reduce_mean(x, axes), tf.math.reduce_variance(x, axes)))
        return out
    _PROBES[encoder] = probe
    return probe


def recalibrate_batch_norm(encoder, batches):
    """Sets every BatchNormalization's moving statistics to their value under the
    current weights ("precise BN"), averaged over `batches` run as in training.

    Moving averages lag the weights; on these faint-feature images that lag alone costs
    much of the validation accuracy in inference mode.
    """
    norms = [layer for layer in encoder.layers
             if isinstance(layer, keras.layers.BatchNormalization)]
    if not norms:
        return
    probe = _probe(encoder, norms)
    means = [0.0] * len(norms)
    variances = [0.0] * len(norms)
    n = 0
    for images in batches:
        for i, (mean, variance) in enumerate(probe(images)):
            means[i] += mean
            variances[i] += variance
        n += 1
    for layer, mean, variance in zip(norms, means, variances):
        layer.moving_mean.assign(mean / n)
        layer.moving_variance.assign(variance / n)


class PreciseBatchNorm(_StepCallback):
    """Recalibrates batch-norm statistics after the last step of every epoch, before
    validation and checkpoints see the model."""

    def __init__(self, batches_fn, steps_per_epoch, first_step=0):
        super().__init__(first_step)
        self.batches_fn = batches_fn  # epoch -> iterable of image batches
        self.steps_per_epoch = steps_per_epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.offset + batch == self.steps_per_epoch - 1:
            recalibrate_batch_norm(self.model.encoder, self.batches_fn(self.epoch))


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping whose best value and patience counter are rebuilt from history.csv."""

    def __init__(self, history_path, **kwargs):
        super().__init__(**kwargs)
        self.history_path = history_path

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        best, wait = best_and_wait(self.history_path, self.monitor)
        if best is not None:
            self.best, self.wait = best, wait


def best_and_wait(history_path, monitor):
    """(best value, epochs since it) of `monitor` in a CSVLogger file; (None, 0) if none."""
    if not os.path.exists(history_path):
        return None, 0
    with open(history_path, newline="") as f:
        values = [float(row[monitor]) for row in csv.DictReader(f) if row.get(monitor)]
    if not values:
        return None, 0
    best_index = int(np.argmin(values))
    return values[best_index], len(values) - 1 - best_index
