"""Catalogues on Apache Beam (``tfgal-predict --beam``): Beam's RunInference with its
TensorFlow model handler, over a tfgal dataset's record files.

The pipeline: one element per record file of the split; a worker reads its file through
tfgal's tf.data pipeline (the same per-galaxy noise, seeded by (seed, galaxy id), and the
model's stretch as the local path), keyed by (file, position, galaxy id, label); Beam's
`RunInference` batches the images and runs the exported model's ``serving_default`` with
`TFModelHandlerNumpy`; the rows are gathered, put back in the dataset's order and
written as the catalogue `tfgal.model.predict` writes (same columns, same metadata), so
the two paths give the same rows and probabilities up to float rounding of batching.

Beam's handler loads models with ``tf.keras.models.load_model``, which under Keras 3 no
longer reads SavedModels; tfgal's handler subclasses it and loads the model as every
other tfgal client does (`export.load`). Reading a record file per element keeps the
images out of Beam's shuffles until RunInference's batching; the catalogue is written by
one worker, as one file (a few hundred bytes a galaxy, 1 kB with latents).
"""

from __future__ import annotations

import functools
import os
import time

import numpy as np

from tfgal import beam as beam_lib
from tfgal import io, locks
from tfgal.data import pipeline
from tfgal.data.manifest import Manifest
from tfgal.errors import ConfigError
from tfgal.model import export
from tfgal.model import predict as local

__all__ = ["COUNTER", "handler", "predict"]

COUNTER = ("tfgal", "galaxies_classified")
DIRECT_DEFAULTS = ("--runner=DirectRunner", "--direct_running_mode=in_memory",
                   "--direct_num_workers=1")  # TensorFlow already uses every core


def handler(model_dir, *, latent=False, batch_size=local.DEFAULT_BATCH_SIZE):
    """A keyed RunInference model handler for an exported tfgal SavedModel.

    Elements are (key, image [H, W, C] float32 stretched); results are (key,
    `PredictionResult`) whose inference is {"probabilities", "latent"?} as NumPy arrays.
    """
    from apache_beam.ml.inference.base import KeyedModelHandler
    from apache_beam.ml.inference.tensorflow_inference import TFModelHandlerNumpy

    class _Handler(TFModelHandlerNumpy):
        def load_model(self):
            return export.load(model_dir)

    inference = functools.partial(_serve, latent=latent)
    return KeyedModelHandler(_Handler(model_dir, inference_fn=inference,
                                      min_batch_size=1, max_batch_size=batch_size))


def _serve(model, batch, inference_args, model_id=None, *, latent):
    import tensorflow as tf
    from apache_beam.ml.inference.base import PredictionResult
    out = model.serving(images=tf.convert_to_tensor(np.stack(batch), tf.float32))
    probabilities = out["probabilities"].numpy().astype(np.float32)
    latents = out["latent"].numpy().astype(np.float32) if latent else None
    return [PredictionResult(x, {"probabilities": probabilities[k],
                                 **({"latent": latents[k]} if latent else {})}, model_id)
            for k, x in enumerate(batch)]


def _read_file(element, root, split, depth, seed, stretch, batch_size):
    """(file index, number of files) -> ((file, position, galaxy id, label), image)."""
    import tensorflow as tf
    index, n_files = element
    manifest = Manifest.load(root)
    # The input context deals out whole files: pipeline `index` of `n_files` reads one.
    context = tf.distribute.InputContext(n_files, index, 1)
    batches = pipeline.make_dataset(manifest, split, depth, batch_size=batch_size, seed=seed,
                                    stretch=stretch, with_ids=True, input_context=context)
    position = 0
    with pipeline.naming_corrupt_records(manifest, [split]):
        for batch in batches.as_numpy_iterator():
            for k in range(len(batch["galaxy_id"])):
                key = (index, position, int(batch["galaxy_id"][k]), int(batch["labels"][k]))
                yield key, batch["images"][k]
                position += 1


def _row(keyed, latent):
    from apache_beam.metrics import Metrics
    key, result = keyed
    Metrics.counter(*COUNTER).inc()
    row = (key, result.inference["probabilities"])
    return row + (result.inference["latent"],) if latent else row


def _write(rows, out, names, label_names, meta, latent):
    rows = sorted(rows, key=lambda r: r[0][:2])  # the dataset's order, as the local path
    part = {"galaxy_id": np.array([r[0][2] for r in rows], np.int64),
            "labels": np.array([r[0][3] for r in rows], np.int64),
            "probabilities": np.array([r[1] for r in rows], np.float32).reshape(
                len(rows), len(names))}
    if latent:
        part["latent"] = np.stack([r[2] for r in rows]).astype(np.float32)
    table = local.catalogue([part], names, label_names=label_names, meta=meta)
    return local.write_catalogue(table, out)


def predict(model, out, *, data, split=local.DEFAULT_SPLIT, depth=None, seed=0,
            batch_size=local.DEFAULT_BATCH_SIZE, latent=False, options=True, overwrite=False):
    """`tfgal.model.predict.predict` of a dataset split, run on Apache Beam.

    Args:
      options: True for the local DirectRunner (one in-process worker; TensorFlow uses
        the cores), or Beam flags (a string or a list) that replace those defaults.
      the others: as `tfgal.model.predict.predict`, `overwrite` included (FITS tables are
        not read on Beam: import them with ``tfgal-data import-fits`` first).
    Returns:
      the local path's summary dict, read back from the written catalogue, plus
      "runner".
    """
    beam = beam_lib.require()
    fmt = local.output_format(out)
    if data is None:
        raise ConfigError("--beam classifies a dataset (--data); import FITS cutouts with "
                          "tfgal-data import-fits first", key="data")
    # The driver holds the catalogue's lock: Beam's one "write" step is its only writer.
    with locks.hold(out):
        io.refuse_existing(out, overwrite)
        return _predict(beam, model, out, fmt, data=data, split=split, depth=depth,
                        seed=seed, batch_size=batch_size, latent=latent, options=options)


def _predict(beam, model, out, fmt, *, data, split, depth, seed, batch_size, latent, options):
    p = beam_lib.new_pipeline(None if options is True else options, DIRECT_DEFAULTS)
    started = time.perf_counter()
    classifier, name, version = local.load_model(model)
    names = local.class_names(classifier)
    loaded = time.perf_counter()
    manifest = data if isinstance(data, Manifest) else Manifest.load(data)
    source = local.dataset_source(classifier, manifest, split, depth=depth, seed=seed,
                                  batch_size=batch_size)  # checks shape, bands, split
    n_files = len(manifest.files(split))
    meta = local._meta(classifier, name, version, source.meta)
    stretch = local._model_stretch(classifier, required=False)
    path = os.path.abspath(os.fspath(out))
    from apache_beam.ml.inference.base import RunInference
    _ = (p
         | "files" >> beam.Create([(k, n_files) for k in range(n_files)])
         | "spread" >> beam.Reshuffle()
         | "read" >> beam.FlatMap(_read_file, os.path.abspath(manifest.root), split,
                                  source.meta["DEPTH"], seed, stretch, batch_size)
         | "classify" >> RunInference(handler(os.path.abspath(classifier.path),
                                              latent=latent, batch_size=batch_size))
         | "row" >> beam.Map(_row, latent)
         | "gather" >> beam.combiners.ToList()
         | "write" >> beam.Map(_write, path, names, source.label_names, meta, latent))
    beam_lib.finish(p, path)
    from astropy.table import Table
    table = Table.read(path, format=fmt)  # what was written, rows counted from the file
    summary = local._summary(table, names, path, fmt, time.perf_counter() - loaded,
                             loaded - started, meta)
    runner = p.options.get_all_options()["runner"] or type(p.runner).__name__
    return {**summary, "runner": runner}
