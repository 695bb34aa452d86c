"""Observational noise: noiseless flux -> a sky-subtracted exposure at a chosen depth.

A pixel of noiseless flux `f` (e-/s) observed for `t` seconds over a sky `s` (e-/s per
pixel) collects N ~ Poisson((f + s) t) electrons; the sky-subtracted rate is N / t - s,
with mean f and variance (f + s) / t.

Two modes:

* ``exact``: `tf.random.stateless_poisson` for every pixel (CPU kernel only, slow).
* ``fast``: a normal draw with a Cornish-Fisher skew correction,
  ``N = round(lam + sqrt(lam) z + (z^2 - 1) / 6)``, for pixels whose expected count
  `lam` is at least `threshold`, and exact Poisson (CDF inversion at Phi(z)) for the
  (rare) rest. Its mean is
  lam, its variance lam + 0.14, its skewness that of Poisson to first order; at the
  LSST sky levels every pixel of a Y1 or deeper image has lam > 2,000.

Both are stateless: the same seed gives the same noise on any device and in any
pipeline order.

Depth augmentation draws each galaxy's exposure log-uniformly between two depths
(`log_uniform_exposure`). Images stored with noise already in them (imported data) can
only be made shallower: `degrade_from_normal` adds the Gaussian noise that brings each
pixel's variance from the stored depth's to the shallower one's.
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["MODES", "DEFAULT_THRESHOLD", "as_seed", "poisson_observe", "standard_normal",
           "observe_from_normal", "cornish_fisher_counts", "counts_from_normal",
           "poisson_quantile", "log_uniform_exposure", "degrade_from_normal"]

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
        return counts / exposure_s - sky
    z = standard_normal(tf.shape(flux), seed)
    return observe_from_normal(flux, exposure_s, sky, z, threshold=threshold)


def standard_normal(shape, seed):
    """The deviates the fast mode transforms: N(0, 1), float32, stateless."""
    return tf.random.stateless_normal(shape, as_seed(seed), dtype=tf.float32)


def observe_from_normal(flux, exposure_s, sky, z, *, threshold=DEFAULT_THRESHOLD):
    """Fast-mode observation from given N(0, 1) deviates `z` (shaped like `flux`).

    Split from the draw so that a pipeline can draw per galaxy (seeded by its id) and
    transform whole batches at once.
    """
    exposure_s = tf.convert_to_tensor(exposure_s, tf.float32)
    sky = tf.convert_to_tensor(sky, tf.float32)
    lam = (tf.convert_to_tensor(flux, tf.float32) + sky) * exposure_s
    return counts_from_normal(lam, z, threshold) / exposure_s - sky


def cornish_fisher_counts(lam, z):
    """round(lam + sqrt(lam) z + (z^2 - 1) / 6), at least 0: the fast mode's normal part."""
    return tf.maximum(tf.round(lam + tf.sqrt(lam) * z + (tf.square(z) - 1.0) / 6.0), 0.0)


def counts_from_normal(lam, z, threshold=DEFAULT_THRESHOLD):
    """Poisson(lam) counts driven by normal deviates `z`.

    Above `threshold` a Cornish-Fisher corrected normal; below it exact Poisson by
    inversion of the CDF at Phi(z), so every pixel's count depends only on its own z.
    """
    counts = cornish_fisher_counts(lam, z)
    low = lam < threshold
    # Exact inversion only where the normal approximation would be poor; usually none.
    return tf.cond(tf.reduce_any(low), lambda: _replace_low(counts, lam, z, low, threshold),
                   lambda: counts)


def _replace_low(counts, lam, z, low, threshold):
    where = tf.where(low)
    exact = poisson_quantile(tf.gather_nd(lam, where), tf.gather_nd(z, where), threshold)
    return tf.tensor_scatter_nd_update(counts, where, exact)


def poisson_quantile(lam, z, max_lam):
    """The Poisson(lam) quantile at probability Phi(z), for lam < max_lam (float32 out).

    Binary search for the smallest k with P(N <= k) >= Phi(z), using the regularized
    incomplete gamma function (P(N <= k) = Q(k + 1, lam)) in float64; for z > 0 the
    upper tail is compared instead, so probabilities near 1 keep their precision.
    """
    lam = tf.cast(lam, tf.float64)
    z = tf.cast(z, tf.float64)
    tail = 0.5 * tf.math.erfc(tf.abs(z) / tf.sqrt(tf.constant(2.0, tf.float64)))
    upper = z > 0
    hi_bound = float(max_lam) + 10.0 * float(max_lam) ** 0.5 + 20.0
    lo = tf.zeros_like(lam)  # invariant: the answer is in [lo, hi]
    hi = tf.fill(tf.shape(lam), tf.constant(hi_bound, tf.float64))
    for _ in range(int(hi_bound).bit_length() + 1):
        mid = tf.floor((lo + hi) / 2.0)
        enough = tf.where(upper, tf.math.igamma(mid + 1.0, lam) <= tail,
                          tf.math.igammac(mid + 1.0, lam) >= tail)
        hi = tf.where(enough, mid, hi)
        lo = tf.where(enough, lo, mid + 1.0)
    return tf.cast(hi, tf.float32)


def log_uniform_exposure(low_s, high_s, u):
    """Per-band exposure ``low^(1 - u) * high^u``: log-uniform between two depths for u ~ U(0, 1).

    `low_s`, `high_s`: exposures per band [C]; `u`: a scalar, or [..., 1] to give [..., C].
    """
    log_lo = tf.math.log(tf.convert_to_tensor(low_s, tf.float32))
    log_hi = tf.math.log(tf.convert_to_tensor(high_s, tf.float32))
    u = tf.convert_to_tensor(u, tf.float32)
    return tf.exp((1.0 - u) * log_lo + u * log_hi)


def degrade_from_normal(observed, exposure_s, new_exposure_s, sky, z):
    """An image observed for `exposure_s` made as noisy as one observed for `new_exposure_s`.

    Adds ``sqrt(v) z`` with ``v = (max(x, 0) + sky) (1 / new - 1 / exposure)`` per pixel: the
    variance a Poisson observation at the shorter exposure has beyond the stored one's
    (the stored pixel `x`, sky-subtracted e-/s, stands in for the unknown true flux).
    `new_exposure_s` must not exceed `exposure_s` (a noisy image cannot be made cleaner).
    """
    observed = tf.convert_to_tensor(observed, tf.float32)
    exposure_s = tf.convert_to_tensor(exposure_s, tf.float32)
    new_exposure_s = tf.convert_to_tensor(new_exposure_s, tf.float32)
    extra = (tf.maximum(observed, 0.0) + sky) * (1.0 / new_exposure_s - 1.0 / exposure_s)
    # Rounding can leave a hair below 0 when the two exposures coincide.
    return observed + tf.sqrt(tf.maximum(extra, 0.0)) * z
