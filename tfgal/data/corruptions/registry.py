"""Physical corruptions of survey images, each with five severities in physical units.

A corruption is a small batched TensorFlow op on images [B, H, W, C] (channels-last
float32). It acts at one of three stages of an observation:

* ``flux``: on the noiseless flux (e-/s per pixel) before the Poisson noise: seeing, sky
  residual, satellite trail, cosmic rays, bright neighbour, band misregistration;
* ``image``: on the observed, sky-subtracted image (flux units) before the stretch: bad
  columns and masked pixels, calibration error, quantisation;
* ``display``: on the stretched image the network sees: JPEG compression of the 8-bit
  cut-out.

On data stored with noise baked in (imported survey images) the flux-stage corruptions
that only add light (trails, cosmic rays) act on the observed image instead; the others
(`Corruption.refused`) would need the noiseless sky and are refused with the reason.

Every corruption reads its severity as a row of its parameter table (`Corruption.table`,
row 0 the identity) per galaxy, so one batch may mix corruptions and severities (the
training defence, `Plan.augment`). Random choices (positions, angles, signs) are drawn per
galaxy from a stateless seed folded from (root seed, corruption name, galaxy id, salt): the
same galaxy gets the same corrupted image in any batch, order or worker, like its noise.

Physical constants: LSST sky noise at Y10 (`survey.sky_sigma`) is the unit of additive
amplitudes, so a severity means the same signal-to-noise against the deep survey in every
band; seeing follows the mocks' lambda^-1/5 scaling; saturation is 100,000 e- in one 15 s
snap (6,667 e-/s).

The images' own PSF: seeing widens each galaxy's own PSF to the target FWHM, and a
neighbour star is drawn at it. Mock records store each galaxy's r-band FWHM (drawn
0.6-0.8"; the manifest's ``psf_fwhm``), which the pipeline passes to `corrupt` and
`Plan.apply` as ``own_fwhm_r`` [B]; for records without it (``own_fwhm_r=None``) every
galaxy gets the dataset-wide `Context.own_fwhm_r`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from tfgal.data.corruptions import physics as ops
from tfgal.data.corruptions.physics import (SATURATION_E_PER_S, TRAIL_FWHM_ARCSEC, Context,
                                       calibration_factors, per_galaxy_seeds)
from tfgal.errors import ConfigError

__all__ = ["NAMES", "STAGES", "SEVERITIES", "CORRUPTIONS", "Corruption", "Context", "Plan",
           "check", "table_rows", "per_galaxy_seeds", "corrupt", "calibration_factors",
           "SATURATION_E_PER_S", "TRAIL_FWHM_ARCSEC"]

SEVERITIES = 5
STAGES = ("flux", "image", "display")


@dataclasses.dataclass(frozen=True)
class Corruption:
    """One corruption: where it acts, its severity table and its physics.

    `columns` name the table's parameters with units; `table[s]` holds severity s's values
    (s = 1..5; row 0, added by `table`, is the identity). `fn(x, params [B, P], seeds
    [B, 2], ctx)` returns the corrupted batch; with `psf` it also takes `own_fwhm_r`, each
    galaxy's own r-band PSF FWHM [B] (arcsec).
    """

    name: str
    stage: str
    columns: tuple
    rows: tuple
    cause: str
    fn: object
    refused: str = ""        # why it cannot act on images with noise baked in ("" = it can)
    flux_units: bool = True  # needs pixels in flux units (refused on pre-stretched data)
    identity: tuple = ()     # the row of severity 0 (default: zeros)
    psf: bool = False        # fn reads each galaxy's own PSF FWHM (keyword own_fwhm_r)

    @property
    def table(self):
        ident = self.identity or (0.0,) * len(self.columns)
        return np.array([ident, *self.rows], np.float32)

    def stage_on(self, noiseless):
        """The stage it acts at on noiseless (mock) or noisy (imported) data."""
        return self.stage if noiseless or self.stage != "flux" else "image"


# --------------------------------------------------------------------------- the registry

_NOISE_REFUSAL = ("it needs the noiseless image: on images with noise baked in it would "
                  "act on the noise too ({what})")

CORRUPTIONS = {c.name: c for c in (
    Corruption(
        "seeing", "flux", ("r-band PSF FWHM [arcsec]",), ((1.0,), (1.2,), (1.4,), (1.7,), (2.0,)),
        "worse atmospheric seeing than each galaxy's own (mocks: their own, drawn "
        "0.6-0.8\" and stored per record)", ops.seeing,
        refused=_NOISE_REFUSAL.format(what="blurring smooths the noise"),
        identity=(0.0,), psf=True),
    Corruption(
        "sky", "flux", ("offset and gradient [sigma_Y10]",), ((0.25,), (0.5,), (1.0,), (2.0,),
                                                             (4.0,)),
        "a constant plus gradient left by sky subtraction", ops.sky,
        refused=_NOISE_REFUSAL.format(what="the stored images are already sky-subtracted")),
    Corruption(
        "trail", "flux", ("peak surface brightness [AB mag/arcsec^2]",),
        ((27.0,), (26.0,), (25.0,), (24.0,), (23.0,)),
        "a satellite streak, 1\" FWHM, at a random position and angle", ops.trail),
    Corruption(
        "cosmic-rays", "flux", ("amplitude [sigma_Y10]", "hot pixels", "tracks"),
        ((10.0, 2, 1), (20.0, 4, 1), (50.0, 8, 2), (100.0, 16, 4), (200.0, 32, 6)),
        "cosmic-ray tracks and hot pixels left in the co-add, one band each", ops.cosmic_rays),
    Corruption(
        "neighbour", "flux", ("star r [AB mag]", "distance [arcsec]"),
        ((19.0, 7.0), (17.5, 7.0), (16.0, 7.0), (14.5, 7.0), (13.0, 7.0)),
        "a bright star nearby: Moffat core, diffraction spikes, saturation and bleed trail",
        ops.neighbour, refused=_NOISE_REFUSAL.format(what="its light needs its own noise"),
        psf=True),
    Corruption(
        "misregistration", "flux", ("g and i shift against r [pixels]",),
        ((0.1,), (0.2,), (0.35,), (0.5,), (1.0,)),
        "sub-pixel astrometric offsets between the bands", ops.misregistration,
        refused=_NOISE_REFUSAL.format(what="shifting resamples the noise")),
    Corruption(
        "bad-pixels", "image", ("bad columns", "masked fraction"),
        ((1, 0.001), (2, 0.003), (3, 0.01), (4, 0.03), (6, 0.1)),
        "dead columns and masked pixels, filled with zero (the sky level)", ops.bad_pixels),
    Corruption(
        "calibration", "image", ("zero-point error [mag]",),
        ((0.01,), (0.02,), (0.05,), (0.1,), (0.2,)),
        "a zero-point offset of random sign in each band", ops.calibration),
    Corruption(
        "quantise", "image", ("bits per pixel",), ((12,), (10,), (8,), (6,), (4,)),
        "the stored image quantised over each band's range", ops.quantise, flux_units=False),
    Corruption(
        "jpeg", "display", ("JPEG quality",), tuple((q,) for q in ops.JPEG_QUALITIES),
        "the 8-bit stretched cut-out stored as a JPEG", ops.jpeg, flux_units=False),
)}
NAMES = tuple(CORRUPTIONS)


def check(names, manifest, *, key="corruptions"):
    """Refuses unknown corruptions, and those that cannot act on this dataset, with why."""
    names = list(names)
    for name in names:
        if name not in CORRUPTIONS:
            raise ConfigError(f"unknown corruption {name!r}", key=key, valid=NAMES)
    if len(set(names)) != len(names):
        raise ConfigError(f"corruptions listed twice in {names}", key=key)
    stretched = (manifest.stretch or {}).get("kind") == "identity"
    for name in names:
        c = CORRUPTIONS[name]
        if not manifest.noiseless and c.refused:
            raise ConfigError(f"corruption {name!r} cannot act on dataset {manifest.root}, "
                              f"whose images have noise baked in: {c.refused}", key=key)
        if stretched and c.flux_units:
            raise ConfigError(f"corruption {name!r} needs pixels in flux units, but dataset "
                              f"{manifest.root} stores them already stretched", key=key,
                              valid=[n for n in NAMES if not CORRUPTIONS[n].flux_units])
    return names


def table_rows():
    """(name, stage, parameter, severity 1..5 values) rows: the README's table."""
    rows = []
    for c in CORRUPTIONS.values():
        for j, col in enumerate(c.columns):
            rows.append((c.name, c.stage, col, [r[j] for r in c.rows]))
    return rows


def corrupt(x, name, severity, seeds, ctx, own_fwhm_r=None):
    """Corruption `name` at per-galaxy `severity` [B] (0: untouched, exactly) of batch `x`.

    `own_fwhm_r`: each galaxy's own r-band PSF FWHM [B] (arcsec), as the records store it;
    None: `ctx.own_fwhm_r` for every galaxy.
    """
    c = CORRUPTIONS[name]
    severity = tf.cast(severity, tf.int32)
    params = tf.gather(tf.constant(c.table), severity)
    extra = {"own_fwhm_r": own_fwhm_r} if c.psf else {}
    y = c.fn(x, params, seeds, ctx, **extra)
    return tf.where((severity > 0)[:, None, None, None], y, x)


# --------------------------------------------------------------------------- plans


@dataclasses.dataclass(frozen=True)
class Plan:
    """Which corruption each galaxy of a pipeline gets, and how strongly.

    * ``Plan.fixed(name, s)``: every galaxy, severity s;
    * ``Plan.sweep(name)``: every galaxy once per severity 0..5 (severity-major), the same
      noise each time, so severity 0 is the clean reference of the same images;
    * ``Plan.augment(names, prob)``: each galaxy, with probability `prob`, one of `names`
      drawn uniformly at a severity drawn uniformly from 1..5 (fresh per epoch).
    """

    names: tuple
    severity: int | None = None
    sweep_levels: tuple = ()
    prob: float = 0.0

    @classmethod
    def fixed(cls, name, severity):
        if not 0 <= int(severity) <= SEVERITIES:
            raise ConfigError(f"severity must be 0..{SEVERITIES}; received {severity}",
                              key="severity")
        return cls((name,), severity=int(severity))

    @classmethod
    def sweep(cls, name, levels=tuple(range(SEVERITIES + 1))):
        return cls((name,), sweep_levels=tuple(int(s) for s in levels))

    @classmethod
    def augment(cls, names, prob=0.5):
        if not 0 < prob <= 1:
            raise ConfigError(f"corruption probability must lie in (0, 1]; received {prob}",
                              key="data.corrupt_prob")
        return cls(tuple(names), prob=float(prob))

    @property
    def random(self):
        return self.severity is None and not self.sweep_levels

    def stages(self, noiseless):
        return {CORRUPTIONS[n].stage_on(noiseless) for n in self.names}

    def assign(self, root, ids, salts, severity=None):
        """(choice [B] index into `names`, severity [B]) of a batch."""
        b = tf.shape(ids)[0]
        if not self.random:
            level = (tf.fill([b], self.severity) if severity is None
                     else tf.cast(severity, tf.int32))
            return tf.zeros([b], tf.int32), level
        u = ops.uniform(per_galaxy_seeds(root, "plan", ids, salts), [3])
        on = u[:, 0] < self.prob
        choice = tf.minimum(tf.cast(u[:, 1] * len(self.names), tf.int32), len(self.names) - 1)
        level = tf.minimum(1 + tf.cast(u[:, 2] * SEVERITIES, tf.int32), SEVERITIES)
        return choice, tf.where(on, level, 0)

    def apply(self, stage, x, choice, severity, ids, salts, root, ctx, noiseless,
              own_fwhm_r=None):
        """The plan's corruptions acting at `stage` on batch `x`; `own_fwhm_r`: each
        galaxy's own r-band PSF FWHM [B] where the records hold it (see `corrupt`)."""
        for j, name in enumerate(self.names):
            if CORRUPTIONS[name].stage_on(noiseless) != stage:
                continue
            level = tf.where(tf.equal(choice, j), severity, 0)
            x = tf.cond(tf.reduce_any(level > 0),
                        lambda: _corrupt_some(x, name, level, ids, salts, root, ctx,
                                              own_fwhm_r),
                        lambda: x)
        return x


def _corrupt_some(x, name, level, ids, salts, root, ctx, own_fwhm_r=None):
    """`corrupt` on only the galaxies with a severity (a mixed plan corrupts a few per
    batch: the others cost nothing), scattered back into the batch."""
    where = tf.where(level > 0)
    some = tf.gather_nd(x, where)
    seeds = per_galaxy_seeds(root, name, tf.gather_nd(ids, where), tf.gather_nd(salts, where))
    own = None if own_fwhm_r is None else tf.gather_nd(own_fwhm_r, where)
    done = corrupt(some, name, tf.gather_nd(level, where), seeds, ctx, own)
    return tf.tensor_scatter_nd_update(x, where, done)
