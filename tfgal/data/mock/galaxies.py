"""Mock LSST galaxies rendered with GalSim: the physics of one galaxy.

Each galaxy is a noiseless 100 x 100 pixel stamp in the g, r and i bands, in e-/s per
pixel at the LSST pixel scale (0.2 arcsec), convolved with a Kolmogorov PSF whose FWHM
scales as lambda^-1/5 from band to band. Noise is added later, on the fly, at whatever
depth an experiment asks for (`tfgal.data.noise`). Conventions: positions and sizes in
arcsec (stamp centre at the origin), angles in degrees in `MockParams`, magnitudes AB.

Three classes, labelled as in the study (`manifest.CLASS_NAMES`):

* 0 spiral: a sheared exponential disc (random inclination, cos i uniform), a compact
  Sersic bulge, log-spiral arms (an analytic pattern drawn as an InterpolatedImage) and
  star-forming knots placed along the arms by `galsim.RandomKnots`; blue arms and knots,
  a bluish disc, a red bulge.
* 1 elliptical: one truncated Sersic profile, n = 3-5, axis ratio 0.5-1; red.
* 2 merger: two or three overlapping Sersic galaxies (companions 0.15-0.6 of the
  primary's flux, 0.3-1.2 system half-light radii away) with one or two curved tidal
  tails (Gaussians strung along arcs, partly broken into knots); colours of each
  galaxy drawn from a range spanning blue to red.

The ranges and the reasons for them are in `tfgal.data.mock.params`.

Every random number of a galaxy comes from `np.random.SeedSequence([seed, galaxy_id,
label])`, so a galaxy renders the same in any process and in any order. There is no
augmentation: every galaxy is drawn once.
"""

from __future__ import annotations

import math

import galsim
import numpy as np

from tfgal import survey
from tfgal.data.manifest import CLASS_NAMES
from tfgal.data.mock.params import MockParams, check_count
from tfgal.errors import ConfigError

__all__ = ["STAMP_PIXELS", "render_galaxy", "describe"]

STAMP_PIXELS = 100
# Arms and tails are computed on a grid this many times finer than the pixels so that
# the InterpolatedImage holding them is smooth before the PSF is applied.
PATTERN_OVERSAMPLING = 2
_GRID_STEP_ARCSEC = survey.PIXEL_SCALE_ARCSEC / PATTERN_OVERSAMPLING
SERSIC_N_STEP = 0.1  # GalSim caches one table per index: rounding makes them reusable
BULGE_CENTRAL = 0.5  # share of a bulge's light treated as central when sizing discs
SERSIC_TRUNCATION_HLR = 4.5  # keeps stepk large (small FFTs) and the light on the stamp
# Folding and FFT limits: 1% aliasing is far below the Y10 noise and caps FFTs at 1024.
GSPARAMS = galsim.GSParams(maximum_fft_size=1024, folding_threshold=1e-2)


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
        raise ConfigError(f"label must be 0, 1 or 2 {CLASS_NAMES}; received {label!r}",
                          key="label")
    rng = np.random.default_rng(np.random.SeedSequence(
        [check_count("seed", seed), check_count("galaxy_id", galaxy_id), int(label)]))
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
    measured half-light radii of the three classes agree. Without this a bulgy
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
    # (OpenBLAS threads slow this small product down on a busy machine).
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
    return galsim.Kolmogorov(fwhm=survey.seeing_fwhm(fwhm_r, band), gsparams=GSPARAMS)


def _draw(components, fwhm_r):
    """Draws (profile, fluxes per band) components through each band's PSF."""
    out = np.empty((STAMP_PIXELS, STAMP_PIXELS, len(survey.BANDS)), np.float32)
    for b, band in enumerate(survey.BANDS):
        galaxy = galsim.Add([shape * fluxes[b] for shape, fluxes in components])
        image = galsim.ImageF(STAMP_PIXELS, STAMP_PIXELS, scale=survey.PIXEL_SCALE_ARCSEC)
        galsim.Convolve(galaxy, _psf(fwhm_r, band), gsparams=GSPARAMS).drawImage(
            image=image, method="auto")
        out[..., b] = image.array
    # FFT ringing leaves tiny negatives far from the galaxy: not real flux.
    np.maximum(out, 0.0, out=out)
    return out
