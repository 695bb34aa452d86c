"""Latent-space measurements: the church-window grid, the isomap embedding, distances.

They are measurements, so they live here; `tfgal.study.plots` only draws what they return.

Two models' latent spaces have different scales, so raw distances (base -> attacked,
base -> noisy) cannot tell a more robust latent space from a larger one. `latent_scale`
gives each model's typical distance between different galaxies; `scaled_mean` and
`paired_scaled` measure distances in that unit. Their intervals come from one
`GalaxyBootstrap` per study, which redraws the galaxies behind every mean and every scale
at once, so a scale is never treated as exact. `bootstrap_ci` and `paired_ratio` are the
plain percentile bootstraps of one sample and of paired samples.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["church_window", "isomap", "window_summary", "latent_scale", "bootstrap_ci",
           "paired_ratio", "GalaxyBootstrap", "scaled_mean", "galaxy_mean", "paired_scaled"]

_MAX_DRAW = 1 << 24  # bootstrap indices drawn per chunk: bounds memory for large samples


def church_window(model, base, attacked, noisy, *, grid=41, span=2.0, batch_size=4096):
    """Classes on the plane base + a (attacked - base) + b (noisy - base) of latent space.

    `base`, `attacked`, `noisy` are latent vectors [D]. The grid covers a, b in
    [-span, span] (`grid` points each), so the attacked image sits at (1, 0) and the noisy
    one at (0, 1). Points are classified by the model's ``classify_latent`` signature in
    batches. Returns (coords [grid], classes [grid(b), grid(a)] int).
    """
    base, attacked, noisy = (np.asarray(v, np.float32) for v in (base, attacked, noisy))
    coords = np.linspace(-span, span, grid).astype(np.float32)
    a, b = np.meshgrid(coords, coords)  # rows: b (noisy direction), columns: a
    points = (base + a.reshape(-1, 1) * (attacked - base)
              + b.reshape(-1, 1) * (noisy - base)).astype(np.float32)
    classes = np.concatenate([
        np.argmax(model.classify_latent(points[i:i + batch_size])["logits"].numpy(), axis=1)
        for i in range(0, len(points), batch_size)])
    return coords, classes.reshape(grid, grid)


def isomap(latents, *, n_neighbors=10):
    """2-D Isomap embedding (scikit-learn) of latent vectors [N, D].

    The dense eigensolver is used: ARPACK starts from an unseeded random vector, so its
    embedding (signs included) would change from run to run; the study embeds at most a few
    thousand points, which the dense solver handles.

    Latents at two depths, or of unlike classes, often form clusters the neighbour graph
    does not join; scikit-learn then joins them at their closest points, as wanted here,
    and warns only that this might be slow (and SciPy that it edits a CSR matrix): at a
    few thousand points it is not, so exactly those two warnings are kept off stderr.
    """
    from scipy.sparse import SparseEfficiencyWarning
    from sklearn.manifold import Isomap
    latents = np.asarray(latents, np.float64)
    k = max(1, min(n_neighbors, len(latents) - 1))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The number of connected components of the "
                                "neighbors graph", UserWarning)
        warnings.filterwarnings("ignore", category=SparseEfficiencyWarning)
        return Isomap(n_neighbors=k, n_components=2,
                      eigen_solver="dense").fit_transform(latents)


def window_summary(attack, i, coords, classes, n_classes):
    """Which galaxy a church window shows and how its plane divides among the classes.

    `attack` has per-galaxy arrays ``galaxy_id``, ``labels`` and ``final_class``; `i` is
    the galaxy's index among them.
    """
    centre = len(coords) // 2
    share = np.bincount(classes.ravel(), minlength=n_classes) / classes.size
    return {"index": int(i), "galaxy_id": int(attack.galaxy_id[i]),
            "label": int(attack.labels[i]),
            "base_class": int(classes[centre, centre]) if coords[centre] == 0 else None,
            "attacked_class": int(attack.final_class[i]), "class_share": share.tolist()}


# --------------------------------------------------------------------------- distance measures


def latent_scale(latents, max_pairs=None, seed=0):
    """Median Euclidean distance between different galaxies' latents [N, D].

    All pairs i < j (`scipy.spatial.distance.pdist`), or, when `max_pairs` is given and
    smaller than N(N-1)/2, that many distinct pairs drawn with a seeded generator.
    """
    from scipy.spatial.distance import pdist
    x = np.asarray(latents, np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need latents [N >= 2, D]; received {x.shape}")
    n = len(x)
    n_pairs = n * (n - 1) // 2
    if max_pairs is None or max_pairs >= n_pairs:
        return float(np.median(pdist(x)))
    if max_pairs < 1:
        raise ValueError(f"max_pairs must be at least 1; received {max_pairs}")
    k = np.random.default_rng(seed).choice(n_pairs, size=int(max_pairs), replace=False)
    # Condensed index k -> (i, j) exactly, in integers: row i starts at i (2n - i - 1) / 2.
    rows = np.arange(n, dtype=np.int64)
    starts = rows * (2 * n - rows - 1) // 2
    i = np.searchsorted(starts, k, side="right") - 1
    j = k - starts[i] + i + 1
    return float(np.median(np.linalg.norm(x[i] - x[j], axis=1)))


def _finite_1d(values):
    x = np.asarray(values, np.float64).ravel()
    return x[~np.isnan(x)]


def _percentiles(replicates, level):
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1); received {level}")
    tail = (1 - level) / 2
    low, high = np.quantile(replicates, [tail, 1 - tail])
    return float(low), float(high)


def _resample(n, n_resamples, seed, reduce):
    """Replicates of `reduce(indices [r, n])` over `n_resamples` rows of seeded draws."""
    rng = np.random.default_rng(seed)
    rows = max(1, _MAX_DRAW // n)
    return np.concatenate([reduce(rng.integers(0, n, size=(min(rows, n_resamples - s), n)))
                           for s in range(0, n_resamples, rows)])


def bootstrap_ci(values, statistic=np.mean, n_resamples=2000, seed=0, level=0.95):
    """Percentile bootstrap interval of `statistic` of a 1-D sample (NaNs dropped first).

    `statistic` reduces along ``axis=`` (np.mean, np.median, ...). Returns {"estimate",
    "low", "high", "n"}: low = high = None below two values, estimate None with none.
    """
    x = _finite_1d(values)
    n = len(x)
    out = {"estimate": float(statistic(x)) if n else None, "low": None, "high": None, "n": n}
    if n >= 2:
        reps = _resample(n, n_resamples, seed, lambda idx: statistic(x[idx], axis=1))
        out["low"], out["high"] = _percentiles(reps, level)
    return out


def paired_ratio(a, b, n_resamples=2000, seed=0, level=0.95):
    """mean(a) / mean(b) of paired per-galaxy values, with a paired percentile bootstrap.

    Pairs with a NaN in either are dropped; each replicate resamples galaxies, the same
    ones for `a` and `b`. Returns {"ratio", "low", "high", "n"}, None where undefined
    (no pair, mean(b) = 0; the interval below two pairs).
    """
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired values need equal lengths; received {a.shape}, {b.shape}")
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    n = len(a)
    out = {"ratio": None, "low": None, "high": None, "n": n}
    if n == 0 or b.mean() == 0:
        return out
    out["ratio"] = float(a.mean() / b.mean())
    if n >= 2:
        with np.errstate(divide="ignore", invalid="ignore"):
            reps = _resample(n, n_resamples, seed,
                             lambda idx: a[idx].mean(axis=1) / b[idx].mean(axis=1))
        out["low"], out["high"] = _percentiles(reps, level)
    return out


def _check_scale(scale):
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"latent scale must be positive and finite; received {scale}")
    return float(scale)


class GalaxyBootstrap:
    """One percentile bootstrap over a study's galaxies, shared by every statistic.

    Each replicate draws the galaxies `ids` with replacement, as a count per galaxy. A
    statistic over any subset of them (a model's attacked galaxies, those two models both
    attacked, the pairs behind a latent scale) reads the same draw, so a ratio and the
    scales it is divided by vary together, as they would over another sample of galaxies.
    """

    def __init__(self, ids, n_resamples=2000, seed=0, level=0.95):
        self.ids = np.unique(np.asarray(ids).ravel())
        n = len(self.ids)
        if n == 0:
            raise ValueError("a bootstrap needs at least one galaxy")
        rng = np.random.default_rng(seed)
        self.counts = rng.multinomial(n, np.full(n, 1.0 / n), size=int(n_resamples)).astype(
            np.float64)
        self.level = level
        self._scales = {}

    def columns(self, ids):
        ids = np.asarray(ids).ravel()
        cols = np.searchsorted(self.ids, ids)
        if len(ids) and (cols.max() >= len(self.ids) or not (self.ids[cols] == ids).all()):
            raise ValueError("galaxy ids outside the bootstrap's galaxies")
        return cols

    def mean(self, values, ids):
        """Replicates [R] of the mean of per-galaxy `values` over galaxies `ids` (NaN
        where a replicate drew none of them)."""
        w = self.counts[:, self.columns(ids)]
        total = w.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (w @ np.asarray(values, np.float64)) / np.where(total > 0, total, np.nan)

    def scale(self, key, latents, ids):
        """Replicates [R] of `latent_scale` of `latents` [n, D] of galaxies `ids`: the
        median over pairs of different galaxies drawn, each pair weighted by how often both
        were drawn (a galaxy drawn twice is not paired with itself). Cached under `key`."""
        if key not in self._scales:
            self._scales[key] = self._weighted_median_pairs(latents, self.columns(ids))
        return self._scales[key]

    def _weighted_median_pairs(self, latents, cols):
        from scipy.spatial.distance import pdist
        d = pdist(np.asarray(latents, np.float64))
        i, j = np.triu_indices(len(cols), k=1)  # pdist's order
        order = np.argsort(d, kind="stable")
        d, ci, cj = d[order], cols[i[order]], cols[j[order]]
        out = np.empty(len(self.counts))
        step = max(1, _MAX_DRAW // max(len(d), 1))
        for s in range(0, len(self.counts), step):
            w = self.counts[s:s + step]
            cum = np.cumsum(w[:, ci] * w[:, cj], axis=1)
            half = cum[:, -1:] / 2
            k = np.argmax(cum >= half, axis=1)
            out[s:s + step] = np.where(cum[:, -1] > 0, d[k], np.nan)
        return out

    def interval(self, estimate, replicates, n):
        """{"estimate", "low", "high", "n"}: percentiles of the finite replicates (None
        below two galaxies or with no estimate)."""
        out = {"estimate": None if estimate is None or not np.isfinite(estimate)
               else float(estimate), "low": None, "high": None, "n": int(n)}
        reps = np.asarray(replicates, np.float64)
        reps = reps[np.isfinite(reps)]
        if out["estimate"] is not None and n >= 2 and len(reps) >= 2:
            out["low"], out["high"] = _percentiles(reps, self.level)
        return out


def scaled_mean(boot, values, ids, scale, scale_reps):
    """Mean of per-galaxy `values` [n] over `scale`, with the scale resampled with the
    galaxies; values and ids are kept where values are finite."""
    values, ids = np.asarray(values, np.float64).ravel(), np.asarray(ids).ravel()
    if values.shape != ids.shape:
        raise ValueError(f"need one id per value; received {ids.shape}, {values.shape}")
    keep = np.isfinite(values)
    values, ids = values[keep], ids[keep]
    est = values.mean() / _check_scale(scale) if len(values) else None
    reps = boot.mean(values, ids) / scale_reps if len(values) else []
    return boot.interval(est, reps, len(values))


def galaxy_mean(boot, values, ids):
    """Mean of per-galaxy `values` (finite ones) with its interval: no scale involved."""
    values, ids = np.asarray(values, np.float64).ravel(), np.asarray(ids).ravel()
    keep = np.isfinite(values)
    values, ids = values[keep], ids[keep]
    est = values.mean() if len(values) else None
    return boot.interval(est, boot.mean(values, ids) if len(values) else [], len(values))


def paired_scaled(boot, d_a, d_b, ids, scales, scale_reps):
    """Model A over model B on the same galaxies `ids` (chosen before any outcome):
    {"n", "raw": mean d_a / mean d_b, "scaled": the same with each model's distances over
    its own scale}, each a `GalaxyBootstrap.interval` whose replicates redraw galaxies and
    scales together. `scales`, `scale_reps`: (A's, B's)."""
    d_a, d_b = (np.asarray(d, np.float64).ravel() for d in (d_a, d_b))
    ids = np.asarray(ids).ravel()
    if not d_a.shape == d_b.shape == ids.shape:
        raise ValueError(f"paired distances need equal lengths; received {d_a.shape}, "
                         f"{d_b.shape}, {ids.shape}")
    keep = np.isfinite(d_a) & np.isfinite(d_b)
    d_a, d_b, ids = d_a[keep], d_b[keep], ids[keep]
    n = len(ids)
    if n == 0 or d_b.mean() == 0:
        return {"n": n, "raw": boot.interval(None, [], n), "scaled": boot.interval(None, [], n)}
    raw = d_a.mean() / d_b.mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        raw_reps = boot.mean(d_a, ids) / boot.mean(d_b, ids)
        factor = _check_scale(scales[1]) / _check_scale(scales[0])
        scaled_reps = raw_reps * scale_reps[1] / scale_reps[0]
    return {"n": n, "raw": boot.interval(raw, raw_reps, n),
            "scaled": boot.interval(raw * factor, scaled_reps, n)}
