"""Physical corruptions: identity at severity 0, seeding, the physics of each severity, and
their place in the tf.data pipeline."""

import numpy as np
import pytest
import tensorflow as tf

from tfgal import config, survey
from tfgal.data import DatasetWriter, pipeline, stretch
from tfgal.data import corruptions as C
from tfgal.errors import ConfigError

CTX = C.Context(own_fwhm_r=0.7)
UNIT_CTX = C.Context(display_range=((0.0,) * 3, (1.0,) * 3))  # stretched pixels in [0, 1]
SIGMA = survey.sky_sigma("Y10")
SAT = C.SATURATION_E_PER_S
RANDOM = {"sky", "trail", "cosmic-rays", "neighbour", "misregistration", "bad-pixels",
          "calibration"}  # the others are deterministic functions of the image


def galaxies(n, size=32, seed=0):
    """Gaussian blobs (e-/s per pixel) with Y10-like sky noise: no pixel is exactly 0."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.empty((n, size, size, 3), np.float32)
    for k in range(n):
        cy, cx = rng.uniform(size * 0.4, size * 0.6, 2)
        width = rng.uniform(2.0, 3.0)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * width**2))
        noise = rng.normal(0, SIGMA, (size, size, 3))
        out[k] = blob[..., None] * np.array([2.0, 4.0, 5.0]) + noise
    return out


def stretched(n, size=32, seed=0):
    """Images in the display range [0, 1], as the network sees them."""
    x = galaxies(n, size, seed)
    return np.clip(np.arcsinh(x / SIGMA / 10) / 4 + 0.1, 0, 1).astype(np.float32)


def images_for(name, n, size=32, seed=0):
    return stretched(n, size, seed) if name == "jpeg" else galaxies(n, size, seed)


def ctx_for(name):
    return UNIT_CTX if name == "jpeg" else CTX


def seeds(name, ids, root=0):
    ids = tf.constant(ids, tf.int64)
    return C.per_galaxy_seeds(root, name, ids, tf.zeros_like(ids))


def run(x, name, severity, ids=None, ctx=None, root=0):
    """`name` at `severity` (int or [B]) on images x [B, H, W, C] -> numpy."""
    x = np.asarray(x, np.float32)
    b = len(x)
    severity = np.broadcast_to(np.asarray(severity, np.int32), (b,))
    ids = list(range(b)) if ids is None else ids
    return C.corrupt(tf.constant(x), name, tf.constant(severity), seeds(name, ids, root),
                     ctx or ctx_for(name)).numpy()


def table(name, column=0):
    return C.CORRUPTIONS[name].table[:, column]


# --------------------------------------------------------------------------- all corruptions


def test_config_lists_the_same_corruptions():
    assert config.CORRUPTIONS == C.NAMES
    assert len(C.NAMES) == 10
    for c in C.CORRUPTIONS.values():
        assert c.stage in C.STAGES and c.table.shape == (C.SEVERITIES + 1, len(c.columns))
    assert len(C.table_rows()) == sum(len(c.columns) for c in C.CORRUPTIONS.values())


def test_plans_validate_their_arguments(blob_dataset):
    with pytest.raises(ConfigError, match="severity"):
        C.Plan.fixed("sky", 6)
    with pytest.raises(ConfigError, match="probability"):
        C.Plan.augment(["sky"], prob=0.0)
    with pytest.raises(ValueError, match="evaluation"):
        pipeline.make_dataset(blob_dataset, "train", "Y10", training=True,
                              corruption=C.Plan.sweep("sky"))


@pytest.mark.parametrize("name", C.NAMES)
def test_severity_zero_is_the_identity_and_others_change_the_image(name):
    x = images_for(name, 1)
    batch = np.repeat(x, 6, axis=0)
    y = run(batch, name, np.arange(6), ids=[7] * 6)
    np.testing.assert_array_equal(y[0], x[0])
    assert y.dtype == np.float32 and y.shape == batch.shape and np.all(np.isfinite(y))
    for s in range(1, 6):
        assert not np.array_equal(y[s], x[0]), f"{name} severity {s} left the image as it was"


@pytest.mark.parametrize("name", C.NAMES)
def test_seeded_per_galaxy_whatever_the_batch(name):
    x = images_for(name, 4, seed=1)
    severity = [1, 3, 5, 3]
    ids = [11, 12, 13, 14]
    y = run(x, name, severity, ids)
    np.testing.assert_array_equal(run(x, name, severity, ids), y)  # same seed, same image
    # Galaxy 12 alone, at severity 3, and in a batch of 4 of mixed severities.
    alone = run(x[1:2], name, 3, [12])[0]
    np.testing.assert_allclose(alone, y[1], rtol=1e-6, atol=1e-6 * np.abs(x[1]).max())
    # One image under different galaxy ids: a new draw where the corruption is random.
    same = np.repeat(x[:1], 6, axis=0)
    draws = run(same, name, 5, ids=[1, 2, 3, 4, 5, 6])
    if name in RANDOM:
        distinct = len({d.tobytes() for d in draws})
        assert distinct >= (2 if name == "calibration" else 6)  # 8 sign patterns only
        assert not np.array_equal(run(same[:1], name, 5, [1], root=1), draws[0])  # root seed
    else:
        for d in draws[1:]:
            np.testing.assert_array_equal(d, draws[0])


# --------------------------------------------------------------------------- seeing


def draw_star(size=64, flux=1000.0):
    """A point source with the images' own Kolmogorov PSF (0.7" in r) per band, sampled
    at pixel centres (no pixel response), so the measured width is the PSF's."""
    galsim = pytest.importorskip("galsim")
    out = np.empty((size, size, 3), np.float32)
    for c, band in enumerate(survey.BANDS):
        psf = galsim.Kolmogorov(fwhm=survey.seeing_fwhm(0.7, band), flux=flux)
        out[..., c] = psf.drawImage(nx=size, ny=size, scale=0.2, method="no_pixel").array
    return out


def fwhm_arcsec(plane, up=8, scale=0.2):
    """FWHM of a round, well-sampled profile: Fourier-interpolated `up` times finer, the
    area above half the peak is pi (FWHM / 2)^2."""
    n = plane.shape[0]
    spectrum = np.fft.fftshift(np.fft.fft2(plane))
    fine = np.zeros((n * up, n * up), complex)
    start = (n * up - n) // 2
    fine[start:start + n, start:start + n] = spectrum
    profile = np.fft.ifft2(np.fft.ifftshift(fine)).real
    area = np.count_nonzero(profile >= profile.max() / 2) / up**2
    return 2 * np.sqrt(area / np.pi) * scale


def test_seeing_reaches_the_target_fwhm_and_keeps_the_flux():
    galsim = pytest.importorskip("galsim")
    star = draw_star()
    for c, band in enumerate(survey.BANDS):  # the measurement itself, on the clean star
        assert fwhm_arcsec(star[..., c]) == pytest.approx(survey.seeing_fwhm(0.7, band),
                                                          rel=0.015)
    y = run(np.repeat(star[None], 6, axis=0), "seeing", np.arange(6), ctx=CTX)
    for s in range(1, 6):
        target_r = table("seeing")[s]
        for c, band in enumerate(survey.BANDS):
            target = survey.seeing_fwhm(target_r, band)
            measured = fwhm_arcsec(y[s, ..., c])
            assert measured == pytest.approx(target, rel=0.10), (s, band)
            assert y[s, ..., c].sum() == pytest.approx(star[..., c].sum(), rel=0.01)
            if band != "r":
                continue
            # What the op claims to do: the own PSF convolved with a Gaussian of FWHM
            # sqrt(F^2 - F_own^2) (whose FWHM is about 3% above F for a Kolmogorov PSF).
            own = survey.seeing_fwhm(0.7, band)
            exact = galsim.Convolve(
                galsim.Kolmogorov(fwhm=own, flux=1000.0),
                galsim.Gaussian(fwhm=np.sqrt(target**2 - own**2))).drawImage(
                    nx=64, ny=64, scale=0.2, method="no_pixel").array
            np.testing.assert_allclose(y[s, ..., c], exact, atol=2e-4 * exact.max())
    widths = [fwhm_arcsec(y[s, ..., 1]) for s in range(1, 6)]
    assert np.all(np.diff(widths) > 0)


def test_seeing_no_worse_than_the_images_own_is_a_no_op():
    star = draw_star(size=32)
    ctx = C.Context(own_fwhm_r=2.5)  # every target is sharper than the images already are
    y = run(star[None], "seeing", 5, ctx=ctx)
    np.testing.assert_allclose(y[0], star, atol=1e-5 * star.max())


# --------------------------------------------------------------------------- additive light


@pytest.mark.parametrize("name", ["trail", "cosmic-rays", "neighbour"])
def test_light_is_only_added(name):
    x = galaxies(3, size=48, seed=2)
    for s in range(1, 6):
        diff = run(x, name, s, ids=[4, 5, 6]) - x
        assert diff.min() >= -1e-6 * np.abs(x).max(), (name, s)
        assert np.all(diff.max(axis=(1, 2, 3)) > 0), (name, s)  # in every galaxy


def test_trail_peak_is_its_surface_brightness():
    x = np.zeros((4, 48, 48, 3), np.float32)
    for s in range(1, 6):
        diff = run(x, "trail", s, ids=[0, 1, 2, 3])
        mu = table("trail")[s]
        peak = np.array([10 ** (-0.4 * (mu - survey.ZERO_POINT_MAG[b])) * 0.2**2
                         for b in survey.BANDS])
        top = diff.max(axis=(1, 2))  # [B, C]: the line passes within 0.71 px of a centre
        assert np.all(top <= peak * (1 + 1e-5)) and np.all(top >= 0.94 * peak), s
        # A streak, not a spot: at least one stamp width of pixels above half the peak.
        assert np.all((diff[..., 1] > peak[1] / 2).sum(axis=(1, 2)) >= 48)


def test_cosmic_rays_hit_more_pixels_with_severity_at_their_amplitude():
    x = np.zeros((4, 64, 64, 3), np.float32)
    touched = []
    for s in range(1, 6):
        hits = run(x, "cosmic-rays", s, ids=[20, 21, 22, 23])
        amp = table("cosmic-rays")[s]
        on = hits > 0
        values = hits[on] / np.broadcast_to(SIGMA, hits.shape)[on]
        np.testing.assert_allclose(values, amp, rtol=1e-6)  # A sigma_Y10 of its band
        if touched:  # the same events, more of them: the hits of s - 1 are kept
            assert np.all(on[touched[-1][1]]), s
        touched.append((on.sum(axis=(1, 2, 3)), on))
    counts = np.array([t[0] for t in touched])  # [severity, galaxy]
    assert np.all(np.diff(counts, axis=0) >= 0)
    assert np.all(np.diff(counts.sum(axis=1)) > 0)
    assert np.all(counts[0] >= 3) and np.all(counts[-1] > 32)  # 2 hot + a 3-15 px track


def test_neighbour_is_a_star_of_its_magnitude_at_its_distance():
    n = 512  # holds all but ~1e-4 of the light (Moffat core and 1/r^2 spikes)
    x = np.zeros((1, n, n, 3), np.float32)
    for s in (1, 3):
        mag, dist = C.CORRUPTIONS["neighbour"].table[s]
        y = run(x, "neighbour", s, ids=[9])[0]
        flux = [survey.mag_to_flux(mag, b) for b in survey.BANDS]
        np.testing.assert_allclose(y.sum(axis=(0, 1)), flux, rtol=2e-3)
        peak = np.array(np.unravel_index(np.argmax(y[..., 1]), (n, n))) - (n - 1) / 2
        assert np.hypot(*peak) * 0.2 == pytest.approx(dist, abs=0.15)


def test_neighbour_saturates_and_conserves_its_charge():
    """Severity 4 (r = 14.5 mag at 7"): the core saturates, no pixel exceeds full well, and
    the charge above it is kept in the star's columns (bled, not lost; severity 5's bleed
    can run off the stamp's edge, and a real cut-out loses that charge too)."""
    n = 96  # the star, 35 px from the centre, lies on the stamp in any direction
    x = np.zeros((1, n, n, 3), np.float32)
    x[0, :2, :2] = 1.5 * SAT  # already saturated pixels stay as they were
    fn, sd = C.CORRUPTIONS["neighbour"].fn, seeds("neighbour", [3])
    y = run(x, "neighbour", 4, ids=[3])[0]
    faint = fn(tf.zeros_like(x), tf.constant([[20.0, 7.0]]), sd, CTX).numpy()[0]
    star = faint * 10 ** (0.4 * (20.0 - table("neighbour")[4]))  # the star, unsaturated
    assert np.all(faint < SAT / 10)
    np.testing.assert_array_equal(y[:2, :2], x[0, :2, :2])
    free = np.ones((n, n, 3), bool)
    free[:2, :2] = False
    assert y[free].max() <= SAT * (1 + 1e-6)
    core = star >= SAT
    assert core[..., 0].any() and core[..., 1].any()  # g and r saturate
    assert np.all(y[core] >= SAT * (1 - 1e-6))
    # Charge per column: what the star brought, none lost (the stamp holds the bleed).
    added = np.where(free, y, 0)
    np.testing.assert_allclose(added.sum(axis=0), star.sum(axis=0), rtol=1e-4,
                               atol=1e-4 * star.max())
    assert np.abs(added - star).max() > 0.05 * SAT  # some charge moved along its column


def test_bright_star_bleeds_along_its_column():
    n = 96
    x = np.zeros((1, n, n, 3), np.float32)
    fn, sd = C.CORRUPTIONS["neighbour"].fn, seeds("neighbour", [3])
    y = fn(tf.constant(x), tf.constant([[13.0, 7.0]]), sd, CTX).numpy()[0]  # severity 5
    star = fn(tf.constant(x), tf.constant([[20.0, 7.0]]), sd, CTX).numpy()[0] * 10 ** (0.4 * 7)
    saturated = y >= SAT * (1 - 1e-6)
    assert y.max() <= SAT * (1 + 1e-6)
    for c in range(3):
        core = star[..., c] >= SAT
        row, col = np.unravel_index(np.argmax(star[..., c]), (n, n))
        beyond = saturated[..., c] & ~core
        assert beyond.sum() >= 4, c  # a bleed trail outside the saturated core ...
        in_core_columns = set(np.nonzero(core.any(axis=0))[0])
        assert set(np.nonzero(beyond)[1]) <= in_core_columns  # ... in the core's columns ...
        assert saturated[:, col, c].sum() >= saturated[row, :, c].sum() + 4  # ... vertical


# --------------------------------------------------------------------------- image stage


def test_calibration_scales_each_band_by_its_zero_point_error():
    x = galaxies(4, seed=3)
    for s in range(1, 6):
        y = run(x, "calibration", s, ids=[30, 31, 32, 33])
        dm = table("calibration")[s]
        ratio = y / x
        per_band = ratio[:, :1, :1, :]
        np.testing.assert_allclose(ratio, np.broadcast_to(per_band, ratio.shape), rtol=1e-6)
        np.testing.assert_allclose(np.abs(np.log10(per_band)), 0.4 * dm, rtol=1e-4)
        factors = C.calibration_factors(tf.constant(np.full((4, 1), dm, np.float32)),
                                        seeds("calibration", [30, 31, 32, 33]), 3).numpy()
        np.testing.assert_allclose(per_band[:, 0, 0, :], factors, rtol=1e-6)
    assert len({tuple(np.sign(np.log10(f))) for f in factors}) > 1  # signs drawn per galaxy


@pytest.mark.parametrize("name", ["quantise", "jpeg"])
def test_compression_error_grows_with_severity(name):
    x = images_for(name, 3, size=48, seed=4)
    errors = [np.abs(run(x, name, s) - x).mean() for s in range(6)]
    assert errors[0] == 0
    assert np.all(np.diff(errors) > 0), errors
    if name == "quantise":  # rounding to 2^-b of the range: error about step / 4
        for s in range(1, 6):
            step = (x.max(axis=(1, 2)) - x.min(axis=(1, 2))).mean() / (2 ** table(name)[s] - 1)
            assert errors[s] == pytest.approx(step / 4, rel=0.3), s
    else:  # JPEG stays in the display range
        y = run(x, name, 5)
        assert y.min() >= 0 and y.max() <= 1


def test_bad_pixels_zero_a_fraction_and_leave_the_rest():
    n, size = 8, 64
    x = galaxies(n, size, seed=5)
    cells = n * size * size * 3
    previous = None
    for s in range(1, 6):
        y = run(x, "bad-pixels", s, ids=list(range(40, 40 + n)))
        masked = y == 0
        np.testing.assert_array_equal(y[~masked], x[~masked])  # the rest untouched
        cols, frac = C.CORRUPTIONS["bad-pixels"].table[s]
        expected = cells * frac
        # The random mask, plus at most one column per bad column and galaxy.
        assert expected - 5 * np.sqrt(expected) <= masked.sum(), s
        assert masked.sum() <= expected + 5 * np.sqrt(expected) + n * cols * size, s
        if previous is not None:
            assert np.all(masked[previous]), s  # the same defects, more of them
        previous = masked
    # Bad columns: runs of zeros down one column of one band reaching the stamp's edge.
    y = run(x, "bad-pixels", 3, ids=list(range(40, 40 + n)))
    for k in range(n):
        runs = 0
        for c in range(3):
            for j in range(size):
                column = y[k, :, j, c] == 0
                if column.all():
                    runs += 1
                    continue
                top, bottom = np.argmin(column), np.argmin(column[::-1])  # leading zeros
                runs += max(top, bottom) >= 4
        assert runs >= 1, k


def test_sky_residual_offset_and_gradient():
    size = 32
    x = galaxies(6, size, seed=6)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    design = np.stack([np.ones(size * size), xx.ravel(), yy.ravel()], 1)
    angles = []
    for s in range(1, 6):
        k = table("sky")[s]
        pattern = (run(x, "sky", s, ids=list(range(50, 56))) - x) / SIGMA  # in sigma_Y10
        for g in range(6):
            coef = np.linalg.lstsq(design, pattern[g].reshape(-1, 3), rcond=None)[0]
            np.testing.assert_allclose(np.abs(coef[0]), k, rtol=1e-3)  # constant: +-k sigma
            np.testing.assert_allclose(coef[0], coef[0, 0], rtol=1e-3)  # one sign, all bands
            slope = np.hypot(coef[1], coef[2]) * size / 2  # gradient: +-k at the edges
            np.testing.assert_allclose(slope, k, rtol=1e-3)
            fit = design @ coef
            assert np.abs(fit - pattern[g].reshape(-1, 3)).max() < 1e-3 * k  # a plane
            angles.append(np.arctan2(coef[2, 0], coef[1, 0]))
    assert np.ptp(angles[:6]) > 0.5  # directions differ between galaxies


def test_misregistration_moves_g_and_i_but_not_r():
    size = 32
    yy, xx = np.mgrid[:size, :size]
    blob = np.exp(-((xx - 15.5) ** 2 + (yy - 15.5) ** 2) / (2 * 2.5**2)).astype(np.float32)
    x = np.repeat(np.stack([blob * 3, blob * 4, blob * 5], -1)[None], 4, axis=0)

    def centroid(img):  # [H, W] -> (y, x)
        return np.array([(img * yy).sum(), (img * xx).sum()]) / img.sum()

    for s in range(1, 6):
        shift = table("misregistration")[s]
        y = run(x, "misregistration", s, ids=[60, 61, 62, 63])
        np.testing.assert_allclose(y[..., 1], x[..., 1], atol=1e-6 * x.max())
        moves = np.empty((4, 2, 2))
        for g in range(4):
            for j, c in enumerate((0, 2)):
                assert y[g, ..., c].sum() == pytest.approx(x[g, ..., c].sum(), rel=0.01)
                moves[g, j] = centroid(y[g, ..., c]) - centroid(x[g, ..., c])
        np.testing.assert_allclose(np.hypot(*moves.T), shift, rtol=0.02)
        # Each band and galaxy its own direction (by chance nearly equal now and then).
        direction = np.arctan2(moves[..., 0], moves[..., 1])  # [galaxy, band]
        turn = np.abs(np.angle(np.exp(1j * (direction[:, 0] - direction[:, 1]))))
        assert np.count_nonzero(turn > 0.2) >= 2, turn
        assert np.ptp(direction[:, 0]) > 0.5


# --------------------------------------------------------------------------- pipeline


@pytest.fixture(scope="module")
def clean(blob_dataset):
    return pipeline.load_arrays(blob_dataset, "test", "Y10", n=4)


@pytest.mark.parametrize("name", ["sky", "calibration", "jpeg"])  # flux, image, display
def test_sweep_in_the_pipeline(blob_dataset, clean, name):
    sweep = pipeline.load_arrays(blob_dataset, "test", "Y10", n=4,
                                 corruption=C.Plan.sweep(name))
    assert sweep["images"].shape == (24, 16, 16, 3)
    np.testing.assert_array_equal(sweep["severity"], np.repeat(np.arange(6), 4))
    np.testing.assert_array_equal(sweep["galaxy_id"], np.tile(clean["galaxy_id"], 6))
    blocks = sweep["images"].reshape(6, 4, 16, 16, 3)
    np.testing.assert_array_equal(blocks[0], clean["images"])  # the same noise, bit for bit
    for s in range(1, 6):
        assert np.all(np.any(blocks[s] != clean["images"], axis=(1, 2, 3))), s
    fixed = pipeline.load_arrays(blob_dataset, "test", "Y10", n=4,
                                 corruption=C.Plan.fixed(name, 3))
    np.testing.assert_array_equal(fixed["severity"], [3] * 4)
    np.testing.assert_array_equal(fixed["images"], blocks[3])


def test_augment_corrupts_every_training_galaxy_reproducibly(blob_dataset):
    def first(plan):
        ds = pipeline.make_dataset(blob_dataset, "train", "Y10", batch_size=8, training=True,
                                   seed=5, with_ids=True, corruption=plan,
                                   augment_images=False)  # flips: not the point, and slow
        return {k: v.numpy() for k, v in next(iter(ds)).items()}

    plan = C.Plan.augment(["sky", "calibration"], prob=1.0)  # flux and image stage
    a, b, clean = first(plan), first(plan), first(None)
    for key in ("images", "galaxy_id", "severity"):
        np.testing.assert_array_equal(a[key], b[key])
    assert np.all((a["severity"] >= 1) & (a["severity"] <= 5))
    assert len(set(a["severity"])) > 1
    np.testing.assert_array_equal(a["galaxy_id"], clean["galaxy_id"])
    assert np.all(np.any(a["images"] != clean["images"], axis=(1, 2, 3)))


def _write(root, images, stretch_params, noise_info):
    with DatasetWriter(root, images={"Y10": noise_info}, image_shape=images.shape[1:]) as w:
        for i, image in enumerate(images):
            w.add("test", {"Y10": image}, i % 3, i)
        return w.finish(stretch=stretch_params)


@pytest.fixture(scope="module")
def baked(tmp_path_factory):
    """Imported-style data: noise baked in at Y10, sky-subtracted e-/s, arcsinh stretch."""
    images = galaxies(4, size=16, seed=7)
    return _write(tmp_path_factory.mktemp("baked") / "ds", images,
                  stretch.fit(images, noiseless=False),
                  {"noise": True, "depth": survey.Y10.to_json(), "units": "e-/s"})


@pytest.fixture(scope="module")
def prestretched(tmp_path_factory):
    """Data imported already stretched (stretch "identity"), noise baked in."""
    return _write(tmp_path_factory.mktemp("unit") / "ds", stretched(4, size=16, seed=8),
                  stretch.IDENTITY, {"noise": True})


def test_check_refuses_what_cannot_act(blob_dataset, baked, prestretched):
    with pytest.raises(ConfigError, match="'fog'") as err:
        C.check(["sky", "fog"], blob_dataset)
    assert set(err.value.valid) == set(C.NAMES)
    assert C.check(list(C.NAMES), blob_dataset) == list(C.NAMES)
    for name in ("seeing", "sky", "neighbour", "misregistration"):
        with pytest.raises(ConfigError, match="noise baked in") as err:
            C.check([name], baked)
        assert C.CORRUPTIONS[name].refused in str(err.value)
    assert "blurring smooths the noise" in C.CORRUPTIONS["seeing"].refused
    usable = ["trail", "cosmic-rays", "bad-pixels", "calibration", "quantise", "jpeg"]
    assert C.check(usable, baked) == usable
    for name in ("trail", "cosmic-rays", "bad-pixels", "calibration"):
        with pytest.raises(ConfigError, match="flux units") as err:
            C.check([name], prestretched)
        assert set(err.value.valid) == {"quantise", "jpeg"}
    assert C.check(["quantise", "jpeg"], prestretched) == ["quantise", "jpeg"]
    with pytest.raises(ConfigError, match="seeing"):  # the pipeline asks too
        pipeline.make_dataset(baked, "test", "Y10", corruption=C.Plan.fixed("seeing", 2))


def test_additive_corruption_on_baked_noise_acts_on_the_stored_image(baked):
    stored = pipeline.load_arrays(baked, "test", "Y10", stretch=stretch.IDENTITY)["images"]
    out = pipeline.load_arrays(baked, "test", "Y10", stretch=stretch.IDENTITY,
                               corruption=C.Plan.sweep("trail", levels=(0, 5)))
    np.testing.assert_array_equal(out["images"][:4], stored)
    diff = out["images"][4:] - stored
    assert diff.min() >= -1e-6 * np.abs(stored).max() and np.all(diff.max(axis=(1, 2, 3)) > 0)
