"""The GalSim mock generator: images, determinism, planning, dataset building."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tfgal import survey
from tfgal.data import CLASS_NAMES, FLUX, Manifest, MANIFEST_NAME, read_examples, verify
from tfgal.data import mock
from tfgal.data.manifest import PSF_FWHM, PSF_FWHM_R
from tfgal.data import stretch
from tfgal.errors import ConfigError, OutputExists

SPIRAL, ELLIPTICAL, MERGER = 0, 1, 2
PARAMS = mock.MockParams()


@pytest.fixture(scope="module")
def sample():
    """Eight galaxies per class rendered once: {label: [(galaxy_id, image), ...]}."""
    return {label: [(k, mock.render_galaxy(k, label, 11)) for k in range(8)]
            for label in range(3)}


# --------------------------------------------------------------------------- images


def test_images_have_the_stamp_shape_and_are_finite_non_negative_flux(sample):
    for label, galaxies in sample.items():
        for galaxy_id, image in galaxies:
            assert image.shape == (100, 100, 3)
            assert image.dtype == np.float32
            assert np.all(np.isfinite(image))
            assert image.min() >= 0.0
            # Light is concentrated near the centre, not spread over the stamp.
            centre = image[30:70, 30:70].sum(axis=(0, 1))
            assert np.all(centre > 0.5 * image.sum(axis=(0, 1))), (label, galaxy_id)


def test_r_band_flux_matches_the_declared_magnitude(sample):
    r = survey.BANDS.index("r")
    low, high = PARAMS.r_mag
    ratios = []
    for label, galaxies in sample.items():
        for galaxy_id, image in galaxies:
            declared = mock.describe(galaxy_id, label, 11)["r_mag"]
            assert low <= declared <= high
            total = float(image[..., r].sum())
            ratios.append(total / survey.mag_to_flux(declared, "r"))
            # Up to ~12% of a big n = 5 elliptical's light falls off the 20" stamp.
            assert low - 0.01 <= survey.flux_to_mag(total, "r") <= high + 0.15
    ratios = np.array(ratios)
    assert np.all(ratios <= 1.001) and np.all(ratios >= 0.85), ratios
    assert np.median(ratios) > 0.98


def test_ellipticals_are_redder_than_spirals_on_average(sample):
    def g_minus_r(image):
        flux = image.sum(axis=(0, 1))
        return survey.flux_to_mag(flux[0], "g") - survey.flux_to_mag(flux[1], "r")

    spirals = np.mean([g_minus_r(im) for _, im in sample[SPIRAL]])
    ellipticals = np.mean([g_minus_r(im) for _, im in sample[ELLIPTICAL]])
    assert ellipticals > spirals + 0.05
    # Both colours lie within the ranges the parameters declare.
    assert PARAMS.elliptical_g_minus_r[0] - 0.05 < ellipticals < PARAMS.elliptical_g_minus_r[1]
    assert PARAMS.spiral_young_g_minus_r[0] < spirals < PARAMS.spiral_disc_g_minus_r[1]


def test_flux_and_size_are_drawn_from_the_same_ranges_for_every_class():
    for label in range(3):
        props = [mock.describe(k, label, 3) for k in range(40)]
        mags = [p["r_mag"] for p in props]
        radii = [p["half_light_radius_arcsec"] for p in props]
        assert PARAMS.r_mag[0] <= min(mags) and max(mags) <= PARAMS.r_mag[1]
        assert max(mags) - min(mags) > 2.0  # spans most of the 3.5 mag range
        lo, hi = PARAMS.half_light_radius_arcsec
        assert lo <= min(radii) and max(radii) <= hi and max(radii) / min(radii) > 2.0


def test_rendering_is_deterministic_and_independent_of_order(sample):
    image = sample[MERGER][3][1]
    again = mock.render_galaxy(3, MERGER, 11)
    assert again.tobytes() == image.tobytes()
    # Rendering other galaxies first (different caches, RNG use) changes nothing.
    mock.render_galaxy(5, SPIRAL, 99)
    assert mock.render_galaxy(3, MERGER, 11).tobytes() == image.tobytes()


def test_different_seeds_ids_and_labels_give_different_galaxies(sample):
    base = sample[SPIRAL][2][1]
    assert not np.allclose(mock.render_galaxy(2, SPIRAL, 12), base)
    assert not np.allclose(sample[SPIRAL][3][1], base)
    assert mock.describe(2, SPIRAL, 11) != mock.describe(2, SPIRAL, 12)


def test_params_change_the_galaxies_and_round_trip_through_json():
    bright = dataclasses.replace(PARAMS, r_mag=(19.0, 19.0))
    image = mock.render_galaxy(0, ELLIPTICAL, 1, bright)
    assert image[..., 1].sum() == pytest.approx(survey.mag_to_flux(19.0, "r"), rel=0.12)
    text = json.dumps(dataclasses.asdict(PARAMS))
    assert mock.MockParams.from_dict(json.loads(text)) == PARAMS


@pytest.mark.parametrize("change", [
    {"r_mag": (24.0, 21.0)},                      # low > high
    {"elliptical_sersic_n": (3.0, 7.0)},          # beyond GalSim's Sersic
    {"merger_galaxy_count": (1, 2)},              # a merger needs two galaxies
    {"spiral_arm_count": (2.0, 3.5)},             # counts are integers
    {"spiral_arm_fraction": (0.7, 0.8)},          # bulge + arms + knots >= 1
    {"psf_fwhm_arcsec": (0.7, float("nan"))},
])
def test_bad_params_raise_config_error(change):
    with pytest.raises(ConfigError) as info:
        dataclasses.replace(PARAMS, **change)
    assert info.value.key is not None


def test_bad_galaxy_arguments_raise_config_error():
    with pytest.raises(ConfigError):
        mock.render_galaxy(0, 3, 0)
    with pytest.raises(ConfigError):
        mock.render_galaxy(-1, 0, 0)
    with pytest.raises(ConfigError):
        mock.render_galaxy(0, 0, -5)
    with pytest.raises(ConfigError):
        mock.render_galaxy(0, 0, 0, params={"r_mag": (20, 21)})


# --------------------------------------------------------------------------- planning


def test_plan_balances_classes_per_split_with_unique_ids():
    rows = mock.plan(30, 9, 12, seed=4)
    assert [r[1] for r in rows] == list(range(51))
    assert [r[0] for r in rows] == ["train"] * 30 + ["val"] * 9 + ["test"] * 12
    for split, n in (("train", 30), ("val", 9), ("test", 12)):
        labels = [label for s, _, label in rows if s == split]
        assert np.bincount(labels, minlength=3).tolist() == [n // 3] * 3
    # Shuffled, deterministically.
    train = [label for s, _, label in rows if s == "train"]
    assert train != sorted(train)
    assert mock.plan(30, 9, 12, seed=4) == rows
    assert mock.plan(30, 9, 12, seed=5) != rows


def test_plan_honours_class_fractions_with_largest_remainder():
    rows = mock.plan(100, 10, 0, seed=0, class_fractions=(0.5, 0.3, 0.2))
    train = np.bincount([lab for s, _, lab in rows if s == "train"], minlength=3)
    assert train.tolist() == [50, 30, 20]
    # 10 x (0.45, 0.35, 0.2) = (4.5, 3.5, 2): the tie goes to the lower class index.
    rows = mock.plan(10, 0, 0, seed=0, class_fractions=[0.45, 0.35, 0.2])
    assert np.bincount([lab for _, _, lab in rows], minlength=3).tolist() == [5, 3, 2]
    # Uneven balanced counts stay within one of each other.
    rows = mock.plan(11, 0, 0, seed=0)
    assert np.bincount([lab for _, _, lab in rows], minlength=3).tolist() == [4, 4, 3]


@pytest.mark.parametrize("kwargs", [
    dict(n_train=-1, n_val=0, n_test=0),
    dict(n_train=2.5, n_val=0, n_test=0),
    dict(n_train=0, n_val=0, n_test=0),
    dict(n_train=3, n_val=0, n_test=0, class_fractions=(0.5, 0.3, 0.3)),
    dict(n_train=3, n_val=0, n_test=0, class_fractions=(0.5, 0.5)),
    dict(n_train=3, n_val=0, n_test=0, class_fractions=(1.2, -0.2, 0.0)),
    dict(n_train=3, n_val=0, n_test=0, class_fractions="abc"),
])
def test_plan_rejects_bad_counts_and_fractions(kwargs):
    with pytest.raises(ConfigError) as info:
        mock.plan(seed=0, **kwargs)
    assert info.value.key in ("n_train", "class_fractions")


# --------------------------------------------------------------------------- build


def _build(root, workers, seed=0, **kwargs):
    sizes = dict(n_train=6, n_val=3, n_test=3)
    sizes.update(kwargs)
    return mock.build(root, seed=seed, workers=workers, shard_size=4, progress=False,
                            **sizes)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The same tiny dataset built in-process and with two worker processes."""
    root = tmp_path_factory.mktemp("mocks")
    return _build(root / "one", workers=1), _build(root / "two", workers=2)


def test_build_is_byte_identical_whatever_the_number_of_workers(built):
    one, two = built
    for split in ("train", "val", "test"):
        files_one, files_two = one.files(split), two.files(split)
        names = [os.path.basename(f) for f in files_one]
        assert names == [os.path.basename(f) for f in files_two]
        for a, b in zip(files_one, files_two):
            with open(a, "rb") as fa, open(b, "rb") as fb:
                assert fa.read() == fb.read(), a


def test_build_in_another_process_writes_the_same_dataset(built, tmp_path):
    one = built[0]
    code = ("from tfgal.data import mock; mock.build(%r, n_train=6, n_val=3, "
            "n_test=3, seed=0, workers=1, shard_size=4, progress=False)" % str(tmp_path / "other"))
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    other = Manifest.load(tmp_path / "other")
    for split in ("train", "val", "test"):
        for a, b in zip(one.files(split), other.files(split)):
            with open(a, "rb") as fa, open(b, "rb") as fb:
                assert fa.read() == fb.read(), a


def test_build_writes_the_planned_galaxies_as_rendered(built):
    manifest = built[0]
    rows = mock.plan(6, 3, 3, seed=0)
    got = [(split, ex["galaxy_id"], ex["label"], ex[FLUX])
           for split in ("train", "val", "test")
           for path in manifest.files(split)
           for ex in read_examples(path, manifest.compression)]
    assert [g[:3] for g in got] == rows
    for split, galaxy_id, label, image in got[:4] + got[-2:]:
        assert image.tobytes() == mock.render_galaxy(galaxy_id, label, 0).tobytes()


def test_build_stores_each_galaxy_own_psf_fwhm(built):
    manifest = built[0]
    assert manifest.psf_fwhm == PSF_FWHM_R
    stored = {}
    for split in ("train", "val", "test"):
        for path in manifest.files(split):
            for ex in read_examples(path, manifest.compression):
                drawn = mock.describe(ex["galaxy_id"], ex["label"], 0)["psf_fwhm_arcsec"]
                assert ex[PSF_FWHM] == float(np.float32(drawn)), ex["galaxy_id"]
                stored[ex["galaxy_id"]] = ex[PSF_FWHM]
    values = np.array(list(stored.values()))
    assert np.all((values >= 0.6) & (values <= 0.8)) and np.ptp(values) > 0.05
    # The pipeline hands them on beside the images, in the same order.
    from tfgal.data import pipeline  # TensorFlow: only here, after the builds' pools
    arrays = pipeline.load_arrays(manifest, "test", "Y10")
    assert arrays[PSF_FWHM].dtype == np.float32
    np.testing.assert_array_equal(arrays[PSF_FWHM],
                                  [stored[g] for g in arrays["galaxy_id"].tolist()])


def test_build_manifest_records_counts_stretch_and_generator(built):
    manifest = Manifest.load(built[0].root)
    assert manifest.image_shape == (100, 100, 3)
    assert manifest.class_names == CLASS_NAMES
    assert manifest.images == {"flux": {"noise": False, "units": "e-/s per pixel"}}
    assert [manifest.count(s) for s in ("train", "val", "test")] == [6, 3, 3]
    assert manifest.class_counts("train") == [2, 2, 2]
    assert manifest.class_counts("val") == [1, 1, 1]
    assert [len(manifest.split(s)["files"]) for s in ("train", "val", "test")] == [2, 1, 1]
    # The stretch is fitted on the training galaxies at Y10, with noise seeded by `seed`.
    train = np.stack([ex[FLUX] for path in manifest.files("train")
                      for ex in read_examples(path)])
    expected = stretch.fit(train, noiseless=True, depth="Y10", seed=0)
    assert manifest.stretch == json.loads(json.dumps(expected))
    assert manifest.stretch["n_images"] == 6 and manifest.stretch["depth"] == "Y10"
    gen = manifest.generator
    assert gen["name"] == "tfgal.mocks" and gen["seed"] == 0
    assert mock.MockParams.from_dict(gen["params"]) == PARAMS
    assert gen["class_fractions"] == pytest.approx([1 / 3] * 3)
    assert gen["counts"] == {"train": [2, 2, 2], "val": [1, 1, 1], "test": [1, 1, 1]}
    assert {"tfgal_version", "galsim_version"} <= set(gen)
    verify(manifest.root)


def test_build_with_class_fractions_and_no_training_split(tmp_path):
    manifest = _build(tmp_path / "m", workers=1, n_train=0, n_val=0, n_test=5,
                      class_fractions=(0.6, 0.4, 0.0), compression="")
    assert manifest.class_counts("test") == [3, 2, 0]
    assert set(manifest.splits) == {"test"}
    assert manifest.stretch is None  # never fitted on val or test
    assert manifest.generator["class_fractions"] == [0.6, 0.4, 0.0]


def test_build_rejects_bad_arguments(tmp_path):
    with pytest.raises(ConfigError):
        _build(tmp_path / "a", workers=1, n_train=-2)
    with pytest.raises(ConfigError):
        _build(tmp_path / "b", workers=1, class_fractions=(0.2, 0.2, 0.2))
    with pytest.raises(ConfigError):
        _build(tmp_path / "c", workers=0)
    with pytest.raises(ConfigError):
        mock.build(tmp_path / "d", n_train=3, n_val=0, n_test=0, seed=0, params={"r_mag": 1})
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "keep.txt").write_text("x")
    with pytest.raises(OutputExists, match="not empty; rerun with --overwrite"):
        _build(tmp_path / "e", workers=1, n_train=3, n_val=0, n_test=0)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_sharded_build_equals_unsharded_byte_for_byte(built, tmp_path, capsys):
    from tfgal import cli
    one = built[0]
    out = tmp_path / "sharded"
    args = ["mock", "--out", str(out), "--train", "6", "--val", "3", "--test", "3", "--seed", "0",
            "--workers", "1", "--shard-size", "4"]
    for part in (2, 0):  # any order
        assert cli.data_main(args + ["--shard", f"{part}/3"]) == 0
    assert cli.data_main(["merge", "--out", str(out)]) == 2  # part 1 of 3 is missing
    assert "parts [1] of 3 are missing" in capsys.readouterr().err
    assert not (out / MANIFEST_NAME).exists()
    assert cli.data_main(args + ["--shard", "1/3"]) == 0
    assert cli.data_main(["merge", "--out", str(out)]) == 0
    sharded = Manifest.load(out)
    assert sharded.to_json() == one.to_json()
    for split in ("train", "val", "test"):
        for a, b in zip(one.files(split), sharded.files(split)):
            with open(a, "rb") as fa, open(b, "rb") as fb:
                assert fa.read() == fb.read(), a
    assert sorted(os.listdir(out)) == sorted(os.listdir(one.root))


def test_merge_refuses_a_damaged_part(tmp_path):
    from tfgal.data import shards
    from tfgal.errors import DataError
    out = tmp_path / "parts"
    for part in range(2):
        mock.build(out, n_train=4, n_val=0, n_test=0, seed=1, workers=1, shard_size=2,
                         progress=False, shard=(part, 2))
    victim = next(p for p in (out / shards.PARTS).iterdir() if p.name.startswith("train-00001"))
    victim.write_bytes(victim.read_bytes()[:-3] + b"xyz")
    with pytest.raises(DataError, match="checksum") as err:
        mock.merge(out)
    assert err.value.path == str(victim)
