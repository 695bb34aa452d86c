"""Top-label expected calibration error, the reliability table and its diagram."""

import json

import matplotlib.image
import numpy as np
import pytest

from tfgal.study import metrics, plots

NAMES = ["spiral", "elliptical", "merger"]

# Six galaxies, three classes. Confidence = largest probability, prediction = its class.
HAND_PROBS = np.array([[0.90, 0.05, 0.05],   # label 0: conf 0.90, right
                       [0.10, 0.85, 0.05],   # label 1: conf 0.85, right
                       [0.95, 0.03, 0.02],   # label 2: conf 0.95, wrong
                       [0.30, 0.50, 0.20],   # label 1: conf 0.50, right
                       [0.45, 0.35, 0.20],   # label 1: conf 0.45, wrong
                       [0.70, 0.20, 0.10]])  # label 0: conf 0.70, right
HAND_LABELS = np.array([0, 1, 2, 1, 1, 0])


def _loop_ece(labels, probs, n_bins):
    """Independent reference: one galaxy and one bin at a time, bins (b/n, (b+1)/n]."""
    total, n = 0.0, len(labels)
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        members = [i for i in range(n)
                   if lo < max(probs[i]) <= hi or (b == 0 and max(probs[i]) == 0)]
        if not members:
            continue
        acc = sum(int(np.argmax(probs[i]) == labels[i]) for i in members) / len(members)
        conf = sum(max(probs[i]) for i in members) / len(members)
        total += len(members) / n * abs(acc - conf)
    return total


def test_ece_hand_computed():
    # n_bins=5, edges 0, .2, .4, .6, .8, 1:
    #   (0.8, 1]: confs .90 .85 .95, 2 of 3 right: |2/3 - 0.9|  = 7/30, weight 3/6
    #   (0.4, .6]: confs .50 .45,    1 of 2 right: |1/2 - 0.475| = 1/40, weight 2/6
    #   (0.6, .8]: conf  .70,        right:        |1 - 0.7|     = 3/10, weight 1/6
    #   ECE = 7/60 + 1/120 + 1/20 = 21/120 = 0.175
    got = metrics.expected_calibration_error(HAND_LABELS, HAND_PROBS, n_bins=5)
    assert isinstance(got, float)
    assert got == pytest.approx(0.175, abs=1e-12)
    # Default 15 bins: every galaxy has a bin to itself, so ECE = mean |right - conf|
    #   = (0.10 + 0.15 + 0.95 + 0.50 + 0.45 + 0.30) / 6 = 2.45 / 6
    assert metrics.expected_calibration_error(HAND_LABELS, HAND_PROBS) == \
        pytest.approx(2.45 / 6, abs=1e-12)
    table = metrics.reliability(HAND_LABELS, HAND_PROBS, n_bins=5)
    assert table["count"] == [0, 0, 2, 1, 3]
    assert table["accuracy"][:2] == [None, None] and table["confidence"][:2] == [None, None]
    assert table["accuracy"][2:] == pytest.approx([0.5, 1.0, 2 / 3], abs=1e-12)
    assert table["confidence"][2:] == pytest.approx([0.475, 0.7, 0.9], abs=1e-12)


@pytest.mark.parametrize("n_bins", [1, 5, 10, 15, 40])
def test_ece_matches_a_straightforward_loop(n_bins):
    rng = np.random.default_rng(n_bins)
    probs = rng.dirichlet([0.5, 0.5, 0.5], 500)
    labels = rng.integers(0, 3, 500)
    got = metrics.expected_calibration_error(labels, probs, n_bins)
    assert got == pytest.approx(_loop_ece(labels, probs, n_bins), abs=1e-12)
    assert metrics.expected_calibration_error(HAND_LABELS, HAND_PROBS, n_bins) == \
        pytest.approx(_loop_ece(HAND_LABELS, HAND_PROBS, n_bins), abs=1e-12)


def _synthetic(n, confidence, p_right, rng, k=3):
    """Probabilities with top value `confidence` (in random columns); right w.p. `p_right`."""
    probs = np.tile(((1 - confidence) / (k - 1))[:, None], (1, k))
    predicted = rng.integers(0, k, n)
    probs[np.arange(n), predicted] = confidence
    right = rng.random(n) < p_right
    wrong = (predicted + rng.integers(1, k, n)) % k
    return np.where(right, predicted, wrong), probs


def _sampling_tolerance(table, n):
    """4 binomial standard errors per bin, weighted as in the ECE."""
    return sum(c / n * 4 * np.sqrt(a * (1 - a) / c + 1e-12)
               for c, a in zip(table["count"], table["accuracy"]) if c)


def test_calibrated_model_has_ece_near_zero_and_overconfident_the_gap():
    rng = np.random.default_rng(0)
    n = 200_000
    confidence = rng.uniform(0.4, 1.0, n)
    labels, probs = _synthetic(n, confidence, confidence, rng)
    table = metrics.reliability(labels, probs)
    tol = _sampling_tolerance(table, n)
    assert tol < 0.02
    assert 0 < table["ece"] < tol
    # Over-confident: right 0.15 less often than claimed, in every bin -> ECE = 0.15.
    labels, probs = _synthetic(n, confidence, confidence - 0.15, rng)
    table = metrics.reliability(labels, probs)
    assert table["ece"] == pytest.approx(0.15, abs=_sampling_tolerance(table, n))
    filled = [a - c for a, c in zip(table["accuracy"], table["confidence"]) if a is not None]
    assert all(gap < 0 for gap in filled)


def test_bin_edges_belong_to_the_bin_below_and_one_to_the_last():
    n_bins, k = 5, 5
    edges = np.linspace(0, 1, n_bins + 1)
    tops = np.concatenate([edges[1:], np.nextafter(edges[1:-1], 2)])
    probs = np.tile(((1 - tops) / (k - 1))[:, None], (1, k))
    probs[:, 0] = tops
    assert np.array_equal(probs.max(1), tops)
    labels = np.zeros(len(tops), int)
    table = metrics.reliability(labels, probs, n_bins)
    assert table["edges"] == edges.tolist()
    # Edges 0.2, 0.4, 0.6, 0.8, 1.0 -> bins 0..4; just above 0.2, 0.4, 0.6, 0.8 -> bins 1..4.
    assert table["count"] == [1, 2, 2, 2, 2]
    assert table["confidence"][0] == edges[1]
    # Confidence exactly 1.0 alone: last bin; a confidence of 0 (all-zero row): first bin.
    assert metrics.reliability([0], [[1.0, 0.0]], n_bins)["count"] == [0, 0, 0, 0, 1]
    zero = metrics.reliability([0], [[0.0, 0.0]], n_bins)
    assert zero["count"] == [1, 0, 0, 0, 0] and zero["ece"] == 1.0  # right at confidence 0


def test_reliability_is_json_and_agrees_with_ece():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet([1, 1, 1], 257).astype(np.float32)
    labels = rng.integers(0, 3, 257)
    table = metrics.reliability(labels, probs)
    assert json.loads(json.dumps(table)) == table
    assert sum(table["count"]) == 257 and len(table["count"]) == 15
    assert len(table["edges"]) == 16 and len(table["accuracy"]) == len(table["confidence"]) == 15
    assert table["ece"] == metrics.expected_calibration_error(labels, probs)
    for c, a, conf in zip(table["count"], table["accuracy"], table["confidence"]):
        assert (c == 0) == (a is None) == (conf is None)


def test_evaluator_yields_ece():
    got = metrics.collect(metrics.ClassificationEvaluator(HAND_LABELS, HAND_PROBS, NAMES))
    assert got["ece"] == pytest.approx(2.45 / 6, abs=1e-12)
    got = metrics.collect(metrics.ClassificationEvaluator(HAND_LABELS, HAND_PROBS, NAMES,
                                                          n_bins=5))
    assert got["ece"] == pytest.approx(0.175, abs=1e-12)


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        metrics.expected_calibration_error([0, 1], np.ones((3, 3)) / 3)
    with pytest.raises(ValueError):
        metrics.expected_calibration_error([], np.zeros((0, 3)))
    with pytest.raises(ValueError):
        metrics.reliability([0], [[1.0, 0.0]], n_bins=0)


def test_reliability_diagram_writes_a_png(tmp_path):
    rng = np.random.default_rng(4)
    panels = {}
    for kind in ("baseline", "mmd"):  # "mmd" has no MODEL_STYLE entry: colour from the cycle
        panels[kind] = {}
        for depth in ("Y10", "Y1"):
            probs = rng.dirichlet([1, 1, 1], 200)
            panels[kind][depth] = metrics.reliability(rng.integers(0, 3, 200), probs)
    panels["mmd"].pop("Y1")  # a model missing a depth is left out of that panel
    path = tmp_path / "reliability.png"
    assert plots.reliability_diagram(panels, path) == path
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert image.shape[1] > 1.5 * image.shape[0] > 300  # two square panels side by side
    assert [p.name for p in tmp_path.iterdir()] == ["reliability.png"]  # no temp file left
