"""Domain-adaptation losses on latent embeddings: MMD, Fisher and entropy.

All take and return float32 tensors and are safe at zero distance: squared distances
come from explicit differences (no square roots), so gradients stay finite and exactly
zero-distance pairs give exactly k = 1.
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["mmd", "fisher", "entropy", "data_sigmas", "pairwise_squared_distances",
           "STUDY_SIGMAS", "DATA_ALPHAS"]

# The study's 19 Gaussian bandwidths (the sigma of k(x, y) = exp(-|x - y|^2 / (2 sigma))).
STUDY_SIGMAS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0,
                35.0, 100.0, 1e3, 1e4, 1e5, 1e6)
# Data-driven bandwidths: multiples of the mean pairwise squared distance (DAN).
DATA_ALPHAS = (0.125, 0.25, 0.5, 1.0, 2.0)


def pairwise_squared_distances(x, y):
    """||x_i - y_j||^2 for rows of x [n, d] and y [m, d].

    From explicit differences, not the Gram expansion |x|^2 + |y|^2 - 2 x.y: its float32
    rounding error is not small next to the study's smallest bandwidths (1e-6), and
    differences are exactly zero for identical points. Memory is n * m * d floats
    (64 MiB for n = m = d = 256).
    """
    return tf.reduce_sum(tf.square(x[:, None, :] - y[None, :, :]), axis=-1)


def data_sigmas(source, target, alphas=DATA_ALPHAS):
    """Bandwidths `alpha * mean pairwise squared distance` over source and target."""
    both = tf.concat([source, target], axis=0)
    mean_d2 = tf.reduce_mean(pairwise_squared_distances(both, both))
    # No gradient through the bandwidth; guard identical inputs (mean distance 0).
    mean_d2 = tf.stop_gradient(tf.maximum(mean_d2, 1e-12))
    return tf.constant(alphas, tf.float32) * mean_d2


def _kernel_mean(d2, sigmas):
    """mean over pairs of sum_i exp(-d2 / (2 sigma_i))."""
    scaled = d2[None, :, :] / (2.0 * tf.reshape(sigmas, (-1, 1, 1)))
    return tf.reduce_sum(tf.reduce_mean(tf.exp(-scaled), axis=(1, 2)))


def mmd(source, target, sigmas=None):
    """Biased (V-statistic) multi-kernel MMD^2 between two sets of embeddings.

    ``mean k(s, s') + mean k(t, t') - 2 mean k(s, t)`` with
    ``k(x, y) = sum_i exp(-||x - y||^2 / (2 sigma_i))``, clamped at >= 0.

    Args:
      source: [n, d] embeddings (e.g. latents of labelled Y10 images).
      target: [m, d] embeddings (e.g. latents of unlabelled Y1 images).
      sigmas: bandwidths; None for the study's 19, "data" for `data_sigmas`.
    Returns:
      a float32 scalar tensor.
    """
    source = tf.cast(tf.convert_to_tensor(source), tf.float32)
    target = tf.cast(tf.convert_to_tensor(target), tf.float32)
    if sigmas is None:
        sigmas = tf.constant(STUDY_SIGMAS, tf.float32)
    elif isinstance(sigmas, str):
        if sigmas != "data":
            raise ValueError(f"sigmas must be None, 'data' or numbers; received {sigmas!r}")
        sigmas = data_sigmas(source, target)
    else:
        sigmas = tf.cast(tf.convert_to_tensor(sigmas), tf.float32)
    k_ss = _kernel_mean(pairwise_squared_distances(source, source), sigmas)
    k_tt = _kernel_mean(pairwise_squared_distances(target, target), sigmas)
    k_st = _kernel_mean(pairwise_squared_distances(source, target), sigmas)
    return tf.maximum(k_ss + k_tt - 2.0 * k_st, 0.0)


def fisher(latent, labels, centers, eps=1e-6):
    """Fisher loss: intra-class spread over inter-class spread of class centres.

    intra = mean ||z_i - c_{y_i}||^2 over the batch; inter = mean ||c_a - c_b||^2 over
    pairs of distinct classes. Minimising the ratio pulls each embedding towards its
    (learnable) class centre while pushing the centres apart.
    """
    latent = tf.cast(latent, tf.float32)
    own = tf.gather(centers, labels)
    intra = tf.reduce_mean(tf.reduce_sum(tf.square(latent - own), axis=1))
    d2 = pairwise_squared_distances(centers, centers)
    k = tf.cast(tf.shape(centers)[0], tf.float32)
    inter = tf.reduce_sum(d2) / tf.maximum(k * (k - 1.0), 1.0)
    return intra / (inter + eps)


def entropy(logits):
    """Mean Shannon entropy (nats) of the softmax predictions."""
    logits = tf.cast(logits, tf.float32)
    log_p = tf.nn.log_softmax(logits)
    return tf.reduce_mean(-tf.reduce_sum(tf.exp(log_p) * log_p, axis=1))
