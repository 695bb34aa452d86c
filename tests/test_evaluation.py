"""tfgal.study measurements: metrics against scikit-learn, the depth curve, latent space."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
from sklearn import metrics as skm

from tfgal import data, survey
from tfgal.attack import summary as attack_summary
from tfgal.data import pipeline
from tfgal.errors import ConfigError, DataError
from tfgal.model import export
from tfgal.study import curve, latent, metrics

NAMES = ["spiral", "elliptical", "merger"]


def _probabilities(n, rng, decimals=None):
    logits = rng.normal(0, 1.5, (n, 3))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    if decimals is not None:  # coarse scores: many ties in the ROC ranking
        p = np.round(p, decimals)
        p[:, 2] = np.clip(1 - p[:, 0] - p[:, 1], 0, 1)
    return p


@pytest.mark.parametrize("decimals", [None, 1])
def test_classification_metrics_match_sklearn(decimals):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 300)
    probs = _probabilities(300, rng, decimals)
    probs[labels == 1] += [0.0, 0.4, 0.0]  # some skill, so the numbers are not all chance
    probs /= probs.sum(1, keepdims=True)
    got = metrics.collect(metrics.ClassificationEvaluator(labels, probs, NAMES))
    pred = probs.argmax(1)
    assert got["n"] == 300
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(labels, pred))
    for avg in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(labels, pred, average=avg,
                                                         zero_division=0)
        assert (got[f"precision/{avg}"], got[f"recall/{avg}"], got[f"f1/{avg}"]) == \
            pytest.approx((p, r, f))
    p, r, f, s = skm.precision_recall_fscore_support(labels, pred, zero_division=0)
    for c, name in enumerate(NAMES):
        assert got[f"precision/{name}"] == pytest.approx(p[c])
        assert got[f"recall/{name}"] == pytest.approx(r[c])
        assert got[f"f1/{name}"] == pytest.approx(f[c])
        assert got[f"support/{name}"] == s[c]
        assert got[f"roc_auc/{name}"] == pytest.approx(skm.roc_auc_score(labels == c, probs[:, c]))
    assert got["roc_auc/macro"] == pytest.approx(
        skm.roc_auc_score(labels, probs, multi_class="ovr", average="macro"))
    assert got["brier"] == pytest.approx(skm.brier_score_loss(labels, probs, labels=[0, 1, 2]))
    assert got["confusion"] == skm.confusion_matrix(labels, pred, labels=[0, 1, 2]).tolist()


def test_never_predicted_class_and_absent_class():
    labels = np.array([0, 0, 1, 1, 1, 0])
    probs = np.array([[.8, .1, .1], [.3, .6, .1], [.2, .7, .1], [.1, .8, .1], [.6, .3, .1],
                      [.9, .05, .05]])
    got = metrics.collect(metrics.ClassificationEvaluator(labels, probs, NAMES))
    # merger: never predicted and never true -> precision 0 (zero_division=0), AUC undefined.
    assert got["precision/merger"] == 0.0 and got["support/merger"] == 0
    assert got["roc_auc/merger"] is None and got["roc_auc/macro"] is None
    assert got["roc_auc/spiral"] == pytest.approx(skm.roc_auc_score(labels == 0, probs[:, 0]))
    p, r, f, _ = skm.precision_recall_fscore_support(labels, probs.argmax(1), labels=[0, 1, 2],
                                                     average="weighted", zero_division=0)
    assert (got["precision/weighted"], got["recall/weighted"], got["f1/weighted"]) == \
        pytest.approx((p, r, f))


def test_evaluator_rejects_bad_input():
    with pytest.raises(DataError):
        metrics.ClassificationEvaluator([0, 1], np.ones((3, 3)) / 3, NAMES)
    with pytest.raises(DataError):
        metrics.ClassificationEvaluator([], np.zeros((0, 3)), NAMES)


def test_curve_depths():
    depths = curve.curve_depths(low=0.1, high=20, per_decade=3)
    years = [d.years for d in depths]
    assert years == pytest.approx([0.1, 0.2154, 0.4642, 1, 2.154, 4.642, 10, 20], rel=1e-3)
    assert np.allclose(np.diff(np.log10(years[:-1])), 1 / 3, rtol=1e-3)  # log-spaced
    ten = [d for d in depths if d.name == "10y"][0]
    assert ten.exposure_s == pytest.approx(survey.Y10.exposure_s)  # the very Y10 noise
    finer = curve.curve_depths(low=0.05, high=30, per_decade=4, always=(3.0,))
    assert len(finer) == 14 and 3.0 in [d.years for d in finer]
    explicit = curve.curve_depths([3, 0.5, 3])
    assert [d.name for d in explicit] == ["0.5y", "3y"]


def test_distance_summary_and_ratio():
    d_attack = np.array([1.0, np.nan, 3.0, 5.0])
    d_noisy = np.array([2.0, 4.0, 6.0, 8.0])
    s = attack_summary.distance_summary(d_attack, d_noisy, [True, False, True, True])
    assert s["attack"]["mean"] == pytest.approx(3.0) and s["attack"]["n"] == 3
    assert s["attack"]["std"] == pytest.approx(2.0)
    assert s["attack"]["sem"] == pytest.approx(2.0 / np.sqrt(3))
    assert s["noisy"]["mean"] == pytest.approx(5.0) and s["noisy"]["n"] == 4
    assert s["noisy_success"]["mean"] == pytest.approx(16 / 3)
    double = attack_summary.distance_summary(2 * d_attack, 2 * d_noisy, [True, False, True, True])
    r = attack_summary.distance_ratios(double, s)
    assert r["attack"]["ratio"] == pytest.approx(2.0)
    rel = s["attack"]["sem"] / s["attack"]["mean"]
    assert r["attack"]["sem"] == pytest.approx(2.0 * np.sqrt(2) * rel)
    empty = attack_summary.distance_summary([np.nan], [1.0], [False])
    assert empty["attack"]["mean"] is None
    assert attack_summary.distance_ratios(empty, empty)["attack"] == {"ratio": None, "sem": None}


# --------------------------------------------------------------------------- with a model


def _linear_model(size, latent_dim=4, seed=0):
    """Encoder: band means of image quadrants (latent 4); head: fixed random dense."""
    rng = np.random.default_rng(seed)
    images = keras.Input((size, size, 3), name="images")
    dense = keras.layers.Dense(latent_dim, name="latent")
    encoder = keras.Model(images, dense(keras.layers.Flatten()(images)))
    dense.set_weights([rng.normal(0, 0.05, (size * size * 3, latent_dim)).astype(np.float32),
                       np.zeros(latent_dim, np.float32)])
    latent = keras.Input((latent_dim,), name="latent")
    out = keras.layers.Dense(3, name="logits")
    head = keras.Model(latent, out(latent))
    out.set_weights([rng.normal(0, 3, (latent_dim, 3)).astype(np.float32),
                     np.array([0.1, -0.1, 0.0], np.float32)])
    return encoder, head


@pytest.fixture(scope="module")
def linear16(tmp_path_factory):
    encoder, head = _linear_model(16)
    path = tmp_path_factory.mktemp("models") / "linear16"
    export.export_saved_model(encoder, head, path, image_shape=(16, 16, 3))
    return export.load(path), head


def test_church_window_classifies_the_plane(linear16):
    model, head = linear16
    rng = np.random.default_rng(0)
    base, attacked, noisy = rng.normal(0, 1, (3, 4)).astype(np.float32)
    coords, classes = latent.church_window(model, base, attacked, noisy, grid=9, span=2.0,
                                           batch_size=7)  # batches of 7: uneven on purpose
    assert coords.tolist() == [-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0]
    assert classes.shape == (9, 9)
    w, b = (np.asarray(v) for v in head.get_layer("logits").get_weights())
    for (ib, ia) in [(4, 4), (4, 6), (6, 4), (0, 8), (8, 0), (2, 7)]:
        point = base + coords[ia] * (attacked - base) + coords[ib] * (noisy - base)
        assert classes[ib, ia] == np.argmax(point @ w + b)
    # (0, 0) is the base image, (1, 0) the attacked one, (0, 1) the noisy one.
    assert classes[4, 4] == np.argmax(base @ w + b)
    assert classes[4, 6] == np.argmax(attacked @ w + b)
    assert classes[6, 4] == np.argmax(noisy @ w + b)


def test_isomap_unrolls_a_curve_deterministically():
    from scipy.stats import spearmanr
    t = np.linspace(0, 3 * np.pi, 60)
    points = np.stack([np.cos(t), np.sin(t), 0.3 * t, np.zeros_like(t)], axis=1)  # a helix
    a, b = latent.isomap(points, n_neighbors=6), latent.isomap(points, n_neighbors=6)
    assert a.shape == (60, 2) and np.array_equal(a, b)
    # Geodesic, not straight-line, distances: the first axis follows the arc length.
    assert abs(spearmanr(a[:, 0], t).correlation) > 0.99


def test_predict_split_and_curve_agree(linear16, blob_dataset):
    model, _ = linear16
    models = {"m": model, "again": model}
    out = curve.predict_split(models, blob_dataset, "test", "Y10", n=5, batch_size=2)
    ref = pipeline.load_arrays(blob_dataset, "test", "Y10", n=5)
    assert np.array_equal(out["galaxy_id"], ref["galaxy_id"])
    np.testing.assert_allclose(out["m"]["latent"], model.predict(ref["images"])["latent"],
                               atol=1e-5)
    assert np.array_equal(out["m"]["probabilities"], out["again"]["probabilities"])

    depths = curve.curve_depths([1, 10])
    table = curve.RobustnessCurve({"m": model}, blob_dataset, "test", depths).table()
    assert table["depths"] == ["1y", "10y"] and table["years"] == pytest.approx([1, 10])
    for depth, i in (("Y1", 0), ("Y10", 1)):
        full = curve.predict_split({"m": model}, blob_dataset, "test", depth)
        ref = metrics.collect(metrics.ClassificationEvaluator(
            full["labels"], full["m"]["probabilities"], NAMES))
        row = {k: v[i] for k, v in table["models"]["m"].items()}
        assert row["accuracy"] == pytest.approx(ref["accuracy"])
        assert row["f1_weighted"] == pytest.approx(ref["f1/weighted"])
        assert row["n"] == 8
        assert row["accuracy_sem"] == pytest.approx(
            np.sqrt(ref["accuracy"] * (1 - ref["accuracy"]) / 8))


def test_curve_refuses_baked_in_noise(linear16, tmp_path):
    size = 16
    rng = np.random.default_rng(0)
    images = {"Y10": {"noise": True, "depth": survey.Y10.to_json()},
              "Y1": {"noise": True, "depth": survey.Y1.to_json()}}
    with data.DatasetWriter(tmp_path / "stored", images=images,
                            image_shape=(size, size, 3)) as writer:
        for i in range(6):
            writer.add("test", {d: rng.uniform(0.4, 0.9, (size, size, 3)).astype(np.float32)
                                for d in images}, i % 3, i)
        manifest = writer.finish(stretch={"kind": "identity"})
    out = curve.predict_split({"m": linear16[0]}, manifest, "test", "Y1")
    assert len(out["labels"]) == 6
    refusing = curve.RobustnessCurve({"m": linear16[0]}, manifest, "test",
                                     curve.curve_depths([3]))
    with pytest.raises(ConfigError):
        refusing.table()
