"""tf.data pipelines: shards -> parsed galaxies -> observed at a depth -> stretched batches.

Noise is added on the fly to noiseless (mock) data: each galaxy's noise is seeded by
(root seed, depth, galaxy id), so evaluation sees the same noisy image of a galaxy
whatever the batch size, shard order or number of workers. Training additionally
folds in a per-iteration random salt, so each epoch sees fresh noise. Imported data
carry their noise already; the pipeline then picks the image stored for the depth.

Elements are ``(images, labels)`` (or dicts with ``galaxy_id`` when asked); paired
domain-adaptation batches are ``({"source": x_s, "target": x_t}, y_s)``.
"""

from __future__ import annotations

import zlib

import numpy as np
import tensorflow as tf

from tfgal import noise, records, seeds, stretch as stretch_lib, survey
from tfgal.errors import ConfigError, DataError

AUTOTUNE = tf.data.AUTOTUNE
SHUFFLE_BUFFER = 2048
NOISELESS = "noiseless"  # depth name for the stretched noiseless flux (mock data only)


def _manifest(data):
    return data if isinstance(data, records.Manifest) else records.Manifest.load(data)


def _depth_code(depth):
    """A stable int for a depth, mixed into noise seeds."""
    key = ",".join(f"{t:.6g}" for t in depth.exposure_s)
    return zlib.crc32(key.encode()) & 0x7FFFFFFF


def resolve_depth(manifest, depth):
    """Returns ("noise", Depth), ("stored", image name) or ("noiseless", None)."""
    if depth is None or depth == NOISELESS:
        if not manifest.noiseless:
            raise ConfigError(f"dataset {manifest.root} holds no noiseless flux",
                              key="depth", valid=sorted(manifest.images))
        return "noiseless", None
    if manifest.noiseless:
        return "noise", survey.Depth.parse(depth)
    name = depth.name if isinstance(depth, survey.Depth) else str(depth)
    if name not in manifest.images:
        raise ConfigError(
            f"dataset {manifest.root} stores noise baked in at fixed depths and has no "
            f"image at depth {name!r}", key="depth", valid=sorted(manifest.images))
    return "stored", name


def observer(manifest, depth, *, seed=0, mode="fast"):
    """A graph function (element dict, salt) -> float32 HWC image at `depth` (unstretched)."""
    kind, what = resolve_depth(manifest, depth)
    if kind == "stored":
        return lambda element, salt: element[what]
    if kind == "noiseless":
        return lambda element, salt: element[records.FLUX]
    exposure = tf.constant(what.exposure_vector())
    sky = tf.constant(survey.sky_vector(manifest.bands))
    base = tf.constant([int(seed), _depth_code(what)], tf.int64)

    def observe(element, salt):
        s = tf.random.experimental.stateless_fold_in(base, element["galaxy_id"])
        s = tf.random.experimental.stateless_fold_in(s, salt)
        return noise.poisson_observe(element[records.FLUX], exposure, sky, s, mode=mode)

    return observe


def stretcher(manifest, params=None):
    params = params or manifest.stretch
    if params is None:
        raise DataError("dataset has no stretch constants; refit them (tfgal-data fit-stretch)",
                        path=manifest.root, index="stretch")
    return lambda image: stretch_lib.apply_tf(image, params)


def augment(image, seed):
    """Random flip and 90-degree rotation, stateless (seed: int64 [2])."""
    s1 = tf.random.experimental.stateless_fold_in(seed, 1)
    s2 = tf.random.experimental.stateless_fold_in(seed, 2)
    image = tf.image.stateless_random_flip_left_right(image, s1)
    k = tf.random.stateless_uniform([], s2, 0, 4, dtype=tf.int32)
    return tf.image.rot90(image, k)


def records_dataset(manifest, split, *, shuffle=False, seed=0, input_context=None):
    """Parsed galaxies of a split as dicts (images by name, label, galaxy_id)."""
    files = manifest.files(split)
    ds = tf.data.Dataset.from_tensor_slices(files)
    if input_context is not None and input_context.num_input_pipelines > 1:
        if len(files) < input_context.num_input_pipelines:
            raise DataError(
                f"split {split!r} has {len(files)} shards for "
                f"{input_context.num_input_pipelines} input pipelines: rebuild with smaller "
                "shards", path=manifest.root, index=split)
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if shuffle:
        ds = ds.shuffle(len(files), seed=seeds.derive(seed, "files"),
                        reshuffle_each_iteration=True)
    compression = manifest.compression
    if shuffle:
        ds = ds.interleave(
            lambda f: tf.data.TFRecordDataset(f, compression_type=compression),
            cycle_length=min(len(files), 4), num_parallel_calls=AUTOTUNE, deterministic=True)
        ds = ds.shuffle(SHUFFLE_BUFFER, seed=seeds.derive(seed, "records"),
                        reshuffle_each_iteration=True)
    else:
        # Evaluation reads in file order, so "the first n galaxies" means what it says.
        ds = ds.flat_map(lambda f: tf.data.TFRecordDataset(f, compression_type=compression))
    return ds.map(records.make_parser(manifest), num_parallel_calls=AUTOTUNE)


def _with_salt(ds, training, seed):
    """Pairs elements with an int64 salt: fresh per iteration when training, else 0."""
    if training:
        salts = tf.data.Dataset.random(seed=seeds.derive(seed, "salt"),
                                       rerandomize_each_iteration=True)
        return tf.data.Dataset.zip(ds, salts)
    return ds.map(lambda e: (e, tf.constant(0, tf.int64)))


def make_dataset(data, split, depth="Y10", *, batch_size=128, training=False, seed=0,
                 augment_images=None, noise_mode="fast", stretch=None, input_context=None,
                 with_ids=False, drop_remainder=None, repeat=False):
    """Batches of stretched images of `split` observed at `depth`.

    Args:
      data: dataset directory or `records.Manifest`.
      split: "train", "val" or "test".
      depth: "Y10", "Y1", years, a `survey.Depth`, or "noiseless" (mock data only).
      batch_size: global batch size; divided per replica when `input_context` is given.
      training: shuffle (seeded, fresh each iteration), fresh noise each iteration,
        augment (unless `augment_images` is False), drop the last partial batch.
      seed: root seed of noise, shuffling and augmentation.
      noise_mode: "fast" or "exact" (see `tfgal.noise`).
      stretch: stretch params overriding the manifest's.
      input_context: a `tf.distribute.InputContext`; shards files across pipelines.
      with_ids: yield dicts {"images", "labels", "galaxy_id"} instead of (images, labels).
    """
    manifest = _manifest(data)
    observe = observer(manifest, depth, seed=seed, mode=noise_mode)
    apply_stretch = stretcher(manifest, stretch)
    do_augment = training if augment_images is None else augment_images
    aug_base = tf.constant([seeds.derive(seed, "augment"), 0], tf.int64)

    def prepare(element, salt):
        image = apply_stretch(observe(element, salt))
        if do_augment:
            s = tf.random.experimental.stateless_fold_in(aug_base, element["galaxy_id"])
            image = augment(image, tf.random.experimental.stateless_fold_in(s, salt))
        if with_ids:
            return {"images": image, "labels": element["label"],
                    "galaxy_id": element["galaxy_id"]}
        return image, element["label"]

    ds = records_dataset(manifest, split, shuffle=training, seed=seed,
                         input_context=input_context)
    ds = _with_salt(ds, training, seed).map(prepare, num_parallel_calls=AUTOTUNE)
    if repeat:
        ds = ds.repeat()
    per_replica = (input_context.get_per_replica_batch_size(batch_size)
                   if input_context is not None else batch_size)
    drop = training if drop_remainder is None else drop_remainder
    return ds.batch(per_replica, drop_remainder=drop).prefetch(AUTOTUNE)


def make_paired_dataset(data, split, source_depth="Y10", target_depth="Y1", *,
                        batch_size=128, training=True, seed=0, **kwargs):
    """Domain-adaptation batches ``({"source": x_s, "target": x_t}, y_s)``.

    Training: labelled source and unlabelled target come from independently shuffled
    streams of the split (the target stream repeats, so the source defines an epoch).
    Evaluation (`training=False`): the same galaxies in the same order at both depths,
    so the labels serve both (target accuracy is then measurable).
    """
    source = make_dataset(data, split, source_depth, batch_size=batch_size, training=training,
                          seed=seed, **kwargs)
    target = make_dataset(data, split, target_depth, batch_size=batch_size, training=training,
                          seed=seeds.derive(seed, "target") if training else seed, **kwargs)
    if training:
        target = target.repeat()
    target = target.map(lambda x, y: x)
    return tf.data.Dataset.zip(source, target).map(
        lambda s, t: ({"source": s[0], "target": t}, s[1]), num_parallel_calls=AUTOTUNE)


def load_arrays(data, split, depth="Y10", *, n=None, seed=0, noise_mode="fast", stretch=None,
                batch_size=256):
    """A split (or its first `n` galaxies, in file order) as NumPy arrays.

    Returns dict(images=float32 NHWC stretched, labels=int32, galaxy_id=int64). Noise for
    mock data is seeded per galaxy, so the same galaxy gets the same image in every call.
    """
    ds = make_dataset(data, split, depth, batch_size=batch_size, seed=seed,
                      noise_mode=noise_mode, stretch=stretch, with_ids=True)
    if n is not None:
        ds = ds.unbatch().take(int(n)).batch(batch_size)
    parts = {"images": [], "labels": [], "galaxy_id": []}
    for batch in ds:
        for key in parts:
            parts[key].append(batch[key].numpy())
    manifest = _manifest(data)
    empty = {"images": np.zeros((0, *manifest.image_shape), np.float32),
             "labels": np.zeros((0,), np.int32), "galaxy_id": np.zeros((0,), np.int64)}
    return {k: np.concatenate(v) if v else empty[k] for k, v in parts.items()}
