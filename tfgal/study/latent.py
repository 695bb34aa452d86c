"""Latent-space measurements: the church-window grid and the isomap embedding.

They are measurements, so they live here; `tfgal.study.plots` only draws what they return.
"""

from __future__ import annotations

import numpy as np

__all__ = ["church_window", "isomap", "window_summary"]


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
