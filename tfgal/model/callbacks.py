"""Training callbacks: a NaN stop, restore-only backups for non-chief workers, precise
batch norm, and early stopping whose state survives a resumed run."""

from __future__ import annotations

import csv
import math
import os
import time
import weakref

import keras
import numpy as np
import tensorflow as tf

from tfgal.errors import TfgalError

__all__ = ["TrainingDiverged", "NaNGuard", "EpochTimer", "RestoreOnly", "recalibrate_batch_norm",
           "PreciseBatchNorm", "ResumableEarlyStopping", "best_and_wait"]


class TrainingDiverged(TfgalError, RuntimeError):
    """The loss became NaN or infinite."""


class NaNGuard(keras.callbacks.Callback):
    """Aborts on a NaN/inf loss before the epoch ends, so no checkpoint holds bad weights."""

    def __init__(self):
        super().__init__()
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise TrainingDiverged(
                f"loss became {float(loss)} at epoch {self.epoch + 1}, batch {batch + 1}; "
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


class RestoreOnly(keras.callbacks.BackupAndRestore):
    """BackupAndRestore for non-chief workers: restores from the chief's backup, never writes.

    Every worker must resume from the same epoch and weights after a restart; only the
    chief writes (the backup directory must be on a filesystem all workers see).
    Overrides Keras' private ``_save_model`` (checked by tests/test_keras_contract.py).
    """

    def _save_model(self):
        pass

    def on_train_end(self, logs=None):
        pass


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


class PreciseBatchNorm(keras.callbacks.Callback):
    """Recalibrates batch-norm statistics after the last step of every epoch, before
    validation and checkpoints see the model."""

    def __init__(self, batches_fn, steps_per_epoch):
        super().__init__()
        self.batches_fn = batches_fn  # () -> iterable of image batches
        self.steps_per_epoch = steps_per_epoch

    def on_train_batch_end(self, batch, logs=None):
        if batch == self.steps_per_epoch - 1:
            recalibrate_batch_norm(self.model.encoder, self.batches_fn())


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
