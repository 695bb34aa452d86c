"""What TensorBoard shows of a training run, beyond Keras' own scalars.

* ``examples/``: a few validation galaxies at each depth as gri colour images;
* ``projector/``: the latents of validation galaxies at both depths for the embedding
  projector, with a metadata table (galaxy id, class, depth, predicted class, correct)
  and a sprite of gri thumbnails, so that each point can be seen as the galaxy it is.
  The folder also holds an event file (a text note on what the embedding is): TensorBoard's
  projector only reads configs from the log directory itself or from a run directory,
  i.e. one holding event files;
* ``hparams/``: the run's HParams session (its hyperparameters, `hparams`) and its final
  metrics: accuracy per split and depth (`FINAL_TAG`) and the last epoch's training and
  validation metrics (`EPOCH_TAG`), so that runs under one log directory (a study's
  models) are compared in the HParams tab. The session has a folder of its own because
  TensorBoard's HParams plugin finds no metrics for a session at the log directory's root
  (run "."), which the run directory itself is under ``tensorboard --logdir runs/NAME``.
"""

from __future__ import annotations

import glob
import math
import os
import shutil
import uuid

import keras
import numpy as np
import tensorflow as tf

from tfgal import io
from tfgal.data import pipeline
from tfgal.data import stretch as stretch_lib

__all__ = ["gri_to_rgb", "ExampleGalaxies", "write_projector", "value_range", "sprite",
           "hparams", "write_hparams", "write_final_metrics", "write_scalars", "replace_scalars",
           "PROJECTOR", "HPARAMS", "EPOCH_TAG",
           "EMBEDDING", "FINAL_TAG", "SPRITE_MAX"]

PROJECTOR = "projector"
HPARAMS = "hparams"
EMBEDDING = "latent/.ATTRIBUTES/VARIABLE_VALUE"  # the checkpoint key of the latent table
FINAL_TAG = "final_accuracy"
EPOCH_TAG = "final_epoch"
SPRITE_MAX = 8192  # the projector's largest sprite side, in pixels
THUMBNAIL = 64  # largest thumbnail side, in pixels


def value_range(manifest):
    """The value range of a dataset's stretched pixels; None when it is not stretched."""
    return stretch_lib.value_range(manifest.stretch) if manifest.stretch else None


def gri_to_rgb(images, value_range):
    """Stretched g, r, i images -> RGB in [0, 1] (i red, r green, g blue)."""
    images = np.asarray(images, np.float32)
    if value_range is not None:
        lo, hi = (np.asarray(v, np.float32) for v in value_range)
        images = (images - lo) / np.maximum(hi - lo, 1e-6)
    return np.clip(images[..., ::-1], 0.0, 1.0)


class ExampleGalaxies(keras.callbacks.Callback):
    """Writes a few validation galaxies at each depth to TensorBoard at the start."""

    def __init__(self, logdir, examples, value_range):
        super().__init__()
        self.logdir = logdir
        self.examples = examples  # {depth name: images}
        self.value_range = value_range

    def on_train_begin(self, logs=None):
        writer = tf.summary.create_file_writer(os.path.join(self.logdir, "examples"))
        with writer.as_default():
            for depth, images in self.examples.items():
                tf.summary.image(f"galaxies/{depth}", gri_to_rgb(images, self.value_range),
                                 step=0, max_outputs=len(images))
        writer.close()


# --------------------------------------------------------------------------- projector


def sprite(images, value_range):
    """gri thumbnails of `images` tiled row by row into one square RGB uint8 image.

    Returns (sprite [S, S, 3], thumbnail side). Thumbnails are at most `THUMBNAIL` pixels
    and small enough that the sprite fits the projector's `SPRITE_MAX`.
    """
    n, height, width = len(images), images.shape[1], images.shape[2]
    grid = max(1, math.ceil(math.sqrt(n)))
    side = int(min(THUMBNAIL, height, width, SPRITE_MAX // grid))
    rgb = gri_to_rgb(images, value_range)
    thumbs = tf.image.resize(rgb, (side, side), antialias=True).numpy()
    tiles = np.zeros((grid * grid, side, side, 3), np.float32)
    tiles[:n] = np.clip(thumbs, 0.0, 1.0)
    tiles = tiles.reshape(grid, grid, side, side, 3).transpose(0, 2, 1, 3, 4)
    return np.round(tiles.reshape(grid * side, grid * side, 3) * 255).astype(np.uint8), side


def write_projector(logdir, classifier, manifest, depths, *, n, seed, noise_mode="fast"):
    """Latents of `n` validation galaxies at each depth, for TensorBoard's projector.

    `classifier` is an `export.ExportedClassifier` (its `predict` gives the latents and
    probabilities). The folder ``LOGDIR/projector`` is built aside and replaces any older
    one whole. Returns its path.
    """
    from tensorboard.plugins import projector
    folder = os.path.join(logdir, PROJECTOR)
    tmp = f"{folder}.tmp-{uuid.uuid4().hex[:8]}"
    os.makedirs(tmp)
    try:
        latents, images, rows = [], [], []
        for depth in depths:
            data = pipeline.load_arrays(manifest, "val", depth, n=n, seed=seed,
                                        noise_mode=noise_mode)
            out = classifier.predict(data["images"])
            latents.append(out["latent"])
            images.append(data["images"])
            predicted = np.argmax(out["probabilities"], axis=1)
            rows += [(int(g), manifest.class_names[y], str(depth), manifest.class_names[p],
                      "yes" if p == y else "no")
                     for g, y, p in zip(data["galaxy_id"], data["labels"], predicted)]
        latent = np.concatenate(latents).astype(np.float32)
        with open(os.path.join(tmp, "metadata.tsv"), "w") as f:
            f.write("galaxy_id\tclass\tdepth\tpredicted\tcorrect\n")
            f.writelines("\t".join(map(str, row)) + "\n" for row in rows)
        picture, side = sprite(np.concatenate(images), value_range(manifest))
        tf.io.write_file(os.path.join(tmp, "sprite.png"), tf.io.encode_png(picture))
        # relative paths in the checkpoint state: the folder can be renamed and moved
        tf.train.Checkpoint(latent=tf.Variable(latent, name="latent")).save(
            os.path.join(tmp, "latent.ckpt"))
        config = projector.ProjectorConfig()
        entry = config.embeddings.add()
        entry.tensor_name = EMBEDDING
        entry.metadata_path = "metadata.tsv"
        entry.sprite.image_path = "sprite.png"
        entry.sprite.single_image_dim.extend([side, side])
        projector.visualize_embeddings(tmp, config)
        writer = tf.summary.create_file_writer(tmp)
        with writer.as_default():
            per_depth = len(rows) // len(depths)
            tf.summary.text("embedding", (
                f"Latent vectors ({latent.shape[1]} dimensions) of the same {per_depth} "
                f"validation galaxies at each of {', '.join(map(str, depths))}, "
                f"{len(rows)} points. Open the Projector tab; colour by `depth` to see the "
                "domain shift, by `class` or `correct` to see what the classifier separates; "
                "points show as gri thumbnails."), step=0)
        writer.close()
        io.publish_directory(tmp, folder)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


# --------------------------------------------------------------------------- HParams


def hparams(cfg, weight_decay):
    """The hyperparameters a run is compared by in TensorBoard's HParams tab."""
    return {
        "name": cfg.name, "seed": cfg.seed,
        "model": cfg.model.name, "latent_dim": cfg.model.latent_dim,
        "mmd_weight": cfg.loss.mmd_weight, "fisher_weight": cfg.loss.fisher_weight,
        "entropy_weight": cfg.loss.entropy_weight, "feed_target": cfg.loss.feed_target,
        "depth_augment": cfg.data.depth_augment,
        "corrupt_augment": ",".join(cfg.data.corrupt_augment) or "none",
        "learning_rate": cfg.train.learning_rate, "schedule": cfg.train.schedule,
        "batch_size": cfg.train.batch_size, "epochs": cfg.train.epochs,
        "steps_per_epoch": cfg.train.steps_per_epoch, "weight_decay": weight_decay,
        "weight_decay_mode": cfg.train.weight_decay_mode,
        "data": os.path.abspath(cfg.data.dir), "source_depth": cfg.data.source_depth,
        "target_depth": cfg.data.target_depth, "augment": cfg.data.augment,
    }


def write_hparams(run_dir, values, trial_id):
    """Starts the run's HParams session in ``RUN_DIR/hparams``."""
    from tensorboard.plugins.hparams import api as hp
    writer = tf.summary.create_file_writer(os.path.join(run_dir, HPARAMS))
    with writer.as_default():
        hp.hparams(values, trial_id=trial_id)
    writer.close()


def write_scalars(run_dir, values, step):
    """Writes scalars {tag: value} at `step` into an event file of `run_dir`."""
    writer = tf.summary.create_file_writer(run_dir)
    with writer.as_default():
        for tag, value in values.items():
            tf.summary.scalar(tag, float(value), step=step)
    writer.close()


def write_final_metrics(run_dir, summary, last_epoch, step):
    """The run's HParams session metrics, in ``RUN_DIR/hparams``: the exported model's
    accuracy per split and depth (``final_accuracy/<split>_<depth>``) and the last
    epoch's logged metrics {name: value} (``final_epoch/<name>``, e.g. ``val_mmd``)."""
    values = {f"{FINAL_TAG}/{split}_{depth}": value
              for split in ("val", "test")
              for depth, value in summary.get(f"{split}_accuracy", {}).items()}
    values.update({f"{EPOCH_TAG}/{k}": v for k, v in last_epoch.items()})
    write_scalars(os.path.join(run_dir, HPARAMS), values, step)
    return sorted(values)


def replace_scalars(run_dir, values, step):
    """`write_scalars` into a directory of its own, dropping what an earlier call wrote
    there (a rerun must not add a second point per step)."""
    for path in glob.glob(os.path.join(run_dir, "events.out.tfevents.*")):
        os.remove(path)
    write_scalars(run_dir, values, step)
