"""Classical morphology of observed galaxies: photutils segmentation and statmorph.

statmorph and photutils are core dependencies (``pip install -e .`` installs them); they
are imported only when a measurement runs, and their absence (an install that predates
them) is a `ConfigError` saying how to reinstall. Conventions: images are observed,
sky-subtracted fluxes in e-/s per pixel (NOT stretched), [N, H, W, C] with channels
`tfgal.survey.BANDS`; radii are in arcsec.

Per galaxy, in one band (r by default):

* segmentation: the image smoothed by a Gaussian of FWHM `SMOOTH_FWHM_PIX`, pixels above
  `DETECT_NSIGMA` times the smoothed image's sky noise (from the depth's sqrt(sky /
  exposure), the noise model of `tfgal.data.noise`), at least `DETECT_NPIXELS` connected;
  the segment nearest the stamp centre (within `CENTRE_RADIUS_PIX`) is measured and the
  other segments are masked;
* statmorph's `SourceMorphology` with an explicit weight map and a PSF image (below);
* Gini, M20, C, A, S, the Gini-M20 merger and bulge statistics, the Sersic index and
  radius of its PSF-convolved Sersic fit, and the non-parametric half-light radius.

Failures are kept, never dropped: every input galaxy has a row, with ``ok = False`` and a
``reason`` ("kind: details"; kinds "no source", "no central source", "statmorph raised",
"statmorph flag 2 (bad)", "statmorph flag 4 (catastrophic)") when segmentation finds no
central source, statmorph raises, or statmorph's ``flag`` is 2 or 4; values statmorph
could not measure are NaN.
``flag_sersic`` is statmorph's own flag on the Sersic fit (>= 2: failed).

The networks see each band clipped to the stretch's [lo, hi] (e-/s) before its arcsinh:
`clip_like_stretch` gives statmorph the same clipped images, `clip_shares` says how much of
a band the clip takes (of all pixels, of sky pixels).

Literature ranges per class: `LITERATURE` (`tfgal.data.morphology.literature`), indicative only.
"""

from __future__ import annotations

import collections
import multiprocessing
import time
import warnings

import numpy as np

from tfgal import progress as progress_lib
from tfgal import survey
from tfgal.data import pools
from tfgal.data.manifest import CLASS_NAMES, Manifest
from tfgal.data.morphology.literature import LITERATURE, REFERENCES
from tfgal.errors import ConfigError, DataError

__all__ = ["EXTRA", "STATISTICS", "COLUMNS", "DETECT_NSIGMA", "DETECT_NPIXELS",
           "SMOOTH_FWHM_PIX", "SMOOTH_SIZE_PIX", "CENTRE_RADIUS_PIX", "PSF_STAMP_PIXELS",
           "FLAG_BAD", "require", "psf_image", "measure", "worker_pool", "versions", "observe",
           "TABLE_STATISTICS", "class_table", "clip_limits", "clip_like_stretch", "clip_shares",
           "LITERATURE", "REFERENCES"]

EXTRA = "reinstall tfgal (pip install -e .), which installs both"
# Measured statistics, statmorph's names (r_half and sersic_rhalf converted to arcsec).
STATISTICS = ("gini", "m20", "concentration", "asymmetry", "smoothness", "sersic_n",
              "r_half", "sersic_rhalf", "gini_m20_merger", "gini_m20_bulge", "sn_per_pixel")
COLUMNS = STATISTICS + ("flag", "flag_sersic", "ok", "reason", "seconds")
# Threshold in sigmas of the SMOOTHED sky noise (0.24 of the pixel noise, so ~0.7 pixel
# sigma): on pure noise 4% of 100 x 100 stamps get a spurious segment somewhere
# (masked) and none of 200 one at the centre; 1.5 pixel sigmas missed 2 of 8 faint
# r = 22.5 discs entirely at Y1.
DETECT_NSIGMA = 3.0
DETECT_NPIXELS = 10      # smallest source, pixels: a PSF core covers ~10 pixels
SMOOTH_FWHM_PIX = 3.0    # ~ the 0.7" PSF at 0.2"/pixel: a matched filter for faint outskirts
SMOOTH_SIZE_PIX = 5
CENTRE_RADIUS_PIX = 3.0  # the mocks' centres lie within 0.3" (1.5 px) of the stamp centre
PSF_STAMP_PIXELS = 25    # 5": holds 99% of a 0.7" Kolmogorov PSF's light
FLAG_BAD = 2             # statmorph: 0 good, 1 suspect, 2 bad, 4 catastrophic
_FLAG_NAMES = {0: "good", 1: "suspect", 2: "bad", 4: "catastrophic"}
_STATMORPH_NAMES = {"r_half": "rhalf_circ"}
_ARCSEC = ("r_half", "sersic_rhalf")  # statmorph gives pixels


def require():
    """Imports (statmorph, photutils.segmentation), or raises a `ConfigError` saying how to
    install them."""
    try:
        import photutils.segmentation
        import statmorph
    except ImportError as err:
        raise ConfigError(f"classical morphology needs statmorph and photutils, which are not "
                          f"installed ({err}): {EXTRA}", key="morph") from None
    return statmorph, photutils.segmentation


def psf_image(fwhm_r=survey.SEEING_FWHM_ARCSEC, band="r", *, pixel_scale=survey.PIXEL_SCALE_ARCSEC,
              size=PSF_STAMP_PIXELS):
    """The mocks' Kolmogorov PSF in `band` for r-band FWHM `fwhm_r` (arcsec), unit sum.

    Drawn with the pixel response (GalSim's method "auto"), as the mocks are, so that the
    Sersic model statmorph convolves with it is compared with pixels like the mocks'.
    """
    import galsim
    image = galsim.ImageD(size, size, scale=pixel_scale)
    galsim.Kolmogorov(fwhm=survey.seeing_fwhm(fwhm_r, band)).drawImage(image=image, method="auto")
    return image.array / image.array.sum()


# --------------------------------------------------------------------------- one galaxy


def _measure_item(item):
    index, image, settings = item
    return index, _measure_one(image, settings)


def _measure_one(image, s):
    """One galaxy's row (a dict over `COLUMNS`); failures are rows with a reason."""
    start = time.perf_counter()
    row = {name: np.nan for name in STATISTICS}
    row.update(flag=-1, flag_sersic=-1, ok=False, reason="")
    try:
        bad = ~np.isfinite(image)
        image = np.where(bad, 0.0, image).astype(np.float64)
        segmap, label, why = _segment(image, bad, s)
        if label is None:
            row["reason"] = why
        else:
            _statmorph(image, segmap, label, bad, s, row)
    except Exception as err:  # noqa: BLE001 statmorph's asserts and fit errors: keep the galaxy
        row["reason"] = f"statmorph raised: {type(err).__name__}: {err}"
    row["seconds"] = time.perf_counter() - start
    return row


def _detect(image, bad, sigma):
    """photutils' segmentation image of `image` (sky noise `sigma`), or None."""
    from astropy.convolution import convolve
    _, segmentation = require()
    kernel = segmentation.make_2dgaussian_kernel(SMOOTH_FWHM_PIX, size=SMOOTH_SIZE_PIX)
    smoothed = convolve(np.where(bad, np.nan, image), kernel)
    threshold = DETECT_NSIGMA * sigma * float(np.sqrt(np.sum(kernel.array**2)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NoDetectionsWarning: reported as the reason instead
        # Positional n_pixels: photutils 3.0 renamed the keyword (npixels before).
        return segmentation.detect_sources(smoothed, threshold, DETECT_NPIXELS)


def _segment(image, bad, s):
    """(segmentation image, central label, "") or (None, None, why)."""
    segmap = _detect(image, bad, s["sigma"])
    if segmap is None:
        return None, None, (f"no source: segmentation found none ({DETECT_NSIGMA:g} sigma of "
                            f"the smoothed sky noise, {DETECT_NPIXELS} pixels)")
    label = _central_label(segmap.data)
    if label is None:
        count = len(np.unique(segmap.data)) - 1
        return None, None, (f"no central source: segmentation found {count} source(s), none "
                            f"within {CENTRE_RADIUS_PIX:g} pixels of the stamp centre")
    return segmap, label, ""


def _central_label(labels):
    """The label of the labelled pixel nearest the stamp centre, within the radius."""
    h, w = labels.shape
    yy, xx = np.mgrid[:h, :w]
    distance = np.hypot(yy - (h - 1) / 2.0, xx - (w - 1) / 2.0)
    near = (labels > 0) & (distance <= CENTRE_RADIUS_PIX)
    if not near.any():
        return None
    return int(labels[near][np.argmin(distance[near])])


def _statmorph(image, segmap, label, bad, s, row):
    statmorph, _ = require()
    mask = ((segmap.data > 0) & (segmap.data != label)) | bad
    # Weight map = the per-pixel sigma of tfgal's noise model (noise.py): variance
    # (flux + sky) / t in e-/s, the observed pixel standing in for the flux. statmorph's
    # `gain` route (gain = t) gives the same Poisson term but estimates the sky variance
    # from its sky box, a corner of the stamp that large galaxies' wings can reach; the
    # depth gives it exactly.
    weightmap = np.sqrt((np.maximum(image, 0.0) + s["sky"]) / s["exposure"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        morph = statmorph.SourceMorphology(image, segmap, label, mask=mask, weightmap=weightmap,
                                           psf=s["psf"])
    for name in STATISTICS:
        value = float(getattr(morph, _STATMORPH_NAMES.get(name, name)))
        value = np.nan if value == -99.0 else value  # statmorph's "invalid"
        row[name] = value * s["pixel_scale"] if name in _ARCSEC else value
    row.update(flag=int(morph.flag), flag_sersic=int(morph.flag_sersic))
    row["ok"] = row["flag"] < FLAG_BAD
    if not row["ok"]:
        first = next((str(w.message) for w in caught
                      if "Deprecation" not in w.category.__name__), "")
        row["reason"] = (f"statmorph flag {row['flag']} ({_FLAG_NAMES.get(row['flag'], '?')})"
                         + (f": {first}" if first else ""))


# --------------------------------------------------------------------------- many galaxies


def _check_workers(workers, n):
    return max(1, min(pools.check_workers(workers), n))


def _check_images(images, bands, band):
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[-1] != len(bands):
        raise DataError(f"measure needs observed images [N, H, W, {len(bands)}] (bands "
                        f"{tuple(bands)}); received shape {images.shape}", index="images")
    if band not in bands:
        raise ConfigError(f"unknown band {band!r}", key="band", valid=bands)
    return images


def _psf_setting(psf, band, pixel_scale, n):
    """(PSF array, a list of `n` of them, or None; description) from measure's `psf`."""
    if psf is False:
        return None, "none (Sersic n not deconvolved)"
    if not isinstance(psf, (int, float, bool, type(None))) and np.ndim(psf) == 1:
        fwhm = np.asarray(psf, np.float64)
        if fwhm.shape != (n,) or not np.all(np.isfinite(fwhm) & (fwhm > 0)):
            raise DataError(f"psf as per-galaxy FWHMs needs {n} positive values (one per "
                            f"image); received shape {fwhm.shape}", index="psf")
        return ([psf_image(f, band, pixel_scale=pixel_scale) for f in fwhm],
                f"Kolmogorov, each galaxy's own r-band FWHM ({fwhm.min():.3g}-"
                f"{fwhm.max():.3g} arcsec)" if n else "per galaxy (none)")
    if psf is None or psf is True or isinstance(psf, (int, float)):
        fwhm = survey.SEEING_FWHM_ARCSEC if psf is None or psf is True else float(psf)
        return (psf_image(fwhm, band, pixel_scale=pixel_scale),
                f"Kolmogorov, r-band FWHM {fwhm:g} arcsec")
    psf = np.asarray(psf, np.float64)
    if psf.ndim != 2 or not np.isfinite(psf).all() or psf.sum() <= 0:
        raise DataError(f"psf must be a finite 2-D image with a positive sum; received shape "
                        f"{psf.shape}", index="psf")
    return psf / psf.sum(), f"given image {psf.shape[0]}x{psf.shape[1]}"


def measure(images_observed, *, depth, band="r", bands=survey.BANDS,
            pixel_scale=survey.PIXEL_SCALE_ARCSEC, psf=None, workers=None, progress=True,
            pool=None):
    """statmorph measurements of observed galaxies, one row per galaxy, in input order.

    Args:
      images_observed: [N, H, W, C] sky-subtracted e-/s per pixel, NOT stretched (from
        `observe`, or `tfgal.data.load_arrays(..., stretch=stretch.IDENTITY)`).
      depth: the depth they were observed at ("Y10", "Y1", a `survey.Depth`, ...): sets
        the detection threshold and the weight map from the sky and exposure.
      band: the band measured; bands: the channels' bands.
      pixel_scale: arcsec per pixel (radii are returned in arcsec).
      psf: None: the mocks' mean PSF (Kolmogorov, r-band FWHM 0.7", the middle of their
        0.6-0.8") so that statmorph's Sersic fit is PSF-convolved and its n deconvolved; a
        number: that r-band FWHM; a 1-D array of N numbers: each galaxy's own r-band FWHM
        (as mock records store it); a 2-D array: that PSF image; False: no PSF.
      workers: processes (None: all cores; 1: in this process). Results do not depend on it.
        Once TensorFlow is loaded (e.g. by `observe`) they are spawned, not forked, and a
        spawned worker imports the caller's script: guard it with
        ``if __name__ == "__main__":``.
      progress: a progress bar on stderr (True, False, or None: only on a terminal).
      pool: a `worker_pool` to measure in (several calls share its processes); it
        replaces `workers`.

    Returns:
      an `astropy.table.Table` with `COLUMNS` (N rows, failures included) and ``meta``:
      band, depth, pixel scale, PSF, threshold, workers, ``wall_s``,
      ``seconds_per_galaxy`` (mean of the per-galaxy ``seconds``, one process),
      ``n_failed`` and ``failures`` (count per kind of reason), statmorph and photutils
      versions.
    """
    require()  # a clear error before any work
    images = _check_images(images_observed, bands, band)
    b = list(bands).index(band)
    parsed = survey.Depth.parse(depth)
    sky, exposure = _sky_exposure(parsed, band)
    n = images.shape[0]
    psf_array, psf_text = _psf_setting(psf, band, pixel_scale, n)
    settings = {"sky": sky, "exposure": exposure, "pixel_scale": float(pixel_scale),
                "sigma": float(np.sqrt(sky / exposure)), "psf": psf_array}
    workers = (getattr(pool, "_processes", None) if pool is not None
               else _check_workers(workers, max(n, 1)))
    per_galaxy = isinstance(psf_array, list)
    items = ((i, images[i, :, :, b], {**settings, "psf": psf_array[i]} if per_galaxy
              else settings) for i in range(n))
    rows, failed = [None] * n, 0
    start = time.perf_counter()
    with progress_lib.bar(n, f"statmorph {band} {parsed.name}", unit="galaxy",
                          enabled=progress) as bar:
        for index, row in _run(items, workers, pool):
            rows[index] = row
            failed += not row["ok"]
            bar.update(1, failed=failed)
    return _table(rows, {
        "band": band, "depth": parsed.name, "pixel_scale_arcsec": float(pixel_scale),
        "psf": psf_text, "detect_nsigma": DETECT_NSIGMA, "workers": workers,
        "wall_s": time.perf_counter() - start, **versions()})


def _sky_exposure(depth, band):
    """(sky e-/s per pixel, exposure s) of `band` at `depth`: the noise model's."""
    depth = survey.Depth.parse(depth)
    return (float(survey.sky_per_pixel(band)),
            float(depth.exposure_vector()[survey.BANDS.index(band)]))


def worker_pool(workers=None):
    """A process pool for `measure` (None: all cores), to share between calls: spawning
    workers costs seconds, so a study measuring at many depths starts them once. Use it as
    a context manager. See `measure` on spawned workers."""
    workers = pools.check_workers(workers)
    return multiprocessing.get_context(pools.start_method()).Pool(workers)


def _run(items, workers, pool):
    """(index, row) pairs in input order, from this process or a pool."""
    # One galaxy per task: each costs about a second, so pickling 40 kB is negligible.
    if pool is not None:
        yield from pool.imap(_measure_item, items, chunksize=1)
    elif workers == 1:
        yield from map(_measure_item, items)
    else:
        with worker_pool(workers) as own:
            yield from own.imap(_measure_item, items, chunksize=1)


def versions():
    """{"statmorph", "photutils"}: the installed versions (None where missing)."""
    from importlib import metadata
    out = {}
    for name in ("statmorph", "photutils"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _table(rows, meta):
    from astropy.table import Table
    columns = {name: np.array([r[name] for r in rows], np.float64) for name in STATISTICS}
    columns["flag"] = np.array([r["flag"] for r in rows], np.int16)
    columns["flag_sersic"] = np.array([r["flag_sersic"] for r in rows], np.int16)
    columns["ok"] = np.array([r["ok"] for r in rows], bool)
    columns["reason"] = np.array([r["reason"] for r in rows], dtype=str)
    columns["seconds"] = np.array([r["seconds"] for r in rows], np.float64)
    failures = collections.Counter(r["reason"].split(":")[0] for r in rows if not r["ok"])
    meta.update(n=len(rows), n_failed=int(sum(failures.values())), failures=dict(failures),
                seconds_per_galaxy=float(np.mean(columns["seconds"])) if rows else float("nan"))
    return Table(columns, names=COLUMNS, meta=meta)


# --------------------------------------------------------------------------- data and tables


def observe(data, split, depth, n, seed=0, corruption=None, noise_mode="fast"):
    """The first `n` galaxies of `split` observed at `depth`, in e-/s (not stretched).

    Through the study's own pipeline (`pipeline.load_arrays` with the identity stretch), so
    each galaxy has the noise (seeded by seed, depth, galaxy id) that the networks see
    (with the same `noise_mode`).
    `corruption`: a `corruptions.Plan`, or (name, severity); corruptions of the stretched
    display image (jpeg) have no flux-unit image to measure and are refused.

    Returns dict(images [n, H, W, C] float32 e-/s, labels int32, galaxy_id int64,
    psf_fwhm_arcsec where the records hold each galaxy's seeing (pass it to `measure`'s
    psf), and severity with a corruption).
    """
    from tfgal.data import corruptions, pipeline, stretch
    if corruption is not None and not isinstance(corruption, corruptions.Plan):
        name, severity = corruption
        corruption = corruptions.Plan.fixed(name, severity)
    if corruption is not None:
        manifest = data if isinstance(data, Manifest) else Manifest.load(data)
        corruptions.check(corruption.names, manifest)
        shown = [c for c in corruption.names if corruptions.CORRUPTIONS[c].stage == "display"]
        if shown:
            raise ConfigError(f"corruption {shown[0]!r} acts on the stretched display image: "
                              "there is no image in e-/s to measure", key="corruption",
                              valid=[c for c in corruptions.NAMES
                                     if corruptions.CORRUPTIONS[c].stage != "display"])
    return pipeline.load_arrays(data, split, depth, n=n, seed=seed, stretch=stretch.IDENTITY,
                                corruption=corruption, noise_mode=noise_mode)


# --------------------------------------------------------------------------- the networks' clip


def clip_limits(stretch, bands=survey.BANDS):
    """(lo, hi): float32 [C], the per-band clip of an arcsinh stretch in e-/s (-inf / inf
    where it has none); None for the identity stretch (data stretched before import)."""
    if not stretch or stretch.get("kind") != "arcsinh":
        return None
    out = []
    for key, none in (("lo", -np.inf), ("hi", np.inf)):
        values = stretch.get(key) or [None] * len(bands)
        if len(values) != len(bands):
            raise DataError(f"the stretch's {key} has {len(values)} bands, the images "
                            f"{len(bands)} ({tuple(bands)})", index=f"stretch.{key}")
        out.append(np.asarray([none if v is None else v for v in values], np.float32))
    return tuple(out)


def clip_like_stretch(images, stretch, bands=survey.BANDS):
    """`images` [..., C] in e-/s clipped per band exactly as `stretch` clips them before its
    arcsinh (`tfgal.data.stretch.apply_numpy`, float32 limits): the arcsinh is monotonic,
    so the clip is all that the stretch takes away."""
    images = np.asarray(images, np.float32)
    limits = clip_limits(stretch, bands)
    return images if limits is None else np.clip(images, *limits)


def _clip_counts(item):
    # pixels, below lo, above hi, sky pixels, sky pixels below lo (finite pixels only)
    image, lo, hi, sigma = item
    bad = ~np.isfinite(image)
    segmap = _detect(np.where(bad, 0.0, image).astype(np.float64), bad, sigma)
    sky = ~bad if segmap is None else (segmap.data == 0) & ~bad
    below, good = (image < lo) & ~bad, ~bad
    return (int(good.sum()), int(below.sum()), int(((image > hi) & good).sum()),
            int(sky.sum()), int((below & sky).sum()))


def clip_shares(images_observed, *, depth, stretch, band="r", bands=survey.BANDS, pool=None):
    """What `stretch`'s clip takes from the `band` pixels of observed galaxies (e-/s, not
    clipped), pooled over galaxies: ``below_lo`` (share of all pixels under the lower clip),
    ``below_lo_sky`` (of sky pixels: outside every segment of `measure`'s detection at
    `depth`), ``above_hi`` (of all pixels over the upper clip), ``sky`` (share of pixels
    that are sky), ``lo`` and ``hi`` (e-/s). None for the identity stretch. `pool`: a
    `worker_pool` (else in this process)."""
    limits = clip_limits(stretch, bands)
    if limits is None:
        return None
    images = _check_images(images_observed, bands, band)
    b = list(bands).index(band)
    lo, hi = float(limits[0][b]), float(limits[1][b])
    sky, exposure = _sky_exposure(depth, band)
    items = ((images[i, :, :, b], limits[0][b], limits[1][b], float(np.sqrt(sky / exposure)))
             for i in range(images.shape[0]))
    counts = (pool.imap(_clip_counts, items, chunksize=16) if pool is not None
              else map(_clip_counts, items))
    n, below, above, n_sky, below_sky = np.sum([(0,) * 5, *counts], axis=0).tolist()

    def share(k, m):
        return k / m if m else None
    return {"below_lo": share(below, n), "below_lo_sky": share(below_sky, n_sky),
            "above_hi": share(above, n), "sky": share(n_sky, n), "lo": lo, "hi": hi}


TABLE_STATISTICS = ("sersic_n", "concentration", "asymmetry", "smoothness", "gini", "m20",
                    "gini_m20_merger", "gini_m20_bulge", "r_half")


def class_table(measurements, labels, class_names=CLASS_NAMES, literature=LITERATURE):
    """Per class and statistic: median and 16-84% range beside the literature's range.

    Uses galaxies statmorph measured (``ok``; for ``sersic_n`` also ``flag_sersic < 2``);
    ``frac_flagged`` is the class's share of failures (kept, not dropped). Columns
    ``lit_low``, ``lit_high``, ``quoted``, ``refs`` come from `literature` (NaN / "" where
    the literature gives no range), ``inside`` says whether the median falls in it ("yes",
    "no", "" without a range) and ``frac_inside`` which share of the galaxies does.
    """
    from astropy.table import Table
    labels = np.asarray(labels)
    if len(labels) != len(measurements):
        raise DataError(f"{len(labels)} labels for {len(measurements)} measurements",
                        index="labels")
    ok = np.asarray(measurements["ok"], bool)
    rows = []
    for c, name in enumerate(class_names):
        mine = labels == c
        for stat in TABLE_STATISTICS:
            rows.append(_class_row(measurements, stat, name, mine, ok, literature.get(name, {})))
    return Table(rows=rows, names=("class", "statistic", "n", "n_used", "frac_flagged",
                                   "median", "p16", "p84", "lit_low", "lit_high", "inside",
                                   "frac_inside", "quoted", "refs"))


def _class_row(measurements, stat, name, mine, ok, literature):
    used = mine & ok
    if stat == "sersic_n":
        used &= np.asarray(measurements["flag_sersic"]) < FLAG_BAD
    values = np.asarray(measurements[stat], np.float64)[used]
    values = values[np.isfinite(values)]
    median, p16, p84 = (np.percentile(values, [50, 16, 84]) if values.size
                        else (np.nan,) * 3)
    lit = literature.get(stat)
    inside = "" if lit is None or not values.size else ("yes" if lit.contains(median) else "no")
    frac_inside = (float(np.mean([lit.contains(v) for v in values]))
                   if lit is not None and values.size else np.nan)
    n = int(mine.sum())
    return (name, stat, n, int(values.size), float((mine & ~ok).sum() / n) if n else np.nan,
            float(median), float(p16), float(p84),
            lit.low if lit else np.nan, lit.high if lit else np.nan, inside, frac_inside,
            lit.quoted if lit else "", ", ".join(lit.refs) if lit else "")
