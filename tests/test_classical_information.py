"""What the classical baseline sees against what the networks see, and its ECE's warning.

statmorph measures e-/s; the networks see each band clipped to the stretch's [lo, hi]
first. ``study.morphology_clip = "clipped"`` gives statmorph the same clip, and the summary
always says how much of the r band (and of its sky) the networks' lower clip takes.
statmorph itself is replaced by a stub here: the stage's plumbing is under test, not the
measurements (tests/test_morphology.py measures).
"""

import contextlib
import types

import numpy as np
import pytest
from scipy.stats import norm

pytest.importorskip("photutils", reason="photutils is a core dependency: pip install -e .")

from tfgal import survey  # noqa: E402
from tfgal.data import morphology, stretch  # noqa: E402
from tfgal.data.morphology import measurements  # noqa: E402

STRETCH = {"kind": "arcsinh", "lo": [-0.1, -0.2, -0.3], "hi": [5.0, 6.0, 7.0],
           "softening": 0.85}


def test_clip_like_stretch_clips_exactly_at_the_stretch_limits():
    rng = np.random.default_rng(0)
    images = rng.normal(0.0, 5.0, (2, 8, 8, 3)).astype(np.float32)
    clipped = morphology.clip_like_stretch(images, STRETCH)
    lo, hi = np.float32(STRETCH["lo"]), np.float32(STRETCH["hi"])
    assert (images.min((0, 1, 2)) < lo).all() and (images.max((0, 1, 2)) > hi).all()
    np.testing.assert_array_equal(clipped.min((0, 1, 2)), lo)
    np.testing.assert_array_equal(clipped.max((0, 1, 2)), hi)
    inside = (images >= lo) & (images <= hi)
    np.testing.assert_array_equal(clipped[inside], images[inside])
    # the arcsinh is monotonic: the stretch loses nothing beyond the clip
    np.testing.assert_array_equal(stretch.apply_numpy(clipped, STRETCH),
                                  stretch.apply_numpy(images, STRETCH))
    np.testing.assert_array_equal(morphology.clip_like_stretch(images, stretch.IDENTITY), images)
    assert morphology.clip_shares(images, depth="Y1", stretch=stretch.IDENTITY) is None


def test_clip_shares_counts_what_the_clip_takes():
    """A flat sky with a known share under lo; a bright source whose core is over hi."""
    n, size = 3, 40
    images = np.zeros((n, size, size, 3), np.float32)
    images[:, :10, :, 1] = -0.5  # a quarter of each r stamp under lo = -0.2, far from the centre
    shares = morphology.clip_shares(images, depth="Y1", stretch=STRETCH)
    assert shares["below_lo"] == pytest.approx(0.25) and shares["sky"] == 1.0
    assert shares["below_lo_sky"] == pytest.approx(0.25) and shares["above_hi"] == 0.0
    assert (shares["lo"], shares["hi"]) == (pytest.approx(-0.2), pytest.approx(6.0))
    images[:, 18:22, 18:22, 1] = 100.0  # 16 pixels over hi = 6, detected as a source
    shares = morphology.clip_shares(images, depth="Y1", stretch=STRETCH)
    assert shares["above_hi"] == pytest.approx(16 / size**2)
    assert shares["below_lo"] == pytest.approx(0.25)
    assert shares["sky"] < 1.0 and shares["below_lo_sky"] == pytest.approx(0.25 / shares["sky"])


def test_a_lower_clip_one_sigma_below_zero_takes_a_sixth_of_the_sky():
    """Pure Y1 sky noise clipped at -1 sigma: Phi(-1) = 15.9% of the sky pixels."""
    sigma = np.sqrt(survey.sky_per_pixel("r") / survey.Depth.parse("Y1").exposure_vector()[1])
    rng = np.random.default_rng(1)
    images = rng.normal(0.0, sigma, (4, 100, 100, 3)).astype(np.float32)
    params = {**STRETCH, "lo": [-sigma] * 3, "hi": [100 * sigma] * 3}
    shares = morphology.clip_shares(images, depth="Y1", stretch=params)
    assert shares["below_lo_sky"] == pytest.approx(norm.cdf(-1.0), abs=0.01)
    assert shares["below_lo"] == pytest.approx(norm.cdf(-1.0), abs=0.01)


def test_the_ece_note_warns_only_with_few_galaxies_per_bin():
    from tfgal.study import classical
    note = classical.ece_note(24, 15, 1000)
    assert "ECE on 24 galaxies in 15 bins" in note and "1000" in note
    assert classical.ece_note(149, 15) and classical.ece_note(150, 15) is None
    assert classical.ece_note(1000, 15, 1000) is None


# --------------------------------------------------------------------------- in the stage

N, TRAIN_N = 4, 6


def _context(blob_dataset, tmp_path, clip):
    from tfgal import study
    from tfgal.study.stage import StudyContext
    cfg = study.load_config(overrides=[
        f'data.dir="{blob_dataset.root}"', "data.mock=false", 'study.models=["baseline"]',
        "study.curve_depths=[1.0, 10.0]", f"study.morphology_n={N}",
        f"study.morphology_train_n={TRAIN_N}", f'study.morphology_clip="{clip}"'])
    ctx = StudyContext(cfg, str(tmp_path), progress=False, log=lambda *a: None)
    ctx.manifest = blob_dataset
    return ctx


def _fake_measure(seen):
    """statmorph's stand-in: records its input, returns a table of the right shape."""
    def measure(images, *, depth, **kwargs):
        seen.append(np.array(images))
        rows = [{**{s: float(i % 3) for s in morphology.STATISTICS}, "flag": 0,
                 "flag_sersic": 0, "ok": True, "reason": "", "seconds": 0.0}
                for i in range(len(images))]
        return measurements._table(rows, {"band": "r", "depth": str(depth), "psf": "none",
                                          "detect_nsigma": 3.0, "workers": 1, "wall_s": 0.0,
                                          **morphology.versions()})
    return measure


@pytest.fixture(params=["unclipped", "clipped"])
def stage_run(request, blob_dataset, tmp_path, monkeypatch):
    from tfgal.study import classical
    seen = []
    monkeypatch.setattr(morphology, "measure", _fake_measure(seen))
    monkeypatch.setattr(morphology, "worker_pool", lambda *a, **k: contextlib.nullcontext())
    ctx = _context(blob_dataset, tmp_path, request.param)
    out = classical.Morphology().run(ctx, {})
    return {"clip": request.param, "ctx": ctx, "out": out, "seen": seen}


def test_clipped_statmorph_measures_what_the_networks_see(stage_run):
    from tfgal.data import pipeline
    ctx, seen = stage_run["ctx"], stage_run["seen"]
    lo, hi = (np.float32(ctx.manifest.stretch[k]) for k in ("lo", "hi"))
    assert len(seen) == 3  # the training sample, then two depths
    observed = pipeline.load_arrays(ctx.manifest, "test", "1y", n=N, seed=ctx.cfg.seed,
                                    stretch=stretch.IDENTITY)["images"]
    assert (observed.min((0, 1, 2)) < lo).any()  # the clip has something to take
    if stage_run["clip"] == "clipped":
        np.testing.assert_array_equal(seen[1], np.clip(observed, lo, hi))
        for images in seen:
            assert (images.min((0, 1, 2)) >= lo).all() and (images.max((0, 1, 2)) <= hi).all()
        assert (seen[1].min((0, 1, 2)) == lo).any()
    else:
        np.testing.assert_array_equal(seen[1], observed)
    # what the clip takes is measured on the unclipped images, whatever statmorph saw
    shares = morphology.clip_shares(observed, depth="1y", stretch=ctx.manifest.stretch)
    assert stage_run["out"].table["per_depth"][0]["clip"] == shares
    assert stage_run["out"].table["measured"] == stage_run["clip"]


def test_the_summary_states_the_information_and_warns_about_the_ece(stage_run):
    from tfgal.study import classical
    ctx, out = stage_run["ctx"], stage_run["out"]
    p = np.full((N, 3), 1 / 3)
    ev = types.SimpleNamespace(galaxy_id=out.galaxy_id, n=1000,
                               probabilities={"baseline": {d: p for d in ctx.depths}})
    c = classical.summary(ctx, out, None, ev)
    info = c["information"]
    assert info["measured"] == stage_run["clip"] and info["band"] == "r"
    assert info["lo"] == pytest.approx(ctx.manifest.stretch["lo"][1])
    assert [d["depth"] for d in info["per_depth"]] == ["1y", "10y"]
    assert 0 < info["per_depth"][0]["below_lo_sky"] <= 1
    assert ("unclipped" in info["text"]) == (stage_run["clip"] == "unclipped")
    assert c["row"]["ece_n"] == N and c["row"]["ece_bins"] == 15
    assert c["row"]["ece_note"].startswith(f"ECE on {N} galaxies in 15 bins")
    text = classical.markdown({"classical": c, "depths": {"source": "Y10", "target": "Y1"}})
    assert info["text"] in text and c["row"]["ece_note"] in text
    assert "the same images, noise included" not in text


def test_the_stage_key_changes_with_what_statmorph_measures(blob_dataset, tmp_path):
    from tfgal.study import classical, store
    keys = {clip: store.digest(classical.Morphology().settings(_context(blob_dataset, tmp_path,
                                                                        clip)))
            for clip in ("unclipped", "clipped")}
    assert keys["unclipped"] != keys["clipped"]
    settings = classical.Morphology().settings(_context(blob_dataset, tmp_path, "clipped"))
    assert settings["clip"] == "clipped"
    assert settings["stretch_limits"] == {"lo": pytest.approx(blob_dataset.stretch["lo"]),
                                          "hi": pytest.approx(blob_dataset.stretch["hi"])}


def test_a_bad_morphology_clip_is_refused():
    from tfgal import study
    from tfgal.errors import ConfigError
    with pytest.raises(ConfigError) as err:
        study.load_config(overrides=['study.morphology_clip="stretched"'])
    assert err.value.key == "study.morphology_clip" and "unclipped" in str(err.value)
