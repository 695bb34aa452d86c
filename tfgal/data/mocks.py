"""Mock LSST galaxies rendered with GalSim: tfgal's embedded default data.

Each galaxy is a noiseless 100 x 100 pixel stamp in the g, r and i bands, in e-/s per
pixel at the LSST pixel scale (0.2 arcsec), convolved with a Kolmogorov PSF whose FWHM
scales as lambda^-1/5 from band to band. Noise is added later, on the fly, at whatever
depth an experiment asks for (`tfgal.noise`). Conventions: positions and sizes in arcsec
(stamp centre at the origin), angles in degrees in `MockParams`, magnitudes AB.

Three classes, labelled as in the study (`records.CLASS_NAMES`):

* 0 spiral: a sheared exponential disc (random inclination, cos i uniform), a compact
  Sersic bulge, log-spiral arms (an analytic pattern drawn as an InterpolatedImage) and
  star-forming knots placed along the arms by `galsim.RandomKnots`; blue arms and knots,
  a bluish disc, a red bulge.
* 1 elliptical: one truncated Sersic profile, n = 3-5, axis ratio 0.5-1; red.
* 2 merger: two or three overlapping Sersic galaxies (companions 0.15-0.6 of the
  primary's flux, 0.3-1.2 system half-light radii away) with one or two curved tidal
  tails (Gaussians strung along arcs, partly broken into knots); colours of each
  galaxy drawn from a range spanning blue to red.

Ranges (`MockParams` defaults) and why:

* Total r magnitude 21-24.5 (uniform), half-light radius 1.2-3.5 arcsec (log-uniform),
  position angle 0-180 deg and r-band seeing 0.6-0.8 arcsec FWHM are drawn from the SAME
  distributions for every class, so flux, size or seeing alone do not give the class
  away. The radius is that of the whole galaxy (a spiral's disc grows with its bulge
  fraction to keep it) or, for a merger, of the system, whose galaxies are 0.65-0.95
  times smaller: measured half-light radii then agree between classes to ~5%.
* The classes look alike where they are bright and differ where they are faint: spiral
  bulges hold 10-40% of the light, so spiral cores are about as concentrated as
  ellipticals' and mergers' (Sersic n 2-4.5); what tells the classes apart is the arms
  and knots (20-47% of a spiral's light), the tails (8-20% of a merger's light) and the
  faint companions, or their absence around a smooth elliptical.
* The magnitude range puts those faint features between the two depths. The sky alone
  gives a per-pixel noise of 0.065 e-/s in r at Y10 (5520 s) and 0.20 e-/s at Y1 (552 s).
  An r = 23 spiral's arms spread ~30 e-/s over a few hundred pixels, ~0.1 e-/s per pixel:
  an arm of ~50 pixels has S/N ~12 at Y10 but ~4 at Y1, so Y1 leaves smooth blobs of
  similar size. Brighter than r ~ 20 the structure survives Y1; fainter than r ~ 25 it
  is lost even at Y10.
* Colours overlap on purpose (g-r: ellipticals 0.5-0.9; spiral discs 0.45-0.85 with
  arms 0.2-0.55; merger galaxies 0.35-0.9): spirals are bluer on average, as in nature,
  but colour alone is a weak cue.
* Sersic indices are rounded to 0.1 and profiles truncated at 4.5 half-light radii, so
  GalSim reuses its per-index tables and FFTs stay small.

`tools/check_mock_separability.py` measures the effect (500 galaxies per class):
gradient boosting on CAS-like morphology statistics trained at Y10 scores ~81-85% on
held-out Y10 images but ~56-62% on the same galaxies at Y1 (a pixel-based boosted model
~60-66% -> ~45-49%; the study's CNN 72% -> 43%), while total flux and size alone give
~35-41% and colour alone ~48-52% (chance 33%).

Every random number of a galaxy comes from `np.random.SeedSequence([seed, galaxy_id,
label])`, so a galaxy renders the same in any process and in any order, and `build`
writes the same galaxies in the same order whatever the number of workers. There is
no augmentation: every galaxy is drawn once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import multiprocessing
import os
import shutil
import sys

import galsim
import numpy as np

import tfgal
from tfgal import survey
from tfgal.data import records
from tfgal.data import shards
from tfgal.data import stretch
from tfgal.errors import ConfigError, DataError

STAMP_PIXELS = 100
# Effective wavelengths of the LSST filters, nm; the seeing scales as lambda^-1/5.
EFFECTIVE_WAVELENGTH_NM = {"g": 480.0, "r": 622.0, "i": 754.0}
SEEING_WAVELENGTH_INDEX = -0.2  # Kolmogorov turbulence
# Arms and tails are computed on a grid this many times finer than the pixels so that
# the InterpolatedImage holding them is smooth before the PSF is applied.
PATTERN_OVERSAMPLING = 2
_GRID_STEP_ARCSEC = survey.PIXEL_SCALE_ARCSEC / PATTERN_OVERSAMPLING
SERSIC_N_STEP = 0.1  # GalSim caches one table per index: rounding makes them reusable
BULGE_CENTRAL = 0.5  # share of a bulge's light treated as central when sizing discs
SERSIC_TRUNCATION_HLR = 4.5  # keeps stepk large (small FFTs) and the light on the stamp
STRETCH_SAMPLE = 512  # training galaxies the stretch is fitted on
_PLAN_STREAM = 0x91A7  # spawn key of the label shuffles in `plan`
# Folding and FFT limits: 1% aliasing is far below the Y10 noise and caps FFTs at 1024.
GSPARAMS = galsim.GSParams(maximum_fft_size=1024, folding_threshold=1e-2)


# --------------------------------------------------------------------------- parameters


@dataclasses.dataclass(frozen=True)
class MockParams:
    """Ranges the mock galaxies are drawn from; each (low, high) is sampled uniformly.

    Shared by all classes:
      r_mag: total r-band AB magnitude of the whole system.
      half_light_radius_arcsec: half-light radius of a galaxy (bulge and disc together
        for spirals; the scale of the whole system for mergers), arcsec; log-uniform.
      position_angle_deg: position angle of the major axis, degrees.
      psf_fwhm_arcsec: r-band seeing FWHM, arcsec; g and i scale as lambda^-0.2.
      centre_offset_arcsec: largest shift of the galaxy centre from the stamp centre.
    Ellipticals:
      elliptical_sersic_n: Sersic index.
      elliptical_axis_ratio: projected minor / major axis ratio.
      elliptical_g_minus_r, elliptical_r_minus_i: colours, mag.
    Spirals:
      spiral_inclination_deg: disc inclination (0 face-on); cos i is uniform within.
      spiral_disc_thickness: intrinsic thickness q0 of the disc; the projected axis ratio
        is sqrt(cos^2 i + q0^2 sin^2 i).
      spiral_bulge_fraction, spiral_arm_fraction, spiral_knot_fraction: shares of the
        total flux in the bulge, the arms and the knots (the disc has the rest).
      spiral_bulge_radius_ratio: bulge / disc half-light radius.
      spiral_bulge_sersic_n: bulge Sersic index.
      spiral_arm_count: number of arms (integers, inclusive).
      spiral_arm_pitch_deg: pitch angle of the logarithmic spiral, degrees.
      spiral_arm_sharpness: exponent p of the arm profile ((1 + cos phase) / 2)^p: larger
        is narrower.
      spiral_knot_count: number of star-forming knots (integers, inclusive).
      spiral_disc_g_minus_r, spiral_disc_r_minus_i: disc colours, mag.
      spiral_young_g_minus_r, spiral_young_r_minus_i: arm and knot colours, mag.
      (the bulge takes the elliptical colours)
      knot_sigma_arcsec: Gaussian sigma of a star-forming knot (spirals and tails).
    Mergers:
      merger_galaxy_count: number of merging galaxies (integers, inclusive).
      merger_flux_ratio: flux of each companion / the primary's.
      merger_size_ratio: half-light radius of each galaxy / the system's.
      merger_separation_hlr: distance of each companion from the primary, in units of the
        system's half-light radius.
      merger_sersic_n: Sersic index of each galaxy.
      merger_axis_ratio: axis ratio of each galaxy.
      merger_tail_count: number of tidal tails (integers, inclusive).
      merger_tail_fraction: share of the total flux in the tails.
      merger_tail_knot_fraction: share of the tails' flux in knots along them.
      merger_tail_length_hlr: tail length in system half-light radii.
      merger_tail_curl_deg: angle each tail turns through along its length, degrees.
      merger_tail_width_arcsec: Gaussian sigma of a tail's cross-section at its root.
      merger_g_minus_r, merger_r_minus_i: colours of each galaxy, mag.
      merger_tail_g_minus_r, merger_tail_r_minus_i: tail colours, mag.
    """

    r_mag: tuple = (21.0, 24.5)
    half_light_radius_arcsec: tuple = (1.2, 3.5)
    position_angle_deg: tuple = (0.0, 180.0)
    psf_fwhm_arcsec: tuple = (0.6, 0.8)
    centre_offset_arcsec: float = 0.3

    elliptical_sersic_n: tuple = (3.0, 5.0)
    elliptical_axis_ratio: tuple = (0.5, 1.0)
    elliptical_g_minus_r: tuple = (0.5, 0.9)
    elliptical_r_minus_i: tuple = (0.25, 0.45)

    spiral_inclination_deg: tuple = (0.0, 70.0)
    spiral_disc_thickness: float = 0.15
    spiral_bulge_fraction: tuple = (0.1, 0.4)
    spiral_bulge_radius_ratio: tuple = (0.1, 0.25)
    spiral_bulge_sersic_n: tuple = (2.0, 4.0)
    spiral_arm_fraction: tuple = (0.15, 0.35)
    spiral_knot_fraction: tuple = (0.05, 0.12)
    spiral_arm_count: tuple = (2, 3)
    spiral_arm_pitch_deg: tuple = (12.0, 28.0)
    spiral_arm_sharpness: tuple = (2.0, 6.0)
    spiral_knot_count: tuple = (15, 45)
    spiral_disc_g_minus_r: tuple = (0.45, 0.85)
    spiral_disc_r_minus_i: tuple = (0.2, 0.4)
    spiral_young_g_minus_r: tuple = (0.2, 0.55)
    spiral_young_r_minus_i: tuple = (0.05, 0.3)
    knot_sigma_arcsec: tuple = (0.05, 0.15)

    merger_galaxy_count: tuple = (2, 3)
    merger_flux_ratio: tuple = (0.15, 0.6)
    merger_size_ratio: tuple = (0.65, 0.95)
    merger_separation_hlr: tuple = (0.3, 1.2)
    merger_sersic_n: tuple = (2.0, 4.5)
    merger_axis_ratio: tuple = (0.4, 1.0)
    merger_tail_count: tuple = (1, 2)
    merger_tail_fraction: tuple = (0.08, 0.2)
    merger_tail_knot_fraction: tuple = (0.0, 0.4)
    merger_tail_knot_count: tuple = (5, 15)
    merger_tail_length_hlr: tuple = (1.5, 4.0)
    merger_tail_curl_deg: tuple = (40.0, 120.0)
    merger_tail_width_arcsec: tuple = (0.25, 0.6)
    merger_g_minus_r: tuple = (0.35, 0.9)
    merger_r_minus_i: tuple = (0.15, 0.45)
    merger_tail_g_minus_r: tuple = (0.2, 0.6)
    merger_tail_r_minus_i: tuple = (0.05, 0.3)

    # Hard limits, field -> allowed [low, high]: GalSim's Sersic accepts 0.3 <= n <= 6.2,
    # fractions and axis ratios live in [0, 1], a merger needs two galaxies.
    _LIMITS = {
        "half_light_radius_arcsec": (1e-3, 6.0), "psf_fwhm_arcsec": (0.05, 5.0),
        "elliptical_sersic_n": (0.3, 6.2), "spiral_bulge_sersic_n": (0.3, 6.2),
        "merger_sersic_n": (0.3, 6.2), "elliptical_axis_ratio": (0.05, 1.0),
        "merger_axis_ratio": (0.05, 1.0), "spiral_inclination_deg": (0.0, 89.0),
        "spiral_bulge_fraction": (0.0, 1.0), "spiral_arm_fraction": (0.0, 1.0),
        "spiral_knot_fraction": (0.0, 1.0), "merger_tail_fraction": (0.0, 0.9),
        "merger_tail_knot_fraction": (0.0, 1.0), "merger_flux_ratio": (1e-3, 1.0),
        "spiral_arm_count": (1, 8), "spiral_knot_count": (1, 500),
        "merger_galaxy_count": (2, 6), "merger_tail_count": (0, 4),
        "merger_tail_knot_count": (1, 100), "spiral_arm_pitch_deg": (1.0, 60.0),
        "spiral_arm_sharpness": (0.5, 20.0), "knot_sigma_arcsec": (0.01, 2.0),
        "merger_size_ratio": (0.05, 2.0), "merger_tail_width_arcsec": (0.05, 5.0),
    }

    def __post_init__(self):
        for field in dataclasses.fields(self):
            if isinstance(field.default, tuple):
                value = _check_range(field.name, getattr(self, field.name),
                                     self._LIMITS.get(field.name),
                                     integer=field.name.endswith("_count"))
                # Lists (from JSON) become tuples: the dataclass stays hashable.
                object.__setattr__(self, field.name, value)
        if not 0.0 <= self.spiral_disc_thickness < 1.0:
            raise ConfigError(f"spiral_disc_thickness must be in [0, 1); received "
                              f"{self.spiral_disc_thickness}", key="spiral_disc_thickness")
        if not 0.0 <= self.centre_offset_arcsec <= 5.0:
            raise ConfigError(f"centre_offset_arcsec must be in [0, 5]; received "
                              f"{self.centre_offset_arcsec}", key="centre_offset_arcsec")
        top = (self.spiral_bulge_fraction[1] + self.spiral_arm_fraction[1]
               + self.spiral_knot_fraction[1])
        if top >= 1.0:
            raise ConfigError(f"spiral bulge + arm + knot fractions can reach {top:g}; they "
                              "must stay below 1 to leave light in the disc",
                              key="spiral_arm_fraction")

    @classmethod
    def from_dict(cls, obj):
        """The inverse of `dataclasses.asdict` (lists from JSON become tuples)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(obj) - names)
        if unknown:
            raise ConfigError(f"unknown mock parameters {unknown}", key=unknown[0],
                              valid=sorted(names))
        return cls(**obj)


def _check_range(name, value, limits, integer=False):
    """`value` as a validated (low, high) tuple; ConfigError naming `name` otherwise."""
    try:
        low, high = value
        finite = all(np.isfinite(float(v)) for v in value)
    except (TypeError, ValueError):
        finite = False
    if not finite:
        raise ConfigError(f"{name} must be a finite (low, high) pair; received {value!r}",
                          key=name)
    if integer and not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                           for v in value):
        raise ConfigError(f"{name} must hold integers; received {value!r}", key=name)
    if low > high:
        raise ConfigError(f"{name} has low > high: {value!r}", key=name)
    if limits and (low < limits[0] or high > limits[1]):
        raise ConfigError(f"{name}={value!r} is outside the allowed {limits}", key=name)
    return (int(low), int(high)) if integer else (float(low), float(high))


# --------------------------------------------------------------------------- planning


def plan(n_train, n_val, n_test, seed, class_fractions=None):
    """Which galaxy goes where: a list of (split, galaxy_id, label), in writing order.

    Galaxy ids run 0..N-1 over train, then val, then test. Each split holds the classes in
    the proportions `class_fractions` (spiral, elliptical, merger; balanced by default),
    rounded by largest remainder, in an order shuffled deterministically from `seed`.
    """
    counts = {"train": _check_count("n_train", n_train), "val": _check_count("n_val", n_val),
              "test": _check_count("n_test", n_test)}
    if sum(counts.values()) == 0:
        raise ConfigError("nothing to render: n_train + n_val + n_test is 0", key="n_train")
    fractions = check_class_fractions(class_fractions)
    seed = _check_count("seed", seed)
    rows = []
    for stream, split in enumerate(records.SPLITS):
        n = counts[split]
        labels = np.repeat(np.arange(len(fractions)), _apportion(n, fractions))
        # A stream per split (a split's order does not change when another one grows),
        # keyed apart from the galaxies' SeedSequence([seed, galaxy_id, label]).
        order = np.random.SeedSequence(seed, spawn_key=(_PLAN_STREAM, stream))
        np.random.default_rng(order).shuffle(labels)
        first = len(rows)
        rows.extend((split, first + i, int(label)) for i, label in enumerate(labels))
    return rows


def check_class_fractions(class_fractions):
    """Validated class fractions as a float tuple (balanced when None)."""
    n_classes = len(records.CLASS_NAMES)
    if class_fractions is None:
        return (1.0 / n_classes,) * n_classes
    try:
        fractions = tuple(float(f) for f in class_fractions)
    except (TypeError, ValueError):
        raise ConfigError(f"class_fractions must be {n_classes} numbers; received "
                          f"{class_fractions!r}", key="class_fractions") from None
    if len(fractions) != n_classes:
        raise ConfigError(f"class_fractions needs one value per class {records.CLASS_NAMES}; "
                          f"received {fractions}", key="class_fractions")
    if not all(np.isfinite(f) and f >= 0 for f in fractions):
        raise ConfigError(f"class_fractions must be finite and >= 0; received {fractions}",
                          key="class_fractions")
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ConfigError(f"class_fractions must sum to 1; received {fractions} "
                          f"(sum {sum(fractions):g})", key="class_fractions")
    return fractions


def _apportion(n, fractions):
    """Integer counts summing to `n` closest to n * fractions (largest remainder)."""
    fractions = np.asarray(fractions, np.float64)
    # Renormalised: fractions summing to 1 + 1e-7 must not hand out n + 1 galaxies.
    exact = n * fractions / fractions.sum()
    counts = np.floor(exact).astype(np.int64)
    # Ties go to the lower class index: stable sort of the negated remainders.
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    return counts


def _check_count(name, n):
    """`n` as an int if it is an integer >= 0 (a count, seed or id); ConfigError otherwise."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ConfigError(f"{name} must be an integer >= 0; received {name}={n!r}", key=name)
    return int(n)


# --------------------------------------------------------------------------- one galaxy


def render_galaxy(galaxy_id, label, seed, params=MockParams()):
    """The noiseless image of one galaxy: float32 (100, 100, 3), g r i, e-/s per pixel."""
    components, props = _design(galaxy_id, label, seed, params)
    return _draw(components, props["psf_fwhm_arcsec"])


def describe(galaxy_id, label, seed, params=MockParams()):
    """The drawn properties of a galaxy (r_mag, half_light_radius_arcsec, ...), no image."""
    return _design(galaxy_id, label, seed, params)[1]


def _design(galaxy_id, label, seed, params):
    if not isinstance(params, MockParams):
        raise ConfigError(f"params must be a MockParams; received {type(params).__name__}",
                          key="params")
    if label not in (0, 1, 2):
        raise ConfigError(f"label must be 0, 1 or 2 {records.CLASS_NAMES}; received {label!r}",
                          key="label")
    rng = np.random.default_rng(np.random.SeedSequence(
        [_check_count("seed", seed), _check_count("galaxy_id", galaxy_id), int(label)]))
    props = _common(rng, params)
    props["label"] = int(label)
    maker = (_spiral, _elliptical, _merger)[int(label)]
    return maker(rng, props, params), props


def _common(rng, p):
    """Properties every class draws from the same distributions."""
    r_mag = rng.uniform(*p.r_mag)
    log_radius = rng.uniform(*np.log10(p.half_light_radius_arcsec))
    return {
        "r_mag": float(r_mag),
        "half_light_radius_arcsec": float(10**log_radius),
        "position_angle_rad": float(np.deg2rad(rng.uniform(*p.position_angle_deg))),
        "psf_fwhm_arcsec": float(rng.uniform(*p.psf_fwhm_arcsec)),
        "centre_arcsec": tuple(float(v) for v in rng.uniform(
            -p.centre_offset_arcsec, p.centre_offset_arcsec, 2)),
        "galsim_seed": int(rng.integers(1, 2**31 - 1)),
    }


def _band_fluxes(r_flux, g_minus_r, r_minus_i):
    """Fluxes (e-/s) in each band of a component with r-band flux `r_flux` and colours."""
    # Ratios of fluxes at one magnitude offset: no logarithm, so zero flux stays zero.
    offset = {"g": g_minus_r, "r": 0.0, "i": -r_minus_i}
    unit_r = survey.mag_to_flux(0.0, "r")
    return np.array([r_flux * survey.mag_to_flux(offset[b], b) / unit_r
                     for b in survey.BANDS], np.float64)


def _sersic(n, half_light_radius):
    n = round(float(n) / SERSIC_N_STEP) * SERSIC_N_STEP
    return galsim.Sersic(n, half_light_radius=half_light_radius,
                         trunc=SERSIC_TRUNCATION_HLR * half_light_radius, gsparams=GSPARAMS)


def _elliptical(rng, props, p):
    r_flux = survey.mag_to_flux(props["r_mag"], "r")
    hlr = props["half_light_radius_arcsec"]
    shape = _sersic(rng.uniform(*p.elliptical_sersic_n), hlr).shear(
        q=rng.uniform(*p.elliptical_axis_ratio),
        beta=props["position_angle_rad"] * galsim.radians)
    colour = _band_fluxes(r_flux, rng.uniform(*p.elliptical_g_minus_r),
                          rng.uniform(*p.elliptical_r_minus_i))
    return [(shape.shift(*props["centre_arcsec"]), colour)]


# --------------------------------------------------------------------------- spirals


def _spiral(rng, props, p):
    r_flux = survey.mag_to_flux(props["r_mag"], "r")
    hlr = props["half_light_radius_arcsec"]
    cos_i = rng.uniform(math.cos(math.radians(p.spiral_inclination_deg[1])),
                        math.cos(math.radians(p.spiral_inclination_deg[0])))
    q = math.sqrt(cos_i**2 + p.spiral_disc_thickness**2 * (1.0 - cos_i**2))
    beta = props["position_angle_rad"]
    centre = props["centre_arcsec"]
    f_bulge, f_arm, f_knot = (rng.uniform(*p.spiral_bulge_fraction),
                              rng.uniform(*p.spiral_arm_fraction),
                              rng.uniform(*p.spiral_knot_fraction))
    shear = galsim.Shear(q=q, beta=beta * galsim.radians)
    scale_radius = _disc_scale_radius(hlr, f_bulge)
    disc = galsim.Exponential(scale_radius=scale_radius, gsparams=GSPARAMS).shear(shear)
    bulge = _sersic(rng.uniform(*p.spiral_bulge_sersic_n),
                    hlr * rng.uniform(*p.spiral_bulge_radius_ratio)).shear(shear)
    arms = _arm_pattern(rng, p, scale_radius, q, beta, centre)
    knots = _knot_pattern(rng, p, arms, _integer(rng, p.spiral_knot_count),
                          props["galsim_seed"])
    props.update(inclination_deg=math.degrees(math.acos(cos_i)), axis_ratio=q)
    disc_colour = (rng.uniform(*p.spiral_disc_g_minus_r), rng.uniform(*p.spiral_disc_r_minus_i))
    bulge_colour = (rng.uniform(*p.elliptical_g_minus_r), rng.uniform(*p.elliptical_r_minus_i))
    components = [
        (disc.shift(*centre), _band_fluxes(r_flux * (1 - f_bulge - f_arm - f_knot),
                                           *disc_colour)),
        (bulge.shift(*centre), _band_fluxes(r_flux * f_bulge, *bulge_colour)),
    ]
    young = _band_fluxes(r_flux * (f_arm + f_knot), rng.uniform(*p.spiral_young_g_minus_r),
                         rng.uniform(*p.spiral_young_r_minus_i))
    if f_arm + f_knot > 0:
        pattern = _mix(arms, knots, f_knot / (f_arm + f_knot))
        components.append((_as_profile(pattern), young))
    return components


def _disc_scale_radius(half_light_radius, bulge_fraction):
    """Exponential scale length giving the disc + bulge galaxy `half_light_radius`.

    With a share B of the light at the centre, the disc must hold (0.5 - B) / (1 - B) of
    its light inside the radius, where an exponential disc holds 1 - (1 + x) e^-x at
    x = radius / scale length. Only half the bulge counts as central (`BULGE_CENTRAL`):
    it has a size, and the arms' inner taper moves light outwards; so calibrated, the
    measured half-light radii of the three classes agree to ~5%. Without this a bulgy
    spiral would look smaller than an elliptical of the same drawn radius, and size
    alone would hint at the class.
    """
    central = BULGE_CENTRAL * bulge_fraction
    inside = max(0.5 - central, 0.02) / (1.0 - central)
    x = np.linspace(0.0, 12.0, 4801)
    return half_light_radius / float(np.interp(inside, 1.0 - (1.0 + x) * np.exp(-x), x))


def _integer(rng, bounds):
    return int(rng.integers(bounds[0], bounds[1] + 1))


def _grid():
    """Stamp coordinates (x, y), arcsec, of the pattern grid's cell centres."""
    n = STAMP_PIXELS * PATTERN_OVERSAMPLING
    axis = (np.arange(n) - (n - 1) / 2.0) * _GRID_STEP_ARCSEC
    return axis, axis


def _arm_pattern(rng, p, scale_radius, q, beta, centre):
    """Log-spiral arms riding on an exponential disc, seen at axis ratio q, PA beta.

    The face-on surface brightness is exp(-r/rd) ((1 + cos psi) / 2)^sharpness with arm
    phase psi = m (theta - ln(r/rd) / tan(pitch) - theta0), faded towards the centre where
    the bulge sits. Sky coordinates are mapped back to the disc plane with the inverse of
    GalSim's area-preserving shear, so the arms line up with the sheared disc.
    """
    x, y = _grid()
    x, y = np.meshgrid(x - centre[0], y - centre[1])  # array[y, x], as GalSim images are
    u = (x * math.cos(beta) + y * math.sin(beta)) * math.sqrt(q)
    v = (-x * math.sin(beta) + y * math.cos(beta)) / math.sqrt(q)
    r = np.hypot(u, v) + 1e-3 * scale_radius
    theta = np.arctan2(v, u)
    m = _integer(rng, p.spiral_arm_count)
    pitch = math.radians(rng.uniform(*p.spiral_arm_pitch_deg))
    phase = m * (theta - np.log(r / scale_radius) / math.tan(pitch) - rng.uniform(0, 2 * np.pi))
    arms = ((1.0 + np.cos(phase)) / 2.0) ** rng.uniform(*p.spiral_arm_sharpness)
    inner = 1.0 - np.exp(-((r / (0.8 * scale_radius)) ** 2))
    return arms * inner * np.exp(-r / scale_radius)


def _knot_pattern(rng, p, pattern, n_knots, galsim_seed):
    """Compact clumps placed by `galsim.RandomKnots` where `pattern` is bright.

    RandomKnots only chooses the positions: drawn as its own profile, each knot is a delta
    function evaluated over the whole k-space grid, which costs more than the rest of the
    galaxy together. As small Gaussians inside the pattern they cost nothing extra.
    """
    k = PATTERN_OVERSAMPLING
    # Positions are photon-shot from the pattern binned to the stamp's pixels: four times
    # fewer cells to set up, and the sub-pixel spread comes from the interpolant.
    binned = pattern.reshape(STAMP_PIXELS, k, STAMP_PIXELS, k).sum(axis=(1, 3))
    profile = galsim.InterpolatedImage(
        galsim.ImageD(binned, scale=survey.PIXEL_SCALE_ARCSEC), flux=1.0,
        calculate_stepk=False, calculate_maxk=False, gsparams=GSPARAMS)
    points = galsim.RandomKnots(n_knots, profile=profile, rng=galsim.BaseDeviate(galsim_seed),
                                gsparams=GSPARAMS).points
    sigma = np.full(n_knots, rng.uniform(*p.knot_sigma_arcsec))
    # Clump luminosities are heavy-tailed: a few bright knots, many faint ones.
    return _gaussians(points[:, 0], points[:, 1], sigma, rng.exponential(size=n_knots))


def _gaussians(cx, cy, sigma, flux):
    """Round Gaussians (centres and sigma in arcsec, fluxes) summed on the pattern grid."""
    x, y = _grid()
    gx = np.exp(-0.5 * ((x[None, :] - cx[:, None]) / sigma[:, None]) ** 2)
    gy = np.exp(-0.5 * ((y[None, :] - cy[:, None]) / sigma[:, None]) ** 2)
    norm = flux * _GRID_STEP_ARCSEC**2 / (2 * np.pi * sigma**2)
    # Separable: the sum of K Gaussians is K outer products, done by einsum without BLAS
    # (OpenBLAS threads make this small product 30 times slower on a busy machine).
    return np.einsum("ky,kx->yx", gy * norm[:, None], gx)


def _mix(smooth, clumps, clump_fraction):
    """Both patterns scaled to unit sum and mixed: a pattern whose clumps hold the fraction."""
    return ((1.0 - clump_fraction) * smooth / smooth.sum()
            + clump_fraction * clumps / clumps.sum())


def _as_profile(pattern):
    """A unit-flux GalSim profile from a non-negative pattern on the oversampled grid."""
    image = galsim.ImageD(np.ascontiguousarray(pattern), scale=_GRID_STEP_ARCSEC)
    # The pattern spans the stamp: its own extent sets stepk and the PSF sets maxk, so
    # GalSim's costly searches for both are skipped.
    return galsim.InterpolatedImage(image, flux=1.0, pad_factor=2, calculate_stepk=False,
                                    calculate_maxk=False, gsparams=GSPARAMS)


# --------------------------------------------------------------------------- mergers


def _merger(rng, props, p):
    r_flux = survey.mag_to_flux(props["r_mag"], "r")
    hlr = props["half_light_radius_arcsec"]
    n_gal = _integer(rng, p.merger_galaxy_count)
    weights = np.concatenate([[1.0], rng.uniform(*p.merger_flux_ratio, n_gal - 1)])
    positions = _merger_positions(rng, p, hlr, n_gal, props["position_angle_rad"])
    # The system's light centre, not the primary, sits at the (offset) stamp centre.
    positions += props["centre_arcsec"] - np.average(positions, axis=0, weights=weights)
    n_tail = _integer(rng, p.merger_tail_count)
    f_tail = rng.uniform(*p.merger_tail_fraction) if n_tail else 0.0
    fluxes = r_flux * (1.0 - f_tail) * weights / weights.sum()
    components = []
    for flux, position in zip(fluxes, positions):
        n = rng.uniform(*p.merger_sersic_n)
        radius = hlr * rng.uniform(*p.merger_size_ratio)
        shape = _sersic(n, radius).shear(q=rng.uniform(*p.merger_axis_ratio),
                                         beta=rng.uniform(0, np.pi) * galsim.radians)
        colour = _band_fluxes(flux, rng.uniform(*p.merger_g_minus_r),
                              rng.uniform(*p.merger_r_minus_i))
        components.append((shape.shift(*position), colour))
    if n_tail:
        colour = _band_fluxes(r_flux * f_tail, rng.uniform(*p.merger_tail_g_minus_r),
                              rng.uniform(*p.merger_tail_r_minus_i))
        components.append((_tails(rng, p, props, positions, hlr, n_tail), colour))
    props.update(n_galaxies=n_gal, n_tails=n_tail, tail_fraction=float(f_tail))
    return components


def _merger_positions(rng, p, hlr, n_gal, angle):
    """Primary at the origin, companions `merger_separation_hlr` system radii away."""
    positions = np.zeros((n_gal, 2))
    for k in range(1, n_gal):
        distance = hlr * rng.uniform(*p.merger_separation_hlr)
        direction = angle + (k - 1) * rng.uniform(0.5 * np.pi, 1.5 * np.pi)
        positions[k] = distance * np.array([math.cos(direction), math.sin(direction)])
    return positions


def _tails(rng, p, props, positions, hlr, n_tail):
    """`n_tail` tidal tails (smooth arcs plus knots along them) as one unit-flux profile."""
    start = rng.uniform(0, 2 * np.pi)
    curl = math.radians(rng.uniform(*p.merger_tail_curl_deg)) * rng.choice([-1.0, 1.0])
    # Tails leave from alternate galaxies in opposite directions, curling the same way:
    # the S-shaped pairs of real major mergers.
    pattern = sum(_tail_pattern(rng, p, positions[k % len(positions)], start + k * np.pi,
                                curl, hlr) for k in range(n_tail))
    knots = _knot_pattern(rng, p, pattern, _integer(rng, p.merger_tail_knot_count),
                          props["galsim_seed"])
    return _as_profile(_mix(pattern, knots, rng.uniform(*p.merger_tail_knot_fraction)))


def _tail_pattern(rng, p, root, direction, curl, hlr, n_points=48):
    """Gaussians strung along an arc that starts near `root` and turns by `curl` rad.

    Brightness fades and width grows along the tail, as for stars flung out by tides.
    """
    t = np.linspace(0.0, 1.0, n_points)
    length = hlr * rng.uniform(*p.merger_tail_length_hlr)
    radius = 0.5 * hlr + length * t
    angle = direction + curl * t
    sigma = rng.uniform(*p.merger_tail_width_arcsec) * (1.0 + t)
    return _gaussians(root[0] + radius * np.cos(angle), root[1] + radius * np.sin(angle),
                      sigma, np.exp(-1.5 * t))


# --------------------------------------------------------------------------- drawing


def _psf(fwhm_r, band):
    """Kolmogorov PSF in `band` for r-band seeing `fwhm_r` arcsec."""
    ratio = EFFECTIVE_WAVELENGTH_NM[band] / EFFECTIVE_WAVELENGTH_NM["r"]
    return galsim.Kolmogorov(fwhm=fwhm_r * ratio**SEEING_WAVELENGTH_INDEX, gsparams=GSPARAMS)


def _draw(components, fwhm_r):
    """Draws (profile, fluxes per band) components through each band's PSF."""
    out = np.empty((STAMP_PIXELS, STAMP_PIXELS, len(survey.BANDS)), np.float32)
    for b, band in enumerate(survey.BANDS):
        galaxy = galsim.Add([shape * fluxes[b] for shape, fluxes in components])
        image = galsim.ImageF(STAMP_PIXELS, STAMP_PIXELS, scale=survey.PIXEL_SCALE_ARCSEC)
        galsim.Convolve(galaxy, _psf(fwhm_r, band), gsparams=GSPARAMS).drawImage(
            image=image, method="auto")
        out[..., b] = image.array
    # FFT ringing leaves ~1e-6 relative negatives far from the galaxy: not real flux.
    np.maximum(out, 0.0, out=out)
    return out


# --------------------------------------------------------------------------- datasets


def render_many(items, seed, params=MockParams(), *, workers=None, chunksize=None):
    """Renders (galaxy_id, label) pairs, yielding images in the order given.

    Args:
      items: sequence of (galaxy_id, label).
      workers: processes (None: all cores; 1: in this process).
      chunksize: galaxies per task sent to a worker (default: a few tasks per worker).
    """
    items = [(int(g), int(lab)) for g, lab in items]
    workers = _check_workers(workers)
    if workers == 1 or len(items) <= 1:
        for galaxy_id, label in items:
            yield render_galaxy(galaxy_id, label, seed, params)
        return
    if chunksize is None:
        # Small enough to balance the load and keep the writer busy, large enough that
        # pickling overhead stays negligible.
        chunksize = max(1, min(16, len(items) // (8 * workers)))
    context = multiprocessing.get_context(_start_method())
    with context.Pool(workers, initializer=_init_worker, initargs=(seed, params)) as pool:
        yield from pool.imap(_render_item, items, chunksize=chunksize)


def _start_method():
    # Fork is fast and needs no `if __name__ == "__main__"` guard in the caller's script,
    # but forking a process where TensorFlow's thread pools run can deadlock the child.
    # Either way every galaxy renders the same bytes.
    if "tensorflow" in sys.modules or "fork" not in multiprocessing.get_all_start_methods():
        return "spawn"
    return "fork"


_WORKER = {}


def _init_worker(seed, params):
    _WORKER.update(seed=seed, params=params)


def _render_item(item):
    return render_galaxy(item[0], item[1], _WORKER["seed"], _WORKER["params"])


def _check_workers(workers):
    if workers is None:
        return os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ConfigError(f"workers must be an integer >= 1 or None; received "
                          f"workers={workers!r}", key="workers")
    return int(workers)


def build(out, *, n_train, n_val, n_test, seed, workers=None, class_fractions=None,
          shard_size=records.DEFAULT_SHARD_SIZE, compression="GZIP", overwrite=False,
          params=None, progress=True, shard=None):
    """Renders a mock dataset into `out` and returns its manifest.

    Galaxies are written in `plan` order; the arcsinh stretch is fitted on the first (up
    to 512) training galaxies observed at Y10 with noise seeded by `seed`. With no
    training galaxies the manifest's stretch is None (fitting it on val or test would
    leak their statistics). The same arguments write the same bytes for any `workers`,
    any process and any sharding.

    Args:
      out: dataset directory to create.
      n_train, n_val, n_test: galaxies per split (integers >= 0).
      seed: integer >= 0; sets the plan, every galaxy and the stretch's noise.
      workers: rendering processes (None: all cores; 1: in this process).
      class_fractions: spiral, elliptical, merger fractions summing to 1 (None: balanced).
      shard_size: galaxies per record file; compression: "GZIP" or "".
      overwrite: replace an existing dataset at `out`.
      params: a `MockParams` (None: the defaults).
      progress: show a tqdm progress bar (galaxies done, rate).
      shard: (I, N) to render only part I of N into `out` (for job arrays or several
        machines; `merge(out)` then writes the manifest); None for the whole dataset.
    Returns:
      the `records.Manifest`, or None for a part.
    """
    params = MockParams() if params is None else params
    if not isinstance(params, MockParams):
        raise ConfigError(f"params must be a MockParams; received {type(params).__name__}",
                          key="params")
    rows = plan(n_train, n_val, n_test, seed, class_fractions)
    workers = _check_workers(workers)
    if shard_size < 1:
        raise ConfigError(f"shard_size must be >= 1; received {shard_size}", key="shard_size")
    settings = {"n_train": n_train, "n_val": n_val, "n_test": n_test, "seed": seed,
                "class_fractions": class_fractions, "shard_size": shard_size,
                "compression": compression, "params": dataclasses.asdict(params)}
    if shard is not None:
        _build_part(out, *shard, rows, settings, params, workers, progress)
        return None
    out = os.path.abspath(os.fspath(out))
    if os.path.exists(out) and os.listdir(out) and not overwrite:
        raise DataError("output directory exists and is not empty (use overwrite)", path=out)
    tmp = f"{out}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _build_part(tmp, 0, 1, rows, settings, params, workers, progress)
        merge(tmp)
        records.publish_directory(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return records.Manifest.load(out)  # as every later reader sees it (JSON types)


def _split_rows(rows):
    """Split -> [(galaxy_id, label)], for the splits that have galaxies."""
    by_split = {split: [] for split in records.SPLITS}
    for split, galaxy_id, label in rows:
        by_split[split].append((galaxy_id, label))
    return {split: items for split, items in by_split.items() if items}


def _build_part(out, part, n_parts, rows, settings, params, workers, progress):
    """Renders the record files of part `part` of `n_parts` (see `tfgal.shards`)."""
    from tqdm.auto import tqdm

    by_split = _split_rows(rows)
    specs = shards.layout({s: len(v) for s, v in by_split.items()}, settings["shard_size"],
                          settings["compression"])
    mine = shards.assigned(specs, part, n_parts)
    items = [item for spec in mine for item in by_split[spec.split][spec.start:spec.stop]]
    entries = []
    desc = "rendering" if n_parts == 1 else f"rendering part {part}/{n_parts}"
    # closing(): an error while writing stops the worker pool at once, not at exit.
    with tqdm(total=len(items), unit="gal", desc=desc, disable=not progress) as bar, \
            contextlib.closing(render_many(items, settings["seed"], params,
                                           workers=workers)) as rendered:
        for spec in mine:
            galaxies = []
            for galaxy_id, label in by_split[spec.split][spec.start:spec.stop]:
                galaxies.append(({records.FLUX: next(rendered)}, label, galaxy_id))
                bar.update(1)
            entries.append(shards.write_file(
                out, spec, galaxies, noiseless=True, image_shape=(STAMP_PIXELS, STAMP_PIXELS,
                                                                  len(survey.BANDS)),
                n_classes=len(records.CLASS_NAMES)))
    shards.write_part_record(out, part, n_parts, settings, entries)


def merge(out):
    """Writes the manifest of a mock dataset rendered in parts; returns it.

    Checks that every part is present and valid, then fits the stretch on the first (up
    to 512) training galaxies, exactly as an unsharded build does.
    """
    settings, _ = shards.collect(out)
    params = MockParams.from_dict(settings["params"])
    rows = plan(settings["n_train"], settings["n_val"], settings["n_test"], settings["seed"],
                settings["class_fractions"])
    by_split = _split_rows(rows)

    def fit_stretch(manifest):
        if "train" not in manifest.splits:
            return None
        sample = shards.first_images(manifest, "train", records.FLUX, STRETCH_SAMPLE)
        return stretch.fit(sample, noiseless=True, depth="Y10", seed=settings["seed"])

    return shards.merge(
        out, images={records.FLUX: {"noise": False, "units": "e-/s per pixel"}},
        image_shape=(STAMP_PIXELS, STAMP_PIXELS, len(survey.BANDS)),
        class_names=records.CLASS_NAMES, split_counts={s: len(v) for s, v in by_split.items()},
        shard_size=settings["shard_size"], compression=settings["compression"],
        fit_stretch=fit_stretch,
        generator=_generator_info(rows, settings["seed"], params, settings["class_fractions"]))


def _generator_info(rows, seed, params, class_fractions):
    counts = {}
    for split, _, label in rows:
        counts.setdefault(split, [0] * len(records.CLASS_NAMES))[label] += 1
    return {"name": "tfgal.mocks", "tfgal_version": tfgal.__version__,
            "galsim_version": galsim.__version__, "seed": int(seed),
            "params": dataclasses.asdict(params),
            "class_fractions": list(check_class_fractions(class_fractions)),
            "counts": counts}
