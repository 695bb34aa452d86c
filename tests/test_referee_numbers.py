"""The study's numbers as a referee reads them: attack rates under both rules with their
counts and intervals, gain intervals that include the seeds, zero differences said as such,
latent scales resampled with the galaxies."""

import types

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import pdist

from tfgal.attack import summary as attack_summary
from tfgal.attack.results import AttackResult
from tfgal.study import controlled, latent, report


def attack_result(labels, final_class, final_score, threshold=0.05, already=None):
    n = len(labels)
    labels = np.asarray(labels, np.int32)
    score = np.asarray(final_score, np.float32)
    already = np.zeros(n, bool) if already is None else np.asarray(already, bool)
    return AttackResult(
        success=(score < threshold) & ~already, already=already,
        generations=np.ones(n, np.int64), queries=np.full(n, 10, np.int64), labels=labels,
        targets=np.full(n, -1, np.int32), original_class=labels,
        original_prob=np.full(n, 0.7, np.float32), original_score=np.full(n, 0.7, np.float32),
        final_class=np.asarray(final_class, np.int32), final_prob=np.full(n, 0.5, np.float32),
        final_score=score, pixels=np.zeros((n, 1, 2), np.int64),
        values=np.zeros((n, 1, 3), np.float32), images=np.zeros((n, 2, 2, 3), np.float32),
        settings={"threshold": threshold}, seconds=1.0)


# --------------------------------------------------------------------------- attack rates


def test_classes_that_flip_below_the_papers_threshold_give_a_class_change_rate():
    # 15 galaxies attacked, 3 change class with the true class still at 0.3-0.45: the
    # paper's rule (p_true < 0.05) sees none, the class-change rule sees 3.
    labels = np.zeros(15, int)
    final_class = np.zeros(15, int)
    final_class[[2, 7, 11]] = [1, 2, 1]
    score = np.full(15, 0.6)
    score[[2, 7, 11]] = [0.3, 0.45, 0.4]
    result = attack_result(labels, final_class, score)
    d_returned = np.linspace(0.1, 1.5, 15)
    s = attack_summary.summarize(result, np.where(result.success, d_returned, np.nan),
                                 np.ones(15), d_returned=d_returned)
    paper, changed = s["rates"]["paper"], s["rates"]["class_change"]
    assert (paper["k"], paper["n"], paper["rate"]) == (0, 15, 0.0)
    # 0 of 15 is not "no risk": the exact upper bound is 1 - 0.025 ** (1 / 15) = 21.8%.
    assert paper["low"] == 0.0 and paper["high"] == pytest.approx(1 - 0.025 ** (1 / 15))
    assert (changed["k"], changed["n"]) == (3, 15) and changed["rate"] == pytest.approx(0.2)
    ci = stats.binomtest(3, 15).proportion_ci(method="exact")
    assert (changed["low"], changed["high"]) == pytest.approx((ci.low, ci.high))
    assert s["success_rate"] == 0.0  # the attack's own criterion, unchanged
    # The class-change distances exist although the paper's rule met nothing.
    d = s["latent_distance"]
    assert d["attack"]["n"] == 0 and d["attack_class_change"]["n"] == 3
    assert d["attack_class_change"]["mean"] == pytest.approx(d_returned[[2, 7, 11]].mean())
    assert d["returned"]["n"] == 15


def test_rules_ignore_images_that_were_not_attacked_and_read_targets():
    result = attack_result([0, 0, 1, 1], [1, 0, 1, 2], [0.01, 0.9, 0.02, 0.3],
                           already=[False, True, False, False])
    masks = attack_summary.outcomes(result.labels, result.targets, result.final_class,
                                    result.final_score, result.already, 0.05)
    assert masks["class_change"].tolist() == [True, False, False, True]
    assert masks["paper"].tolist() == [True, False, True, False]
    rates = attack_summary.rates(masks, result.already)
    assert rates["paper"]["n"] == rates["class_change"]["n"] == 3
    # Targeted: success is reaching the target class (or its probability above threshold).
    targeted = attack_summary.outcomes([0, 0], [2, 1], [2, 0], [0.6, 0.2], [False, False], 0.5)
    assert targeted["class_change"].tolist() == [True, False]
    assert targeted["paper"].tolist() == [True, False]
    assert attack_summary.binomial_interval(0, 0)["rate"] is None


# --------------------------------------------------------------------------- gains


def fake_evaluation(correct_by_label, n_classes=3):
    """An Evaluate-like object whose models are right exactly where `correct_by_label` says."""
    n = len(next(iter(correct_by_label.values())))
    labels = np.arange(n) % n_classes
    probs = {}
    for label, correct in correct_by_label.items():
        wrong = (labels + 1) % n_classes
        pred = np.where(np.asarray(correct, bool), labels, wrong)
        probs[label] = {"Y1": np.eye(n_classes)[pred]}
    return types.SimpleNamespace(labels=labels, probabilities=probs)


def test_the_seeds_interval_widens_with_seed_to_seed_spread():
    rng = np.random.default_rng(0)
    n = 400
    base = rng.random(n) < 0.5

    def flip(share, seed):
        r = np.random.default_rng(seed)
        out = base.copy()
        out[r.choice(np.flatnonzero(~base), int(share * n), replace=False)] = True
        return out
    # Both studies gain 10 points on average over two seeds: one seed by seed (+10, +10),
    # the other (+0, +20).
    steady = fake_evaluation({"a0": flip(0.10, 1), "b0": base, "a1": flip(0.10, 2), "b1": base})
    spread = fake_evaluation({"a0": flip(0.0, 3), "b0": base, "a1": flip(0.20, 4), "b1": base})
    pairs = [("a0", "b0"), ("a1", "b1")]
    kw = dict(n_resamples=2000, seed=5)
    a, b = (controlled.gain_interval(ev, pairs, "Y1", **kw) for ev in (steady, spread))
    assert a["covers"] == b["covers"] == "seeds, then galaxies" and a["n_seeds"] == 2
    assert (b["high"] - b["low"]) > 1.5 * (a["high"] - a["low"])
    # Galaxies alone (the old interval) would give the spread study a width like the steady
    # one's: the seed spread is what widens it.
    assert b["low"] <= 0.0 + 1e-12 and b["high"] >= 0.2 - 1e-12
    one = controlled.gain_interval(steady, pairs[:1], "Y1", **kw)
    assert one["covers"] == "galaxies" and one["low"] < 0.1 < one["high"]


def test_an_identically_zero_difference_is_reported_as_such():
    same = np.zeros(50, bool)
    same[:2] = True
    ev = fake_evaluation({"t": same, "b": same})
    g = controlled.gain_interval(ev, [("t", "b")], "Y1", n_resamples=200, seed=0)
    assert g["identical"] and g["n_differ"] == 0 and g["low"] is None and g["high"] is None
    cell = report._gain_cell({"mean": 0.0, "std": None, "ci95": g})
    assert cell == "0.0 (no galaxy differs)" and "[0.0, 0.0]" not in cell
    differ = fake_evaluation({"t": ~same, "b": same})
    assert not controlled.gain_interval(differ, [("t", "b")], "Y1", n_resamples=200)["identical"]


def test_a_model_that_calls_every_galaxy_one_class_is_named():
    labels = np.arange(100) % 3
    probs = np.zeros((100, 3))
    probs[:, 2] = 1.0
    probs[:3, 2], probs[:3, 0] = 0.0, 1.0
    ev = types.SimpleNamespace(labels=labels, probabilities={"t": {"Y1": probs}})
    m = controlled.majority(ev, "t", "Y1", ["spiral", "elliptical", "merger"])
    assert m == {"class": "merger", "share": 0.97}
    results = {"depths": {"source": "Y10", "target": "Y1"}, "seeds": [0],
               "controlled": {"target-bn": {"majority": {"target": [m]}}}}
    assert report._collapsed(results) == ["`target-bn` calls 97.0% of the Y1 galaxies `merger`"]


# --------------------------------------------------------------------------- latent scales


def test_a_replicates_scale_is_the_median_over_the_galaxies_it_drew():
    rng = np.random.default_rng(1)
    ids = np.arange(100, 130)
    z = rng.normal(size=(30, 5))
    boot = latent.GalaxyBootstrap(ids, n_resamples=40, seed=3)
    reps = boot.scale("m", z, ids)
    assert boot.scale("m", z, ids) is reps  # computed once per model
    for r in range(40):
        counts = boot.counts[r].astype(int)
        drawn = np.repeat(np.arange(30), counts)
        # every pair of draws that are different galaxies (a galaxy is not its own pair)
        i, j = np.triu_indices(len(drawn), 1)
        keep = drawn[i] != drawn[j]
        d = np.linalg.norm(z[drawn[i][keep]] - z[drawn[j][keep]], axis=1)
        s = np.sort(d)
        lower = s[(len(s) - 1) // 2]  # the weighted median takes the lower middle
        assert reps[r] == pytest.approx(lower)
    assert np.median(pdist(z)) == pytest.approx(latent.latent_scale(z))
    assert reps.std() > 0  # the scale is not treated as exact


def test_the_scaled_ratio_interval_carries_the_scales_uncertainty():
    rng = np.random.default_rng(2)
    ids = np.arange(60)
    za, zb = rng.normal(size=(60, 4)), rng.normal(size=(60, 4)) * rng.uniform(0.5, 2, (60, 1))
    d_a, d_b = rng.gamma(2.0, 1.0, 60), rng.gamma(2.0, 1.0, 60)
    boot = latent.GalaxyBootstrap(ids, n_resamples=1000, seed=0)
    scales = [latent.latent_scale(z) for z in (za, zb)]
    reps = [boot.scale(k, z, ids) for k, z in (("a", za), ("b", zb))]
    got = latent.paired_scaled(boot, d_a, d_b, ids, scales, reps)
    assert got["n"] == 60
    raw, scaled = got["raw"], got["scaled"]
    factor = scales[1] / scales[0]
    assert scaled["estimate"] == pytest.approx(raw["estimate"] * factor)
    # A fixed scale would give exactly the raw interval times the factor; resampling the
    # scales with the galaxies widens it.
    fixed = (raw["high"] - raw["low"]) * factor
    assert scaled["high"] - scaled["low"] > 1.05 * fixed
    # Subsets read the same draw: a mean over some galaxies uses their counts.
    sub = ids[::3]
    np.testing.assert_allclose(
        boot.mean(d_a[sub], sub),
        (boot.counts[:, sub] @ d_a[sub]) / boot.counts[:, sub].sum(1))
    with pytest.raises(ValueError, match="outside"):
        boot.mean([1.0], [999])
