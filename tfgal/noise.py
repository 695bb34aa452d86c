"""Observational noise: noiseless flux -> a sky-subtracted exposure at a chosen depth.

A pixel of noiseless flux `f` (e-/s) observed for `t` seconds over a sky `s` (e-/s per
pixel) collects N ~ Poisson((f + s) t) electrons; the sky-subtracted rate is N / t - s,
with mean f and variance (f + s) / t.

Two modes:

* ``exact``: `tf.random.stateless_poisson` for every pixel (CPU kernel only, slow).
* ``fast``: a normal draw with a Cornish-Fisher skew correction,
  ``N = round(lam + sqrt(lam) z + (z^2 - 1) / 6)``, for pixels whose expected count
  `lam` is at least `threshold`, and exact Poisson for the (rare) rest. Its mean is
  lam, its variance lam + 0.14, its skewness that of Poisson to first order; at the
  LSST sky levels every pixel of a Y1 or deeper image has lam > 2,000.

Both are stateless: the same seed gives the same noise on any device and in any
pipeline order.
"""

from __future__ import annotations

import tensorflow as tf

MODES = ("fast", "exact")
DEFAULT_THRESHOLD = 100.0  # counts; above this the fast mode passes a chi-square test


def as_seed(seed):
    """A stateless-RNG seed (int32 [2]) from an int or a pair."""
    seed = tf.convert_to_tensor(seed)
    if seed.shape.rank == 0:
        seed = tf.stack([tf.cast(seed, tf.int64), tf.constant(0, tf.int64)])
    return tf.cast(seed, tf.int64) % (2**31 - 1)


def poisson_observe(flux, exposure_s, sky, seed, *, mode="fast", threshold=DEFAULT_THRESHOLD):
    """Observes noiseless flux with Poisson noise and subtracts the sky.

    Args:
      flux: noiseless flux, e-/s per pixel, HWC or NHWC float32, >= 0.
      exposure_s: total exposure per band, seconds (shape [C], or a scalar).
      sky: sky level per band, e-/s per pixel (shape [C], or a scalar).
      seed: int or int pair; the same seed gives the same noise.
      mode: "fast" (default) or "exact".
      threshold: in fast mode, expected counts from which the normal draw is used.

    Returns:
      float32 tensor shaped like `flux`: sky-subtracted e-/s, mean `flux`, variance
      `(flux + sky) / exposure_s` per pixel.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; received mode={mode!r}")
    flux = tf.convert_to_tensor(flux, tf.float32)
    exposure_s = tf.convert_to_tensor(exposure_s, tf.float32)
    sky = tf.convert_to_tensor(sky, tf.float32)
    seed = as_seed(seed)
    lam = (flux + sky) * exposure_s
    if mode == "exact":
        counts = tf.random.stateless_poisson(tf.shape(lam), seed, lam, dtype=tf.float32)
    else:
        counts = _fast_counts(lam, seed, threshold)
    return counts / exposure_s - sky


def _fast_counts(lam, seed, threshold):
    z = tf.random.stateless_normal(tf.shape(lam), seed, dtype=tf.float32)
    counts = tf.round(lam + tf.sqrt(lam) * z + (tf.square(z) - 1.0) / 6.0)
    counts = tf.maximum(counts, 0.0)
    low = lam < threshold
    # Exact draws only where the normal approximation would be poor; usually none.
    return tf.cond(tf.reduce_any(low),
                   lambda: _replace_low(counts, lam, low, seed),
                   lambda: counts)


def _replace_low(counts, lam, low, seed):
    where = tf.where(low)
    lam_low = tf.gather_nd(lam, where)
    sub_seed = tf.stack([seed[0], seed[1] + 1])
    exact = tf.random.stateless_poisson(tf.shape(lam_low), sub_seed, lam_low, dtype=tf.float32)
    return tf.tensor_scatter_nd_update(counts, where, exact)
