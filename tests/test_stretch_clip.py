"""The stretch's lower clip (data.stretch_clip): the fitted percentile or a floor at the
noisiest training depth, applied to every pipeline, export and attack alike."""

import dataclasses
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from tfgal import config, survey
from tfgal.data import noise, stretch
from tfgal.errors import DataError
from tfgal.model import training

FITTED = {"kind": "arcsinh", "lo": [-0.19, -0.19, -0.23], "hi": [0.9, 1.4, 1.4],
          "softening": 0.85, "percentiles": [0.1, 99.9], "depth": "Y10"}


def sky_sigma(depth):
    t = survey.Depth.parse(depth).exposure_vector().astype(np.float64)
    return np.sqrt(survey.sky_vector().astype(np.float64) / t)


def test_target_floor_is_three_sigma_of_y1_sky():
    clipped = stretch.lower_clip(FITTED, "target-floor", ["Y10", "Y1"])
    np.testing.assert_allclose(clipped["lo"], -3 * sky_sigma("Y1"), rtol=1e-12)
    assert clipped["hi"] == FITTED["hi"] and clipped["lower_clip"]["depth"] == "Y1"
    assert clipped["lower_clip"]["percentile_lo"] == FITTED["lo"]
    # The depth order does not matter; the noisiest one sets the floor.
    assert stretch.lower_clip(FITTED, "target-floor", ["Y1", "Y10"])["lo"] == clipped["lo"]
    assert stretch.lower_clip(FITTED, "percentile", ["Y10", "Y1"]) is FITTED


def test_target_floor_refuses_prestretched_data():
    with pytest.raises(DataError, match="stretch_clip"):
        stretch.lower_clip(stretch.IDENTITY, "target-floor", ["Y10", "Y1"])


def test_the_floor_clips_y1_sky_as_the_percentile_clips_y10():
    """The motivation, measured: on pure sky, the Y10 percentile clips about a sixth of Y1
    pixels (-1 sigma there) but 0.1% of Y10's; the target floor clips 0.1% at Y1."""
    sky_only = np.zeros((64, 64, 64, 3), np.float32)
    frac = {}
    for depth in ("Y10", "Y1"):
        d = survey.Depth.parse(depth)
        x = noise.poisson_observe(sky_only, d.exposure_vector(), survey.sky_vector(), 7).numpy()
        lo_pct = -3 * sky_sigma("Y10")  # what the 0.1-percentile of Y10 sky comes to
        lo_floor = -3 * sky_sigma("Y1")
        frac[depth] = ((x < lo_pct).mean(), (x < lo_floor).mean())
    assert frac["Y10"][0] == pytest.approx(0.00135, abs=5e-4)
    assert frac["Y1"][0] == pytest.approx(0.16, abs=0.02)  # the percentile at Y1
    assert frac["Y1"][1] == pytest.approx(0.00135, abs=5e-4)  # the floor at Y1


def test_training_and_export_use_the_clipped_stretch(tiny_dataset_for_clip):
    manifest = tiny_dataset_for_clip
    cfg = config.load(overrides=[f'data.dir="{manifest.root}"', "data.mock=false",
                                 'data.stretch_clip="target-floor"'])
    clipped = training.ensure_dataset(cfg.data, 0)
    assert clipped.stretch["lo"] == stretch.lower_clip(manifest.stretch, "target-floor",
                                                       ["Y10", "Y1"], manifest.bands)["lo"]
    assert training.export_assets(cfg, clipped)["stretch"] == clipped.stretch
    # The manifest on disk keeps the fitted stretch.
    plain = training.ensure_dataset(dataclasses.replace(cfg.data, stretch_clip="percentile"), 0)
    assert plain.stretch == manifest.stretch


@pytest.fixture(scope="module")
def tiny_dataset_for_clip(tmp_path_factory):
    from tfgal import data
    root = str(tmp_path_factory.mktemp("clip") / "data")
    rng = np.random.default_rng(0)
    with data.DatasetWriter(root, images={"flux": {"noise": False}}, image_shape=(8, 8, 3),
                            shard_size=8) as writer:
        for i, split in enumerate(("train", "val", "test")):
            for k in range(6):
                writer.add(split, {"flux": rng.uniform(0, 1, (8, 8, 3)).astype(np.float32)},
                           k % 3, 10 * i + k)
        return writer.finish(stretch=dict(FITTED), generator={"name": "tests.clip"})
