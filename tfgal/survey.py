"""LSST survey model: bands, pixel scale, zero points, sky and depths.

The one source of truth for survey numbers; everything downstream reads them here.
Conventions: fluxes are in electrons per second (e-/s) per pixel; magnitudes are AB;
angles in arcsec. Numbers from Ivezic et al. 2019 (Table 1) and the LSST throughputs
used by the DESC WeakLensingDeblending package.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from tfgal.errors import ConfigError

__all__ = ["BANDS", "PIXEL_SCALE_ARCSEC", "VISIT_EXPOSURE_S", "VISITS_Y10", "ZERO_POINT_MAG",
           "SKY_MAG_PER_ARCSEC2", "SEEING_FWHM_ARCSEC", "EFFECTIVE_WAVELENGTH_NM",
           "SEEING_WAVELENGTH_INDEX", "SURVEY_YEARS", "mag_to_flux", "flux_to_mag", "seeing_fwhm",
           "sky_per_pixel", "sky_vector", "sky_sigma", "Depth", "Y10", "Y1", "NAMED_DEPTHS"]

BANDS = ("g", "r", "i")
PIXEL_SCALE_ARCSEC = 0.2
VISIT_EXPOSURE_S = 30.0  # two 15 s snaps
# Visits over the full ten-year survey.
VISITS_Y10 = {"g": 80, "r": 184, "i": 184}
# AB magnitude of a source giving 1 e-/s in the focal plane.
ZERO_POINT_MAG = {"g": 28.26, "r": 28.10, "i": 27.78}
# Dark-sky brightness, mag/arcsec^2.
SKY_MAG_PER_ARCSEC2 = {"g": 22.26, "r": 21.20, "i": 20.48}
# Median r-band seeing, FWHM in arcsec.
SEEING_FWHM_ARCSEC = 0.7
# Effective wavelengths of the filters, nm; the seeing FWHM scales as lambda^-1/5.
EFFECTIVE_WAVELENGTH_NM = {"g": 480.0, "r": 622.0, "i": 754.0}
SEEING_WAVELENGTH_INDEX = -0.2  # Kolmogorov turbulence
SURVEY_YEARS = 10.0


def mag_to_flux(mag, band):
    """Total flux in e-/s of a source of AB magnitude `mag` in `band`."""
    return 10.0 ** (-0.4 * (np.asarray(mag, dtype=np.float64) - ZERO_POINT_MAG[band]))


def flux_to_mag(flux, band):
    """AB magnitude of a source whose total flux is `flux` e-/s in `band`."""
    return ZERO_POINT_MAG[band] - 2.5 * np.log10(np.asarray(flux, dtype=np.float64))


def seeing_fwhm(fwhm_r, band):
    """Seeing FWHM (arcsec) in `band` for an r-band FWHM `fwhm_r`."""
    ratio = EFFECTIVE_WAVELENGTH_NM[band] / EFFECTIVE_WAVELENGTH_NM["r"]
    return fwhm_r * ratio**SEEING_WAVELENGTH_INDEX


def sky_per_pixel(band):
    """Sky level in e-/s per pixel in `band`."""
    per_arcsec2 = 10.0 ** (-0.4 * (SKY_MAG_PER_ARCSEC2[band] - ZERO_POINT_MAG[band]))
    return per_arcsec2 * PIXEL_SCALE_ARCSEC**2


def sky_vector(bands=BANDS):
    """Sky levels (e-/s per pixel) as a float32 array ordered like `bands`."""
    return np.array([sky_per_pixel(b) for b in bands], dtype=np.float32)


def sky_sigma(depth, bands=BANDS):
    """Sky noise per pixel (e-/s) at `depth`, float32 [C]: sqrt(sky / exposure)."""
    t = Depth.parse(depth).exposure_vector()[[BANDS.index(b) for b in bands]]
    return np.sqrt(sky_vector(bands) / t).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Depth:
    """An observing depth: total exposure time per band.

    Attributes:
      name: a label such as "Y10", "Y1", "3y" or "exp" (for explicit exposures).
      exposure_s: total exposure in seconds per band, ordered like `BANDS`.
    """

    name: str
    exposure_s: tuple

    def __post_init__(self):
        if len(self.exposure_s) != len(BANDS):
            raise ConfigError(
                f"depth {self.name!r} needs one exposure per band {BANDS}; "
                f"received {len(self.exposure_s)}: {self.exposure_s}")
        if not all(np.isfinite(t) and t > 0 for t in self.exposure_s):
            raise ConfigError(
                f"depth {self.name!r} needs positive finite exposures; received {self.exposure_s}")

    @classmethod
    def from_years(cls, years, name=None):
        """The depth reached after `years` of the survey (visits scale linearly)."""
        years = float(years)
        if not (np.isfinite(years) and years > 0):
            raise ConfigError(f"survey years must be positive; received years={years}")
        exposure = tuple(VISITS_Y10[b] * VISIT_EXPOSURE_S * years / SURVEY_YEARS for b in BANDS)
        return cls(name or f"{years:g}y", exposure)

    @classmethod
    def parse(cls, spec):
        """A depth from a name or spec.

        Accepts a `Depth`, "Y10", "Y1", "Y<years>" or "<years>y" (e.g. "Y3", "0.5y"), a
        number of years, or exposures "exp:<g>,<r>,<i>" in seconds (one value for all bands
        is also accepted).
        """
        if isinstance(spec, Depth):
            return spec
        if isinstance(spec, (int, float)) and not isinstance(spec, bool):
            return cls.from_years(spec)
        if not isinstance(spec, str):
            raise ConfigError(f"cannot read a depth from {spec!r}")
        text = spec.strip()
        match = re.fullmatch(r"[Yy](\d+(?:\.\d*)?)|(\d+(?:\.\d*)?(?:e-?\d+)?)\s*y(?:ears?)?", text)
        if match:
            years = float(match.group(1) or match.group(2))
            name = text.upper() if match.group(1) else None
            return cls.from_years(years, name=name)
        if text.lower().startswith("exp:"):
            try:
                values = [float(v) for v in text[4:].split(",")]
            except ValueError:
                raise ConfigError(f"bad exposure list in depth {spec!r}") from None
            if len(values) == 1:
                values = values * len(BANDS)
            return cls(text, tuple(values))
        raise ConfigError(
            f"unknown depth {spec!r}",
            valid=("Y10", "Y1", "Y<years>", "<years>y", "exp:<g>,<r>,<i>"))

    @property
    def years(self):
        """Equivalent survey years (from the r band)."""
        r = BANDS.index("r")
        return self.exposure_s[r] / (VISITS_Y10["r"] * VISIT_EXPOSURE_S) * SURVEY_YEARS

    def exposure_vector(self):
        return np.asarray(self.exposure_s, dtype=np.float32)

    def to_json(self):
        return {"name": self.name, "exposure_s": list(map(float, self.exposure_s))}

    @classmethod
    def from_json(cls, obj):
        return cls(obj["name"], tuple(obj["exposure_s"]))


Y10 = Depth.from_years(10.0, name="Y10")
Y1 = Depth.from_years(1.0, name="Y1")
NAMED_DEPTHS = {"Y10": Y10, "Y1": Y1}
