"""The physics of tfgal's corruptions: batched TensorFlow ops, one per corruption.

Each op is ``fn(x, params, seeds, ctx)``: images [B, H, W, C] float32, the severity's
parameters per galaxy [B, P] (a row of the corruption's table in
`tfgal.data.corruptions`), stateless seeds per galaxy [B, 2] and a `Context`; it returns
the corrupted batch. The ops that depend on the images' own PSF (`seeing`, `neighbour`)
also take ``own_fwhm_r`` [B]: each galaxy's own r-band PSF FWHM in arcsec, read from its
record where the records hold it (mocks); None gives every galaxy the `Context`'s
dataset-wide value (`Context.own_fwhm`). The registry, severities, refusals and plans
are in `tfgal.data.corruptions`, which documents the units.
"""

from __future__ import annotations

import dataclasses
import math
import zlib

import numpy as np
import tensorflow as tf

from tfgal import seeds as seeds_lib
from tfgal import survey

__all__ = ["Context", "per_galaxy_seeds", "calibration_factors", "uniform", "SATURATION_E_PER_S",
           "TRAIL_FWHM_ARCSEC", "JPEG_QUALITIES", "seeing", "sky", "trail", "cosmic_rays",
           "neighbour", "misregistration", "bad_pixels", "calibration", "quantise", "jpeg"]

SATURATION_E_PER_S = 100_000 / 15.0     # full well over one snap's exposure
TRAIL_FWHM_ARCSEC = 1.0                 # trail width (an out-of-focus satellite is wider)
FFT_PAD = 24                            # pixels of zeros around a stamp before filtering


@dataclasses.dataclass(frozen=True)
class Context:
    """What the corruptions need to know about the data: bands, pixels, units, stretch.

    `own_fwhm_r` is the dataset-wide r-band PSF FWHM (arcsec), used for galaxies whose
    records do not store their own.
    """

    bands: tuple = survey.BANDS
    pixel_scale: float = survey.PIXEL_SCALE_ARCSEC
    own_fwhm_r: float = survey.SEEING_FWHM_ARCSEC  # the images' PSF FWHM, r band, arcsec
    display_range: tuple | None = None              # (low [C], high [C]) of stretched pixels

    @property
    def sigma(self):
        """Y10 sky noise per pixel, e-/s [C]: the unit of additive amplitudes."""
        return tf.constant(survey.sky_sigma("Y10", self.bands))

    def band_values(self, fn):
        return tf.constant([fn(b) for b in self.bands], tf.float32)

    def own_fwhm(self, x, per_galaxy=None):
        """Each galaxy's own r-band PSF FWHM [B] (arcsec) for batch `x`: `per_galaxy` [B]
        where given (from the records), else `own_fwhm_r` for all."""
        if per_galaxy is not None:
            return tf.reshape(tf.cast(per_galaxy, tf.float32), [-1])
        return tf.fill(tf.shape(x)[:1], tf.constant(self.own_fwhm_r, tf.float32))

    @classmethod
    def of(cls, manifest, stretch_params=None):
        """The context of a dataset: its bands, pixel scale, PSF and stretch range; the PSF
        is the middle of the mock generator's seeing range (what records without their
        own fall back to)."""
        from tfgal.data import stretch as stretch_lib
        params = (manifest.generator or {}).get("params", {})
        fwhm = params.get("psf_fwhm_arcsec")
        own = float(np.mean(fwhm)) if fwhm else survey.SEEING_FWHM_ARCSEC
        stretch = stretch_params or manifest.stretch
        rng = stretch_lib.value_range(stretch) if stretch else None
        return cls(bands=tuple(manifest.bands), pixel_scale=float(manifest.pixel_scale_arcsec),
                   own_fwhm_r=own, display_range=rng)


# --------------------------------------------------------------------------- helpers


def per_galaxy_seeds(root, name, ids, salts):
    """Stateless seeds [B, 2] from (root seed, corruption name, galaxy id, salt)."""
    base = tf.constant([seeds_lib.derive(root, "corrupt"),
                        zlib.crc32(name.encode()) & 0x7FFFFFFF], tf.int64)

    def fold(args):
        galaxy_id, salt = args
        s = tf.random.experimental.stateless_fold_in(base, galaxy_id)
        return tf.random.experimental.stateless_fold_in(s, salt)

    return tf.map_fn(fold, (tf.cast(ids, tf.int64), tf.cast(salts, tf.int64)),
                     fn_output_signature=tf.int64)


def uniform(seeds, shape):
    """U(0, 1) [B, *shape], each galaxy's row from its own seed."""
    return tf.map_fn(lambda s: tf.random.stateless_uniform(shape, s), seeds,
                     fn_output_signature=tf.float32)


def _grid(x):
    """Pixel coordinates from the stamp centre, [H, 1] and [1, W] (float32)."""
    h, w = tf.shape(x)[1], tf.shape(x)[2]
    ys = tf.cast(tf.range(h), tf.float32) - (tf.cast(h, tf.float32) - 1.0) / 2.0
    xs = tf.cast(tf.range(w), tf.float32) - (tf.cast(w, tf.float32) - 1.0) / 2.0
    return ys[:, None], xs[None, :]


def _fft_filter(x, transfer):
    """Multiplies each band's spectrum by transfer(ky, kx) [B, C, h, w'] (cycles per pixel),
    with FFT_PAD zeros around the stamp so nothing wraps around; flux leaving the stamp is
    lost, as from a real cut-out."""
    h, w = x.shape[1], x.shape[2]
    p = FFT_PAD
    planes = tf.transpose(tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]]), [0, 3, 1, 2])
    hp, wp = h + 2 * p, w + 2 * p
    ky = tf.constant(np.fft.fftfreq(hp).astype(np.float32))[:, None]
    kx = tf.constant(np.fft.rfftfreq(wp).astype(np.float32))[None, :]
    spectrum = tf.signal.rfft2d(planes) * transfer(ky, kx)
    out = tf.signal.irfft2d(spectrum, fft_length=[hp, wp])
    return tf.transpose(out, [0, 2, 3, 1])[:, p:p + h, p:p + w, :]


def _band_fwhm(ctx, fwhm_r):
    """FWHM per band [..., C] (arcsec) for r-band FWHMs `fwhm_r` [...]."""
    scale = ctx.band_values(lambda b: survey.seeing_fwhm(1.0, b))
    return fwhm_r[..., None] * scale


# --------------------------------------------------------------------------- flux stage


def seeing(x, params, seeds, ctx, own_fwhm_r=None):
    """Gaussian kernel of FWHM sqrt(F^2 - F_own_i^2) per galaxy i and band, F_own_i its own
    PSF FWHM (`own_fwhm_r` [B], r band; None: the Context's): each galaxy's PSF FWHM
    becomes F (exactly for a Gaussian PSF, within a few per cent for the mocks' Kolmogorov
    one). A galaxy already at F or worse is left as it is."""
    target = _band_fwhm(ctx, params[:, 0])
    own = _band_fwhm(ctx, ctx.own_fwhm(x, own_fwhm_r))
    fwhm_px = tf.sqrt(tf.maximum(tf.square(target) - tf.square(own), 0.0)) / ctx.pixel_scale
    sigma = (fwhm_px / (2.0 * math.sqrt(2.0 * math.log(2.0))))[:, :, None, None]  # [B, C, 1, 1]
    return _fft_filter(x, lambda ky, kx: tf.cast(
        tf.exp(-2.0 * math.pi**2 * tf.square(sigma) * (ky**2 + kx**2)), tf.complex64))


def sky(x, params, seeds, ctx):
    """k sigma_Y10 * (s + r . n / R): a constant of either sign and a gradient reaching
    +-k sigma at the stamp's edge along a random direction n."""
    u = uniform(seeds, [2])
    sign = tf.where(u[:, 0] < 0.5, -1.0, 1.0)
    angle = 2.0 * math.pi * u[:, 1]
    ys, xs = _grid(x)
    half = tf.cast(tf.shape(x)[2], tf.float32) / 2.0
    c, s = tf.cos(angle)[:, None, None], tf.sin(angle)[:, None, None]
    ramp = (xs[None] * c + ys[None] * s) / half
    k = params[:, 0][:, None, None]
    pattern = k * (sign[:, None, None] + ramp)
    return x + pattern[..., None] * ctx.sigma


def _line_distance(x, offset, angle):
    """Distance (pixels) of every pixel from the line at `offset` from the centre, at
    `angle` ([B] each) -> [B, H, W]."""
    ys, xs = _grid(x)
    c, s = tf.cos(angle)[:, None, None], tf.sin(angle)[:, None, None]
    return tf.abs(-xs[None] * s + ys[None] * c - offset[:, None, None])


def trail(x, params, seeds, ctx):
    """A Gaussian streak (FWHM 1") of peak surface brightness mu (AB mag/arcsec^2, flat
    spectrum) across the stamp at a random position and angle."""
    u = uniform(seeds, [2])
    width = tf.cast(tf.shape(x)[2], tf.float32)
    offset = (u[:, 0] - 0.5) * 0.8 * width
    d = _line_distance(x, offset, math.pi * u[:, 1])
    sigma = TRAIL_FWHM_ARCSEC / ctx.pixel_scale / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    profile = tf.exp(-0.5 * tf.square(d / sigma))
    zp = ctx.band_values(lambda b: survey.ZERO_POINT_MAG[b])
    peak = tf.pow(10.0, -0.4 * (params[:, 0][:, None] - zp)) * ctx.pixel_scale**2  # [B, C]
    peak = tf.where(params[:, :1] > 0, peak, 0.0)
    return x + profile[..., None] * peak[:, None, None, :]


COSMIC_MAX_HOT, COSMIC_MAX_TRACKS, COSMIC_TRACK_STEPS = 32, 6, 64


def cosmic_rays(x, params, seeds, ctx):
    """Hot pixels and straight tracks (3-15 px) of amplitude A sigma_Y10, each in one
    random band: what a co-add's outlier rejection missed."""
    amp, n_hot, n_tracks = params[:, 0], params[:, 1], params[:, 2]
    shape = tf.shape(x)
    b, h, w, c = shape[0], shape[1], shape[2], shape[3]
    hf, wf, cf = (tf.cast(v, tf.float32) for v in (h, w, c))
    u = uniform(seeds, [COSMIC_MAX_HOT * 3 + COSMIC_MAX_TRACKS * 5])
    hot = tf.reshape(u[:, :COSMIC_MAX_HOT * 3], [-1, COSMIC_MAX_HOT, 3])
    trk = tf.reshape(u[:, COSMIC_MAX_HOT * 3:], [-1, COSMIC_MAX_TRACKS, 5])
    # Hot pixels: one point each.
    hot_pts = tf.stack([hot[..., 0] * hf, hot[..., 1] * wf], -1)[:, :, None, :]  # [B, E, 1, 2]
    hot_band = tf.floor(hot[..., 2] * cf)
    hot_on = tf.range(COSMIC_MAX_HOT, dtype=tf.float32)[None] < n_hot[:, None]
    # Tracks: points every quarter pixel along a segment.
    t = tf.linspace(0.0, 1.0, COSMIC_TRACK_STEPS)[None, None, :]
    length = 3.0 + 12.0 * trk[..., 2]
    angle = 2.0 * math.pi * trk[..., 3]
    y0, x0 = trk[..., 0] * hf, trk[..., 1] * wf
    trk_pts = tf.stack([y0[..., None] + t * length[..., None] * tf.sin(angle)[..., None],
                        x0[..., None] + t * length[..., None] * tf.cos(angle)[..., None]], -1)
    trk_band = tf.floor(trk[..., 4] * cf)
    trk_on = tf.range(COSMIC_MAX_TRACKS, dtype=tf.float32)[None] < n_tracks[:, None]

    def scatter(points, band, on):  # points [B, E, S, 2] -> indices [B*E*S, 4], values
        yx = tf.cast(tf.floor(points), tf.int32)
        inside = ((yx[..., 0] >= 0) & (yx[..., 0] < h) & (yx[..., 1] >= 0) & (yx[..., 1] < w)
                  & on[..., None])
        bidx = tf.broadcast_to(tf.range(b)[:, None, None], tf.shape(yx)[:3])
        cidx = tf.broadcast_to(tf.cast(band, tf.int32)[..., None], tf.shape(yx)[:3])
        idx = tf.stack([bidx, tf.clip_by_value(yx[..., 0], 0, h - 1),
                        tf.clip_by_value(yx[..., 1], 0, w - 1), cidx], -1)
        vals = tf.where(inside, amp[:, None, None] * tf.gather(ctx.sigma, cidx), 0.0)
        return tf.reshape(idx, [-1, 4]), tf.reshape(vals, [-1])

    i1, v1 = scatter(hot_pts, hot_band, hot_on)
    i2, v2 = scatter(trk_pts, trk_band, trk_on)
    # The maximum, not the sum: a pixel crossed twice by a track's samples gets A once.
    hits = tf.tensor_scatter_nd_max(tf.zeros_like(x), tf.concat([i1, i2], 0),
                                    tf.concat([v1, v2], 0))
    return x + hits


MOFFAT_BETA, SPIKE_FRACTION, SPIKE_SIGMA_PX = 3.0, 2e-3, 0.5


def neighbour(x, params, seeds, ctx, own_fwhm_r=None):
    """A star of AB magnitude m (all bands) at distance d from the stamp centre: a Moffat
    (beta 3) core at the galaxy's own seeing (`own_fwhm_r` [B], r band, arcsec, None: the
    Context's; the star shares its exposure), four diffraction spikes, saturation at
    SATURATION_E_PER_S and the excess bled along its column. Only adds flux."""
    mag, dist = params[:, 0], params[:, 1]
    u = uniform(seeds, [1])
    angle = 2.0 * math.pi * u[:, 0]
    r_px = dist / ctx.pixel_scale
    sy, sx = (r_px * tf.sin(angle))[:, None, None], (r_px * tf.cos(angle))[:, None, None]
    ys, xs = _grid(x)
    dy, dx = ys[None] - sy, xs[None] - sx                                    # [B, H, W]
    zp = ctx.band_values(lambda b: survey.ZERO_POINT_MAG[b])
    flux = tf.pow(10.0, -0.4 * (mag[:, None] - zp))                          # [B, C]
    flux = tf.where(mag[:, None] > 0, flux, 0.0)[:, None, None, :]
    fwhm_px = _band_fwhm(ctx, ctx.own_fwhm(x, own_fwhm_r)) / ctx.pixel_scale
    alpha = (fwhm_px / (2.0 * tf.sqrt(2.0 ** (1.0 / MOFFAT_BETA) - 1.0)))[:, None, None, :]
    r2 = (tf.square(dy) + tf.square(dx))[..., None]
    core = (MOFFAT_BETA - 1.0) / (math.pi * alpha**2) * tf.pow(1.0 + r2 / alpha**2, -MOFFAT_BETA)

    def spike(along, across):
        fall = tf.square(alpha / (alpha + tf.abs(along[..., None])))
        gauss = tf.exp(-0.5 * tf.square(across / SPIKE_SIGMA_PX))[..., None]
        return fall * gauss / (math.sqrt(2.0 * math.pi) * SPIKE_SIGMA_PX)

    # The spikes hold 4 alpha SPIKE_FRACTION of the core's flux: renormalised, the star's
    # total flux is that of its magnitude.
    star = flux * (core + SPIKE_FRACTION * (spike(dx, dy) + spike(dy, dx))) / (
        1.0 + 4.0 * alpha * SPIKE_FRACTION)
    room = tf.maximum(SATURATION_E_PER_S - x, 0.0)
    kept = tf.minimum(star, room)
    # Charge above full well is conserved: half of a column's excess spills up and half
    # down from the star's row, filling each pixel to full well in turn (through the
    # saturated core) until spent; what reaches the stamp's edge leaves the cut-out.
    half = tf.reduce_sum(star - kept, axis=1, keepdims=True) / 2.0          # [B, 1, W, C]
    free = room - kept
    below = tf.broadcast_to((dy >= 0.0)[..., None], tf.shape(free))

    def spill(side, reverse):
        cap = tf.where(side, free, 0.0)
        before = tf.cumsum(cap, axis=1, exclusive=True, reverse=reverse)
        return tf.where(side, tf.minimum(cap, tf.maximum(half - before, 0.0)), 0.0)

    return x + kept + spill(below, False) + spill(~below, True)


def misregistration(x, params, seeds, ctx):
    """g and i shifted against r by s pixels each, in random directions (Fourier shift)."""
    u = uniform(seeds, [len(ctx.bands)])
    angle = 2.0 * math.pi * u
    moves = tf.constant([0.0 if b == "r" else 1.0 for b in ctx.bands])      # r stays
    shift = params[:, :1] * moves                                           # [B, C]
    dy = (shift * tf.sin(angle))[:, :, None, None]
    dx = (shift * tf.cos(angle))[:, :, None, None]
    return _fft_filter(x, lambda ky, kx: tf.exp(tf.complex(
        tf.zeros_like(dy * ky + dx * kx), -2.0 * math.pi * (dy * ky + dx * kx))))


# --------------------------------------------------------------------------- image stage


def bad_pixels(x, params, seeds, ctx):
    """n bad columns (from a random row to the stamp's edge, in one random band) and a
    fraction f of masked pixels, filled with zero: the sky level of a sky-subtracted image,
    what a pipeline writes where it has no data."""
    n_cols, frac = params[:, 0], params[:, 1]
    shape = tf.shape(x)
    hf, wf, cf = (tf.cast(shape[i], tf.float32) for i in (1, 2, 3))
    u = uniform(seeds, [8 * 4])
    cols = tf.reshape(u, [-1, 8, 4])
    col = tf.floor(cols[..., 0] * wf)
    row0 = tf.floor(cols[..., 1] * hf)
    upward = cols[..., 2] < 0.5
    band = tf.floor(cols[..., 3] * cf)
    on = tf.range(8, dtype=tf.float32)[None] < n_cols[:, None]             # [B, E]
    rows = tf.cast(tf.range(shape[1]), tf.float32)[None, None, :, None]
    cidx = tf.cast(tf.range(shape[2]), tf.float32)[None, None, None, :]
    in_col = tf.equal(cidx, col[..., None, None])
    in_rows = tf.where(upward[..., None, None], rows >= row0[..., None, None],
                       rows <= row0[..., None, None])
    hit = tf.cast(in_col & in_rows & on[..., None, None], tf.float32)      # [B, E, H, W]
    onehot = tf.one_hot(tf.cast(band, tf.int32), shape[3])                 # [B, E, C]
    masked = tf.einsum("behw,bec->bhwc", hit, onehot) > 0
    field = uniform(_refold(seeds, 1), shape[1:])
    masked = masked | (field < frac[:, None, None, None])
    return tf.where(masked, 0.0, x)


def _refold(seeds, value):
    """Each galaxy's seed folded with `value`: a second stream independent of the first."""
    value = tf.constant(value, tf.int64)
    return tf.map_fn(lambda s: tf.random.experimental.stateless_fold_in(s, value), seeds,
                     fn_output_signature=tf.int64)


def calibration(x, params, seeds, ctx):
    """Each band scaled by 10^(-0.4 s_b dm): a zero-point error of dm magnitudes with a
    random sign per band."""
    return x * calibration_factors(params, seeds, len(ctx.bands))[:, None, None, :]


def calibration_factors(params, seeds, n_bands):
    """Per-band flux factors [B, C]: 10^(-0.4 s_b dm), s_b = +-1 drawn per galaxy and band."""
    u = uniform(seeds, [n_bands])
    sign = tf.where(u < 0.5, -1.0, 1.0)
    return tf.pow(10.0, -0.4 * sign * params[:, :1])


def quantise(x, params, seeds, ctx):
    """Each band stored as integers of b bits spanning the stamp's own range, as a lossy
    FITS quantisation does, then read back."""
    bits = params[:, 0][:, None, None, None]
    lo = tf.reduce_min(x, axis=[1, 2], keepdims=True)
    hi = tf.reduce_max(x, axis=[1, 2], keepdims=True)
    step = tf.maximum(hi - lo, 1e-12) / (tf.pow(2.0, bits) - 1.0)
    return lo + tf.round((x - lo) / step) * step


# --------------------------------------------------------------------------- display stage

JPEG_QUALITIES = (90, 70, 50, 30, 10)


def jpeg(x, params, seeds, ctx):
    """The stretched image as an 8-bit JPEG (libjpeg, 4:2:0 chroma for three bands) of
    quality q, decoded back: how many survey cut-outs are served."""
    if ctx.display_range is not None:
        lo = tf.constant(ctx.display_range[0], tf.float32)
        hi = tf.constant(ctx.display_range[1], tf.float32)
        lo = tf.broadcast_to(lo, tf.shape(x[:, :1, :1, :]))
        hi = tf.broadcast_to(hi, tf.shape(x[:, :1, :1, :]))
    else:
        lo = tf.reduce_min(x, axis=[1, 2], keepdims=True)
        hi = tf.reduce_max(x, axis=[1, 2], keepdims=True)
    span = tf.maximum(hi - lo, 1e-12)
    u8 = tf.cast(tf.round(tf.clip_by_value((x - lo) / span, 0.0, 1.0) * 255.0), tf.uint8)
    n_bands = x.shape[-1]
    quality = tf.cast(params[:, 0], tf.int32)

    def code(args):
        image, q = args

        def at(level):
            def run():
                if n_bands == 3:
                    return tf.io.decode_jpeg(tf.io.encode_jpeg(image, quality=level), channels=3)
                planes = [tf.io.decode_jpeg(tf.io.encode_jpeg(image[..., i:i + 1], quality=level),
                                            channels=1) for i in range(n_bands)]
                return tf.concat(planes, -1)
            return run

        branches = {int(level): at(int(level)) for level in JPEG_QUALITIES}
        branches[0] = lambda: image
        keys = sorted(branches)
        index = tf.argmax(tf.cast(tf.equal(tf.constant(keys), q), tf.int32))
        return tf.switch_case(tf.cast(index, tf.int32), [branches[k] for k in keys])

    coded = tf.map_fn(code, (u8, quality), fn_output_signature=tf.TensorSpec(
        [x.shape[1], x.shape[2], n_bands], tf.uint8))
    return lo + tf.cast(coded, tf.float32) / 255.0 * span
