"""Checks that the mock classes are separable at Y10 and much less so at Y1.

Renders a few hundred galaxies per class, observes them with Poisson noise at Y10 and at
Y1, and measures their classical morphology with statmorph (`tfgal.data.morphology`: Gini,
M20, C, A, S, Sersic n, half-light radius; statmorph and photutils). A gradient-boosting classifier
trained on the Y10 measurements is tested on held-out galaxies at Y10 and on the same
galaxies at Y1. Galaxies statmorph could not measure keep NaN features (the classifier
takes them) and are counted per class and depth; per-galaxy cost is reported. Controls:
a classifier on stretched pixels, and on total flux and size alone (and on colour alone):
these should stay weak. Results of past runs: docs/benchmarks.md.

    python tools/check_mock_separability.py --per-class 300 --workers 2
    python tools/check_mock_separability.py --set r_mag=20,23.5 --set spiral_knot_count=10,30
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import numpy as np
from sklearn.decomposition import PCA
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tfgal import survey
from tfgal.data import mock
from tfgal.data import morphology
from tfgal.data import stretch

DOWNSAMPLE = 4  # 100 x 100 -> 25 x 25 block means: the classifiers need shapes, not pixels
MORPH_FEATURES = ("gini", "m20", "concentration", "asymmetry", "smoothness", "sersic_n",
                  "r_half")


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
    return dataclasses.replace(mock.MockParams(), **changes)


def render(n_train, n_test, seed, params, workers):
    rows = mock.plan(n_train, 0, n_test, seed)
    start = time.perf_counter()
    images = np.stack(list(mock.render_many([(g, lab) for _, g, lab in rows], seed, params,
                                                  workers=workers)))
    elapsed = time.perf_counter() - start
    print(f"rendered {len(rows)} galaxies in {elapsed:.1f} s ({len(rows) / elapsed:.1f}/s)",
          file=sys.stderr)  # stdout holds the JSON only
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


def statmorph_features(images, depth, workers):
    """statmorph measurements of the r band (`MORPH_FEATURES`, NaN where it failed)."""
    table = morphology.measure(images, depth=depth, workers=workers)
    features = np.column_stack([np.asarray(table[name], np.float64) for name in MORPH_FEATURES])
    features[~np.asarray(table["ok"])] = np.nan  # failures stay in, as missing values
    return features, table


def statmorph_summary(table, labels):
    ok = np.asarray(table["ok"])
    return {"failed": int((~ok).sum()),
            "failed_by_class": [int((~ok & (labels == c)).sum()) for c in range(3)],
            "failures": table.meta["failures"],
            "sersic_fit_failed": int((np.asarray(table["flag_sersic"]) >= 2).sum()),
            "seconds_per_galaxy": round(table.meta["seconds_per_galaxy"], 3),
            "wall_s": round(table.meta["wall_s"], 1), "workers": table.meta["workers"],
            "median_by_class": {name: [round(float(np.nanmedian(
                np.where(ok & (labels == c), np.asarray(table[name], np.float64), np.nan))), 3)
                for c in range(3)] for name in MORPH_FEATURES}}


def accuracy(model, x, y):
    return float((model.predict(x) == y).mean())


def main():
    args = parse_args()
    morphology.require()  # a missing statmorph fails here, not after rendering
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

    (m10, t10), (m1, t1) = (statmorph_features(x, d, args.workers)
                            for x, d in ((y10, "Y10"), (y1, "Y1")))
    morph = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, random_state=0)
    morph.fit(m10[tr], labels[tr])
    both_ok = np.asarray(t10["ok"]) & np.asarray(t1["ok"]) & te
    results["statmorph_hgb"] = {
        "features": list(MORPH_FEATURES),
        "Y10_test": accuracy(morph, m10[te], labels[te]),
        "Y1_test": accuracy(morph, m1[te], labels[te]),
        "n_test_measured_at_both": int(both_ok.sum()),
        "Y10_test_measured_at_both": accuracy(morph, m10[both_ok], labels[both_ok]),
        "Y1_test_measured_at_both": accuracy(morph, m1[both_ok], labels[both_ok])}
    results["statmorph"] = {"Y10": statmorph_summary(t10, labels),
                            "Y1": statmorph_summary(t1, labels)}

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
