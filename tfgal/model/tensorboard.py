"""TensorBoard extras: example galaxies as RGB images and the latent embedding projector."""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from tfgal.data import pipeline
from tfgal.data import stretch as stretch_lib

__all__ = ["gri_to_rgb", "ExampleGalaxies", "write_projector", "value_range"]


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


def write_projector(logdir, classifier, manifest, depths, *, n, seed):
    """Latents of `n` validation galaxies at each depth, for TensorBoard's projector.

    `classifier` is an `export.ExportedClassifier` (its `predict` gives the latents).
    """
    from tensorboard.plugins import projector
    folder = os.path.join(logdir, "projector")
    os.makedirs(folder, exist_ok=True)
    latents, rows = [], []
    for depth in depths:
        data = pipeline.load_arrays(manifest, "val", depth, n=n, seed=seed)
        latents.append(classifier.predict(data["images"])["latent"])
        rows += [(manifest.class_names[y], str(depth), int(g))
                 for y, g in zip(data["labels"], data["galaxy_id"])]
    with open(os.path.join(folder, "metadata.tsv"), "w") as f:
        f.write("class\tdepth\tgalaxy_id\n")
        f.writelines(f"{c}\t{d}\t{g}\n" for c, d, g in rows)
    embedding = tf.Variable(np.concatenate(latents).astype(np.float32), name="latent")
    tf.train.Checkpoint(latent=embedding).save(os.path.join(folder, "latent.ckpt"))
    config = projector.ProjectorConfig()
    entry = config.embeddings.add()
    entry.tensor_name = "latent/.ATTRIBUTES/VARIABLE_VALUE"
    entry.metadata_path = "metadata.tsv"
    projector.visualize_embeddings(folder, config)
    return folder
