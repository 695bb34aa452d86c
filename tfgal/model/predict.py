"""Batch prediction with an exported model into a catalogue (``tfgal-predict``).

An exported tfgal SavedModel classifies a dataset split, or FITS cutouts listed in a table
(the table convention of ``tfgal-data import-fits``), and the result is written as an
``astropy.table.Table``: one row per galaxy with its id, its true class when labels are
known, the probability of each class, the predicted class and, when asked, the latent
vector. The table's metadata names the model and its version, the data, the depth and the
seed, so a catalogue says where its numbers came from.

Preprocessing is the model's own: images are stretched with the stretch constants stored
in the model's assets (those it was trained with), not the dataset's; noiseless (mock)
data are observed at the model's training source depth unless another is given; FITS
cutouts are used as observed (e-/s), with no noise added.

The pieces are separable, so that other runners (the Beam job of
`tfgal.model.beam_predict`) reuse them::

    classifier, name, version = load_model(path)
    source = dataset_source(classifier, data, "test")  # or fits_source(classifier, table)
    parts = list(predict_batches(classifier, source.batches, latent=True))
    table = catalogue(parts, class_names(classifier), label_names=source.label_names)
    write_catalogue(table, "catalogue.fits")

`predict` does all of it with a progress bar and returns a summary.

Tables, formats and scores are `tfgal.model.catalogue`'s (no TensorFlow).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime
import functools
import os
import time

import numpy as np
import tensorflow as tf

from tfgal import io, locks, survey
from tfgal import progress as _progress
from tfgal.data import pipeline
from tfgal.data.importers import fits as fits_importer
from tfgal.data import stretch as stretch_lib
from tfgal.data.codec import check_image
from tfgal.data.manifest import Manifest
from tfgal.errors import ConfigError, DataError, ModelContractError
from tfgal.model import export
from tfgal.model.catalogue import (DEFAULT_BATCH_SIZE, DEFAULT_SPLIT, FORMATS, catalogue,
                                   output_format, scores, write_catalogue)

__all__ = ["FORMATS", "DEFAULT_BATCH_SIZE", "DEFAULT_SPLIT", "DEFAULT_DEPTH", "Source",
           "load_model", "model_version", "class_names", "output_format", "dataset_source",
           "fits_source", "predict_batches", "catalogue", "write_catalogue", "predict"]

DEFAULT_DEPTH = "Y10"  # for models whose assets name no training depth
AS_OBSERVED = "as observed"  # the depth of FITS cutouts: no noise is added


@dataclasses.dataclass
class Source:
    """Batches to classify and what the catalogue says about them.

    Attributes:
      batches: iterable of dicts {"images" [B, H, W, C] stretched, "galaxy_id" [B],
        "labels" [B] (only when labels are known)}, NumPy arrays or tensors.
      count: galaxies in all batches (the progress bar's total).
      label_names: class names the labels index, or None without labels.
      meta: catalogue metadata of the source (SOURCE, SPLIT, DEPTH, SEED).
      guard: context manager around the iteration that turns low-level read errors
        into errors naming the file.
    """

    batches: object
    count: int
    label_names: tuple | None
    meta: dict
    guard: object = contextlib.nullcontext


# ----------------------------------------------------------------------------- the model


def load_model(path):
    """Loads an exported model; returns (`export.ExportedClassifier`, name, version).

    `path` is a SavedModel directory, or a TF Serving base directory whose integer-named
    subdirectories hold versions of one model: the highest is loaded, and its number is
    the version. Otherwise the version is the SavedModel's fingerprint checksum. The name
    is the training config's ``name`` from the model's assets, else the directory's name.
    """
    base = os.path.abspath(os.fspath(path))
    saved, version = export.resolve(base)  # the message every command gives
    classifier = export.load(saved)
    version = model_version(saved) if version is None else version
    name = (classifier.assets.get("config") or {}).get("name") or os.path.basename(base)
    return classifier, str(name), version


def model_version(saved):
    """The SavedModel's fingerprint checksum as a string (a hash of saved_model.pb when
    the model has no fingerprint file, i.e. was written before TensorFlow 2.12)."""
    try:
        return str(tf.saved_model.experimental.read_fingerprint(saved).saved_model_checksum)
    except (AttributeError, OSError, ValueError, tf.errors.OpError):
        digest = io.sha256_file(os.path.join(saved, export.SAVED_MODEL_PB))
        return "sha256:" + digest[:16]


def class_names(classifier):
    """The model's class names (assets), checked against its number of outputs."""
    names = classifier.assets.get("class_names")
    if names is None:
        return tuple(f"class_{k}" for k in range(classifier.n_classes))
    if len(names) != classifier.n_classes:
        raise ModelContractError(f"model {classifier.path} lists {len(names)} class names "
                                 f"{names} but outputs {classifier.n_classes} probabilities")
    return tuple(names)


def _model_stretch(classifier, required):
    params = classifier.assets.get("stretch")
    if params is None and required:
        raise ModelContractError(f"model {classifier.path} stores no stretch constants in "
                                 f"assets/{export.ASSETS_NAME}: raw images cannot be preprocessed")
    return params


def _check_shape(classifier, shape, where):
    if tuple(shape) != tuple(classifier.image_shape):
        raise ModelContractError(
            f"model {classifier.path} takes images of shape {tuple(classifier.image_shape)}; "
            f"{where} has images of shape {tuple(shape)}")


def _check_bands(classifier, bands, where):
    model_bands = classifier.assets.get("bands")
    if model_bands is not None and list(model_bands) != list(bands):
        raise ModelContractError(
            f"model {classifier.path} was trained on bands {list(model_bands)}; "
            f"{where} holds bands {list(bands)}")


# ----------------------------------------------------------------------------- the data


def _default_depth(classifier, manifest):
    """The model's training source depth; for data with noise baked in at other depths,
    the one depth they store (`pipeline.resolve_depth` refuses any other)."""
    assets = classifier.assets
    depth = ((assets.get("config") or {}).get("data") or {}).get("source_depth") \
        or assets.get("source_depth") or DEFAULT_DEPTH
    depth = str(depth)
    if not manifest.noiseless and depth not in manifest.images and len(manifest.images) == 1:
        return next(iter(manifest.images))
    return depth


def dataset_source(classifier, data, split=DEFAULT_SPLIT, *, depth=None, seed=0,
                   batch_size=DEFAULT_BATCH_SIZE):
    """A tfgal dataset's split as a `Source`, preprocessed as the model was trained.

    Noise is added on the fly at `depth` (default: the model's training source depth),
    seeded per galaxy by `seed`; images are stretched with the model's stretch. Batches
    are prefetched by tf.data, so reading overlaps the forward pass.
    """
    manifest = data if isinstance(data, Manifest) else Manifest.load(data)
    manifest.split(split)  # a missing split is an error naming the manifest
    where = f"dataset {manifest.root}"
    _check_shape(classifier, manifest.image_shape, where)
    _check_bands(classifier, manifest.bands, where)
    depth = _default_depth(classifier, manifest) if depth is None else str(depth)
    batches = pipeline.make_dataset(
        manifest, split, depth, batch_size=batch_size, seed=seed,
        stretch=_model_stretch(classifier, required=False), with_ids=True)
    meta = {"SOURCE": os.path.abspath(manifest.root), "SPLIT": split, "DEPTH": depth,
            "SEED": int(seed)}
    guard = functools.partial(pipeline.naming_corrupt_records, manifest, [split])
    return Source(batches, manifest.count(split), tuple(manifest.class_names), meta, guard)


def fits_source(classifier, table, split=DEFAULT_SPLIT, *,
                batch_size=DEFAULT_BATCH_SIZE):
    """FITS cutouts listed in a table (`fits_importer.read_table`'s convention) as a `Source`.

    With a ``split`` column only the rows of `split` are used, else every row. Cutouts
    are read as observed (no noise added) with `fits_importer.read_cutout`, checked, and
    stretched with the model's stretch; the next batch is read while the model runs.
    """
    path = os.path.abspath(os.fspath(table))
    rows = fits_importer.read_table(path, require_label=False)
    index = np.arange(len(rows["file"]))
    if "split" in rows:
        index = index[rows["split"] == split]
        if len(index) == 0:
            raise DataError(f"no row of the table falls in split {split!r}; it has splits "
                            f"{sorted(set(rows['split'].tolist()))}", path=path, index="split")
    _check_bands(classifier, survey.BANDS, f"table {path} (FITS cutouts)")
    params = _model_stretch(classifier, required=True)
    chunks = [index[i:i + batch_size] for i in range(0, len(index), batch_size)]
    batches = _read_ahead(chunks, lambda rows_: _read_chunk(classifier, path, rows, rows_, params))
    meta = {"SOURCE": path, "SPLIT": split if "split" in rows else "all",
            "DEPTH": AS_OBSERVED}
    labelled = "label" in rows
    return Source(batches, len(index), fits_importer.CLASS_NAMES if labelled else None, meta)


def _read_chunk(classifier, table, rows, chunk, params):
    base, images = os.path.dirname(table), []
    for row in chunk:
        file = os.path.join(base, rows["file"][row])
        image = fits_importer.read_cutout(file, int(row))
        _check_shape(classifier, image.shape, f"cutout {file} (row {int(row)} of {table})")
        images.append(check_image(image, noiseless=False, shape=image.shape,
                                  where=(file, int(row))))
    batch = {"images": stretch_lib.apply_numpy(np.stack(images), params),
             "galaxy_id": rows["galaxy_id"][chunk]}
    if "label" in rows:
        batch["labels"] = rows["label"][chunk]
    return batch


def _read_ahead(chunks, read):
    """Yields read(chunk) for each chunk, reading the next one in a thread meanwhile."""
    if not chunks:
        return
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(read, chunks[0])
        for k in range(len(chunks)):
            batch = pending.result()
            if k + 1 < len(chunks):
                pending = pool.submit(read, chunks[k + 1])
            yield batch


# ----------------------------------------------------------------------------- the model run


def predict_batches(classifier, batches, latent=False):
    """Runs ``serving_default`` (a compiled graph) on each batch; yields dicts of NumPy
    arrays {"galaxy_id", "probabilities", "labels"? (when the batch has them), "latent"?}."""
    for batch in batches:
        images = tf.convert_to_tensor(batch["images"], tf.float32)
        out = classifier.serving(images=images)
        part = {"galaxy_id": np.asarray(batch["galaxy_id"], np.int64),
                "probabilities": out["probabilities"].numpy().astype(np.float32)}
        if "labels" in batch:
            part["labels"] = np.asarray(batch["labels"], np.int64)
        if latent:
            part["latent"] = out["latent"].numpy().astype(np.float32)
        yield part


# ----------------------------------------------------------------------------- all of it


def predict(model, out, *, data=None, fits_table=None, split=DEFAULT_SPLIT, depth=None,
            seed=0, batch_size=DEFAULT_BATCH_SIZE, latent=False, progress=None,
            overwrite=False):
    """Classifies a dataset split (`data`) or the FITS cutouts of a table (`fits_table`)
    with the exported `model` and writes the catalogue `out` (an extension of `FORMATS`).

    Args:
      model: SavedModel directory, or a TF Serving base directory (see `load_model`).
      depth, seed: noise of noiseless datasets (see `dataset_source`); unused for FITS.
      latent: add each galaxy's latent vector.
      progress: True, False, or None (a bar on stderr only when it is a terminal).
      overwrite: replace an existing `out` (else it is refused with `OutputExists` before
        the model loads). `out` is locked while it is written (`tfgal.locks`).
    Returns:
      a summary dict: galaxies, seconds (data, model and writing; model loading apart),
      galaxies per second, the output, the model's name and version, predicted classes.
    """
    fmt = output_format(out)  # refuse a bad output before any work
    if (data is None) == (fits_table is None):
        raise ConfigError("give exactly one of data (a dataset directory) and fits_table "
                          "(a table of FITS cutouts)", key="data", valid=["data", "fits_table"])
    with locks.hold(out):
        io.refuse_existing(out, overwrite)
        started = time.perf_counter()
        classifier, name, version = load_model(model)
        names = class_names(classifier)
        loaded = time.perf_counter()
        if data is not None:
            source = dataset_source(classifier, data, split, depth=depth, seed=seed,
                                    batch_size=batch_size)
        else:
            source = fits_source(classifier, fits_table, split, batch_size=batch_size)
        parts = []
        with source.guard(), _progress.bar(source.count, "predict", enabled=progress) as bar:
            for part in predict_batches(classifier, source.batches, latent=latent):
                parts.append(part)
                bar.update(len(part["galaxy_id"]))
        meta = _meta(classifier, name, version, source.meta)
        table = catalogue(parts, names, label_names=source.label_names, meta=meta)
        path = write_catalogue(table, out)
        seconds = time.perf_counter() - loaded
        return _summary(table, names, path, fmt, seconds, loaded - started, table.meta)


def _meta(classifier, name, version, source_meta):
    import tfgal
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    return {"MODEL": name, "MODELVER": version, "MODELDIR": os.path.abspath(classifier.path),
            "TFGAL": tfgal.__version__, **source_meta,
            "DATE": now.isoformat().replace("+00:00", "Z")}


def _summary(table, names, path, fmt, seconds, load_seconds, meta):
    predicted = np.asarray(table["predicted_class"], dtype=str)
    return {
        "out": path, "format": fmt, "n_galaxies": len(table),
        "seconds": round(seconds, 3), "load_seconds": round(load_seconds, 3),
        "galaxies_per_s": round(len(table) / seconds, 1) if seconds > 0 else None,
        "model": meta["MODEL"], "model_version": meta["MODELVER"],
        "model_dir": meta["MODELDIR"], "source": meta["SOURCE"],
        "split": meta["SPLIT"], "depth": meta["DEPTH"],
        "class_counts": {n: int(np.sum(predicted == n)) for n in names},
        "scores": scores(table, names),
        "device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU",
    }
