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

How a batch becomes images (noise, depth ranges, corruptions, stretch) is
`tfgal.data.observation`'s; this module decides which galaxies, in what order and batches.
With ``cache`` a training split is read once into memory and reshuffled whole every epoch
(observed once too when its noise is fixed: only the symmetries are drawn per batch), and
an evaluation stream is observed once and replayed.

Elements are ``(images, labels)`` (or dicts with ``galaxy_id`` when asked); paired
domain-adaptation batches are ``((x_s, x_t), y_s)``.
"""

from __future__ import annotations

import contextlib

import numpy as np
import tensorflow as tf

from tfgal import seeds
from tfgal.data.codec import make_batch_parser, make_parser, read_examples
from tfgal.data.manifest import PSF_FWHM, Manifest
from tfgal.data.observation import (NOISELESS, Observation, augment, augment_batch, fold_in,
                                    resolve_depth, stretcher)
from tfgal.errors import DataError

__all__ = ["AUTOTUNE", "SHUFFLE_BUFFER", "NOISELESS", "resolve_depth", "stretcher", "augment",
           "augment_batch", "serialized_dataset", "records_dataset", "make_dataset",
           "make_paired_dataset",
           "naming_corrupt_records", "load_arrays"]

AUTOTUNE = tf.data.AUTOTUNE
SHUFFLE_BUFFER = 2048


def _manifest(data):
    return data if isinstance(data, Manifest) else Manifest.load(data)


def serialized_dataset(manifest, split, *, input_context=None):
    """Serialized examples of a split in file order (this input pipeline's share of it)."""
    files, _, by_records = _pipeline_share(manifest, split, input_context)
    ds = tf.data.Dataset.from_tensor_slices(files).flat_map(
        lambda f: tf.data.TFRecordDataset(f, compression_type=manifest.compression))
    return ds.shard(*by_records) if by_records else ds


def _pipeline_share(manifest, split, input_context):
    """(this pipeline's shard files, their record counts, (n, i) to shard records by or
    None).

    Shard by file when every pipeline gets one; else every pipeline reads all files and
    keeps every n-th record (correct, but each reads everything: use smaller shards).
    """
    files = manifest.files(split)
    counts = [int(entry["count"]) for entry in manifest.split(split)["files"]]
    n = input_context.num_input_pipelines if input_context is not None else 1
    i = input_context.input_pipeline_id if input_context is not None else 0
    if n == 1:
        return files, counts, None
    if len(files) < n:
        return files, counts, (n, i)
    return files[i::n], counts[i::n], None


def pipeline_count(manifest, split, input_context=None):
    """How many galaxies of `split` this input pipeline reads (all of them without one)."""
    _, counts, by_records = _pipeline_share(manifest, split, input_context)
    if by_records:
        return len(range(by_records[1], sum(counts), by_records[0]))
    return sum(counts)


def _order(seed, p, w, n):
    """A permutation of range(n), a function of (seed, pass p, block w) only."""
    key = fold_in(tf.constant([seed, 0], tf.int64), p, w)
    return tf.argsort(tf.random.stateless_uniform(tf.reshape(n, [1]), key))


def _training_passes(one_pass, count, start, repeat, seed):
    """Training elements, pass after pass from element `start` on, with their salts.

    Every pass is a function of its index alone (`one_pass(p)`: its order; the salt of
    its i-th element is its place in the stream, ``p * count + i + 1``, from which the
    galaxy's noise, drawn depth, corruption and symmetry are seeded), never of how many
    iterators came before: a run resumed at element `start` sees exactly the stream an
    uninterrupted one sees there.

    Without `repeat` (one pass an iteration, as a Keras fit over a finite dataset
    iterates it every epoch) each iteration draws its pass at random instead: fresh every
    epoch, but not resumable; `tfgal-train` repeats.
    """
    def salted(p):  # > 0: salt 0 is the evaluation draw
        return one_pass(p).enumerate().map(lambda i, e: (e, p * count + i + 1))
    if not repeat:
        passes = tf.data.Dataset.random(seed=seeds.derive(seed, "pass"),
                                        rerandomize_each_iteration=True).take(1)
        return passes.map(lambda r: r % 1_000_003).flat_map(salted)
    first, skip = divmod(int(start), max(int(count), 1))
    ds = tf.data.Dataset.range(first, np.iinfo(np.int64).max).flat_map(salted)
    return ds.skip(skip) if skip else ds


def records_dataset(manifest, split, **kwargs):
    """Parsed galaxies of a split in file order, one dict (images by name, label,
    galaxy_id) each."""
    return serialized_dataset(manifest, split, **kwargs).map(
        make_parser(manifest), num_parallel_calls=AUTOTUNE)


def _shuffled_records(manifest, split, seed, input_context, start, repeat):
    """(serialized example, salt) of a training stream from element `start` on.

    Each pass reads this pipeline's shards in an order of its own, interleaved, and
    permutes them in blocks of SHUFFLE_BUFFER records (a shuffle buffer's reach, without
    its hidden state).
    """
    files, _, by_records = _pipeline_share(manifest, split, input_context)
    cycle = min(len(files), 4)
    files = tf.constant(files)
    compression = manifest.compression
    file_seed, block_seed = seeds.derive(seed, "files"), seeds.derive(seed, "records")

    def one_pass(p):
        ds = tf.data.Dataset.from_tensor_slices(
            tf.gather(files, _order(file_seed, p, 0, tf.size(files))))
        ds = ds.interleave(
            lambda f: tf.data.TFRecordDataset(f, compression_type=compression),
            cycle_length=cycle,
            num_parallel_calls=AUTOTUNE, deterministic=True)
        if by_records:
            ds = ds.shard(*by_records)
        ds = ds.batch(SHUFFLE_BUFFER).enumerate()
        return ds.flat_map(lambda w, block: tf.data.Dataset.from_tensor_slices(
            tf.gather(block, _order(block_seed, p, w + 1, tf.size(block)))))
    return _training_passes(one_pass, pipeline_count(manifest, split, input_context), start,
                            repeat, seed)


def make_dataset(data, split, depth="Y10", *, batch_size=128, training=False, seed=0,
                 augment_images=None, noise_mode="fast", stretch=None, input_context=None,
                 with_ids=False, drop_remainder=None, repeat=False, depth_range=None,
                 fresh_noise=True, corruption=None, limit=None, cache=False, start=0):
    """Batches of stretched images of `split` observed at `depth`.

    Args:
      data: dataset directory or `manifest.Manifest`.
      split: "train", "val" or "test".
      depth: "Y10", "Y1", years, a `survey.Depth`, or "noiseless" (mock data only).
      batch_size: global batch size; divided per replica when `input_context` is given.
      training: shuffle (a new order every pass over the split), fresh noise every pass,
        augment (unless `augment_images` is False), drop the last partial batch. Every
        random draw is addressed by position in the stream (pass, index), never by the
        iterator's history: see `start`.
      seed: root seed of noise, shuffling and augmentation.
      noise_mode: "fast" or "exact" (see `tfgal.noise`).
      stretch: stretch params overriding the manifest's.
      input_context: a `tf.distribute.InputContext`; shards files across pipelines.
      with_ids: yield dicts {"images", "labels", "galaxy_id"} instead of (images, labels),
        plus "exposure_s" [B, C] (each galaxy's drawn exposure) with a `depth_range`, and
        "psf_fwhm_arcsec" [B] (each galaxy's own r-band PSF FWHM) where the records hold
        it (the manifest's ``psf_fwhm``).
      depth_range: (lo, hi) depths: each galaxy observed at its own depth, log-uniform in
        exposure between them (see the module docstring); `depth` then only names the
        stored image of data with noise baked in. None: every galaxy at `depth`.
      fresh_noise: in training, new noise (and drawn depth) each iteration; False: one
        fixed draw per galaxy, as in evaluation (shuffling and augmentation still vary).
      corruption: a `tfgal.data.corruptions.Plan`: which physical corruption each galaxy
        gets (seeded per galaxy like the noise). A sweep yields every galaxy once per
        severity, severity-major; `with_ids` then adds "severity" [B].
      limit: only the split's first `limit` galaxies (file order; not when training).
      cache: hold the split in memory. Training: read once, reshuffled whole each epoch
        (with fixed noise and no corruption, observed once too; see `_memory_stream`).
        Evaluation: the observed batches, replayed by later iterations.
      start: repeating training streams only: the first batch to yield, counted from the
        stream's beginning across passes (a resumed run's global step). The stream from there is
        the one an iterator started at 0 yields after `start` batches, bit for bit.
    """
    if limit is not None and training:
        raise ValueError("limit is for evaluation streams (file order), not training")
    manifest = _manifest(data)
    do_augment = training if augment_images is None else augment_images
    augment_seed = seeds.derive(seed, "augment") if do_augment else None
    memory = cache and training
    # Observed once in memory: the symmetries are drawn per batch, not per galaxy here.
    fixed = memory and not fresh_noise and corruption is None
    observation = Observation(
        manifest, depth, seed=seed, mode=noise_mode, stretch_params=stretch,
        augment_seed=None if fixed else augment_seed,
        depth_range=depth_range, fresh_noise=fresh_noise, corruption=corruption)
    per_replica = (input_context.get_per_replica_batch_size(batch_size)
                   if input_context is not None else batch_size)
    if start and not (training and repeat):
        raise ValueError("start is for repeating training streams (repeat=True)")
    if memory:
        return _memory_stream(manifest, split, observation, fixed=fixed, seed=seed,
                              batch_size=per_replica, repeat=repeat, with_ids=with_ids,
                              augment_seed=augment_seed, input_context=input_context,
                              start=start)
    sweep = corruption is not None and bool(corruption.sweep_levels)

    def finish(serialized, salts, severity=None):
        observed = observation(serialized, salts, severity)
        if not with_ids:
            return observed[:2]
        out, level = _observed(observed), observed[4]
        return out if level is None else {**out, "severity": level}
    count = manifest.count(split)
    if training:
        ds = _shuffled_records(manifest, split, seed, input_context, start * per_replica,
                               repeat)
    else:
        ds = serialized_dataset(manifest, split, input_context=input_context)
        if limit is not None:
            ds, count = ds.take(int(limit)), min(count, int(limit))
        ds = ds.map(lambda e: (e, tf.constant(0, tf.int64)))
    if sweep:
        if training:
            raise ValueError("a corruption sweep is for evaluation, not training")
        base = ds
        levels = tf.data.Dataset.from_tensor_slices(
            tf.constant(corruption.sweep_levels, tf.int32))
        ds = levels.flat_map(lambda s: base.map(lambda e, salt: (e, salt, s)))
        count *= len(corruption.sweep_levels)
    if repeat and not training:
        ds = ds.repeat()
    drop = training if drop_remainder is None else drop_remainder
    ds = ds.batch(per_replica, drop_remainder=drop)
    if input_context is None and not repeat:
        # Known length: Keras shows a full progress bar and no "ran out of data" warning.
        n, b = count, per_replica
        ds = ds.apply(tf.data.experimental.assert_cardinality(n // b if drop else -(-n // b)))
    ds = ds.map(finish, num_parallel_calls=AUTOTUNE)
    # Evaluation streams are deterministic: a cached one is observed once, then replayed.
    return (ds.cache() if cache else ds).prefetch(AUTOTUNE)


def _memory_stream(manifest, split, observation, *, fixed, seed, batch_size, repeat,
                   with_ids, augment_seed, input_context, start=0):
    """Training batches from memory: the split is read (and, with `fixed` noise, observed)
    once in file order, held as one batch, then drawn in a new order every pass.

    Where the pipeline shares two cores with the step, reading and decompressing the
    shards and drawing the noise took most of the gap to a plain Keras fit
    (docs/benchmarks.md). With `fixed` the per-batch work left is the dihedral augmentation
    (`augment_batch`); otherwise each batch of parsed records is observed as in the
    streaming path, with fresh noise.
    """
    ds = serialized_dataset(manifest, split, input_context=input_context).batch(256)
    if fixed:
        ds = ds.map(lambda serialized: _observed(observation(
            serialized, tf.zeros(tf.shape(serialized), tf.int64))))
    else:
        ds = ds.map(make_batch_parser(manifest, [observation.image_key]))
    count = pipeline_count(manifest, split, input_context)
    # One element, the whole split, cached. The batch of two asks the cache for its end
    # at once: a stream dropped during its first pass then keeps a complete cache.
    whole = ds.unbatch().batch(count).cache().batch(2)
    order_seed = seeds.derive(seed, "records")

    def one_pass(p):
        return whole.flat_map(lambda split_arrays: tf.data.Dataset.from_tensor_slices(
            _order(order_seed, p, 0, count)).map(
                lambda i: {k: v[0, i] for k, v in split_arrays.items()}))
    ds = _training_passes(one_pass, count, start * batch_size, repeat, seed)
    ds = ds.batch(batch_size, drop_remainder=True)

    def finish(element, salts):
        if fixed:
            out = dict(element)
            if augment_seed is not None:
                out["images"] = augment_batch(out["images"], fold_in(
                    tf.constant([augment_seed, 0], tf.int64), salts[0]))
        else:
            out = _observed(observation.observe(element, salts))
        return out if with_ids else (out["images"], out["labels"])

    return ds.map(finish, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def _observed(observed):
    """The dict of an `Observation`'s result, less the severities."""
    images, labels, ids, exposure, _, own_fwhm = observed
    out = {"images": images, "labels": labels, "galaxy_id": ids}
    if exposure is not None:
        out["exposure_s"] = exposure
    return out if own_fwhm is None else {**out, PSF_FWHM: own_fwhm}


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
    other keywords go to both streams (`start` included: both are at the same step).
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

    Returns dict(images=float32 NHWC stretched, labels=int32, galaxy_id=int64,
    severity=int32 with a `corruption` plan, and psf_fwhm_arcsec=float32 [n], each
    galaxy's own r-band PSF FWHM, where the records hold it: e.g. to measure each galaxy
    with its own PSF). Noise for mock data is seeded per galaxy, so the same galaxy gets
    the same image in every call.
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
    if manifest.psf_fwhm is not None:
        parts[PSF_FWHM] = []
    with naming_corrupt_records(manifest, [split]):
        for batch in ds:
            for key in parts:
                parts[key].append(batch[key].numpy())
    empty = {"images": np.zeros((0, *manifest.image_shape), np.float32),
             "labels": np.zeros((0,), np.int32), "galaxy_id": np.zeros((0,), np.int64),
             "severity": np.zeros((0,), np.int32), PSF_FWHM: np.zeros((0,), np.float32)}
    return {k: np.concatenate(v) if v else empty[k] for k, v in parts.items()}
