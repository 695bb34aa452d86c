"""Literature values of classical morphology statistics, per class, with their references.

Indicative only: the numbers were measured on other data (nearby galaxies imaged at far
better resolution than LSST's 0.7" seeing, HST fields at z < 1.2, simulations), with
their own segmentations and apertures, and several of them shift with resolution and
signal-to-noise (smoothness falls and concentration drops as a galaxy is less resolved;
asymmetry depends on its background correction). They say where real galaxies of each
kind sit, not where the mocks must sit.

Each entry is a `LiteratureRange`: an interval `[low, high]` used for the "inside"
check, `quoted`: what the paper gives and how the interval is derived from it (a mean
± one standard deviation, or a published dividing line), and `refs`: keys of
`REFERENCES`. Statistics follow statmorph's names (`tfgal.data.morphology`):

* ``concentration``, ``asymmetry``, ``smoothness``: the CAS system: Conselice's (2003)
  mean ± 1 sd per type of nearby galaxies for ellipticals, early-type discs (S0-Sb),
  late-type discs (Sbc-Sd) and ULIRGs (the merger sample); A > 0.35 is his merger
  criterion. The spiral interval spans early- and late-type discs (set for mock version 1,
  whose spirals had 10-40% bulges). Version 2's spirals (B/T 0.02-0.2) are late types:
  their C and A also fall in the late-type intervals alone, their S (~0.03) only in the
  early types' (the late types' 0.29 +- 0.13 was measured on resolved nearby discs).
* ``sersic_n``: n = 2.5 separates late (below) from early types in SDSS (Shen et al.
  2003); exponential discs have n ~ 1 and de Vaucouleurs ellipticals n ~ 4, with n rising
  with luminosity (Graham & Driver 2005). Mergers have no characteristic n.
* ``gini``, ``m20``: the papers give regions of the Gini-M20 plane rather than ranges per
  class, so they are judged through the two lines of Lotz et al. (2008): mergers
  G > -0.14 M20 + 0.33; among non-mergers E/S0/Sa G > 0.14 M20 + 0.80, Sb-Ir below. statmorph
  codes them as distances from the lines (Snyder et al. 2015; Rodriguez-Gomez et al. 2019):
  ``gini_m20_merger`` S = 0.139 M20 + 0.990 G - 0.327 (> 0 above the merger line) and
  ``gini_m20_bulge`` F = -0.693 M20 + 4.95 G - 3.96 (> 0 on the bulge-dominated side).
  ``tests/test_morphology.py`` checks that the two lines are the zero lines of statmorph's
  own statistics.
"""

from __future__ import annotations

import dataclasses
import math

__all__ = ["REFERENCES", "LiteratureRange", "LITERATURE", "MERGER_LINE", "BULGE_LINE",
           "ASYMMETRY_MERGER", "SERSIC_EARLY_LATE"]

REFERENCES = {
    "conselice2003": "Conselice C. J. 2003, ApJS 147, 1 (CAS of nearby galaxies by type)",
    "bershady2000": "Bershady M. A., Jangren A., Conselice C. J. 2000, AJ 119, 2645 "
                    "(concentration C = 5 log10(r80/r20))",
    "lotz2004": "Lotz J. M., Primack J., Madau P. 2004, AJ 128, 163 (Gini, M20)",
    "lotz2008": "Lotz J. M. et al. 2008, ApJ 672, 177 (Gini-M20 merger and E/S0/Sa lines)",
    "snyder2015": "Snyder G. F. et al. 2015, MNRAS 454, 1886 (bulge statistic F(G, M20), "
                  "Illustris)",
    "rodriguez-gomez2019": "Rodriguez-Gomez V. et al. 2019, MNRAS 483, 4140 (statmorph; "
                           "IllustrisTNG against Pan-STARRS)",
    "shen2003": "Shen S. et al. 2003, MNRAS 343, 978 (n = 2.5 splits late and early types)",
    "graham2005": "Graham A. W., Driver S. P. 2005, PASA 22, 118 (Sersic n of discs and "
                  "ellipticals)",
}

MERGER_LINE = (-0.14, 0.33)  # Lotz et al. 2008: mergers have G > -0.14 M20 + 0.33
BULGE_LINE = (0.14, 0.80)    # Lotz et al. 2008: E/S0/Sa have G > 0.14 M20 + 0.80
ASYMMETRY_MERGER = 0.35      # Conselice 2003: A > 0.35 picks out major mergers
SERSIC_EARLY_LATE = 2.5      # Shen et al. 2003


@dataclasses.dataclass(frozen=True)
class LiteratureRange:
    """A statistic's interval for one class, as the references give it.

    low, high: the interval (either may be infinite, for a one-sided dividing line).
    quoted: what the references state, and how the interval follows from it.
    refs: keys of `REFERENCES`.
    """

    low: float
    high: float
    quoted: str
    refs: tuple

    def contains(self, value):
        return bool(self.low <= value <= self.high)


def _sd(mean, sd, label, refs=("conselice2003",)):
    """The interval mean ± 1 sd of a per-type table entry."""
    return LiteratureRange(round(mean - sd, 3), round(mean + sd, 3),
                           f"{label} {mean:g} ± {sd:g} (mean ± 1 sd)", refs)


_INF = math.inf
_MERGER_SIDE = LiteratureRange(0.0, _INF, "above the merger line G = -0.14 M20 + 0.33",
                               ("lotz2008", "rodriguez-gomez2019"))
_NORMAL_SIDE = LiteratureRange(-_INF, 0.0, "below the merger line G = -0.14 M20 + 0.33",
                               ("lotz2008", "rodriguez-gomez2019"))

LITERATURE = {
    "spiral": {
        "sersic_n": LiteratureRange(
            0.0, SERSIC_EARLY_LATE, "n < 2.5 for late types (n ~ 1: exponential disc)",
            ("shen2003", "graham2005")),
        "concentration": LiteratureRange(
            2.7, 4.4, "late-type discs 3.1 ± 0.4, early-type discs (S0-Sb) 3.9 ± 0.5: "
            "the union of the mean ± 1 sd intervals", ("conselice2003", "bershady2000")),
        "asymmetry": LiteratureRange(
            0.03, 0.21, "late-type discs 0.15 ± 0.06, early-type discs 0.07 ± 0.04 "
            "(union of mean ± 1 sd)", ("conselice2003",)),
        "smoothness": LiteratureRange(
            0.0, 0.42, "late-type discs 0.29 ± 0.13, early-type discs 0.08 ± 0.08 "
            "(union of mean ± 1 sd; resolved nearby discs)", ("conselice2003",)),
        "gini_m20_merger": _NORMAL_SIDE,
        "gini_m20_bulge": LiteratureRange(
            -_INF, 0.0, "Sb-Ir: below G = 0.14 M20 + 0.80 (F < 0)",
            ("lotz2008", "snyder2015")),
    },
    "elliptical": {
        "sersic_n": LiteratureRange(
            SERSIC_EARLY_LATE, _INF, "n > 2.5 for early types (n ~ 4: de Vaucouleurs)",
            ("shen2003", "graham2005")),
        "concentration": _sd(4.4, 0.3, "ellipticals"),
        "asymmetry": _sd(0.02, 0.02, "ellipticals"),
        "smoothness": _sd(0.00, 0.04, "ellipticals"),
        "gini_m20_merger": _NORMAL_SIDE,
        "gini_m20_bulge": LiteratureRange(
            0.0, _INF, "E/S0/Sa: above G = 0.14 M20 + 0.80 (F > 0)", ("lotz2008", "snyder2015")),
    },
    "merger": {
        "concentration": _sd(2.5, 0.7, "ULIRGs"),
        "asymmetry": LiteratureRange(
            0.13, 0.51, "ULIRGs 0.32 ± 0.19 (mean ± 1 sd); A > 0.35 is the merger criterion",
            ("conselice2003",)),
        "smoothness": _sd(0.50, 0.40, "ULIRGs"),
        "gini_m20_merger": _MERGER_SIDE,
    },
}
