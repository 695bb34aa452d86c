"""tf.data pipelines: shards -> parsed galaxies -> observed at a depth -> stretched batches.

Noise is added on the fly to noiseless (mock) data: each galaxy's noise is seeded by
(root seed, depth, galaxy id), so evaluation sees the same noisy image of a galaxy
whatever the batch size, shard order or number of workers. Training additionally
folds in a per-iteration random salt, so each epoch sees fresh noise (unless
``fresh_noise=False``: then one fixed draw per galaxy, turned with its galaxy by the
augmentation, like a stored noisy file). Imported data carry their noise already; the
pipeline then picks the image stored for the depth.

Depth augmentation (``depth_range=(lo, hi)``, the training source stream only) observes
each galaxy at its own depth, log-uniform in exposure between the two:
``t_b = t_lo_b^(1 - u) t_hi_b^u`` per band, u ~ U(0, 1) seeded by (seed, galaxy id,
salt). Noiseless data get Poisson noise at that depth. Data with noise baked in can only
be made shallower: the image stored at the (deepest) requested depth gets Gaussian noise
of variance ``(max(x, 0) + sky_b) (1 / t_b - 1 / t_stored_b)`` per pixel, before the
stretch, so its variance matches the drawn depth's. That needs pixels in flux units
(e-/s, sky-subtracted): a dataset stored already stretched (stretch "identity", e.g. the
paper's .npy files) is refused with a `ConfigError` naming ``data.depth_augment``.

Physical corruptions (`tfgal.data.corruptions`, ``corruption=`` a `Plan`) act at their
stage: on the noiseless flux before the noise, on the observed image before the stretch,
or on the stretched image; they are seeded per galaxy like the noise, and in evaluation
(fixed or sweep plans) untouched galaxies keep the clean stream's exact pixels.

Elements are ``(images, labels)`` (or dicts with ``galaxy_id`` when asked); paired
domain-adaptation batches are ``((x_s, x_t), y_s)``.
"""

from __future__ import annotations

import contextlib
import zlib

import numpy as np
import tensorflow as tf

from tfgal import seeds, survey
from tfgal.data import corruptions as corruptions_lib
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


def _exposure_key(exposure):
    return ",".join(f"{t:.6g}" for t in exposure)


def _depth_code(depth, until=None):
    """A stable int for a `survey.Depth`, or for a depth range given as exposures [C]
    (`depth` to `until`), mixed into noise seeds."""
    if until is None:
        key = _exposure_key(depth.exposure_s)
    else:
        key = "range:" + ";".join(_exposure_key(e) for e in (depth, until))
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
    kernel over the batch. With `depth_range` each galaxy is observed at its own depth
    (exposures [B, 1, 1, C] broadcast into the same kernel).
    """

    def __init__(self, manifest, depth, *, seed, mode, stretch_params, augment_seed=None,
                 depth_range=None, fresh_noise=True, corruption=None):
        kind, what = resolve_depth(manifest, depth)
        self.plan, self.seed = corruption, int(seed)
        self.noiseless = kind != "stored"
        stages = set()
        if corruption is not None:
            corruptions_lib.check(corruption.names, manifest)
            self.corruption_ctx = corruptions_lib.Context.of(manifest, stretch_params)
            stages = corruption.stages(self.noiseless)
        if mode not in noise.MODES:
            raise ConfigError(f"unknown noise mode {mode!r}", key="noise_mode", valid=noise.MODES)
        self.image_key = what if kind == "stored" else FLUX
        self.noisy = kind == "noise"
        self.mode = mode
        self.fresh_noise = bool(fresh_noise)
        self.parse = make_batch_parser(manifest, [self.image_key])
        self.stretch = stretcher(manifest, stretch_params)
        self.augment_base = (None if augment_seed is None
                             else tf.constant([augment_seed, 0], tf.int64))
        self.sky = tf.constant(survey.sky_vector(manifest.bands))
        self.depth_base = None
        if depth_range is not None:
            self._init_range(manifest, kind, what, depth_range, seed)
        elif self.noisy:
            self.exposure = tf.constant(what.exposure_vector())
            self.noise_base = tf.constant([int(seed), _depth_code(what)], tf.int64)
        # Corruptions of the observed image come between the noise and the stretch.
        self.image_stage = "image" in stages
        self.display_stage = "display" in stages
        # One fused XLA kernel for Poisson transform + stretch: faster than op by op.
        self._fused = tf.function(self._observe_and_stretch, jit_compile=True)
        self._fused_at = tf.function(self._kernel, jit_compile=True)

    def _init_range(self, manifest, kind, what, depth_range, seed):
        if kind == "noiseless":
            raise ConfigError("a depth range needs noisy images, not the noiseless flux",
                              key="depth")
        low, high = (_exposure_of(manifest, d) for d in depth_range)
        if kind == "stored":
            if (manifest.stretch or {}).get("kind") == "identity":
                raise ConfigError(
                    f"data.depth_augment needs images in flux units, but dataset "
                    f"{manifest.root} stores them already stretched (stretch 'identity'): "
                    "there is no flux scale to add noise in; set data.depth_augment=false",
                    key="data.depth_augment")
            stored = _exposure_of(manifest, what)
            if np.any(np.maximum(low, high) > stored * (1 + 1e-6)):
                raise ConfigError(
                    f"dataset {manifest.root} stores noise baked in at {what!r}; a depth "
                    f"range can only reach shallower depths (exposures {low.tolist()} to "
                    f"{high.tolist()} s, stored {stored.tolist()} s)", key="data.depth_augment")
            self.exposure = tf.constant(stored)
        code = _depth_code(low, until=high)
        self.range_low, self.range_high = tf.constant(low), tf.constant(high)
        self.noise_base = tf.constant([int(seed), code], tf.int64)
        self.depth_base = tf.constant([seeds.derive(seed, "depth-range"), code], tf.int64)

    def __call__(self, serialized, salts, severity=None):
        """Serialized examples [B] and salts [B] -> (images [B, H, W, C], labels, ids,
        exposures [B, C] with a depth range, else None, severities [B] with a corruption
        plan, else None). `severity` [B]: a sweep's per-galaxy severities."""
        parsed = self.parse(serialized)
        images, ids = parsed[self.image_key], parsed["galaxy_id"]
        if self.plan is not None:
            choice, level = self.plan.assign(self.seed, ids, salts, severity)

            def corrupt(stage, x):
                return self.plan.apply(stage, x, choice, level, ids, salts, self.seed,
                                       self.corruption_ctx, self.noiseless)
            if self.noiseless:  # before the noise (and before flips: they are random anyway)
                images = corrupt("flux", images)
        exposure = None
        if self.augment_base is not None or self.noisy or self.depth_base is not None:
            images, extra, exposure = tf.map_fn(
                self._per_galaxy, (images, ids, salts),
                fn_output_signature=(tf.float32, tf.float32, tf.float32))
        image_stage = (lambda x: corrupt("image", x)) if self.image_stage else None
        if not self.noisy:
            images = self.stretch(image_stage(images) if image_stage else images)
        elif self.mode == "exact":
            images = self.stretch(image_stage(extra) if image_stage else extra)
        elif image_stage is not None:
            per_galaxy = self.exposure if self.depth_base is None else exposure[:, None, None, :]
            corrupted = self.stretch(image_stage(
                noise.observe_from_normal(images, per_galaxy, self.sky, extra)))
            if self.plan.random:  # training: rounding apart from the fused kernel is moot
                images = corrupted
            else:  # untouched galaxies keep the clean stream's bits (the fused kernel's)
                clean = (self._observe_fast(images, extra) if self.depth_base is None
                         else self._observe_fast(images, extra, per_galaxy))
                images = tf.where((level > 0)[:, None, None, None], corrupted, clean)
        elif self.depth_base is None:
            images = self._observe_fast(images, extra)
        else:
            images = self._observe_fast(images, extra, exposure[:, None, None, :])
        if self.display_stage:
            images = corrupt("display", images)
        return (images, parsed["label"], ids, exposure if self.depth_base is not None else None,
                level if self.plan is not None else None)

    def _per_galaxy(self, args):
        image, galaxy_id, salt = args
        # Without fresh noise every epoch draws the same noise (and depth) per galaxy.
        noise_salt = salt if self.fresh_noise else tf.zeros_like(salt)
        aug_seed = (None if self.augment_base is None
                    else _fold(self.augment_base, galaxy_id, salt))
        if aug_seed is not None and self.fresh_noise:
            # Noise is i.i.d. per pixel, so augmenting before it is equivalent.
            image = augment(image, aug_seed)
        image, extra, exposure = self._noise_inputs(image, galaxy_id, noise_salt)
        if aug_seed is not None and not self.fresh_noise:
            # A fixed draw turns with its galaxy, like a stored noisy image flipped or rotated.
            image = augment(image, aug_seed)
            extra = augment(extra, aug_seed) if self.noisy else extra
        return image, extra, exposure

    def _noise_inputs(self, image, galaxy_id, salt):
        """(image, N(0, 1) deviates or the exact observation, exposure [C]) of a galaxy."""
        empty = tf.zeros([0])
        ranged = self.depth_base is not None
        if not (self.noisy or ranged):
            return image, empty, empty
        if ranged:
            u = tf.random.stateless_uniform([], _fold(self.depth_base, galaxy_id, salt))
            exposure = noise.log_uniform_exposure(self.range_low, self.range_high, u)
        else:
            exposure = self.exposure
        seed = _fold(self.noise_base, galaxy_id, salt)
        if not self.noisy:  # a stored noisy image, made as noisy as the drawn depth
            z = noise.standard_normal(tf.shape(image), seed)
            return (noise.degrade_from_normal(image, self.exposure, exposure, self.sky, z),
                    empty, exposure)
        if self.mode == "exact":
            extra = noise.poisson_observe(image, exposure, self.sky, seed, mode="exact")
        else:
            extra = noise.standard_normal(tf.shape(image), seed)
        return image, extra, exposure if ranged else empty

    def _observe_and_stretch(self, flux, z):
        return self._kernel(flux, z, self.exposure)

    def _kernel(self, flux, z, exposure):
        lam = (flux + self.sky) * exposure
        counts = noise.cornish_fisher_counts(lam, z)
        any_low = tf.reduce_any(lam < noise.DEFAULT_THRESHOLD)
        return self.stretch(counts / exposure - self.sky), any_low

    def _observe_fast(self, flux, z, exposure=None):
        if exposure is None:
            fused, any_low = self._fused(flux, z)
            exposure = self.exposure
        else:
            fused, any_low = self._fused_at(flux, z, exposure)
        # Pixels below the threshold need exact draws: the general (slower) path.
        return tf.cond(any_low, lambda: self.stretch(
            noise.observe_from_normal(flux, exposure, self.sky, z)), lambda: fused)


def _exposure_of(manifest, depth):
    """Exposure per band [C] of a depth, or of an image the dataset stores at its depth."""
    info = manifest.images.get(depth) if isinstance(depth, str) else None
    if info and info.get("depth"):
        return survey.Depth.from_json(info["depth"]).exposure_vector()
    return survey.Depth.parse(depth).exposure_vector()


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
                 with_ids=False, drop_remainder=None, repeat=False, depth_range=None,
                 fresh_noise=True, corruption=None, limit=None):
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
      with_ids: yield dicts {"images", "labels", "galaxy_id"} instead of (images, labels),
        plus "exposure_s" [B, C] (each galaxy's drawn exposure) with a `depth_range`.
      depth_range: (lo, hi) depths: each galaxy observed at its own depth, log-uniform in
        exposure between them (see the module docstring); `depth` then only names the
        stored image of data with noise baked in. None: every galaxy at `depth`.
      fresh_noise: in training, new noise (and drawn depth) each iteration; False: one
        fixed draw per galaxy, as in evaluation (shuffling and augmentation still vary).
      corruption: a `tfgal.data.corruptions.Plan`: which physical corruption each galaxy
        gets (seeded per galaxy like the noise). A sweep yields every galaxy once per
        severity, severity-major; `with_ids` then adds "severity" [B].
      limit: only the split's first `limit` galaxies (file order; not when training).
    """
    manifest = _manifest(data)
    do_augment = training if augment_images is None else augment_images
    observation = _Observation(
        manifest, depth, seed=seed, mode=noise_mode, stretch_params=stretch,
        augment_seed=seeds.derive(seed, "augment") if do_augment else None,
        depth_range=depth_range, fresh_noise=fresh_noise, corruption=corruption)
    sweep = corruption is not None and bool(corruption.sweep_levels)

    def finish(serialized, salts, severity=None):
        images, labels, ids, exposure, level = observation(serialized, salts, severity)
        if with_ids:
            out = {"images": images, "labels": labels, "galaxy_id": ids}
            if exposure is not None:
                out["exposure_s"] = exposure
            if level is not None:
                out["severity"] = level
            return out
        return images, labels

    if limit is not None and training:
        raise ValueError("limit is for evaluation streams (file order), not training")
    ds = serialized_dataset(manifest, split, shuffle=training, seed=seed,
                            input_context=input_context)
    count = manifest.count(split)
    if limit is not None:
        ds, count = ds.take(int(limit)), min(count, int(limit))
    ds = _with_salt(ds, training, seed)
    if sweep:
        if training:
            raise ValueError("a corruption sweep is for evaluation, not training")
        base = ds
        levels = tf.data.Dataset.from_tensor_slices(
            tf.constant(corruption.sweep_levels, tf.int32))
        ds = levels.flat_map(lambda s: base.map(lambda e, salt: (e, salt, s)))
        count *= len(corruption.sweep_levels)
    if repeat:
        ds = ds.repeat()
    per_replica = (input_context.get_per_replica_batch_size(batch_size)
                   if input_context is not None else batch_size)
    drop = training if drop_remainder is None else drop_remainder
    ds = ds.batch(per_replica, drop_remainder=drop)
    if input_context is None and not repeat:
        # Known length: Keras shows a full progress bar and no "ran out of data" warning.
        n, b = count, per_replica
        ds = ds.apply(tf.data.experimental.assert_cardinality(n // b if drop else -(-n // b)))
    return ds.map(finish, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def make_paired_dataset(data, split, source_depth="Y10", target_depth="Y1", *,
                        batch_size=128, training=True, seed=0, source_depth_range=None,
                        source_corruption=None, **kwargs):
    """Domain-adaptation batches ``((x_source, x_target), y_source)``.

    Training: labelled source and unlabelled target come from independently shuffled
    streams of the split (the target stream repeats, so the source defines an epoch).
    Evaluation (`training=False`): the same galaxies in the same order at both depths,
    so the labels serve both (target accuracy is then measurable). The target stream's
    labels are dropped here: nothing downstream can read them.
    `source_depth_range`, `source_corruption`: `make_dataset`'s `depth_range` and
    `corruption`, for the source stream only (depth augmentation, the corruption defence);
    other keywords go to both streams.
    """
    source = make_dataset(data, split, source_depth, batch_size=batch_size, training=training,
                          seed=seed, depth_range=source_depth_range,
                          corruption=source_corruption, **kwargs)
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
                batch_size=256, corruption=None):
    """A split (or its first `n` galaxies, in file order) as NumPy arrays.

    Returns dict(images=float32 NHWC stretched, labels=int32, galaxy_id=int64, and
    severity=int32 with a `corruption` plan). Noise for mock data is seeded per galaxy, so
    the same galaxy gets the same image in every call.
    """
    if n is not None:  # observe no more galaxies than asked for (noise is per galaxy)
        batch_size = max(1, min(batch_size, int(n)))
    ds = make_dataset(data, split, depth, batch_size=batch_size, seed=seed,
                      noise_mode=noise_mode, stretch=stretch, with_ids=True,
                      corruption=corruption, limit=n)
    parts = {"images": [], "labels": [], "galaxy_id": []}
    if corruption is not None:
        parts["severity"] = []
    manifest = _manifest(data)
    with naming_corrupt_records(manifest, [split]):
        for batch in ds:
            for key in parts:
                parts[key].append(batch[key].numpy())
    empty = {"images": np.zeros((0, *manifest.image_shape), np.float32),
             "labels": np.zeros((0,), np.int32), "galaxy_id": np.zeros((0,), np.int64),
             "severity": np.zeros((0,), np.int32)}
    return {k: np.concatenate(v) if v else empty[k] for k, v in parts.items()}
