"""Mock galaxy parameters: the ranges galaxies are drawn from, why, and the split plan.

Three classes, labelled as in the study (`manifest.CLASS_NAMES`): 0 spiral, 1 elliptical,
2 merger (what each looks like: `tfgal.data.mock.galaxies`).

Ranges (`MockParams` defaults) and why (mock version 2; `tools/check_mock_realism.py`
measures the result against real galaxies with statmorph, README "Mock galaxies"):

* Shared by every class, so that flux, size or seeing alone do not give the class away
  (in nature early types are somewhat more compact at a given luminosity: a difference
  from the real sky, kept so that the classes differ in morphology only):
  - r magnitude 21-24.5 drawn from dN/dm proportional to 10^(0.3 m), about the slope of
    galaxy number counts in R at 21-25 (Metcalfe et al. 2001: 0.3-0.37): a magnitude-
    limited sample has about 11 times more galaxies per magnitude at 24.5 than at 21.
  - Half-light radius log-normal, 0.15 dex of scatter, about R proportional to L^0.3, 2.6"
    at r = 21 (Shen et al. 2003, late types: slope 0.21 faint to 0.53 bright, scatter
    0.13-0.22 dex), redrawn until within 1.2-3.5": galaxies resolved at 0.7" seeing, as
    a morphology sample must be (the normalisation is that choice: real r = 21-24.5
    galaxies are mostly smaller, which the study's TNG galaxies, nearby, are not).
  - Position angle 0-180 deg and r-band seeing 0.6-0.8" FWHM (each galaxy's own PSF, kept
    in the records as psf_fwhm_arcsec).
* Spirals are disc-dominated: bulge-to-total 0.02-0.2 with bulge Sersic n 1.5-3.5 (late
  types: Gadotti 2009, Fisher & Drory 2008; Graham & Worley 2008 give B/T ~ 0.1 for
  Sb-Sc), so the whole galaxy fits Sersic n < 2.5 (Shen et al. 2003); arms hold 15-35% and
  knots 5-12% of the light.
* Ellipticals are Sersic n 4-6 (luminous ellipticals: Caon et al. 1993, Graham & Driver
  2005) with 1-3 faint shells on one side holding 0.5-2% of the light: most ellipticals
  show such tidal debris in deep images (Tal et al. 2009: 73%), and it gives them the small
  asymmetry real ones have (Conselice 2003: A = 0.02 +- 0.02).
* Mergers are major mergers, companions 1:4-1:1 in flux (Lotz et al. 2008, 2011), of
  compact galaxies (n 3-5, 0.5-0.8 of the system's radius) 0.6-1.5 system radii and at
  least 1.5" (about two seeing FWHM) apart, 15-30% of their light in star-forming clumps
  over the bodies and 3-8% in tidal tails: the clumps and separated nuclei put them
  above the Gini-M20 merger line (Lotz et al. 2004, 2008) with asymmetry 0.3-0.5
  (Conselice 2003: A > 0.35 for mergers).
* At high S/N statmorph puts 12 of the 14 (class, statistic) medians inside the
  literature's ranges (tests/test_mock_realism.py). Outside: elliptical concentration
  (C ~ 3.8 against 4.1-4.7: at 0.6-0.8" seeing the PSF caps C for these radii; the same
  galaxies at 0.2" seeing give 4.4) and merger smoothness (S ~ 0.06 against 0.1-0.9: the
  clumps are blurred by the seeing).
* The magnitude range puts faint features between the two depths. The sky alone gives a
  per-pixel noise of 0.065 e-/s in r at Y10 (5520 s) and 0.20 e-/s at Y1 (552 s): an arm
  of ~50 pixels of an r = 23 spiral has S/N ~12 at Y10 but ~4 at Y1.
* Colours overlap on purpose (g-r: ellipticals 0.5-0.9; spiral discs 0.45-0.85 with
  arms 0.2-0.55; merger galaxies 0.35-0.9): spirals are bluer on average, as in nature,
  but colour alone is a weak cue.
* Sersic indices are rounded to 0.1 and profiles truncated at 4.5 half-light radii, so
  GalSim reuses its per-index tables and FFTs stay small.

`tools/check_mock_separability.py` measures how well simple features and models separate
the classes at each depth.

`plan` says which galaxy goes to which split with which label; its shuffles are seeded
apart from the galaxies' own streams (`np.random.SeedSequence([seed, galaxy_id, label])`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tfgal.data.manifest import CLASS_NAMES, SPLITS
from tfgal.errors import ConfigError

__all__ = ["MockParams", "plan", "check_class_fractions", "check_count"]

_PLAN_STREAM = 0x91A7  # spawn key of the label shuffles in `plan`


# --------------------------------------------------------------------------- parameters


@dataclasses.dataclass(frozen=True)
class MockParams:
    """Ranges the mock galaxies are drawn from; each (low, high) is sampled uniformly
    except r_mag and half_light_radius_arcsec, the bounds of their own distributions.

    Shared by all classes:
      r_mag: bounds of the total r-band AB magnitude of the whole system.
      r_mag_count_slope: the magnitudes' density rises as 10^(slope m) (0: uniform).
      half_light_radius_arcsec: bounds of the half-light radius of a galaxy (bulge and
        disc together for spirals; the scale of the whole system for mergers), arcsec.
      size_at_r21_arcsec, size_luminosity_slope, size_scatter_dex: the radius is drawn
        log-normally (scatter in dex) about size_at_r21 * L^slope (L relative to r = 21).
      position_angle_deg: position angle of the major axis, degrees.
      psf_fwhm_arcsec: r-band seeing FWHM, arcsec; g and i scale as lambda^-0.2.
      centre_offset_arcsec: largest shift of the galaxy centre from the stamp centre.
    Ellipticals:
      elliptical_sersic_n: Sersic index.
      elliptical_shell_count, elliptical_shell_fraction: shells (arcs on one side) and
        their share of the light; elliptical_shell_radius_hlr, elliptical_shell_span_deg:
        their radius in half-light radii and the angle each spans (width as tails').
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
        system's half-light radius; merger_min_separation_arcsec: its floor.
      merger_sersic_n: Sersic index of each galaxy.
      merger_axis_ratio: axis ratio of each galaxy.
      merger_tail_count: number of tidal tails (integers, inclusive).
      merger_tail_fraction: share of the total flux in the tails.
      merger_tail_knot_fraction: share of the tails' flux in knots along them.
      merger_tail_length_hlr: tail length in system half-light radii.
      merger_clump_fraction, merger_clump_count, merger_clump_sigma_arcsec: star-forming
        clumps over the galaxies' bodies: share of the light, number, Gaussian sigma.
      merger_tail_curl_deg: angle each tail turns through along its length, degrees.
      merger_tail_width_arcsec: Gaussian sigma of a tail's cross-section at its root.
      merger_g_minus_r, merger_r_minus_i: colours of each galaxy, mag.
      merger_tail_g_minus_r, merger_tail_r_minus_i: tail colours, mag.
    """

    r_mag: tuple = (21.0, 24.5)
    r_mag_count_slope: float = 0.3
    half_light_radius_arcsec: tuple = (1.2, 3.5)
    size_at_r21_arcsec: float = 2.6
    size_luminosity_slope: float = 0.3
    size_scatter_dex: float = 0.15
    position_angle_deg: tuple = (0.0, 180.0)
    psf_fwhm_arcsec: tuple = (0.6, 0.8)
    centre_offset_arcsec: float = 0.3

    elliptical_sersic_n: tuple = (4.0, 6.0)
    elliptical_shell_count: tuple = (1, 3)
    elliptical_shell_fraction: tuple = (0.005, 0.02)
    elliptical_shell_radius_hlr: tuple = (0.8, 2.0)
    elliptical_shell_span_deg: tuple = (60.0, 150.0)
    elliptical_axis_ratio: tuple = (0.5, 1.0)
    elliptical_g_minus_r: tuple = (0.5, 0.9)
    elliptical_r_minus_i: tuple = (0.25, 0.45)

    spiral_inclination_deg: tuple = (0.0, 70.0)
    spiral_disc_thickness: float = 0.15
    spiral_bulge_fraction: tuple = (0.02, 0.2)
    spiral_bulge_radius_ratio: tuple = (0.1, 0.25)
    spiral_bulge_sersic_n: tuple = (1.5, 3.5)
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
    merger_flux_ratio: tuple = (0.25, 1.0)
    merger_size_ratio: tuple = (0.5, 0.8)
    merger_separation_hlr: tuple = (0.6, 1.5)
    merger_min_separation_arcsec: float = 1.5
    merger_sersic_n: tuple = (3.0, 5.0)
    merger_axis_ratio: tuple = (0.4, 1.0)
    merger_tail_count: tuple = (1, 2)
    merger_tail_fraction: tuple = (0.03, 0.08)
    merger_tail_knot_fraction: tuple = (0.3, 0.7)
    merger_tail_knot_count: tuple = (5, 15)
    merger_clump_fraction: tuple = (0.15, 0.3)
    merger_clump_count: tuple = (10, 30)
    merger_clump_sigma_arcsec: tuple = (0.05, 0.15)
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
        "elliptical_sersic_n": (0.3, 6.2), "elliptical_shell_count": (0, 10),
        "elliptical_shell_fraction": (0.0, 0.5), "elliptical_shell_radius_hlr": (0.05, 5.0),
        "elliptical_shell_span_deg": (1.0, 360.0), "spiral_bulge_sersic_n": (0.3, 6.2),
        "merger_sersic_n": (0.3, 6.2), "elliptical_axis_ratio": (0.05, 1.0),
        "merger_axis_ratio": (0.05, 1.0), "spiral_inclination_deg": (0.0, 89.0),
        "spiral_bulge_fraction": (0.0, 1.0), "spiral_arm_fraction": (0.0, 1.0),
        "spiral_knot_fraction": (0.0, 1.0), "merger_tail_fraction": (0.0, 0.9),
        "merger_tail_knot_fraction": (0.0, 1.0), "merger_flux_ratio": (1e-3, 1.0),
        "spiral_arm_count": (1, 8), "spiral_knot_count": (1, 500),
        "merger_galaxy_count": (2, 6), "merger_tail_count": (0, 4),
        "merger_tail_knot_count": (1, 100), "merger_clump_fraction": (0.0, 0.9),
        "merger_clump_count": (1, 200), "merger_clump_sigma_arcsec": (0.01, 2.0),
        "spiral_arm_pitch_deg": (1.0, 60.0),
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
        for name, low, high in (("r_mag_count_slope", -1.0, 1.0),
                                ("size_at_r21_arcsec", 1e-3, 20.0),
                                ("size_luminosity_slope", -2.0, 2.0),
                                ("size_scatter_dex", 0.0, 1.0),
                                ("merger_min_separation_arcsec", 0.0, 10.0)):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and low <= value <= high):
                raise ConfigError(f"{name} must be a number in [{low:g}, {high:g}]; "
                                  f"received {value!r}", key=name)
        if self.merger_tail_fraction[1] + self.merger_clump_fraction[1] >= 1.0:
            raise ConfigError("merger tail + clump fractions can reach "
                              f"{self.merger_tail_fraction[1] + self.merger_clump_fraction[1]:g}"
                              "; they must stay below 1 to leave light in the galaxies",
                              key="merger_clump_fraction")
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
    counts = {"train": check_count("n_train", n_train), "val": check_count("n_val", n_val),
              "test": check_count("n_test", n_test)}
    if sum(counts.values()) == 0:
        raise ConfigError("nothing to render: n_train + n_val + n_test is 0", key="n_train")
    fractions = check_class_fractions(class_fractions)
    seed = check_count("seed", seed)
    rows = []
    for stream, split in enumerate(SPLITS):
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
    n_classes = len(CLASS_NAMES)
    if class_fractions is None:
        return (1.0 / n_classes,) * n_classes
    try:
        fractions = tuple(float(f) for f in class_fractions)
    except (TypeError, ValueError):
        raise ConfigError(f"class_fractions must be {n_classes} numbers; received "
                          f"{class_fractions!r}", key="class_fractions") from None
    if len(fractions) != n_classes:
        raise ConfigError(f"class_fractions needs one value per class {CLASS_NAMES}; "
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


def check_count(name, n):
    """`n` as an int if it is an integer >= 0 (a count, seed or id); ConfigError otherwise."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ConfigError(f"{name} must be an integer >= 0; received {name}={n!r}", key=name)
    return int(n)

