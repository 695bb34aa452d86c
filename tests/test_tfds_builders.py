"""Tests of tfgal.data.tfds_builders: both builders prepare offline from local inputs."""

import importlib.util
import os
import sys
import types

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tfgal.data import CLASS_NAMES
from tfgal.data.mock import params as mock_params
from tfgal.data.importers import npy as npy_importer
from tfgal.data import tfds_builders
from tfgal.errors import DataError

TINY = {"train": 24, "validation": 6, "test": 6}


def fake_mocks():
    """Stand-ins for the mock API: plan() (mock_params) and render_galaxy() (mock_galaxies)."""
    module = types.ModuleType("tfgal.data.mock.galaxies")

    def plan(n_train, n_val, n_test, seed, class_fractions=None):
        rows, gid = [], 0
        for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
            for _ in range(n):
                rows.append((split, 1000 + gid, gid % 3))
                gid += 1
        return rows

    def render_galaxy(galaxy_id, label, seed, params=None):
        rng = np.random.default_rng([galaxy_id, seed])
        return (rng.random((100, 100, 3)) + label).astype(np.float32)

    def render(galaxy_id, label, seed, params=None):
        return render_galaxy(galaxy_id, label, seed), {"psf_fwhm_arcsec": 0.6 + label / 10}

    module.plan, module.render_galaxy, module.render = plan, render_galaxy, render
    return module


def split_sizes(info):
    return {name: split.num_examples for name, split in info.splits.items()}


def test_tfgal_mock_tiny_with_fake_renderer(tmp_path, monkeypatch):
    fake = fake_mocks()
    monkeypatch.setitem(sys.modules, "tfgal.data.mock.galaxies", fake)
    monkeypatch.setattr(mock_params, "plan", fake.plan)
    ds, info = tfds.load("tfgal_mock/tiny", data_dir=str(tmp_path), split="validation",
                         with_info=True)
    assert split_sizes(info) == TINY
    assert info.features["flux"].shape == (100, 100, 3)
    assert info.features["label"].names == list(CLASS_NAMES)
    examples = list(tfds.as_numpy(ds))
    assert sorted(e["galaxy_id"] for e in examples) == list(range(1024, 1030))
    for e in examples:
        np.testing.assert_array_equal(e["flux"], fake.render_galaxy(e["galaxy_id"],
                                                                    e["label"], 0))
        assert e["label"] == (e["galaxy_id"] - 1000) % 3
        assert e["psf_fwhm_arcsec"] == pytest.approx(0.6 + e["label"] / 10)
    builder = tfds.builder("tfgal_mock", data_dir=str(tmp_path / "fresh"))
    assert builder.builder_config.name == "default"
    assert (builder.builder_config.n_train, builder.builder_config.n_val,
            builder.builder_config.n_test) == (3000, 500, 1000)


@pytest.mark.skipif(importlib.util.find_spec("galsim") is None, reason="GalSim is missing")
def test_tfgal_mock_tiny_with_real_renderer(tmp_path):
    builder = tfds_builders.TfgalMock(config="tiny", data_dir=str(tmp_path))
    builder.download_and_prepare()
    assert split_sizes(builder.info) == TINY
    examples = list(tfds.as_numpy(builder.as_dataset(split="train")))
    flux = np.stack([e["flux"] for e in examples])
    assert flux.shape == (24, 100, 100, 3) and flux.dtype == np.float32
    assert np.all(np.isfinite(flux)) and flux.min() >= 0 and flux.max() > 0
    assert len({e["galaxy_id"] for e in examples}) == 24
    # Each galaxy's own seeing, as the generator drew it.
    from tfgal.data import mock
    for e in examples[:3]:
        assert e["psf_fwhm_arcsec"] == pytest.approx(mock.describe(
            int(e["galaxy_id"]), int(e["label"]), 0)["psf_fwhm_arcsec"], rel=1e-6)


def write_study_files(directory, sizes, hw=100, seed=0):
    """The study's nine files (or fewer splits), channels first; returns the arrays."""
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    data = {}
    for split, n in sizes.items():
        y10 = rng.normal(5, 2, (n, 3, hw, hw)).astype(np.float32)
        y1 = y10 + rng.normal(0, 6, y10.shape).astype(np.float32)
        labels = np.eye(3)[(np.arange(n) + 1) % 3]
        for name, array in ((f"images_Y10_{split}", y10), (f"images_Y1_{split}", y1),
                            (f"labels_{split}", labels)):
            np.save(os.path.join(directory, f"{name}.npy"), array)
        data[split] = (y10, y1, labels)
    return data


def prepare_deep_adversaries(tmp_path, manual_dir):
    builder = tfds_builders.DeepAdversaries(data_dir=str(tmp_path / "tfds"))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
    return builder


def test_deep_adversaries_from_manual_dir(tmp_path):
    manual = tmp_path / "manual"
    data = write_study_files(manual, {"train": 5, "valid": 2, "test": 3})
    builder = prepare_deep_adversaries(tmp_path, manual)
    assert split_sizes(builder.info) == {"train": 5, "validation": 2, "test": 3}
    for tfds_split, study in (("train", "train"), ("validation", "valid")):
        y10, y1, onehot = data[study]
        split = "val" if study == "valid" else study
        for e in tfds.as_numpy(builder.as_dataset(split=tfds_split)):
            row = e["galaxy_id"] - npy_importer.SPLIT_ID_OFFSETS[split]
            assert 0 <= row < len(y10)
            np.testing.assert_array_equal(e["image_y10"], y10[row].transpose(1, 2, 0))
            np.testing.assert_array_equal(e["image_y1"], y1[row].transpose(1, 2, 0))
            assert e["label"] == onehot[row].argmax()
    x, y = next(iter(tfds.as_numpy(builder.as_dataset(split="test", as_supervised=True,
                                                      batch_size=3))))
    assert x.shape == (3, 100, 100, 3) and sorted(y.tolist()) == [0, 1, 2]


def test_deep_adversaries_shares_the_importer_checks(tmp_path):
    manual = tmp_path / "manual"
    data = write_study_files(manual, {"train": 3})
    y1 = data["train"][1].copy()
    y1[2, 0, 5, 5] = np.nan
    np.save(manual / "images_Y1_train.npy", y1)
    with pytest.raises(DataError) as err:
        prepare_deep_adversaries(tmp_path, manual)
    assert os.path.basename(err.value.path) == "images_Y1_train.npy"
    assert err.value.index == 2


def test_deep_adversaries_rejects_other_image_sizes(tmp_path):
    manual = tmp_path / "manual"
    write_study_files(manual, {"train": 2}, hw=16)
    with pytest.raises(DataError, match="declares"):
        prepare_deep_adversaries(tmp_path, manual)


def test_deep_adversaries_explains_the_manual_download(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AssertionError, match="zenodo.5514180"):
        prepare_deep_adversaries(tmp_path, empty)
