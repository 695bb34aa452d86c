"""How a batch of a split's galaxies becomes stretched images at a depth (`Observation`),
and the square's symmetries that augment them.

Each galaxy's noise is seeded by (root seed, depth, galaxy id[, salt]), so what a galaxy
looks like never depends on batching, shard order or the number of workers; the pipelines
(`tfgal.data.pipeline`) decide which galaxies, salts and batches come here.

Where the records hold each galaxy's own PSF FWHM (mock data; the manifest's
``psf_fwhm``), the parsed batch carries it (``psf_fwhm_arcsec`` [B]) and the corruption
plan's ops get it, so seeing widens each galaxy's own PSF.
"""

from __future__ import annotations

import zlib

import numpy as np
import tensorflow as tf

from tfgal import seeds, survey
from tfgal.data import corruptions as corruptions_lib
from tfgal.data import noise
from tfgal.data import stretch as stretch_lib
from tfgal.data.codec import make_batch_parser
from tfgal.data.manifest import FLUX, PSF_FWHM
from tfgal.errors import ConfigError, DataError

__all__ = ["NOISELESS", "Observation", "resolve_depth", "stretcher", "augment", "fold_in",
           "symmetry_indices", "augment_batch"]

NOISELESS = "noiseless"  # depth name for the stretched noiseless flux (mock data only)


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


class Observation:
    """How batches of a split's galaxies become stretched images at a depth.

    Everything runs per batch: records are parsed together, each galaxy's noise
    deviates are drawn from its own seed (galaxy id, depth, salt) so that results do not
    depend on batching, and the Poisson transform and stretch run as one fused XLA
    kernel over the batch. With `depth_range` each galaxy is observed at its own depth
    (exposures [B, 1, 1, C] broadcast into the same kernel). A corruption plan gets each
    galaxy's own PSF FWHM from its record where the records hold it.
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
        plan, else None, each galaxy's own r-band PSF FWHM [B] where the records hold it,
        else None). `severity` [B]: a sweep's per-galaxy severities."""
        return self.observe(self.parse(serialized), salts, severity)

    def observe(self, parsed, salts, severity=None):
        """`__call__` on records already parsed (a dict of batched tensors; with
        ``psf_fwhm_arcsec`` [B] where the records hold it)."""
        images, ids = parsed[self.image_key], parsed["galaxy_id"]
        if self.plan is not None:
            choice, level = self.plan.assign(self.seed, ids, salts, severity)
            # Each galaxy's own PSF where the records hold it, else the Context's for all.
            own_fwhm = parsed.get(PSF_FWHM)

            def corrupt(stage, x):
                return self.plan.apply(stage, x, choice, level, ids, salts, self.seed,
                                       self.corruption_ctx, self.noiseless, own_fwhm)
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
                level if self.plan is not None else None, parsed.get(PSF_FWHM))

    def _per_galaxy(self, args):
        image, galaxy_id, salt = args
        # Without fresh noise every epoch draws the same noise (and depth) per galaxy.
        noise_salt = salt if self.fresh_noise else tf.zeros_like(salt)
        aug_seed = (None if self.augment_base is None
                    else fold_in(self.augment_base, galaxy_id, salt))
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
            u = tf.random.stateless_uniform([], fold_in(self.depth_base, galaxy_id, salt))
            exposure = noise.log_uniform_exposure(self.range_low, self.range_high, u)
        else:
            exposure = self.exposure
        seed = fold_in(self.noise_base, galaxy_id, salt)
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


def fold_in(base, *values):
    """A stateless seed [2] with `values` folded in, one after another."""
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
    image = tf.image.stateless_random_flip_left_right(image, fold_in(seed, 1))
    k = tf.random.stateless_uniform([], fold_in(seed, 2), 0, 4, dtype=tf.int32)
    return tf.image.rot90(image, k)


def symmetry_indices(height, width):
    """[K, H * W] pixel indices of the square's eight symmetries (transpose or not, then
    flip rows or not, flip columns or not); the four flips alone when H != W."""
    grid = np.arange(height * width).reshape(height, width)
    out = []
    for transpose in ((False, True) if height == width else (False,)):
        for flip_rows in (False, True):
            for flip_cols in (False, True):
                g = grid.T if transpose else grid
                g = g[::-1] if flip_rows else g
                out.append((g[:, ::-1] if flip_cols else g).reshape(-1))
    return np.stack(out).astype(np.int32)


@tf.function(jit_compile=True)
def _gather_symmetries(images, table, seed):
    shape = tf.shape(images)
    k = tf.random.stateless_uniform([shape[0]], seed, 0, tf.shape(table)[0], tf.int32)
    flat = tf.reshape(images, [shape[0], -1, shape[3]])
    return tf.reshape(tf.gather(flat, tf.gather(table, k), batch_dims=1), shape)


def augment_batch(images, seed):
    """Each image of a batch [B, H, W, C] under its own one of the square's eight
    symmetries, uniformly: one XLA-compiled gather through a table of pixel indices, far
    cheaper on a CPU than selecting among transformed copies of the batch
    (docs/benchmarks.md). `seed`: int64 [2]."""
    table = tf.constant(symmetry_indices(int(images.shape[1]), int(images.shape[2])))
    return _gather_symmetries(images, table, seed)
