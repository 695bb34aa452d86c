"""Mock LSST galaxies rendered with GalSim: the physics of one galaxy.

Each galaxy is a noiseless 100 x 100 pixel stamp in the g, r and i bands, in e-/s per
pixel at the LSST pixel scale (0.2 arcsec), convolved with a Kolmogorov PSF whose FWHM
scales as lambda^-1/5 from band to band. Noise is added later, on the fly, at whatever
depth an experiment asks for (`tfgal.data.noise`). Conventions: positions and sizes in
arcsec (stamp centre at the origin), angles in degrees in `MockParams`, magnitudes AB.

Three classes, labelled as in the study (`manifest.CLASS_NAMES`):

* 0 spiral: a sheared exponential disc (random inclination, cos i uniform), a small
  Sersic bulge (2-20% of the light), log-spiral arms (an analytic pattern drawn as an
  InterpolatedImage) and star-forming knots placed along the arms by
  `galsim.RandomKnots`; blue arms and knots, a bluish disc, a red bulge.
* 1 elliptical: one truncated Sersic profile, n = 4-6, axis ratio 0.5-1, with faint
  shells on one side (Gaussians on arcs, drawn in pixel space); red.
* 2 merger: two or three compact Sersic galaxies (companions 0.25-1 of the primary's
  flux, at least 1.5" apart), star-forming clumps over their bodies, and one or two
  curved tidal tails (Gaussians strung along arcs, partly broken into knots); colours of
  each galaxy drawn from a range spanning blue to red.

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

__all__ = ["STAMP_PIXELS", "render_galaxy", "render", "describe"]

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


def render(galaxy_id, label, seed, params=MockParams()):
    """(image, properties) of one galaxy: `render_galaxy`'s image and `describe`'s dict,
    designed once."""
    components, props = _design(galaxy_id, label, seed, params)
    return _draw(components, props["psf_fwhm_arcsec"]), props


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
    r_mag = _counts_magnitude(rng, p.r_mag, p.r_mag_count_slope)
    return {
        "r_mag": float(r_mag),
        "half_light_radius_arcsec": _size(rng, p, r_mag),
        "position_angle_rad": float(np.deg2rad(rng.uniform(*p.position_angle_deg))),
        "psf_fwhm_arcsec": float(rng.uniform(*p.psf_fwhm_arcsec)),
        "centre_arcsec": tuple(float(v) for v in rng.uniform(
            -p.centre_offset_arcsec, p.centre_offset_arcsec, 2)),
        "galsim_seed": int(rng.integers(1, 2**31 - 1)),
    }


def _counts_magnitude(rng, bounds, slope):
    """A magnitude in `bounds` with density proportional to 10^(slope m): galaxy number
    counts rise so towards faint magnitudes (slope 0 is uniform)."""
    u = rng.uniform()
    if slope == 0:
        return bounds[0] + u * (bounds[1] - bounds[0])
    lo, hi = (10.0 ** (slope * b) for b in bounds)  # inverse of the cumulative counts
    return math.log10(lo + u * (hi - lo)) / slope


def _size(rng, p, r_mag):
    """A half-light radius scattered log-normally about R proportional to L^slope, kept
    within the `half_light_radius_arcsec` bounds by redrawing."""
    log_median = (math.log10(p.size_at_r21_arcsec)
                  - 0.4 * p.size_luminosity_slope * (r_mag - 21.0))
    low, high = np.log10(p.half_light_radius_arcsec)
    if low == high:
        return float(p.half_light_radius_arcsec[0])
    for _ in range(1000):
        log_radius = rng.normal(log_median, p.size_scatter_dex)
        if low <= log_radius <= high:
            break
    return float(10 ** float(np.clip(log_radius, low, high)))


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
    """A smooth Sersic galaxy with faint shells on one side: most nearby ellipticals show
    such tidal debris in deep images (Tal et al. 2009: 73%), the source of their small
    but non-zero asymmetry (Conselice 2003: A = 0.02 +- 0.02)."""
    r_flux = survey.mag_to_flux(props["r_mag"], "r")
    hlr = props["half_light_radius_arcsec"]
    beta = props["position_angle_rad"]
    body = _sersic(rng.uniform(*p.elliptical_sersic_n), hlr).shear(
        q=rng.uniform(*p.elliptical_axis_ratio), beta=beta * galsim.radians)
    colour = _band_fluxes(r_flux, rng.uniform(*p.elliptical_g_minus_r),
                          rng.uniform(*p.elliptical_r_minus_i))
    f_shell = rng.uniform(*p.elliptical_shell_fraction)
    components = [(body.shift(*props["centre_arcsec"]), (1.0 - f_shell) * colour)]
    n_shell = _integer(rng, p.elliptical_shell_count)
    if n_shell and f_shell > 0:
        side = rng.uniform(0, 2 * np.pi)
        arcs = [_shell_arc(rng, p, props["centre_arcsec"], side, hlr) for _ in range(n_shell)]
        components.append((_Blobs(*(np.concatenate(a) for a in zip(*arcs))),
                           f_shell * colour))
    props.update(shell_fraction=float(f_shell), n_shells=n_shell)
    return components


def _shell_arc(rng, p, centre, side, hlr, n_points=12):
    """(x, y, sigma, weight) of Gaussians strung on an arc around `centre`, opening
    towards angle `side`: one shell."""
    radius = hlr * rng.uniform(*p.elliptical_shell_radius_hlr)
    half_span = math.radians(rng.uniform(*p.elliptical_shell_span_deg)) / 2
    angle = side + rng.uniform(-0.3, 0.3) + np.linspace(-half_span, half_span, n_points)
    sigma = np.full(n_points, rng.uniform(*p.merger_tail_width_arcsec))
    return (centre[0] + radius * np.cos(angle), centre[1] + radius * np.sin(angle), sigma,
            np.ones(n_points))


class _Blobs:
    """Faint round Gaussians wider than the PSF's core, drawn in pixel space through a
    Gaussian of the PSF's FWHM: no FFT (shells cost ellipticals more than their body)."""

    def __init__(self, x, y, sigma, weight):
        self.x, self.y, self.sigma = x, y, sigma
        self.weight = weight / weight.sum()

    def draw(self, fwhm):
        # Pixel response as a top hat's variance; unit total flux before the stamp's edge.
        step = survey.PIXEL_SCALE_ARCSEC
        sigma = np.sqrt(self.sigma**2 + (fwhm / 2.3548) ** 2 + step**2 / 12.0)
        axis = (np.arange(STAMP_PIXELS) - (STAMP_PIXELS - 1) / 2.0) * step
        gx = np.exp(-0.5 * ((axis[None, :] - self.x[:, None]) / sigma[:, None]) ** 2)
        gy = np.exp(-0.5 * ((axis[None, :] - self.y[:, None]) / sigma[:, None]) ** 2)
        norm = self.weight * step**2 / (2 * np.pi * sigma**2)
        return np.einsum("ky,kx->yx", gy * norm[:, None], gx)


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
    f_clump = rng.uniform(*p.merger_clump_fraction)
    fluxes = r_flux * (1.0 - f_tail - f_clump) * weights / weights.sum()
    components, radii = [], []
    for flux, position in zip(fluxes, positions):
        n = rng.uniform(*p.merger_sersic_n)
        radii.append(hlr * rng.uniform(*p.merger_size_ratio))
        shape = _sersic(n, radii[-1]).shear(q=rng.uniform(*p.merger_axis_ratio),
                                            beta=rng.uniform(0, np.pi) * galsim.radians)
        colour = _band_fluxes(flux, rng.uniform(*p.merger_g_minus_r),
                              rng.uniform(*p.merger_r_minus_i))
        components.append((shape.shift(*position), colour))
    young = []
    if n_tail:
        young.append((f_tail, _tails(rng, p, props, positions, hlr, n_tail)))
    if f_clump > 0:
        young.append((f_clump, _body_clumps(rng, p, positions, radii, weights)))
    if young:
        total = sum(f for f, _ in young)
        colour = _band_fluxes(r_flux * total, rng.uniform(*p.merger_tail_g_minus_r),
                              rng.uniform(*p.merger_tail_r_minus_i))
        # Tails and clumps share one image: one FFT more per band, not two.
        pattern = sum(f / total * part / part.sum() for f, part in young)
        components.append((_as_profile(pattern), colour))
    props.update(n_galaxies=n_gal, n_tails=n_tail, tail_fraction=float(f_tail),
                 clump_fraction=float(f_clump))
    return components


def _body_clumps(rng, p, positions, radii, weights):
    """Star-forming clumps over the merging galaxies' bodies: interactions trigger
    clumpy star formation (Lotz et al. 2004: merger smoothness S 0.1-0.9)."""
    n = _integer(rng, p.merger_clump_count)
    # Each clump picks a galaxy by flux and lands within a Gaussian twice its half-light
    # radius around it: drawn directly, no photon shooting.
    host = rng.choice(len(weights), size=n, p=np.asarray(weights) / np.sum(weights))
    xy = positions[host] + rng.normal(size=(n, 2)) * (2.0 / 1.18 * np.asarray(radii))[host,
                                                                                  None]
    sigma = np.full(n, rng.uniform(*p.merger_clump_sigma_arcsec))
    return _gaussians(xy[:, 0], xy[:, 1], sigma, rng.exponential(size=n))


def _merger_positions(rng, p, hlr, n_gal, angle):
    """Primary at the origin, companions `merger_separation_hlr` system radii away."""
    positions = np.zeros((n_gal, 2))
    for k in range(1, n_gal):
        # No closer than `merger_min_separation_arcsec`: a pair inside ~2 seeing FWHM blends
        # into one source that neither eye nor statmorph can call a merger.
        distance = max(hlr * rng.uniform(*p.merger_separation_hlr),
                       p.merger_min_separation_arcsec)
        direction = angle + (k - 1) * rng.uniform(0.5 * np.pi, 1.5 * np.pi)
        positions[k] = distance * np.array([math.cos(direction), math.sin(direction)])
    return positions


def _tails(rng, p, props, positions, hlr, n_tail):
    """`n_tail` tidal tails (smooth arcs plus knots along them) as one unit-sum pattern."""
    start = rng.uniform(0, 2 * np.pi)
    curl = math.radians(rng.uniform(*p.merger_tail_curl_deg)) * rng.choice([-1.0, 1.0])
    # Tails leave from alternate galaxies in opposite directions, curling the same way:
    # the S-shaped pairs of real major mergers.
    pattern = sum(_tail_pattern(rng, p, positions[k % len(positions)], start + k * np.pi,
                                curl, hlr) for k in range(n_tail))
    knots = _knot_pattern(rng, p, pattern, _integer(rng, p.merger_tail_knot_count),
                          props["galsim_seed"])
    return _mix(pattern, knots, rng.uniform(*p.merger_tail_knot_fraction))


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
    profiles = [(shape, fluxes) for shape, fluxes in components
                if not isinstance(shape, _Blobs)]
    for b, band in enumerate(survey.BANDS):
        galaxy = galsim.Add([shape * fluxes[b] for shape, fluxes in profiles])
        image = galsim.ImageF(STAMP_PIXELS, STAMP_PIXELS, scale=survey.PIXEL_SCALE_ARCSEC)
        galsim.Convolve(galaxy, _psf(fwhm_r, band), gsparams=GSPARAMS).drawImage(
            image=image, method="auto")
        out[..., b] = image.array
        for shape, fluxes in components:
            if isinstance(shape, _Blobs):
                out[..., b] += (fluxes[b] * shape.draw(survey.seeing_fwhm(fwhm_r, band))
                                ).astype(np.float32)
    # FFT ringing leaves tiny negatives far from the galaxy: not real flux.
    np.maximum(out, 0.0, out=out)
    return out
