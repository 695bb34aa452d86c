import numpy as np
import pytest
import tensorflow as tf

from tfgal.model import losses


def numpy_mmd(s, t, sigmas):
    def k(a, b):
        d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return sum(np.exp(-d2 / (2 * sigma)) for sigma in sigmas)
    return max(k(s, s).mean() + k(t, t).mean() - 2 * k(s, t).mean(), 0.0)


@pytest.mark.parametrize("sigmas", [None, [0.5, 2.0, 30.0]])
def test_mmd_matches_numpy(sigmas):
    rng = np.random.default_rng(0)
    s = rng.normal(0, 1, (40, 8))
    t = rng.normal(0.5, 1.5, (30, 8))
    want = numpy_mmd(s, t, losses.STUDY_SIGMAS if sigmas is None else sigmas)
    got = losses.mmd(s.astype(np.float32), t.astype(np.float32), sigmas).numpy()
    assert got == pytest.approx(want, rel=1e-4, abs=1e-6)


def test_mmd_data_bandwidths_match_numpy():
    rng = np.random.default_rng(1)
    s, t = rng.normal(0, 1, (20, 5)), rng.normal(1, 1, (20, 5))
    both = np.concatenate([s, t])
    mean_d2 = ((both[:, None] - both[None]) ** 2).sum(-1).mean()
    want = numpy_mmd(s, t, [a * mean_d2 for a in losses.DATA_ALPHAS])
    assert losses.mmd(s.astype(np.float32), t.astype(np.float32), "data").numpy() == \
        pytest.approx(want, rel=1e-4)


@pytest.mark.parametrize("sigmas", [None, "data"])
def test_mmd_zero_for_identical_sets_with_finite_gradients(sigmas):
    x = tf.constant(np.random.default_rng(2).normal(0, 1, (16, 256)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = losses.mmd(x, tf.identity(x), sigmas)
    grad = tape.gradient(value, x)
    assert value.numpy() == pytest.approx(0.0, abs=1e-5)
    assert np.all(np.isfinite(grad.numpy()))


def test_mmd_finite_gradient_at_zero_distance():
    # Every point identical: all pairwise distances are exactly zero.
    s = tf.zeros((8, 4))
    t = tf.ones((8, 4))
    with tf.GradientTape() as tape:
        tape.watch([s, t])
        value = losses.mmd(s, t)
    grads = tape.gradient(value, [s, t])
    assert value.numpy() > 0
    assert all(np.all(np.isfinite(g.numpy())) for g in grads)


def test_mmd_grows_with_shift():
    rng = np.random.default_rng(3)
    s = rng.normal(0, 1, (64, 16)).astype(np.float32)
    values = [losses.mmd(s, s + shift, [1.0, 10.0, 100.0]).numpy() for shift in (0.0, 0.1, 0.5, 2.0)]
    assert values[0] == pytest.approx(0, abs=1e-5)
    assert values[1] > 0 and np.all(np.diff(values) > 0)


def test_mmd_rejects_unknown_bandwidth_mode():
    with pytest.raises(ValueError, match="sigmas"):
        losses.mmd(np.zeros((2, 2), np.float32), np.zeros((2, 2), np.float32), "median")


def test_fisher_matches_definition():
    rng = np.random.default_rng(4)
    centers = rng.normal(0, 3, (3, 5)).astype(np.float32)
    labels = np.array([0, 1, 2, 1, 0])
    latent = (centers[labels] + rng.normal(0, 0.5, (5, 5))).astype(np.float32)
    intra = ((latent - centers[labels]) ** 2).sum(1).mean()
    d2 = ((centers[:, None] - centers[None]) ** 2).sum(-1)
    inter = d2.sum() / 6
    assert losses.fisher(latent, labels, centers).numpy() == pytest.approx(intra / inter, rel=1e-4)
    assert losses.fisher(centers[labels], labels, centers).numpy() == pytest.approx(0, abs=1e-6)


def test_entropy_bounds():
    assert losses.entropy(tf.zeros((4, 3))).numpy() == pytest.approx(np.log(3), rel=1e-6)
    assert losses.entropy(tf.constant([[50.0, 0.0, 0.0]])).numpy() == pytest.approx(0, abs=1e-6)
