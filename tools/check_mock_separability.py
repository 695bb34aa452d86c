"""Checks that the mock classes are separable at Y10 and much less so at Y1.

Renders a few hundred galaxies per class, observes them with Poisson noise at Y10 and at
Y1, applies the arcsinh stretch fitted on the training part at Y10, trains a simple
scikit-learn classifier on Y10 and reports its accuracy on held-out Y10 and Y1 images of
the same galaxies. Also reports what a classifier on total flux and size alone (and on
colour alone) achieves: it should stay weak. Results of past runs: docs/benchmarks.md.

    python tools/check_mock_separability.py --per-class 300 --workers 2
    python tools/check_mock_separability.py --set r_mag=20,23.5 --set spiral_knot_count=10,30
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np
from sklearn.decomposition import PCA
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tfgal import survey
from tfgal.data import mock_build
from tfgal.data import mock_params
from tfgal.data import stretch

DOWNSAMPLE = 4  # 100 x 100 -> 25 x 25 block means: the classifiers need shapes, not pixels


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=300, help="galaxies per class")
    parser.add_argument("--test-fraction", type=float, default=0.33)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=LOW,HIGH",
                        help="override a MockParams field (repeatable)")
    parser.add_argument("--hgb", action="store_true",
                        help="also fit a HistGradientBoosting classifier (slower)")
    return parser.parse_args()


def params_from(overrides):
    changes = {}
    for item in overrides:
        name, value = item.split("=", 1)
        values = [float(v) for v in value.split(",")]
        if name.endswith("_count"):
            values = [int(v) for v in values]
        changes[name] = tuple(values) if len(values) > 1 else values[0]
    return dataclasses.replace(mock_params.MockParams(), **changes)


def render(n_train, n_test, seed, params, workers):
    rows = mock_params.plan(n_train, 0, n_test, seed)
    start = time.perf_counter()
    images = np.stack(list(mock_build.render_many([(g, lab) for _, g, lab in rows], seed, params,
                                                  workers=workers)))
    elapsed = time.perf_counter() - start
    print(f"rendered {len(rows)} galaxies in {elapsed:.1f} s ({len(rows) / elapsed:.1f}/s)")
    labels = np.array([lab for _, _, lab in rows])
    is_train = np.array([split == "train" for split, _, _ in rows])
    return images, labels, is_train


def downsample(images):
    n, h, w, c = images.shape
    k = DOWNSAMPLE
    return images.reshape(n, h // k, k, w // k, k, c).mean(axis=(2, 4)).reshape(n, -1)


def half_light_radius(flux_r):
    """Radius (pixels) about the light centre holding half of each image's flux."""
    n, h, w = flux_r.shape
    yy, xx = np.mgrid[:h, :w]
    out = np.empty(n)
    for k, image in enumerate(flux_r):
        total = image.sum()
        cx, cy = (image * xx).sum() / total, (image * yy).sum() / total
        radius = np.hypot(xx - cx, yy - cy).ravel()
        order = np.argsort(radius)
        cumulative = np.cumsum(image.ravel()[order])
        out[k] = radius[order][np.searchsorted(cumulative, 0.5 * total)]
    return out


def morphology_features(stretched, zero):
    """Rotation-invariant statistics of stretched images, like the CAS system.

    Per band: the mean in annuli about the stamp centre (light profile, concentration);
    on the band sum: asymmetry under a 180 degree turn, clumpiness (residual from a 5 x 5
    box blur) and the amplitudes of azimuthal Fourier modes m = 1..4 in three annuli
    (arms, tails, off-centre companions); plus the band ratios of the central light.
    """
    from scipy.ndimage import uniform_filter
    signal = stretched - zero  # the sky (zero flux) maps to `zero`
    n, h, w, c = signal.shape
    yy, xx = np.mgrid[:h, :w] - (h - 1) / 2.0
    radius, angle = np.hypot(xx, yy), np.arctan2(yy, xx)
    edges = [0, 2, 4, 6, 9, 13, 18, 25, 35, 50]
    rings = [(radius >= a) & (radius < b) for a, b in zip(edges[:-1], edges[1:])]
    profile = np.stack([signal[:, ring].mean(axis=1) for ring in rings], axis=1).reshape(n, -1)
    total = signal.sum(axis=3)
    inner = radius < 25
    norm = np.abs(total[:, inner]).sum(axis=1) + 1e-6
    asymmetry = np.abs(total - total[:, ::-1, ::-1])[:, inner].sum(axis=1) / norm
    blurred = uniform_filter(total, size=(1, 5, 5))
    clumpiness = np.abs(total - blurred)[:, inner].sum(axis=1) / norm
    modes = []
    for a, b in ((2, 8), (8, 16), (16, 30)):
        ring = (radius >= a) & (radius < b)
        m0 = np.abs(total[:, ring].sum(axis=1)) + 1e-6
        for m in (1, 2, 3, 4):
            phase = np.exp(1j * m * angle[ring])
            modes.append(np.abs((total[:, ring] * phase).sum(axis=1)) / m0)
    central = signal[:, radius < 13].sum(axis=1)
    colours = np.log(np.maximum(central[:, [0, 2]], 1e-3) / np.maximum(central[:, [1]], 1e-3))
    return np.column_stack([profile, asymmetry, clumpiness, np.stack(modes, 1), colours])


def accuracy(model, x, y):
    return float((model.predict(x) == y).mean())


def main():
    args = parse_args()
    params = params_from(args.set)
    n_test = int(round(3 * args.per_class * args.test_fraction))
    flux, labels, is_train = render(3 * args.per_class - n_test, n_test, args.seed, params,
                                    args.workers)
    rng = np.random.default_rng(args.seed + 1)
    y10 = stretch.observe_numpy(flux, "Y10", rng)
    y1 = stretch.observe_numpy(flux, "Y1", rng)
    fitted = stretch.fit(flux[is_train][: stretch.STRETCH_SAMPLE], noiseless=True, depth="Y10",
                         seed=args.seed)
    x10, x1 = (downsample(stretch.apply_numpy(x, fitted)) for x in (y10, y1))
    tr, te = is_train, ~is_train
    results = {"n_train": int(tr.sum()), "n_test": int(te.sum()), "chance": 1 / 3}

    pca_lr = make_pipeline(StandardScaler(), PCA(40, random_state=0),
                           LogisticRegression(C=0.1, max_iter=2000))
    pca_lr.fit(x10[tr], labels[tr])
    results["pca_logreg"] = {"Y10_train": accuracy(pca_lr, x10[tr], labels[tr]),
                             "Y10_test": accuracy(pca_lr, x10[te], labels[te]),
                             "Y1_test": accuracy(pca_lr, x1[te], labels[te])}
    if args.hgb:
        hgb = HistGradientBoostingClassifier(max_iter=200, random_state=0)
        hgb.fit(x10[tr], labels[tr])
        results["hist_gradient_boosting"] = {"Y10_test": accuracy(hgb, x10[te], labels[te]),
                                             "Y1_test": accuracy(hgb, x1[te], labels[te])}

    zero = float(stretch.apply_numpy(np.zeros(3, np.float32), fitted)[0])
    m10, m1 = (morphology_features(stretch.apply_numpy(x, fitted), zero) for x in (y10, y1))
    morph = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, random_state=0)
    morph.fit(m10[tr], labels[tr])
    results["morphology_stats_hgb"] = {"Y10_test": accuracy(morph, m10[te], labels[te]),
                                       "Y1_test": accuracy(morph, m1[te], labels[te])}

    # Flux and size alone, measured at their most favourable: total r flux of the Y10
    # image and half-light radius of the noiseless one.
    r = survey.BANDS.index("r")
    g = survey.BANDS.index("g")
    total_r = np.maximum(y10[..., r].sum(axis=(1, 2)), 1.0)
    size = half_light_radius(flux[..., r])
    simple = np.column_stack([np.log10(total_r), np.log10(size)])
    colour = (survey.flux_to_mag(flux[..., g].sum(axis=(1, 2)), "g")
              - survey.flux_to_mag(flux[..., r].sum(axis=(1, 2)), "r"))
    for name, features in (("flux_size", simple),
                           ("colour", colour[:, None]),
                           ("flux_size_colour", np.column_stack([simple, colour]))):
        model = HistGradientBoostingClassifier(max_iter=100, max_depth=3, random_state=0)
        model.fit(features[tr], labels[tr])
        results[f"{name}_only"] = {"test": accuracy(model, features[te], labels[te])}
    results["mean_g_minus_r_by_class"] = [float(colour[labels == c].mean()) for c in range(3)]
    results["median_size_px_by_class"] = [float(np.median(size[labels == c])) for c in range(3)]
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
