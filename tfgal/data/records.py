"""Dataset storage: sharded TFRecord files of `tf.train.Example`s plus a JSON manifest.

A dataset is a directory::

    DIR/manifest.json
    DIR/train-00000-of-00004.tfrecord.gz
    ...

Each example is one galaxy and holds one or more images of it, named:

* ``flux``: the noiseless image in e-/s per pixel (mock data); noise is added on the fly;
* a depth name such as ``Y10`` or ``Y1``: the image with noise already in it
  (imported survey data), sky-subtracted, in the units the source gave.

Features of an example: ``image/<name>`` (bytes, raw little-endian float32, HWC),
``shape`` (int64 [3]), ``label`` (int64), ``galaxy_id`` (int64), ``image_names`` (bytes
list naming the images held). The manifest says the same once per dataset, adds the splits,
counts per class, class names, bands, pixel scale, the stretch constants and the
generator's parameters, and records every shard's record count and byte size.

Writes are atomic: a dataset is built in a temporary sibling directory and renamed into
place only when complete, so a killed run leaves nothing that looks like a dataset.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import uuid

import numpy as np

from tfgal import survey
from tfgal.errors import DataError, ManifestError

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
CLASS_NAMES = ("spiral", "elliptical", "merger")  # the study's label order
FLUX = "flux"  # name of the noiseless image
SPLITS = ("train", "val", "test")
DEFAULT_SHARD_SIZE = 256  # galaxies per shard: ~30 MB raw, several shards per worker


# --------------------------------------------------------------------------- manifest


@dataclasses.dataclass
class Manifest:
    """What a dataset directory holds; stored as ``manifest.json``."""

    root: str
    image_shape: tuple
    class_names: tuple
    bands: tuple
    pixel_scale_arcsec: float
    images: dict  # name -> {"noise": bool, "depth": Depth json or None, "units": str}
    splits: dict  # split -> {"files": [{"name", "count", "bytes", "sha256"}], "count", "class_counts"}
    compression: str = ""
    stretch: dict | None = None
    generator: dict | None = None
    schema_version: int = SCHEMA_VERSION
    extra: dict = dataclasses.field(default_factory=dict)

    @property
    def noiseless(self):
        """True when the dataset holds noiseless flux (noise is added on the fly)."""
        return FLUX in self.images

    def split(self, name):
        if name not in self.splits:
            raise ManifestError(
                f"dataset has no split {name!r}; it has {sorted(self.splits)}",
                path=os.path.join(self.root, MANIFEST_NAME), index=name)
        return self.splits[name]

    def files(self, split):
        """Absolute shard paths of `split`, checked to exist with their recorded size."""
        paths = []
        for entry in self.split(split)["files"]:
            path = os.path.join(self.root, entry["name"])
            if not os.path.exists(path):
                raise DataError("shard listed in the manifest is missing", path=path)
            size = os.path.getsize(path)
            if size != entry["bytes"]:
                raise DataError(
                    f"shard is {size} bytes but the manifest records {entry['bytes']}: "
                    "truncated or rewritten", path=path)
            paths.append(path)
        return paths

    def count(self, split):
        return int(self.split(split)["count"])

    def class_counts(self, split):
        return list(self.split(split)["class_counts"])

    def to_json(self):
        obj = dataclasses.asdict(self)
        obj.pop("root")
        obj["image_shape"] = list(self.image_shape)
        obj["class_names"] = list(self.class_names)
        obj["bands"] = list(self.bands)
        return obj

    @classmethod
    def load(cls, root):
        """Reads ``root/manifest.json``; errors name the file and the bad key."""
        root = os.fspath(root)
        path = os.path.join(root, MANIFEST_NAME)
        if not os.path.isdir(root):
            raise ManifestError("dataset directory does not exist", path=root)
        if not os.path.exists(path):
            raise ManifestError(
                "no manifest: not a tfgal dataset, or its build did not finish", path=path)
        try:
            with open(path, encoding="utf-8") as f:
                obj = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise ManifestError(f"unreadable manifest: {e}", path=path) from None
        version = obj.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ManifestError(
                f"manifest schema version {version!r}, this tfgal reads {SCHEMA_VERSION}",
                path=path, index="schema_version")
        fields = {f.name for f in dataclasses.fields(cls)} - {"root"}
        unknown = set(obj) - fields
        if unknown:
            raise ManifestError(f"unknown manifest keys {sorted(unknown)}", path=path,
                                index=sorted(unknown)[0])
        required = ("image_shape", "class_names", "bands", "pixel_scale_arcsec", "images",
                    "splits")
        for key in required:
            if key not in obj:
                raise ManifestError("manifest lacks a required key", path=path, index=key)
        obj["image_shape"] = tuple(obj["image_shape"])
        obj["class_names"] = tuple(obj["class_names"])
        obj["bands"] = tuple(obj["bands"])
        return cls(root=root, **obj)

    def save(self):
        write_json_atomic(os.path.join(self.root, MANIFEST_NAME), self.to_json())


def write_text_atomic(path, text):
    """Writes `text` to `path` through a temporary file and a rename."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(path, obj):
    """Writes JSON to `path` through a temporary file and a rename."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def load_manifest(root):
    return Manifest.load(root)


# --------------------------------------------------------------------------- examples


def _bytes_feature(values):
    import tensorflow as tf
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def _int_feature(values):
    import tensorflow as tf
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def serialize_example(images, label, galaxy_id):
    """One galaxy as a serialized `tf.train.Example`; `images` maps name -> HWC float32."""
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
    example = tf.train.Example(features=tf.train.Features(feature=features))
    # deterministic: the feature map in a fixed order, so every process writes the same bytes
    return example.SerializeToString(deterministic=True)


def feature_spec(image_names):
    import tensorflow as tf
    spec = {f"image/{n}": tf.io.FixedLenFeature([], tf.string) for n in image_names}
    spec["shape"] = tf.io.FixedLenFeature([3], tf.int64)
    spec["label"] = tf.io.FixedLenFeature([], tf.int64)
    spec["galaxy_id"] = tf.io.FixedLenFeature([], tf.int64)
    return spec


def make_parser(manifest, image_names=None):
    """A graph function: serialized example -> dict(images..., label, galaxy_id).

    Images come back float32 HWC with the manifest's static shape, under their names.
    """
    return _parser(manifest, image_names, batched=False)


def make_batch_parser(manifest, image_names=None):
    """Like `make_parser`, for a batch of serialized examples (one vectorized parse)."""
    return _parser(manifest, image_names, batched=True)


def _parser(manifest, image_names, batched):
    import tensorflow as tf
    names = tuple(image_names or manifest.images)
    spec = feature_spec(names)
    shape = ((-1,) if batched else ()) + tuple(manifest.image_shape)
    parse_fn = tf.io.parse_example if batched else tf.io.parse_single_example

    def parse(serialized):
        parsed = parse_fn(serialized, spec)
        out = {"label": tf.cast(parsed["label"], tf.int32), "galaxy_id": parsed["galaxy_id"]}
        for name in names:
            flat = tf.io.decode_raw(parsed[f"image/{name}"], tf.float32, little_endian=True)
            out[name] = tf.reshape(flat, shape)
        return out

    return parse


def read_examples(path, compression=None):
    """Iterates a shard in NumPy: yields dict(image names..., label, galaxy_id).

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
        except (tf.errors.DataLossError, tf.errors.OutOfRangeError, tf.errors.InvalidArgumentError) as e:
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
    except (KeyError, IndexError, ValueError) as e:
        raise DataError(f"record lacks tfgal features or has a bad shape: {e!r}", path=path,
                        index=index) from None
    return out


def verify(root):
    """Reads every record of a dataset, checking sizes, checksums, shapes and labels.

    Returns the manifest. Raises `DataError` naming the first bad file and record.
    """
    manifest = Manifest.load(root)
    for split in manifest.splits:
        counts = np.zeros(len(manifest.class_names), dtype=np.int64)
        for entry, path in zip(manifest.split(split)["files"], manifest.files(split)):
            if entry.get("sha256") and file_sha256(path) != entry["sha256"]:
                raise DataError("shard checksum differs from the manifest", path=path)
            n = 0
            for n_, example in enumerate(read_examples(path, manifest.compression)):
                n = n_ + 1
                label = example["label"]
                if not 0 <= label < len(manifest.class_names):
                    raise DataError(f"label {label} out of range", path=path, index=n_)
                counts[label] += 1
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


def write_records_file(path, rows, compression):
    """Writes serialized examples to `path` atomically; returns its manifest entry
    {"name", "count", "bytes", "sha256"}."""
    import tensorflow as tf
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with tf.io.TFRecordWriter(tmp, tf.io.TFRecordOptions(compression_type=compression)) as w:
            for row in rows:
                w.write(row)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return {"name": os.path.basename(path), "count": len(rows),
            "bytes": os.path.getsize(path), "sha256": file_sha256(path)}


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- writing


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
      overwrite: replace an existing dataset at `out_dir`.
    """

    def __init__(self, out_dir, *, images, image_shape=(100, 100, len(survey.BANDS)),
                 class_names=CLASS_NAMES, bands=survey.BANDS,
                 pixel_scale_arcsec=survey.PIXEL_SCALE_ARCSEC, shard_size=DEFAULT_SHARD_SIZE,
                 compression="GZIP", overwrite=False, source=None):
        self.out_dir = os.path.abspath(os.fspath(out_dir))
        if os.path.exists(self.out_dir) and os.listdir(self.out_dir) and not overwrite:
            raise DataError("output directory exists and is not empty (use overwrite)",
                            path=self.out_dir)
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
        self._tmp = None
        self._rows = {}  # split -> list of serialized examples pending for the open shard
        self._shards = {}  # split -> list of finished shard entries
        self._counts = {}
        self._ids = set()

    def __enter__(self):
        parent = os.path.dirname(self.out_dir)
        os.makedirs(parent, exist_ok=True)
        self._tmp = os.path.join(parent, f".{os.path.basename(self.out_dir)}.tmp-{uuid.uuid4().hex[:8]}")
        os.makedirs(self._tmp)
        return self

    def __exit__(self, exc_type, exc, tb):
        if self._tmp and os.path.exists(self._tmp):
            shutil.rmtree(self._tmp, ignore_errors=True)
        return False

    def add(self, split, images, label, galaxy_id, *, index=None):
        """Adds one galaxy. `index` (e.g. the row in an input file) is used in errors."""
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
        self._ids.add(galaxy_id)
        checked = {name: check_image(img, noiseless=not self.images[name].get("noise"),
                                     shape=self.image_shape, where=where)
                   for name, img in images.items()}
        self._rows.setdefault(split, []).append(serialize_example(checked, label, galaxy_id))
        counts = self._counts.setdefault(split, np.zeros(len(self.class_names), np.int64))
        counts[label] += 1
        if len(self._rows[split]) >= self.shard_size:
            self._flush(split)

    def _flush(self, split):
        rows = self._rows.get(split)
        if not rows:
            return
        shards = self._shards.setdefault(split, [])
        name = f"{split}-{len(shards):05d}.tfrecord" + (".gz" if self.compression else "")
        shards.append(write_records_file(os.path.join(self._tmp, name), rows, self.compression))
        self._rows[split] = []

    def finish(self, *, stretch=None, generator=None, extra=None):
        """Writes the remaining shards and the manifest, then publishes the directory."""
        for split in list(self._rows):
            self._flush(split)
        splits = {}
        for split, shards in self._shards.items():
            # Name shards "-of-N" once N is known, as TFDS and big datasets do.
            renamed = []
            for i, entry in enumerate(shards):
                ext = ".tfrecord.gz" if self.compression else ".tfrecord"
                new = f"{split}-{i:05d}-of-{len(shards):05d}{ext}"
                os.replace(os.path.join(self._tmp, entry["name"]), os.path.join(self._tmp, new))
                renamed.append({**entry, "name": new})
            splits[split] = {"files": renamed, "count": int(sum(e["count"] for e in shards)),
                             "class_counts": self._counts[split].tolist()}
        manifest = Manifest(
            root=self._tmp, image_shape=self.image_shape, class_names=self.class_names,
            bands=self.bands, pixel_scale_arcsec=self.pixel_scale_arcsec, images=self.images,
            splits=splits, compression=self.compression, stretch=stretch, generator=generator,
            extra=extra or {})
        manifest.save()
        self._publish()
        manifest.root = self.out_dir
        return manifest

    def _publish(self):
        publish_directory(self._tmp, self.out_dir)
        self._tmp = None


def publish_directory(src, dst):
    """Renames a finished directory `src` onto `dst`, replacing any old one."""
    trash = None
    if os.path.exists(dst):
        trash = f"{dst}.old-{uuid.uuid4().hex[:8]}"
        os.replace(dst, trash)
    os.replace(src, dst)
    if trash:
        shutil.rmtree(trash, ignore_errors=True)


def update_manifest(root, **fields):
    """Rewrites some manifest fields atomically (e.g. `stretch` once fitted)."""
    manifest = Manifest.load(root)
    for key, value in fields.items():
        if not hasattr(manifest, key) or key == "root":
            raise ManifestError("unknown manifest field", path=root, index=key)
        setattr(manifest, key, value)
    manifest.save()
    return manifest
