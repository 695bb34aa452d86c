"""Latent-space measurements: the church-window grid, the isomap embedding, distances.

They are measurements, so they live here; `tfgal.study.plots` only draws what they return.

Two models' latent spaces have different scales, so raw distances (base -> attacked,
base -> noisy) cannot tell a more robust latent space from a larger one. `latent_scale`
gives each model's typical distance between different galaxies; `scale_free` and
`paired_comparison` measure distances in that unit, with percentile-bootstrap intervals
(`bootstrap_ci`, `paired_ratio`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["church_window", "isomap", "window_summary", "latent_scale", "bootstrap_ci",
           "paired_ratio", "scale_free", "paired_comparison"]

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
    """
    from sklearn.manifold import Isomap
    latents = np.asarray(latents, np.float64)
    k = max(1, min(n_neighbors, len(latents) - 1))
    return Isomap(n_neighbors=k, n_components=2, eigen_solver="dense").fit_transform(latents)


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


def scale_free(d_attack, d_noisy, scale, n_resamples=2000, seed=0):
    """One model's per-galaxy latent distances in units of its `latent_scale`.

    `d_attack` [N]: base -> attacked distance, NaN where the attack failed; `d_noisy` [N]:
    base -> same galaxy at the shallower depth, for the same galaxies. Returns a JSON-able
    {"scale", "attack", "noisy", "attack_over_noisy" (`bootstrap_ci` of means),
    "attack_over_noisy_median"}; the last two use the per-galaxy ratio d_attack / d_noisy
    over successful attacks, which needs no scale at all.
    """
    scale = _check_scale(scale)
    d_attack, d_noisy = (np.asarray(d, np.float64).ravel() for d in (d_attack, d_noisy))
    if d_attack.shape != d_noisy.shape:
        raise ValueError(f"need one noisy distance per attacked galaxy; received "
                         f"{d_attack.shape}, {d_noisy.shape}")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = _finite_1d(d_attack / d_noisy)
    kw = {"n_resamples": n_resamples, "seed": seed}
    return {"scale": scale, "attack": bootstrap_ci(d_attack / scale, **kw),
            "noisy": bootstrap_ci(d_noisy / scale, **kw),
            "attack_over_noisy": bootstrap_ci(ratio, **kw),
            "attack_over_noisy_median": float(np.median(ratio)) if len(ratio) else None}


def paired_comparison(d_a, d_b, scale_a, scale_b, ids_a, ids_b, n_resamples=2000, seed=0):
    """Model A against model B on the galaxies attacked successfully under both.

    `d_a`, `d_b`: per-galaxy distances (NaN where the attack failed) of galaxies `ids_a`,
    `ids_b` (unique within each model, any order). Returns {"n", "galaxy_id" (the common
    ids, sorted), "raw": `paired_ratio` of A's over B's distances, "scaled": the same with
    each model's distances divided by its own scale}.
    """
    scale_a, scale_b = _check_scale(scale_a), _check_scale(scale_b)
    sides = []
    for d, ids in ((d_a, ids_a), (d_b, ids_b)):
        d, ids = np.asarray(d, np.float64).ravel(), np.asarray(ids).ravel()
        if d.shape != ids.shape:
            raise ValueError(f"need one id per distance; received {ids.shape}, {d.shape}")
        if len(np.unique(ids)) != len(ids):
            raise ValueError("galaxy ids repeat within a model")
        ok = ~np.isnan(d)
        sides.append((d[ok], ids[ok]))
    (da, ia), (db, ib) = sides
    common, ka, kb = np.intersect1d(ia, ib, assume_unique=True, return_indices=True)
    da, db = da[ka], db[kb]
    kw = {"n_resamples": n_resamples, "seed": seed}
    return {"n": int(len(common)), "galaxy_id": common.tolist(),
            "raw": paired_ratio(da, db, **kw),
            "scaled": paired_ratio(da / scale_a, db / scale_b, **kw)}
