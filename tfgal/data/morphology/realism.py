"""Do the mock classes measure like the real galaxies they are named for? Like for like.

The same mock galaxies are measured by statmorph (`measurements.measure`, each galaxy with
its own PSF) at three depths:

* ``high``: the noiseless stamp with a small noise floor, the sky noise of `HIGH_SN_YEARS`
  of the survey (a hundredth of Y10's): the generator's own morphology, as a bright,
  well-observed galaxy of that shape would show it at LSST's pixels and seeing;
* ``Y10`` and ``Y1``: what the survey's depth does to the measurement.

Per class the fourteen `CELLS` (statistic, class) are set beside the literature's ranges
(`literature.LITERATURE`), which were measured on bright, well-resolved galaxies; only the
``high`` column is a like-for-like test of the generator (`count_inside`), the survey
depths show how far the measurement drifts from it (asymmetry and smoothness fall below
zero with statmorph's background correction, concentration drops as noise hides the
outskirts). ``tools/check_mock_realism.py`` runs it on one or several source trees.
"""

from __future__ import annotations

import numpy as np

from tfgal import survey
from tfgal.data.manifest import CLASS_NAMES
from tfgal.data.morphology import measurements
from tfgal.data.morphology.literature import LITERATURE
from tfgal.errors import ConfigError

__all__ = ["HIGH_SN_YEARS", "DEPTHS", "CELLS", "sample", "render", "observe", "measure_depths",
           "summarise", "count_inside", "markdown"]

HIGH_SN_YEARS = 1e5  # noise floor: a hundredth of Y10's sky noise
DEPTHS = ("high", "Y10", "Y1")
# The fourteen cells of the realism test: Sersic n has no merger range.
CELLS = tuple((c, s) for c in CLASS_NAMES
              for s in ("sersic_n", "concentration", "asymmetry", "smoothness",
                        "gini_m20_merger") if s in LITERATURE[c])
_NOISE_SALT = 0x5EA1  # the realism check's noise stream, apart from the study's


def depth_of(name):
    """The `survey.Depth` of a column name of `DEPTHS` (or any depth spec)."""
    if name == "high":
        return survey.Depth.from_years(HIGH_SN_YEARS, name="high")
    return survey.Depth.parse(name)


def sample(n_per_class, first_id=0):
    """(galaxy_id, label) of `n_per_class` galaxies per class, labels in turn."""
    if int(n_per_class) < 1:
        raise ConfigError(f"n_per_class must be >= 1; received {n_per_class}",
                          key="n_per_class")
    n = int(n_per_class) * len(CLASS_NAMES)
    return [(first_id + i, i % len(CLASS_NAMES)) for i in range(n)]


def render(items, seed, params=None):
    """Noiseless stamps [N, H, W, C] (e-/s), labels [N] and each r-band PSF FWHM [N]."""
    from tfgal.data import mock
    params = mock.MockParams() if params is None else params
    images, fwhm = [], []
    for galaxy_id, label in items:
        image, props = mock.render(galaxy_id, label, seed, params)
        images.append(image)
        fwhm.append(props["psf_fwhm_arcsec"])
    return (np.stack(images), np.array([lab for _, lab in items], np.int32),
            np.array(fwhm, np.float64))


def observe(images, depth, seed, galaxy_ids):
    """`images` observed at `depth` with the noise model of `tfgal.data.noise` (e-/s,
    sky-subtracted); each galaxy's noise from (seed, galaxy id), the same at every depth's
    quantiles so that depths differ by depth alone."""
    from tfgal.data import noise
    depth = depth_of(depth)
    out = np.empty_like(images)
    for k, galaxy_id in enumerate(galaxy_ids):
        out[k] = np.asarray(noise.poisson_observe(
            images[k], depth.exposure_vector(), survey.sky_vector(),
            (int(seed) * 1_000_003 + _NOISE_SALT, int(galaxy_id))))
    return out


def measure_depths(images, psf_fwhm, galaxy_ids, *, seed=0, depths=DEPTHS, pool=None,
                   progress=True):
    """depth -> `measurements.measure` table of the galaxies observed there."""
    return {d: measurements.measure(observe(images, d, seed, galaxy_ids), depth=depth_of(d),
                                    psf=np.asarray(psf_fwhm), pool=pool, progress=progress)
            for d in depths}


def summarise(tables, labels):
    """{depth: {class: {statistic: row}}} from `measurements.class_table` per depth, rows
    as dicts (median, p16, p84, n_used, frac_flagged, lit_low, lit_high, inside, ...)."""
    out = {}
    for depth, table in tables.items():
        rows = measurements.class_table(table, labels)
        per = out.setdefault(depth, {})
        for r in rows:
            per.setdefault(r["class"], {})[r["statistic"]] = {
                c: (r[c].item() if hasattr(r[c], "item") else r[c]) for c in rows.colnames}
    return out


def count_inside(summary, depth="high"):
    """(cells whose median is inside the literature's range, len(CELLS)) at `depth`."""
    rows = summary[depth]
    return sum(rows[c][s]["inside"] == "yes" for c, s in CELLS), len(CELLS)


_NAMES = {"sersic_n": "Sérsic n", "concentration": "C", "asymmetry": "A",
          "smoothness": "S", "gini_m20_merger": "Gini-M20 merger statistic"}


def markdown(summary, title="", depths=DEPTHS):
    """The like-for-like table: one row per cell, median [16%, 84%] per depth (a tick
    where the median is inside the range), the literature's range and its sample."""
    head = ["class", "statistic"] + [_depth_label(d) for d in depths] + ["literature"]
    lines = ([f"**{title}**", ""] if title else []) + [
        "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for c, s in CELLS:
        cells = []
        for d in depths:
            r = summary[d][c][s]
            mark = " ✓" if r["inside"] == "yes" else ""
            cells.append(f"{r['median']:.2f} [{r['p16']:.2f}, {r['p84']:.2f}]{mark}")
        lit = LITERATURE[c][s]
        lines.append(f"| {c} | {_NAMES[s]} | " + " | ".join(cells)
                     + f" | {_range(lit)} ({lit.quoted}; {', '.join(lit.refs)}) |")
    counts = ", ".join(f"{_depth_label(d)} {count_inside(summary, d)[0]}" for d in depths)
    lines += ["", f"Cells inside the literature's ranges (of {len(CELLS)}): {counts}."]
    return "\n".join(lines)


def _depth_label(d):
    return f"high S/N ({HIGH_SN_YEARS:g} y)" if d == "high" else d


def _range(lit):
    if np.isinf(lit.low):
        return f"< {lit.high:g}"
    if np.isinf(lit.high):
        return f"> {lit.low:g}"
    return f"{lit.low:g} to {lit.high:g}"
