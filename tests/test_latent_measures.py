"""Scale-free latent distances: the latent scale, bootstrap intervals, paired ratios."""

import json

import numpy as np
import pytest
from scipy.spatial.distance import pdist

from tfgal.study import latent

RECTANGLE = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0], [3.0, 4.0]])


def test_latent_scale_of_hand_made_points():
    # Rectangle 3 x 4: sides 3, 3, 4, 4 and diagonals 5, 5 -> median 4.
    assert latent.latent_scale(RECTANGLE) == 4.0
    assert latent.latent_scale(RECTANGLE, max_pairs=6) == 4.0  # all pairs: no sampling
    # Points 0, 1, 3, 7, 15 on a line: ten distinct distances 1 2 3 4 6 7 8 12 14 15.
    # Nine distinct pairs: median 7 if the one left out is among the five smallest, else 6;
    # pairs drawn with replacement could give anything from 1 to 15.
    line = np.array([[0.0], [1.0], [3.0], [7.0], [15.0]])
    got = {latent.latent_scale(line, max_pairs=9, seed=s) for s in range(20)}
    assert got == {6.0, 7.0}
    assert latent.latent_scale(line, max_pairs=9, seed=3) == \
        latent.latent_scale(line, max_pairs=9, seed=3)
    one = {latent.latent_scale(line, max_pairs=1, seed=s) for s in range(40)}
    assert one <= set(pdist(line)) and len(one) > 5  # real pairs i != j, varied


def test_latent_scale_subset_estimates_the_full_median():
    x = np.random.default_rng(0).normal(size=(400, 8))
    full = latent.latent_scale(x)
    assert full == pytest.approx(np.median(pdist(x)), abs=0)
    assert latent.latent_scale(x, max_pairs=20_000) == pytest.approx(full, rel=0.01)


def test_latent_scale_needs_two_galaxies():
    with pytest.raises(ValueError):
        latent.latent_scale(np.zeros((1, 4)))
    with pytest.raises(ValueError):
        latent.latent_scale(np.zeros(4))


def test_scaling_a_latent_space_leaves_scale_free_measures_unchanged():
    rng = np.random.default_rng(1)
    n, dim = 60, 16
    ids = np.arange(500, 500 + n)
    base = rng.normal(size=(n, dim))
    attacked = base + rng.normal(scale=0.3, size=(n, dim))
    failed = rng.random(n) < 0.3

    def measure(c):
        boot = latent.GalaxyBootstrap(ids, n_resamples=500, seed=4)
        d = np.linalg.norm(c * attacked - c * base, axis=1)
        d[failed] = np.nan
        scale = latent.latent_scale(c * base)
        return latent.scaled_mean(boot, d, ids, scale, boot.scale("m", c * base, ids))
    ref = measure(1.0)
    assert json.loads(json.dumps(ref)) == ref
    assert ref["n"] == int((~failed).sum()) and ref["low"] < ref["estimate"] < ref["high"]
    for c in (1e-3, 7.5, 1e4):
        got = measure(c)
        for key in ("estimate", "low", "high"):
            assert got[key] == pytest.approx(ref[key], rel=1e-9)


def test_scaled_mean_refuses_a_bad_scale_and_unequal_lengths():
    boot = latent.GalaxyBootstrap([1, 2], n_resamples=20)
    with pytest.raises(ValueError):
        latent.scaled_mean(boot, [1.0], [1], 0.0, np.ones(20))
    with pytest.raises(ValueError):
        latent.scaled_mean(boot, [1.0, 2.0], [1], 1.0, np.ones(20))
    none = latent.scaled_mean(boot, [np.nan, np.nan], [1, 2], 2.0, np.ones(20))
    assert none == {"estimate": None, "low": None, "high": None, "n": 0}
    one = latent.scaled_mean(boot, [3.0, np.nan], [1, 2], 2.0, np.ones(20))
    assert one == {"estimate": 1.5, "low": None, "high": None, "n": 1}


def test_bootstrap_interval_contains_estimate_and_shrinks_as_one_over_root_n():
    x = np.random.default_rng(2).normal(10.0, 2.0, 100)
    small = latent.bootstrap_ci(x, seed=5)
    big = latent.bootstrap_ci(np.repeat(x, 4), seed=5)  # same spread, four times the galaxies
    assert small["n"] == 100 and big["n"] == 400
    assert small["estimate"] == pytest.approx(x.mean(), abs=1e-12)
    assert big["estimate"] == pytest.approx(x.mean(), abs=1e-12)
    for ci in (small, big):
        assert ci["low"] < ci["estimate"] < ci["high"]
    w_small, w_big = small["high"] - small["low"], big["high"] - big["low"]
    assert w_small / w_big == pytest.approx(2.0, rel=0.1)
    # And both match the normal-theory width 2 * 1.96 * s / sqrt(n).
    s = x.std()
    assert w_small == pytest.approx(2 * 1.96 * s / 10, rel=0.1)
    assert w_big == pytest.approx(2 * 1.96 * s / 20, rel=0.1)


def test_bootstrap_is_reproducible_and_drops_nans():
    x = np.random.default_rng(3).exponential(size=50)
    assert latent.bootstrap_ci(x, seed=1) == latent.bootstrap_ci(x, seed=1)
    assert latent.bootstrap_ci(x, seed=1) != latent.bootstrap_ci(x, seed=2)
    with_nan = latent.bootstrap_ci(np.concatenate([x, [np.nan] * 7]), seed=1)
    assert with_nan == latent.bootstrap_ci(x, seed=1) and with_nan["n"] == 50
    median = latent.bootstrap_ci(x, statistic=np.median, level=0.5)
    assert median["estimate"] == pytest.approx(np.median(x), abs=1e-12)
    assert median["low"] <= median["estimate"] <= median["high"]
    narrow = latent.bootstrap_ci(x, level=0.5)
    wide = latent.bootstrap_ci(x, level=0.99)
    assert wide["low"] < narrow["low"] < narrow["high"] < wide["high"]
    assert latent.bootstrap_ci([3.0, np.nan]) == {"estimate": 3.0, "low": None, "high": None,
                                                  "n": 1}
    assert latent.bootstrap_ci([]) == {"estimate": None, "low": None, "high": None, "n": 0}


def test_paired_ratio():
    b = np.random.default_rng(4).uniform(0.5, 3.0, 80)
    assert latent.paired_ratio(2 * b, b) == {"ratio": 2.0, "low": 2.0, "high": 2.0, "n": 80}
    # Pairing: a tracks b galaxy by galaxy, so the interval is tight although b varies 6-fold.
    a = 1.5 * b * (1 + np.random.default_rng(5).normal(0, 0.01, 80))
    got = latent.paired_ratio(a, b)
    assert got["ratio"] == pytest.approx(a.mean() / b.mean(), abs=1e-12)
    assert got["low"] < got["ratio"] < got["high"] and got["high"] - got["low"] < 0.01
    a[[0, 1]], b[[1, 2]] = np.nan, np.nan  # galaxies 0, 1, 2 drop out
    got = latent.paired_ratio(a, b)
    assert got["n"] == 77 and got["ratio"] == pytest.approx(a[3:].mean() / b[3:].mean(),
                                                             abs=1e-12)
    assert latent.paired_ratio([1.0], [2.0]) == {"ratio": 0.5, "low": None, "high": None,
                                                 "n": 1}
    assert latent.paired_ratio([np.nan], [2.0])["ratio"] is None
    with pytest.raises(ValueError):
        latent.paired_ratio([1.0, 2.0], [1.0])


def test_paired_scaled_on_given_galaxies():
    ids = np.array([1, 5, 9])
    d_a, d_b = np.array([2.0, 4.0, np.nan]), np.array([1.0, 1.0, 1.0])
    boot = latent.GalaxyBootstrap([1, 3, 5, 7, 9], n_resamples=400, seed=0)
    fixed = np.full(400, 1.0)
    got = latent.paired_scaled(boot, d_a, d_b, ids, (2.0, 0.5), (fixed * 2.0, fixed * 0.5))
    # galaxy 9 drops out (NaN); raw: mean(2, 4) / mean(1, 1) = 3; scaled: 3 * 0.5 / 2.
    assert got["n"] == 2 and got["raw"]["estimate"] == 3.0
    assert got["scaled"]["estimate"] == 0.75
    # Replicates resample the two galaxies (ratios 2 and 4): every replicate lies in [2, 4].
    assert 2.0 <= got["raw"]["low"] <= 3.0 <= got["raw"]["high"] <= 4.0
    assert json.loads(json.dumps(got)) == got
    with pytest.raises(ValueError):
        latent.paired_scaled(boot, d_a, d_b[:2], ids, (1.0, 1.0), (fixed, fixed))
    nothing = latent.paired_scaled(boot, [np.nan], [1.0], [1], (1.0, 1.0), (fixed, fixed))
    assert nothing["n"] == 0 and nothing["raw"]["estimate"] is None
