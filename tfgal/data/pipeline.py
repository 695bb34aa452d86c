"""tf.data pipelines: shards -> parsed galaxies -> observed at a depth -> stretched batches.

Noise is added on the fly to noiseless (mock) data: each galaxy's noise is seeded by
(root seed, depth, galaxy id), so evaluation sees the same noisy image of a galaxy
whatever the batch size, shard order or number of workers. Training additionally
folds in a per-iteration random salt, so each epoch sees fresh noise. Imported data
carry their noise already; the pipeline then picks the image stored for the depth.

Elements are ``(images, labels)`` (or dicts with ``galaxy_id`` when asked); paired
domain-adaptation batches are ``((x_s, x_t), y_s)``.
"""

from __future__ import annotations

import contextlib
import zlib

import numpy as np
import tensorflow as tf

from tfgal import seeds, survey
from tfgal.data import noise
from tfgal.data import stretch as stretch_lib
from tfgal.data.codec import make_batch_parser, make_parser, read_examples
from tfgal.data.manifest import FLUX, Manifest
from tfgal.errors import ConfigError, DataError

__all__ = ["AUTOTUNE", "SHUFFLE_BUFFER", "NOISELESS", "resolve_depth", "stretcher", "augment",
           "serialized_dataset", "records_dataset", "make_dataset", "make_paired_dataset",
           "naming_corrupt_records", "load_arrays"]

AUTOTUNE = tf.data.AUTOTUNE
SHUFFLE_BUFFER = 2048
NOISELESS = "noiseless"  # depth name for the stretched noiseless flux (mock data only)


def _manifest(data):
    return data if isinstance(data, Manifest) else Manifest.load(data)


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


class _Observation:
    """How batches of a split's galaxies become stretched images at a depth.

    Everything runs per batch: records are parsed together, each galaxy's noise
    deviates are drawn from its own seed (galaxy id, depth, salt) so that results do not
    depend on batching, and the Poisson transform and stretch run as one fused XLA
    kernel over the batch.
    """

    def __init__(self, manifest, depth, *, seed, mode, stretch_params, augment_seed=None):
        kind, what = resolve_depth(manifest, depth)
        if mode not in noise.MODES:
            raise ConfigError(f"unknown noise mode {mode!r}", key="noise_mode", valid=noise.MODES)
        self.image_key = what if kind == "stored" else FLUX
        self.noisy = kind == "noise"
        self.mode = mode
        self.parse = make_batch_parser(manifest, [self.image_key])
        self.stretch = stretcher(manifest, stretch_params)
        self.augment_base = (None if augment_seed is None
                             else tf.constant([augment_seed, 0], tf.int64))
        if self.noisy:
            self.exposure = tf.constant(what.exposure_vector())
            self.sky = tf.constant(survey.sky_vector(manifest.bands))
            self.noise_base = tf.constant([int(seed), _depth_code(what)], tf.int64)
        # One fused XLA kernel for Poisson transform + stretch: faster than op by op.
        self._fused = tf.function(self._observe_and_stretch, jit_compile=True)

    def __call__(self, serialized, salts):
        """Serialized examples [B] and salts [B] -> (images [B, H, W, C], labels, ids)."""
        parsed = self.parse(serialized)
        images, ids = parsed[self.image_key], parsed["galaxy_id"]
        if self.augment_base is not None or self.noisy:
            images, extra = tf.map_fn(
                self._per_galaxy, (images, ids, salts),
                fn_output_signature=(tf.float32, tf.float32))
        if not self.noisy:
            images = self.stretch(images)
        elif self.mode == "exact":
            images = self.stretch(extra)
        else:
            images = self._observe_fast(images, extra)
        return images, parsed["label"], ids

    def _per_galaxy(self, args):
        image, galaxy_id, salt = args
        if self.augment_base is not None:
            # Noise is i.i.d. per pixel, so augmenting before it is equivalent.
            image = augment(image, _fold(self.augment_base, galaxy_id, salt))
        if not self.noisy:
            return image, tf.zeros([0])
        seed = _fold(self.noise_base, galaxy_id, salt)
        if self.mode == "exact":
            return image, noise.poisson_observe(image, self.exposure, self.sky, seed, mode="exact")
        return image, noise.standard_normal(tf.shape(image), seed)

    def _observe_and_stretch(self, flux, z):
        lam = (flux + self.sky) * self.exposure
        counts = noise.cornish_fisher_counts(lam, z)
        any_low = tf.reduce_any(lam < noise.DEFAULT_THRESHOLD)
        return self.stretch(counts / self.exposure - self.sky), any_low

    def _observe_fast(self, flux, z):
        fused, any_low = self._fused(flux, z)
        # Pixels below the threshold need exact draws: the general (slower) path.
        return tf.cond(any_low, lambda: self.stretch(
            noise.observe_from_normal(flux, self.exposure, self.sky, z)), lambda: fused)


def _fold(base, *values):
    for v in values:
        base = tf.random.experimental.stateless_fold_in(base, v)
    return base


def stretcher(manifest, params=None):
    params = params or manifest.stretch
    if params is None:
        raise DataError("dataset has no stretch constants; refit them (tfgal-data fit-stretch)",
                        path=manifest.root, index="stretch")
    return lambda image: stretch_lib.apply_tf(image, params)


def augment(image, seed):
    """Random flip and 90-degree rotation, stateless (seed: int64 [2])."""
    image = tf.image.stateless_random_flip_left_right(image, _fold(seed, 1))
    k = tf.random.stateless_uniform([], _fold(seed, 2), 0, 4, dtype=tf.int32)
    return tf.image.rot90(image, k)


def serialized_dataset(manifest, split, *, shuffle=False, seed=0, input_context=None):
    """Serialized examples of a split: file order, or shuffled (files and records)."""
    files = manifest.files(split)
    ds = tf.data.Dataset.from_tensor_slices(files)
    pipelines = input_context.num_input_pipelines if input_context is not None else 1
    # Shard by file when every pipeline gets one; else every pipeline reads all files and
    # keeps every n-th record (correct, but each reads everything: use smaller shards).
    by_records = 1 < pipelines and len(files) < pipelines
    if pipelines > 1 and not by_records:
        ds = ds.shard(pipelines, input_context.input_pipeline_id)
    compression = manifest.compression
    if not shuffle:
        # Evaluation reads in file order, so "the first n galaxies" means what it says.
        ds = ds.flat_map(lambda f: tf.data.TFRecordDataset(f, compression_type=compression))
        return ds.shard(pipelines, input_context.input_pipeline_id) if by_records else ds
    ds = ds.shuffle(len(files), seed=seeds.derive(seed, "files"), reshuffle_each_iteration=True)
    ds = ds.interleave(
        lambda f: tf.data.TFRecordDataset(f, compression_type=compression),
        cycle_length=min(len(files), 4), num_parallel_calls=AUTOTUNE, deterministic=True)
    if by_records:
        ds = ds.shard(pipelines, input_context.input_pipeline_id)
    # Shuffling serialized strings is cheap; parsing waits until batches are formed.
    return ds.shuffle(SHUFFLE_BUFFER, seed=seeds.derive(seed, "records"),
                      reshuffle_each_iteration=True)


def records_dataset(manifest, split, **kwargs):
    """Parsed galaxies of a split, one dict (images by name, label, galaxy_id) each."""
    return serialized_dataset(manifest, split, **kwargs).map(
        make_parser(manifest), num_parallel_calls=AUTOTUNE)


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
      data: dataset directory or `manifest.Manifest`.
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
    do_augment = training if augment_images is None else augment_images
    observation = _Observation(
        manifest, depth, seed=seed, mode=noise_mode, stretch_params=stretch,
        augment_seed=seeds.derive(seed, "augment") if do_augment else None)

    def finish(serialized, salts):
        images, labels, ids = observation(serialized, salts)
        if with_ids:
            return {"images": images, "labels": labels, "galaxy_id": ids}
        return images, labels

    ds = serialized_dataset(manifest, split, shuffle=training, seed=seed,
                            input_context=input_context)
    ds = _with_salt(ds, training, seed)
    if repeat:
        ds = ds.repeat()
    per_replica = (input_context.get_per_replica_batch_size(batch_size)
                   if input_context is not None else batch_size)
    drop = training if drop_remainder is None else drop_remainder
    ds = ds.batch(per_replica, drop_remainder=drop)
    if input_context is None and not repeat:
        # Known length: Keras shows a full progress bar and no "ran out of data" warning.
        n, b = manifest.count(split), per_replica
        ds = ds.apply(tf.data.experimental.assert_cardinality(n // b if drop else -(-n // b)))
    return ds.map(finish, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def make_paired_dataset(data, split, source_depth="Y10", target_depth="Y1", *,
                        batch_size=128, training=True, seed=0, **kwargs):
    """Domain-adaptation batches ``((x_source, x_target), y_source)``.

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
        lambda s, t: ((s[0], t), s[1]), num_parallel_calls=AUTOTUNE)


@contextlib.contextmanager
def naming_corrupt_records(manifest, splits):
    """Turns TensorFlow's anonymous DataLossError into a DataError naming file and record.

    tf.data reports a bad CRC or a truncated GZIP stream without the file; on such an
    error the splits' shards are read once more, in NumPy, to find the culprit.
    """
    try:
        yield
    except tf.errors.DataLossError as e:
        for split in splits:
            for path in manifest.files(split):
                for _ in read_examples(path, manifest.compression):
                    pass
        raise DataError(f"corrupt record while streaming {list(splits)}: {e.message}",
                        path=manifest.root) from None


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
    manifest = _manifest(data)
    with naming_corrupt_records(manifest, [split]):
        for batch in ds:
            for key in parts:
                parts[key].append(batch[key].numpy())
    empty = {"images": np.zeros((0, *manifest.image_shape), np.float32),
             "labels": np.zeros((0,), np.int32), "galaxy_id": np.zeros((0,), np.int64)}
    return {k: np.concatenate(v) if v else empty[k] for k, v in parts.items()}
