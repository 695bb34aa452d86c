"""The study's arcsinh stretch, with constants fitted once and saved.

The study clipped each band to its 0.1 / 99.9 percentiles and mapped
``x -> (arcsinh(0.85 x / p99.9) + 1) / 2``, but computed the percentiles per split and
per depth, which leaks test statistics and makes the same pixel value mean different
things at different depths. tfgal fits the percentiles once, on the training split
observed at a reference depth (Y10), stores them in the dataset manifest and applies
the same constants to every split and depth.

A stretch is a JSON-able dict:
``{"kind": "arcsinh", "lo": [..], "hi": [..], "softening": 0.85, "percentiles": [0.1, 99.9],
"depth": "Y10", "split": "train", "n_images": N, "seed": S}`` or ``{"kind": "identity"}``
for data that were stretched before import.

The lower clip (config ``data.stretch_clip``): the fitted source-depth percentile sits about
3 sigma of Y10 sky noise below zero, but only about 1 sigma at Y1, so that clip cuts a sixth
of Y1's sky pixels and shifts their mean: preprocessing, not noise, would then be part of
the Y1 domain shift. ``"target-floor"`` (`lower_clip`) puts the floor 3 sigma of sky noise
below zero at the noisiest depth trained on, so no training depth is clipped more than
Y10 is by the percentile; the upper clip stays the fitted percentile.

The bands (config ``data.stretch_bands``): ``"per-band"`` clips and scales each band by its
own percentiles, which changes colours; ``"shared"`` (the paper's code, `share_bands`)
takes one pair over the pooled pixels of all bands, so every band goes through the same
map and colours are kept. `fit` stores that pair as ``"shared"``; for a manifest written
before, `shared_limits` refits it from the very sample the stretch was fitted on. With the
target floor, shared bands take the lowest band's floor (the noisiest band's), so no band
is clipped above its own floor and one map still serves every band.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tfgal import survey
from tfgal.errors import DataError

__all__ = ["DEFAULT_PERCENTILES", "DEFAULT_SOFTENING", "IDENTITY", "STRETCH_SAMPLE",
           "FLOOR_SIGMA", "BAND_MODES", "sample_rows", "observe_numpy", "fit", "apply_numpy",
           "apply_tf", "value_range", "lower_clip", "clip_manifest", "shared_limits",
           "share_bands", "band_manifest"]

DEFAULT_PERCENTILES = (0.1, 99.9)
DEFAULT_SOFTENING = 0.85
IDENTITY = {"kind": "identity"}
STRETCH_SAMPLE = 512  # training images a stretch is fitted on (builders and importers)
FLOOR_SIGMA = 3.0  # the target floor: sky-noise sigmas below zero at the noisiest depth
BAND_MODES = ("per-band", "shared")  # config data.stretch_bands
MOCKS = "tfgal.mocks"  # mock.builder.GENERATOR_NAME (not imported: it needs GalSim)


def sample_rows(n, k=STRETCH_SAMPLE):
    """Up to `k` evenly spaced rows of `n`: deterministic and spread over the file."""
    return set(np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(int)).tolist())


def observe_numpy(flux, depth, rng):
    """NumPy twin of `noise.poisson_observe` (exact Poisson), used for fitting."""
    depth = survey.Depth.parse(depth)
    t = depth.exposure_vector().astype(np.float64)
    sky = survey.sky_vector().astype(np.float64)
    counts = rng.poisson((np.asarray(flux, np.float64) + sky) * t)
    return (counts / t - sky).astype(np.float32)


def fit(images, *, noiseless, depth="Y10", seed=0, percentiles=DEFAULT_PERCENTILES,
        softening=DEFAULT_SOFTENING, split="train"):
    """Fits per-band clip limits on a sample of images (N x H x W x C).

    Args:
      images: training images; noiseless flux if `noiseless`, else already observed.
      noiseless: when True, noise at `depth` is added (seeded by `seed`) before fitting.
      depth: the reference depth (the baseline survey depth, Y10 by default).
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[0] == 0:
        raise DataError(f"fit needs a non-empty N x H x W x C array; received {images.shape}")
    if noiseless:
        rng = np.random.default_rng(seed)
        images = observe_numpy(images, depth, rng)
    flat = images.reshape(-1, images.shape[-1])
    lo, hi = np.percentile(flat, percentiles, axis=0)
    if np.any(hi <= 0) or np.any(hi <= lo):
        raise DataError(f"cannot fit a stretch: upper percentile {hi.tolist()} must be > 0 "
                        f"and above the lower {lo.tolist()}")
    # The pair over all bands pooled (data.stretch_bands = "shared"), fitted on the same
    # sample so that both modes describe one fit.
    shared = np.percentile(flat, percentiles)
    return {"kind": "arcsinh", "lo": lo.astype(float).tolist(), "hi": hi.astype(float).tolist(),
            "softening": float(softening), "percentiles": list(map(float, percentiles)),
            "depth": survey.Depth.parse(depth).name, "split": split,
            "n_images": int(images.shape[0]), "seed": int(seed),
            "shared": {"lo": float(shared[0]), "hi": float(shared[1])}}


def apply_numpy(x, params):
    """Applies a stretch in NumPy (for users without TensorFlow, and for tests)."""
    x = np.asarray(x, np.float32)
    if params["kind"] == "identity":
        return x
    lo = np.asarray(params["lo"], np.float32)
    hi = np.asarray(params["hi"], np.float32)
    v = np.arcsinh(params["softening"] * np.clip(x, lo, hi) / hi)
    return ((v + 1.0) / 2.0).astype(np.float32)


def apply_tf(x, params):
    """Applies a stretch to a float32 tensor (channels last)."""
    import tensorflow as tf
    if params["kind"] == "identity":
        return x
    lo = tf.constant(params["lo"], tf.float32)
    hi = tf.constant(params["hi"], tf.float32)
    v = tf.asinh(params["softening"] * tf.clip_by_value(x, lo, hi) / hi)
    return (v + 1.0) / 2.0


def value_range(params):
    """(low, high) per band that stretched images can take: bounds for attacks."""
    if params["kind"] == "identity":
        return None
    return (apply_numpy(np.asarray(params["lo"], np.float32), params).tolist(),
            apply_numpy(np.asarray(params["hi"], np.float32), params).tolist())


def lower_clip(params, mode, depths, bands=survey.BANDS):
    """`params` with the lower clip chosen by `mode` ("percentile" or "target-floor").

    "target-floor": ``-FLOOR_SIGMA * sqrt(sky / t)`` per band, at the shortest exposure
    among `depths` (survey depth names or `survey.Depth`s); for a stretch with shared
    bands (`share_bands`), the lowest of those floors, for every band.
    """
    if mode == "percentile":
        return params
    if mode != "target-floor":
        raise DataError(f"unknown lower clip {mode!r}; valid: percentile, target-floor",
                        index="data.stretch_clip")
    if not params or params.get("kind") != "arcsinh":
        raise DataError("data.stretch_clip = 'target-floor' needs an arcsinh stretch fitted on "
                        f"flux; this dataset's stretch is {params and params.get('kind')!r}",
                        index="data.stretch_clip")
    parsed = [survey.Depth.parse(d) for d in depths]
    exposure = np.min([d.exposure_vector() for d in parsed], axis=0).astype(np.float64)
    noisiest = parsed[int(np.argmin([d.exposure_vector().sum() for d in parsed]))]
    sigma = np.sqrt(survey.sky_vector(bands).astype(np.float64) / exposure)
    lo = (-FLOOR_SIGMA * sigma).tolist()
    if params.get("bands") == "shared":
        lo = [min(lo)] * len(lo)  # one map for every band: the lowest band's floor
    if np.any(np.asarray(lo) >= np.asarray(params["hi"])):
        raise DataError(f"the target floor {lo} is not below the upper clip {params['hi']}",
                        index="data.stretch_clip")
    return {**params, "lo": lo,
            "lower_clip": {"mode": mode, "sigma": FLOOR_SIGMA, "depth": noisiest.name,
                           "percentile_lo": list(params["lo"])}}


def clip_manifest(manifest, mode, depths):
    """A copy of `manifest` whose stretch has the lower clip `mode` (itself if unchanged)."""
    if mode == "percentile":
        return manifest
    return dataclasses.replace(manifest, stretch=lower_clip(manifest.stretch, mode, depths,
                                                            manifest.bands))


def _refuse(message, manifest=None):
    raise DataError(message, path=manifest.root if manifest else None,
                    index="data.stretch_bands")


def _fit_sample(manifest, params):
    """The training images `params` were fitted on, read back from the records, and
    whether they are noiseless flux: mock builds fit on the first images of the split,
    importers on its `sample_rows`."""
    from tfgal.data.codec import read_examples
    noiseless = [name for name, info in manifest.images.items() if not info.get("noise")]
    name = noiseless[0] if noiseless else params.get("depth")
    split = params.get("split", "train")
    if name not in manifest.images or split not in manifest.splits:
        _refuse(f"cannot find the {split} images {name!r} the stretch was fitted on", manifest)
    if (manifest.generator or {}).get("name") == MOCKS:
        rows = set(range(min(int(params.get("n_images", 0)), manifest.count(split))))
    else:
        rows = sample_rows(manifest.count(split))
    images, row, last = [], 0, max(rows, default=0)
    for path in manifest.files(split):
        for example in read_examples(path, manifest.compression):
            if row in rows:
                images.append(example[name])
            row += 1
            if row > last:
                return np.stack(images), bool(noiseless)
    _refuse(f"the {split} split holds fewer images than the stretch was fitted on", manifest)


def shared_limits(manifest):
    """The (lo, hi) pair over all bands pooled of the dataset's fitted stretch.

    Stored by `fit`; for a manifest written before, refitted (same sample, seed and
    percentiles) and trusted only when the refit reproduces the stored per-band limits
    exactly.
    """
    params = manifest.stretch
    if "shared" in params:
        return params["shared"]["lo"], params["shared"]["hi"]
    sample, noiseless = _fit_sample(manifest, params)
    refit = fit(sample, noiseless=noiseless, depth=params.get("depth", "Y10"),
                seed=params.get("seed", 0),
                percentiles=params.get("percentiles", DEFAULT_PERCENTILES),
                softening=params.get("softening", DEFAULT_SOFTENING),
                split=params.get("split", "train"))
    if refit["lo"] != params["lo"] or refit["hi"] != params["hi"]:
        _refuse("cannot refit the shared stretch: the training sample read back does not "
                "reproduce the stored per-band limits (rebuild the dataset, whose manifest "
                "then stores them)", manifest)
    return refit["shared"]["lo"], refit["shared"]["hi"]


def share_bands(params, lo, hi):
    """`params` with one clip pair (`lo`, `hi`) for every band; the per-band pair kept."""
    if not hi > 0 or not hi > lo:
        raise DataError(f"cannot share a stretch: upper limit {hi} must be > 0 and above the "
                        f"lower {lo}", index="data.stretch_bands")
    n = len(params["hi"])
    return {**params, "lo": [float(lo)] * n, "hi": [float(hi)] * n, "bands": "shared",
            "shared": {"lo": float(lo), "hi": float(hi)},
            "per_band": {"lo": list(params["lo"]), "hi": list(params["hi"])}}


def band_manifest(manifest, mode):
    """A copy of `manifest` whose stretch treats the bands as `mode` says (`BAND_MODES`);
    itself for "per-band". Apply before `clip_manifest`."""
    if mode == "per-band":
        return manifest
    if mode != "shared":
        raise DataError(f"unknown stretch bands {mode!r}; valid: {', '.join(BAND_MODES)}",
                        index="data.stretch_bands")
    params = manifest.stretch
    if not params or params.get("kind") != "arcsinh":
        _refuse("data.stretch_bands = 'shared' needs an arcsinh stretch fitted on flux; this "
                f"dataset's stretch is {params and params.get('kind')!r} (images stretched "
                "before import keep their own stretch: use 'per-band')", manifest)
    return dataclasses.replace(manifest, stretch=share_bands(params, *shared_limits(manifest)))
