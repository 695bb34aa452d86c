"""Writing datasets: record files written atomically, shard names, and `DatasetWriter`.

Writes are atomic: a record file is written beside its destination and renamed onto it
when complete (`tfgal.io.atomic_path`); a dataset is built in a temporary sibling
directory and renamed into place only when complete, so a killed run leaves nothing
that looks like a dataset. One writer at a time: `DatasetWriter` holds the dataset's lock
(`tfgal.locks`) while it writes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid

import numpy as np

from tfgal import io, locks, survey
from tfgal.data.codec import check_image, check_psf_fwhm, serialize_example
from tfgal.data.manifest import (CLASS_NAMES, DEFAULT_SHARD_SIZE, PSF_FWHM, PSF_FWHM_R,
                                 Manifest, split_table)
from tfgal.errors import DataError

__all__ = ["shard_name", "write_records_file", "DatasetWriter"]


def shard_name(split, index, n_files, compression):
    """File name of shard `index` of a split's `n_files`: ``train-00000-of-00004.tfrecord.gz``.

    "-of-N", as TFDS and big datasets name them: a listing shows whether all are there.
    """
    ext = ".tfrecord.gz" if compression else ".tfrecord"
    return f"{split}-{index:05d}-of-{n_files:05d}{ext}"


def write_records_file(path, rows, compression):
    """Writes serialized examples to `path` atomically; returns its manifest entry
    {"name", "count", "bytes", "sha256"}."""
    import tensorflow as tf
    with io.atomic_path(path) as tmp:
        # TFRecordWriter creates the file anew, with the usual permissions, not the
        # placeholder's owner-only ones.
        os.remove(tmp)
        with tf.io.TFRecordWriter(tmp, tf.io.TFRecordOptions(compression_type=compression)) as w:
            for row in rows:
                w.write(row)
    return {"name": os.path.basename(path), "count": len(rows),
            "bytes": os.path.getsize(path), "sha256": io.sha256_file(path)}


class DatasetWriter:
    """Builds a dataset in a temporary directory and publishes it atomically.

    Usage::

        with DatasetWriter(out, images={"flux": {"noise": False}}) as w:
            w.add("train", {"flux": image}, label, galaxy_id)
            ...
            w.finish(stretch=..., generator=...)

    Leaving the block without `finish` (an error, a kill) discards everything.

    Args:
      out_dir: the dataset directory to create.
      images: image name -> description ({"noise": bool, "depth": Depth json, "units": str}).
      image_shape: HWC shape every image must have.
      class_names: label names; labels are indices into it.
      shard_size: galaxies per shard.
      compression: "GZIP" or "" (none).
      overwrite: replace an existing dataset at `out_dir` (else a non-empty `out_dir` is
        refused with `OutputExists`).
      lock: hold `out_dir`'s lock (`tfgal.locks`) in the block; False when the caller
        already holds it (a second hold in one process is refused too).
      psf_fwhm: every galaxy comes with its own r-band PSF FWHM (`add`'s
        `psf_fwhm_arcsec`), stored in its record; the manifest then says so. False
        (imported survey data): none is stored.
    """

    def __init__(self, out_dir, *, images, image_shape=(100, 100, len(survey.BANDS)),
                 class_names=CLASS_NAMES, bands=survey.BANDS,
                 pixel_scale_arcsec=survey.PIXEL_SCALE_ARCSEC, shard_size=DEFAULT_SHARD_SIZE,
                 compression="GZIP", overwrite=False, source=None, lock=True,
                 psf_fwhm=False):
        self._named = os.fspath(out_dir)  # as the user named it, for messages
        self.out_dir = os.path.abspath(self._named)
        io.refuse_existing(self._named, overwrite)  # early; again under the lock on entry
        if compression not in ("", "GZIP"):
            raise DataError(f"compression must be 'GZIP' or ''; received {compression!r}")
        if shard_size < 1:
            raise DataError(f"shard_size must be >= 1; received {shard_size}")
        self.images = {name: dict(desc) for name, desc in images.items()}
        self.image_shape = tuple(image_shape)
        self.class_names = tuple(class_names)
        self.bands = tuple(bands)
        self.pixel_scale_arcsec = float(pixel_scale_arcsec)
        self.shard_size = int(shard_size)
        self.compression = compression
        self.overwrite = overwrite
        self.source = source  # shown in error messages (e.g. the input file)
        self.lock = lock
        self.psf_fwhm = bool(psf_fwhm)
        self._tmp = None
        self._held = None  # the lock's ExitStack while in the block
        self._rows = {}  # split -> list of serialized examples pending for the open shard
        self._shards = {}  # split -> list of finished shard entries
        self._counts = {}
        self._ids = set()

    def __enter__(self):
        # One writer per dataset (`tfgal.locks`), held until the block ends; checked
        # empty again under the lock, so two writers cannot both find it empty.
        with contextlib.ExitStack() as stack:
            if self.lock:
                stack.enter_context(locks.hold(self._named))
            io.refuse_existing(self._named, self.overwrite)
            parent = os.path.dirname(self.out_dir)
            os.makedirs(parent, exist_ok=True)
            self._tmp = os.path.join(
                parent, f".{os.path.basename(self.out_dir)}.tmp-{uuid.uuid4().hex[:8]}")
            os.makedirs(self._tmp)
            self._held = stack.pop_all()
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if self._tmp and os.path.exists(self._tmp):
                shutil.rmtree(self._tmp, ignore_errors=True)
        finally:
            if self._held is not None:
                self._held.close()
                self._held = None
        return False

    def add(self, split, images, label, galaxy_id, *, index=None, psf_fwhm_arcsec=None):
        """Adds one galaxy. `index` (e.g. the row in an input file) is used in errors;
        `psf_fwhm_arcsec`: its own r-band PSF FWHM, required exactly when the writer was
        made with `psf_fwhm`."""
        where = (self.source or self.out_dir, index if index is not None else galaxy_id)
        if set(images) != set(self.images):
            raise DataError(f"galaxy has images {sorted(images)}, the dataset declares "
                            f"{sorted(self.images)}", path=where[0], index=where[1])
        label = int(label)
        if not 0 <= label < len(self.class_names):
            raise DataError(f"label {label} out of range for classes {self.class_names}",
                            path=where[0], index=where[1])
        if galaxy_id in self._ids:
            raise DataError(f"duplicate galaxy id {galaxy_id}", path=where[0], index=where[1])
        if (psf_fwhm_arcsec is not None) != self.psf_fwhm:
            raise DataError(f"galaxy {'lacks' if self.psf_fwhm else 'has'} {PSF_FWHM}, but the "
                            f"writer was made with psf_fwhm={self.psf_fwhm}", path=where[0],
                            index=where[1])
        if self.psf_fwhm:
            psf_fwhm_arcsec = check_psf_fwhm(psf_fwhm_arcsec, where=where)
        self._ids.add(galaxy_id)
        checked = {name: check_image(img, noiseless=not self.images[name].get("noise"),
                                     shape=self.image_shape, where=where)
                   for name, img in images.items()}
        self._rows.setdefault(split, []).append(
            serialize_example(checked, label, galaxy_id, psf_fwhm_arcsec))
        counts = self._counts.setdefault(split, np.zeros(len(self.class_names), np.int64))
        counts[label] += 1
        if len(self._rows[split]) >= self.shard_size:
            self._flush(split)

    def _flush(self, split):
        rows = self._rows.get(split)
        if not rows:
            return
        shards = self._shards.setdefault(split, [])
        # A provisional name until the split's number of shards is known (`finish`).
        name = f"{split}-{len(shards):05d}.pending"
        shards.append(write_records_file(os.path.join(self._tmp, name), rows, self.compression))
        self._rows[split] = []

    def finish(self, *, stretch=None, generator=None, extra=None):
        """Writes the remaining shards and the manifest, then publishes the directory."""
        for split in list(self._rows):
            self._flush(split)
        splits = {}
        for split, shards in self._shards.items():
            renamed = []
            for i, entry in enumerate(shards):
                new = shard_name(split, i, len(shards), self.compression)
                os.replace(os.path.join(self._tmp, entry["name"]), os.path.join(self._tmp, new))
                renamed.append({**entry, "name": new})
            splits[split] = split_table(renamed, self._counts[split])
        manifest = Manifest(
            root=self._tmp, image_shape=self.image_shape, class_names=self.class_names,
            bands=self.bands, pixel_scale_arcsec=self.pixel_scale_arcsec, images=self.images,
            splits=splits, compression=self.compression, stretch=stretch, generator=generator,
            extra=extra or {}, psf_fwhm=dict(PSF_FWHM_R) if self.psf_fwhm else None)
        manifest.save()
        io.publish_directory(self._tmp, self.out_dir)
        self._tmp = None
        manifest.root = self.out_dir
        return manifest
