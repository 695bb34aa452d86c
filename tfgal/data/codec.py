"""One galaxy as a `tf.train.Example`: encoding, parsing, reading back and verification.

Each example is one galaxy and holds one or more images of it, named:

* ``flux``: the noiseless image in e-/s per pixel (mock data); noise is added on the fly;
* a depth name such as ``Y10`` or ``Y1``: the image with noise already in it
  (imported survey data), sky-subtracted, in the units the source gave.

Features of an example: ``image/<name>`` (bytes, raw little-endian float32, HWC),
``shape`` (int64 [3]), ``label`` (int64), ``galaxy_id`` (int64), ``image_names`` (bytes
list naming the images held), and, where the galaxy's seeing is known (mock data),
``psf_fwhm_arcsec`` (one float32: the r-band FWHM of the PSF its images were rendered
with, in arcsec). The manifest's ``psf_fwhm`` says whether every record holds it, and
the parsers read it only then; an example written without it has the bytes it had before
the feature existed (imported survey data store none). TensorFlow is imported inside the
functions that need it, so the writers' callers (the mock renderer's fork-started pool)
stay free of it.
"""

from __future__ import annotations

import os

import numpy as np

from tfgal import io, survey
from tfgal.data.manifest import MANIFEST_NAME, PSF_FWHM, Manifest
from tfgal.errors import DataError

__all__ = ["serialize_example", "feature_spec", "make_parser", "make_batch_parser",
           "read_examples", "check_image", "check_psf_fwhm", "verify"]


def _bytes_feature(values):
    import tensorflow as tf
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def _int_feature(values):
    import tensorflow as tf
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def _float_feature(values):
    import tensorflow as tf
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def serialize_example(images, label, galaxy_id, psf_fwhm_arcsec=None):
    """One galaxy as a serialized `tf.train.Example`; `images` maps name -> HWC float32.

    `psf_fwhm_arcsec`: the galaxy's own r-band PSF FWHM (arcsec), stored as feature
    ``psf_fwhm_arcsec``; None stores none (the bytes are then those of older tfgals).
    """
    import tensorflow as tf
    shape = None
    features = {}
    for name, image in images.items():
        image = np.asarray(image, dtype="<f4")
        if shape is None:
            shape = image.shape
        features[f"image/{name}"] = _bytes_feature([image.tobytes()])
    features["shape"] = _int_feature(list(shape))
    features["label"] = _int_feature([int(label)])
    features["galaxy_id"] = _int_feature([int(galaxy_id)])
    features["image_names"] = _bytes_feature([n.encode() for n in images])
    if psf_fwhm_arcsec is not None:
        features[PSF_FWHM] = _float_feature([float(psf_fwhm_arcsec)])
    example = tf.train.Example(features=tf.train.Features(feature=features))
    # deterministic: the feature map in a fixed order, so every process writes the same bytes
    return example.SerializeToString(deterministic=True)


def feature_spec(image_names, psf_fwhm=False):
    """The parse spec of examples holding `image_names` (and the PSF FWHM if `psf_fwhm`)."""
    import tensorflow as tf
    spec = {f"image/{n}": tf.io.FixedLenFeature([], tf.string) for n in image_names}
    spec["shape"] = tf.io.FixedLenFeature([3], tf.int64)
    spec["label"] = tf.io.FixedLenFeature([], tf.int64)
    spec["galaxy_id"] = tf.io.FixedLenFeature([], tf.int64)
    if psf_fwhm:
        spec[PSF_FWHM] = tf.io.FixedLenFeature([], tf.float32)
    return spec


def make_parser(manifest, image_names=None):
    """A graph function: serialized example -> dict(images..., label, galaxy_id, and
    psf_fwhm_arcsec (float32) when the manifest says the records hold it).

    Images come back float32 HWC with the manifest's static shape, under their names.
    """
    return _parser(manifest, image_names, batched=False)


def make_batch_parser(manifest, image_names=None):
    """Like `make_parser`, for a batch of serialized examples (one vectorized parse)."""
    return _parser(manifest, image_names, batched=True)


def _parser(manifest, image_names, batched):
    import tensorflow as tf
    names = tuple(image_names or manifest.images)
    psf = manifest.psf_fwhm is not None
    spec = feature_spec(names, psf_fwhm=psf)
    shape = ((-1,) if batched else ()) + tuple(manifest.image_shape)
    parse_fn = tf.io.parse_example if batched else tf.io.parse_single_example

    def parse(serialized):
        parsed = parse_fn(serialized, spec)
        out = {"label": tf.cast(parsed["label"], tf.int32), "galaxy_id": parsed["galaxy_id"]}
        if psf:
            out[PSF_FWHM] = parsed[PSF_FWHM]
        for name in names:
            flat = tf.io.decode_raw(parsed[f"image/{name}"], tf.float32, little_endian=True)
            out[name] = tf.reshape(flat, shape)
        return out

    return parse


def read_examples(path, compression=None):
    """Iterates a shard in NumPy: yields dict(image names..., label, galaxy_id, and
    psf_fwhm_arcsec (a float) for records that hold it).

    A corrupt or truncated file raises `DataError` naming the file and record index.
    """
    import tensorflow as tf
    if compression is None:
        compression = "GZIP" if str(path).endswith(".gz") else ""
    dataset = tf.data.TFRecordDataset([os.fspath(path)], compression_type=compression)
    index = 0
    iterator = iter(dataset)
    while True:
        try:
            raw = next(iterator)
        except StopIteration:
            return
        except (tf.errors.DataLossError, tf.errors.OutOfRangeError,
                tf.errors.InvalidArgumentError) as e:
            raise DataError(f"corrupt or truncated record: {e.message.splitlines()[0]}",
                            path=path, index=index) from None
        try:
            example = tf.train.Example.FromString(raw.numpy())
        except Exception as e:  # protobuf's DecodeError has no stable import path
            raise DataError(f"record is not a tf.train.Example: {e}", path=path,
                            index=index) from None
        yield _example_to_numpy(example, path, index)
        index += 1


def _example_to_numpy(example, path, index):
    feats = example.features.feature
    try:
        shape = tuple(feats["shape"].int64_list.value)
        names = [n.decode() for n in feats["image_names"].bytes_list.value]
        out = {"label": int(feats["label"].int64_list.value[0]),
               "galaxy_id": int(feats["galaxy_id"].int64_list.value[0])}
        for name in names:
            raw = feats[f"image/{name}"].bytes_list.value[0]
            out[name] = np.frombuffer(raw, dtype="<f4").reshape(shape)
        if PSF_FWHM in feats:
            out[PSF_FWHM] = float(feats[PSF_FWHM].float_list.value[0])
    except (KeyError, IndexError, ValueError) as e:
        raise DataError(f"record lacks tfgal features or has a bad shape: {e!r}", path=path,
                        index=index) from None
    return out


def check_image(image, *, noiseless, shape, where):
    """Validates one galaxy image; `where` is (path, index) for the error message."""
    image = np.asarray(image)
    if image.dtype.kind not in "fiu":
        raise DataError(f"image dtype {image.dtype} is not numeric", path=where[0], index=where[1])
    if tuple(image.shape) != tuple(shape):
        raise DataError(f"image shape {image.shape}, expected {tuple(shape)} (HWC, "
                        f"{len(survey.BANDS)} bands {survey.BANDS})", path=where[0], index=where[1])
    if not np.all(np.isfinite(image)):
        bad = np.argwhere(~np.isfinite(image))[0].tolist()
        raise DataError(f"image has NaN or inf pixels (first at {bad})", path=where[0],
                        index=where[1])
    if noiseless and np.any(image < 0):
        raise DataError(f"noiseless flux has negative pixels (min {image.min():.3g})",
                        path=where[0], index=where[1])
    return image.astype(np.float32, copy=False)


def check_psf_fwhm(value, *, where):
    """Validates a galaxy's PSF FWHM (arcsec); `where` is (path, index) for the message."""
    try:
        fwhm = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{PSF_FWHM} {value!r} is not a number", path=where[0],
                        index=where[1]) from None
    if not (np.isfinite(fwhm) and fwhm > 0):
        raise DataError(f"{PSF_FWHM} {fwhm} is not a positive finite FWHM", path=where[0],
                        index=where[1])
    return fwhm


def verify(root):
    """Reads every record of a dataset, checking sizes, checksums, shapes and labels.

    Returns the manifest. Raises `DataError` naming the first bad file and record.
    """
    manifest = Manifest.load(root)
    for split in manifest.splits:
        counts = np.zeros(len(manifest.class_names), dtype=np.int64)
        for entry, path in zip(manifest.split(split)["files"], manifest.files(split)):
            if entry.get("sha256") and io.sha256_file(path) != entry["sha256"]:
                raise DataError("shard checksum differs from the manifest", path=path)
            n = 0
            for n_, example in enumerate(read_examples(path, manifest.compression)):
                n = n_ + 1
                label = example["label"]
                if not 0 <= label < len(manifest.class_names):
                    raise DataError(f"label {label} out of range", path=path, index=n_)
                counts[label] += 1
                if manifest.psf_fwhm is not None:
                    if PSF_FWHM not in example:
                        raise DataError(f"record lacks {PSF_FWHM}, which the manifest's "
                                        "psf_fwhm says every record holds", path=path,
                                        index=n_)
                    check_psf_fwhm(example[PSF_FWHM], where=(path, n_))
                for name in manifest.images:
                    if name not in example:
                        raise DataError(f"record lacks image {name!r}", path=path, index=n_)
                    if tuple(example[name].shape) != tuple(manifest.image_shape):
                        raise DataError(f"image shape {example[name].shape} differs from "
                                        f"{tuple(manifest.image_shape)}", path=path, index=n_)
            if n != entry["count"]:
                raise DataError(f"shard holds {n} records, the manifest says {entry['count']}",
                                path=path)
        if counts.tolist() != list(manifest.class_counts(split)):
            raise DataError(f"class counts {counts.tolist()} differ from the manifest's",
                            path=os.path.join(manifest.root, MANIFEST_NAME), index=split)
    return manifest
