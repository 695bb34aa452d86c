import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from tfgal import survey
from tfgal.data import noise


def _draws(flux, depth, n, mode, seed0=0):
    t = depth.exposure_vector()
    sky = survey.sky_vector()
    batch = np.broadcast_to(flux, (n, *flux.shape)).astype(np.float32)
    return noise.poisson_observe(batch, t, sky, [seed0, 1], mode=mode).numpy()


@pytest.mark.parametrize("mode", ["fast", "exact"])
@pytest.mark.parametrize("depth", [survey.Y1, survey.Y10])
def test_per_pixel_mean_and_variance(mode, depth):
    rng = np.random.default_rng(0)
    flux = rng.uniform(0, 5, (4, 4, 3)).astype(np.float32)
    n = 4000
    x = _draws(flux, depth, n, mode)
    expected_var = (flux + survey.sky_vector()) / depth.exposure_vector()
    # Mean within 5 standard errors of the sample mean, variance within 10% (n = 4000).
    se = np.sqrt(expected_var / n)
    assert np.all(np.abs(x.mean(0) - flux) < 5 * se)
    np.testing.assert_allclose(x.var(0), expected_var, rtol=0.1)


@pytest.mark.parametrize("mode", ["fast", "exact"])
def test_deterministic_for_a_seed(mode):
    flux = np.ones((8, 8, 3), np.float32)
    t, sky = survey.Y1.exposure_vector(), survey.sky_vector()
    a = noise.poisson_observe(flux, t, sky, 7, mode=mode).numpy()
    b = noise.poisson_observe(flux, t, sky, 7, mode=mode).numpy()
    c = noise.poisson_observe(flux, t, sky, 8, mode=mode).numpy()
    assert a.dtype == np.float32 and a.shape == flux.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def _chi2_pvalue(counts, lam):
    lo, hi = int(stats.poisson.ppf(1e-3, lam)), int(stats.poisson.ppf(1 - 1e-3, lam))
    values = np.arange(lo, hi + 1)
    observed = [(counts < lo).sum()] + [(counts == v).sum() for v in values] + [(counts > hi).sum()]
    expected = np.concatenate([[stats.poisson.cdf(lo - 1, lam)], stats.poisson.pmf(values, lam),
                               [stats.poisson.sf(hi, lam)]]) * len(counts)
    # Merge neighbouring bins until each expects at least 20 counts.
    obs, exp, acc_o, acc_e = [], [], 0, 0.0
    for o, e in zip(observed, expected):
        acc_o, acc_e = acc_o + o, acc_e + e
        if acc_e >= 20:
            obs.append(acc_o), exp.append(acc_e)
            acc_o, acc_e = 0, 0.0
    obs[-1] += acc_o
    exp[-1] += acc_e
    return stats.chisquare(obs, exp).pvalue


@pytest.mark.parametrize("lam", [noise.DEFAULT_THRESHOLD, 2000.0])
def test_fast_mode_matches_poisson_distribution(lam):
    # Counts recovered from the sky-subtracted rate with t = 1 s and no source flux.
    x = noise.poisson_observe(np.zeros(100_000, np.float32), 1.0, lam, [3, 4], mode="fast")
    counts = np.round(x.numpy() + lam).astype(int)
    assert _chi2_pvalue(counts, lam) > 1e-3


def test_plain_normal_would_fail_the_same_test():
    # Guards the test's power: without the skew correction the fit is rejected.
    lam = noise.DEFAULT_THRESHOLD
    z = np.random.default_rng(0).standard_normal(100_000)
    assert _chi2_pvalue(np.round(lam + np.sqrt(lam) * z).astype(int), lam) < 1e-6


def test_fast_mode_uses_exact_draws_below_threshold():
    lam = 3.0
    x = noise.poisson_observe(np.zeros(50_000, np.float32), 1.0, lam, [5, 6], mode="fast")
    counts = x.numpy() + lam
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-4)  # integer counts
    assert counts.min() >= 0
    assert _chi2_pvalue(np.round(counts).astype(int), lam) > 1e-3


@pytest.mark.parametrize("lam", [0.0, 0.3, 3.0, 40.0, 99.0])
def test_poisson_quantile_matches_scipy_in_the_tails(lam):
    z = np.array([-6, -3, -1, -0.1, 0, 0.1, 1, 3, 6], np.float64)
    got = noise.poisson_quantile(np.full(z.shape, lam), z, 100.0).numpy()
    want = np.where(z > 0, stats.poisson.isf(stats.norm.sf(z), lam),
                    stats.poisson.ppf(stats.norm.cdf(z), lam))
    np.testing.assert_array_equal(got, want)


def test_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        noise.poisson_observe(np.ones(3, np.float32), 1.0, 1.0, 0, mode="gaussian")


def test_works_inside_tf_function_on_batches():
    fn = tf.function(lambda f, s: noise.poisson_observe(f, survey.Y1.exposure_vector(),
                                                        survey.sky_vector(), s))
    out = fn(tf.zeros([2, 5, 5, 3]), tf.constant([1, 2], tf.int64))
    assert out.shape == (2, 5, 5, 3)


def test_log_uniform_exposure_spans_the_two_depths():
    lo, hi = survey.Y1.exposure_vector(), survey.Y10.exposure_vector()
    np.testing.assert_allclose(noise.log_uniform_exposure(lo, hi, 0.0), lo, rtol=1e-6)
    np.testing.assert_allclose(noise.log_uniform_exposure(lo, hi, 1.0), hi, rtol=1e-6)
    mid = noise.log_uniform_exposure(lo, hi, 0.5).numpy()
    np.testing.assert_allclose(mid, np.sqrt(lo * hi), rtol=1e-6)  # geometric mean
    batch = noise.log_uniform_exposure(lo, hi, tf.constant([[0.25], [0.75]])).numpy()
    assert batch.shape == (2, 3) and np.all(batch[0] < batch[1])


def test_degrade_adds_the_missing_variance():
    n = 20_000
    stored = np.array([-3.0, 0.0, 2.0, 40.0], np.float32)  # a negative pixel counts as 0
    t10, t1 = 7360.0, 736.0
    sky = 20.0
    z = tf.random.stateless_normal((n, 4), [1, 2])
    out = noise.degrade_from_normal(np.broadcast_to(stored, (n, 4)), t10, t1, sky, z).numpy()
    want = (np.maximum(stored, 0) + sky) * (1 / t1 - 1 / t10)
    np.testing.assert_allclose(out.var(0), want, rtol=0.05)
    assert np.all(np.abs(out.mean(0) - stored) < 5 * np.sqrt(want / n))
    same = noise.degrade_from_normal(stored, t10, t10, sky, z[0]).numpy()
    np.testing.assert_array_equal(same, stored)  # no shallower: unchanged
