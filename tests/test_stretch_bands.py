"""The stretch's bands (data.stretch_bands): each band's own percentiles (the default) or
one pair over all bands pooled (the paper's code), which keeps colours."""

import dataclasses
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from tfgal import config, survey
from tfgal.data import Manifest, importers, stretch
from tfgal.errors import ConfigError, DataError
from tfgal.model import export, training

from conftest import write_blob_dataset
from test_importers import write_npy


def _images(n=6, seed=0):
    """Noisy sky with a band-dependent scale, so per-band and pooled limits differ."""
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 1, (n, 10, 10, 3)) * [1.0, 2.0, 4.0]
            + rng.uniform(0, 30, (n, 10, 10, 3)) * [0.5, 1.0, 2.0]).astype(np.float32)


def _without_shared(root):
    """Rewrites a dataset's manifest as written before the shared pair was stored."""
    path = os.path.join(root, "manifest.json")
    with open(path) as f:
        obj = json.load(f)
    stored = obj["stretch"].pop("shared")
    with open(path, "w") as f:
        json.dump(obj, f)
    return stored


def _cfg(root, **data):
    sets = [f'data.dir="{root}"', "data.mock=false"]
    return config.load(overrides=sets + [f'data.{k}="{v}"' for k, v in data.items()])


def test_shared_pair_is_the_pooled_percentile():
    images = _images()
    params = stretch.fit(images, noiseless=False)
    pooled = np.percentile(images.reshape(-1), [0.1, 99.9])  # every band's pixels together
    assert params["shared"] == {"lo": float(pooled[0]), "hi": float(pooled[1])}
    shared = stretch.share_bands(params, **params["shared"])
    assert shared["lo"] == [float(pooled[0])] * 3 and shared["hi"] == [float(pooled[1])] * 3
    assert shared["per_band"] == {"lo": params["lo"], "hi": params["hi"]}
    assert len(set(params["hi"])) == 3  # per band: three different pairs
    # Seeded: the noise drawn on noiseless flux, and so the pair, repeats.
    flux = np.abs(images)
    assert (stretch.fit(flux, noiseless=True, seed=4)["shared"]
            == stretch.fit(flux, noiseless=True, seed=4)["shared"])


def test_per_band_default_is_unchanged(tmp_path):
    assert config.Config().data.stretch_bands == "per-band"
    images = _images()
    params = stretch.fit(images, noiseless=False)
    lo, hi = np.percentile(images.reshape(-1, 3), [0.1, 99.9], axis=0)
    assert params["lo"] == lo.tolist() and params["hi"] == hi.tolist()
    # The map of before: each band clipped to, and scaled by, its own percentiles.
    x = np.clip(images, lo.astype(np.float32), hi.astype(np.float32))
    expected = ((np.arcsinh(0.85 * x / hi.astype(np.float32)) + 1) / 2).astype(np.float32)
    np.testing.assert_array_equal(stretch.apply_numpy(images, params), expected)
    manifest = write_blob_dataset(tmp_path / "blobs")
    assert stretch.band_manifest(manifest, "per-band") is manifest
    assert training.ensure_dataset(_cfg(manifest.root).data, 0).stretch == manifest.stretch


def test_shared_keeps_colours():
    params = stretch.fit(_images(), noiseless=False)
    shared = stretch.share_bands(params, **params["shared"])
    pixel = np.full((1, 1, 1, 3), 5.0, np.float32)  # equal flux in every band
    grey = {"per-band": stretch.apply_numpy(pixel, params)[0, 0, 0],
            "shared": stretch.apply_numpy(pixel, shared)[0, 0, 0]}
    assert len(set(grey["shared"].tolist())) == 1  # stays grey
    assert len(set(grey["per-band"].tolist())) == 3  # tinted by each band's limits
    np.testing.assert_allclose(stretch.apply_tf(pixel, shared).numpy()[0, 0, 0],
                               grey["shared"], rtol=1e-6)
    # Brighter in r than in g stays brighter in r.
    red = stretch.apply_numpy(np.array([[[[2.0, 9.0, 9.0]]]], np.float32), shared)[0, 0, 0]
    assert red[0] < red[1] == red[2]


def test_old_manifests_refit_the_same_pair(tmp_path, monkeypatch):
    """Before the pair was stored: it is refitted from the sample the stretch saw, for mock
    builds (the first images, noise seeded) and importers (evenly spaced rows)."""
    blobs = write_blob_dataset(tmp_path / "blobs", counts=(24, 4, 4), seed=3)
    stored = _without_shared(blobs.root)
    assert stretch.shared_limits(Manifest.load(blobs.root)) == (stored["lo"], stored["hi"])
    # A mock build fitted on its first 5 training galaxies.
    first = write_blob_dataset(tmp_path / "first", counts=(12, 4, 4), seed=1)
    sample = stretch.fit(np.stack(_train_images(first)[:5]), noiseless=True, seed=1)
    _rewrite(first.root, stretch=sample, generator={"name": stretch.MOCKS})
    stored = _without_shared(first.root)
    assert stretch.shared_limits(Manifest.load(first.root)) == (stored["lo"], stored["hi"])
    # The study's files, imported with a sample of 4 evenly spaced rows of 10.
    rows = stretch.sample_rows
    monkeypatch.setattr(stretch, "sample_rows", lambda n, k=4: rows(n, k))
    write_npy(tmp_path / "zenodo")
    imported = importers.import_npy(str(tmp_path / "zenodo"), str(tmp_path / "npy"),
                                       stretch="fit")
    assert imported.stretch["n_images"] == 4
    stored = _without_shared(imported.root)
    assert stretch.shared_limits(Manifest.load(imported.root)) == (stored["lo"], stored["hi"])
    # A sample that cannot be read back is refused, not guessed.
    bad = {k: v for k, v in imported.stretch.items() if k != "shared"}
    _rewrite(imported.root, stretch={**bad, "hi": [h + 1 for h in bad["hi"]]})
    with pytest.raises(DataError, match="cannot refit .* data.stretch_bands"):
        stretch.shared_limits(Manifest.load(imported.root))


def _train_images(manifest):
    from tfgal.data import read_examples
    return [ex["flux"] for path in manifest.files("train")
            for ex in read_examples(path, manifest.compression)]


def _rewrite(root, **fields):
    path = os.path.join(root, "manifest.json")
    with open(path) as f:
        obj = json.load(f)
    obj.update(fields)
    with open(path, "w") as f:
        json.dump(obj, f)


def test_target_floor_with_shared_bands_is_the_lowest_floor():
    params = stretch.fit(_images(), noiseless=False)
    shared = stretch.share_bands(params, **params["shared"])
    clipped = stretch.lower_clip(shared, "target-floor", ["Y10", "Y1"])
    t = survey.Y1.exposure_vector().astype(np.float64)
    floors = -3 * np.sqrt(survey.sky_vector().astype(np.float64) / t)
    assert clipped["lo"] == [floors.min()] * 3 and clipped["hi"] == shared["hi"]
    assert clipped["lower_clip"]["percentile_lo"] == shared["lo"]
    # Per band, each band keeps its own floor.
    assert stretch.lower_clip(params, "target-floor", ["Y10", "Y1"])["lo"] == floors.tolist()


def test_prestretched_data_and_bad_values_are_refused():
    assert config.STRETCH_BANDS == stretch.BAND_MODES
    with pytest.raises(ConfigError, match="data.stretch_bands") as err:
        config.load(overrides=['data.stretch_bands="pooled"'])
    assert err.value.key == "data.stretch_bands" and err.value.valid == ("per-band", "shared")
    manifest = Manifest(root="x", image_shape=(8, 8, 3), class_names=("a",),
                        bands=survey.BANDS, pixel_scale_arcsec=0.2, images={}, splits={},
                        stretch=dict(stretch.IDENTITY))
    with pytest.raises(DataError, match="data.stretch_bands"):
        stretch.band_manifest(manifest, "shared")
    with pytest.raises(DataError, match="data.stretch_bands"):
        stretch.band_manifest(dataclasses.replace(manifest, stretch=None), "shared")


def test_shared_bands_reach_the_exported_model(tmp_path):
    blobs = write_blob_dataset(tmp_path / "blobs")
    cfg = config.load(overrides=[
        f'data.dir="{blobs.root}"', "data.mock=false", 'data.stretch_bands="shared"',
        'data.stretch_clip="target-floor"', "train.epochs=1", "train.steps_per_epoch=1",
        "train.batch_size=8", "train.precise_bn_batches=0", "log.images=0", "log.projector=0",
        f'log.dir="{tmp_path / "run"}"', f'export.dir="{tmp_path / "model"}"'])
    resolved = training.ensure_dataset(cfg.data, 0)
    training.train(cfg, verbose=0)
    assets = export.load(cfg.export.dir).assets
    assert assets["stretch"] == json.loads(json.dumps(resolved.stretch))
    assert assets["stretch"]["bands"] == "shared"
    assert len(set(assets["stretch"]["lo"])) == len(set(assets["stretch"]["hi"])) == 1
    assert assets["stretch"]["hi"][0] == blobs.stretch["shared"]["hi"]
    assert assets["config"]["data"]["stretch_bands"] == "shared"
    low, high = assets["value_range"]  # the attacks' bounds: one range for every band
    assert len(set(low)) == len(set(high)) == 1


def test_an_unclipped_stretch_is_refused_when_the_config_loads():
    # "none" was once a valid choice that crashed only when a run loaded its dataset.
    with pytest.raises(ConfigError, match="data.stretch_clip"):
        config.load(overrides=['data.stretch_clip="none"'])
