"""Each galaxy's own PSF FWHM in the records: the feature, the manifest field, the pipeline
carrying it, and the seeing corruption widening each galaxy's own PSF. (Mock builds that
store it are tested in test_mocks.py.)"""

import hashlib
import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from tfgal import survey
from tfgal.data import DatasetWriter, Manifest, MANIFEST_NAME, importers, pipeline
from tfgal.data import corruptions as C
from tfgal.data import read_examples, stretch, verify
from tfgal.data.codec import serialize_example
from tfgal.data.manifest import PSF_FWHM, PSF_FWHM_R, update_manifest
from tfgal.errors import DataError, ManifestError

SIZE = 48
OWN = (0.55, 0.85)  # r-band FWHMs either side of the Context's dataset-wide 0.7"
GAUSS_FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))  # FWHM / sigma of a Gaussian


def gaussian_source(fwhm_r, size=SIZE, flux=1000.0):
    """A point source seen through a Gaussian PSF of r-band FWHM `fwhm_r` (scaled to each
    band as the mocks' seeing), sampled at pixel centres: e-/s per pixel [H, W, C]."""
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2.0
    out = np.empty((size, size, len(survey.BANDS)), np.float32)
    for c, band in enumerate(survey.BANDS):
        sigma = survey.seeing_fwhm(fwhm_r, band) / survey.PIXEL_SCALE_ARCSEC / GAUSS_FWHM
        g = np.exp(-(xx**2 + yy**2) / (2 * sigma**2))
        out[..., c] = flux * g / g.sum()
    return out


def moment_fwhm(plane):
    """FWHM (arcsec) of a round Gaussian from its second moments about its centroid."""
    plane = np.asarray(plane, np.float64)
    yy, xx = np.mgrid[:plane.shape[0], :plane.shape[1]]
    total = plane.sum()
    cy, cx = (plane * yy).sum() / total, (plane * xx).sum() / total
    var = (plane * ((yy - cy) ** 2 + (xx - cx) ** 2)).sum() / (2 * total)
    return GAUSS_FWHM * math.sqrt(var) * survey.PIXEL_SCALE_ARCSEC


def assert_at_target(images, target_r, rel=0.02):
    for k, image in enumerate(images):
        for c, band in enumerate(survey.BANDS):
            assert moment_fwhm(image[..., c]) == pytest.approx(
                survey.seeing_fwhm(target_r, band), rel=rel), (k, band)


# --------------------------------------------------------------------------- the records


def test_serialize_without_psf_keeps_the_bytes_of_before():
    """The example's bytes as the tfgal before the PSF feature (083355d) wrote them."""
    rng = np.random.default_rng(3)
    image = {"Y10": rng.normal(0, 1, (4, 4, 3)).astype(np.float32)}
    raw = serialize_example(image, 2, 17)
    assert hashlib.sha256(raw).hexdigest() == (
        "3283d4e21d10dc308929e074a5c8ccb4ea4aa7be4843918cae4380a0239bbdc1")
    with_psf = tf.train.Example.FromString(serialize_example(image, 2, 17, 0.63))
    assert with_psf.features.feature[PSF_FWHM].float_list.value == [pytest.approx(0.63)]
    assert PSF_FWHM not in tf.train.Example.FromString(raw).features.feature


def _npy_source(directory):
    """The study's nine .npy files, tiny: 3 / 1 / 2 galaxies of 6 x 6 pixels."""
    rng = np.random.default_rng(7)
    os.makedirs(directory)
    for split, n in (("train", 3), ("valid", 1), ("test", 2)):
        y10 = rng.normal(0, 5, (n, 3, 6, 6)) + 40
        y1 = y10 + rng.normal(0, 15, y10.shape)
        np.save(os.path.join(directory, f"images_Y10_{split}.npy"), y10)
        np.save(os.path.join(directory, f"images_Y1_{split}.npy"), y1)
        np.save(os.path.join(directory, f"labels_{split}.npy"), np.eye(3)[np.arange(n) % 3])


def test_imported_dataset_stores_no_psf_and_keeps_its_bytes(tmp_path):
    _npy_source(tmp_path / "src")
    manifest = importers.import_npy(tmp_path / "src", tmp_path / "ds", shard_size=2,
                                    compression="")
    # The record files as the tfgal before the PSF feature (083355d) wrote them.
    assert {s: [f["sha256"][:16] for f in manifest.split(s)["files"]]
            for s in manifest.splits} == {
        "train": ["69df8bb447e0ca99", "dbafe2e39356931f"], "val": ["0571a06aacea5e83"],
        "test": ["1601eb06eb89fd3a"]}
    assert "psf_fwhm" not in json.loads((tmp_path / "ds" / MANIFEST_NAME).read_text())
    assert Manifest.load(tmp_path / "ds").psf_fwhm is None
    assert all(PSF_FWHM not in e for p in manifest.files("test") for e in read_examples(p))
    arrays = pipeline.load_arrays(manifest, "test", "Y10")
    assert arrays["images"].shape == (2, 6, 6, 3) and PSF_FWHM not in arrays


def _psf_writer(root, **kw):
    return DatasetWriter(root, images={"flux": {"noise": False}}, image_shape=(SIZE, SIZE, 3),
                         shard_size=4, psf_fwhm=True, **kw)


@pytest.fixture(scope="module")
def psf_dataset(tmp_path_factory):
    """Point sources seen at their own seeing: train 0.55-0.85" (4), test 0.55" and 0.85"."""
    root = tmp_path_factory.mktemp("psf") / "ds"
    train = np.linspace(*OWN, 4)
    with _psf_writer(root) as w:
        for k, fwhm in enumerate(train):
            w.add("train", {"flux": gaussian_source(fwhm)}, k % 3, k, psf_fwhm_arcsec=fwhm)
        for k, fwhm in enumerate(OWN):
            w.add("test", {"flux": gaussian_source(fwhm)}, k, 10 + k, psf_fwhm_arcsec=fwhm)
        fitted = stretch.fit(np.stack([gaussian_source(f) for f in train]), noiseless=True)
        return w.finish(stretch=fitted)


def test_psf_round_trips_and_the_manifest_says_so(psf_dataset):
    assert psf_dataset.psf_fwhm == PSF_FWHM_R
    assert Manifest.load(psf_dataset.root).psf_fwhm == PSF_FWHM_R
    back = [e[PSF_FWHM] for p in psf_dataset.files("test") for e in read_examples(p)]
    assert back == [float(np.float32(f)) for f in OWN]  # stored as one float32
    verify(psf_dataset.root)


def test_manifest_refuses_a_psf_description_it_cannot_read(psf_dataset, tmp_path):
    root = tmp_path / "copy"
    os.makedirs(root)
    obj = json.loads(open(os.path.join(psf_dataset.root, MANIFEST_NAME)).read())
    obj["psf_fwhm"] = {"band": "i", "units": "arcsec"}
    (root / MANIFEST_NAME).write_text(json.dumps(obj))
    with pytest.raises(ManifestError, match="psf_fwhm") as err:
        Manifest.load(root)
    assert err.value.index == "psf_fwhm" and err.value.path == str(root / MANIFEST_NAME)


def test_writer_refuses_missing_or_bad_psf_naming_the_galaxy(tmp_path):
    image = gaussian_source(0.7)
    with pytest.raises(DataError, match="lacks psf_fwhm_arcsec") as err:
        with _psf_writer(tmp_path / "a", source="cat.fits") as w:
            w.add("train", {"flux": image}, 0, 3, index=5)
    assert (err.value.path, err.value.index) == ("cat.fits", 5)
    with pytest.raises(DataError, match="not a positive finite FWHM") as err:
        with _psf_writer(tmp_path / "b") as w:
            w.add("train", {"flux": image}, 0, 4, psf_fwhm_arcsec=float("nan"))
    assert err.value.index == 4
    with pytest.raises(DataError, match="has psf_fwhm_arcsec"):
        with DatasetWriter(tmp_path / "c", images={"flux": {"noise": False}},
                           image_shape=(SIZE, SIZE, 3)) as w:
            w.add("train", {"flux": image}, 0, 4, psf_fwhm_arcsec=0.7)
    assert os.listdir(tmp_path) == []


def test_verify_names_a_record_without_the_psf_the_manifest_promises(blob_dataset, tmp_path):
    import shutil
    root = tmp_path / "blobs"
    shutil.copytree(blob_dataset.root, root)
    update_manifest(root, psf_fwhm=dict(PSF_FWHM_R))
    with pytest.raises(DataError, match="lacks psf_fwhm_arcsec") as err:
        verify(root)
    assert err.value.index == 0 and err.value.path.endswith("train-00000-of-00003.tfrecord.gz")


# --------------------------------------------------------------------------- the pipeline


def test_pipeline_carries_each_galaxy_psf(psf_dataset, blob_dataset):
    arrays = pipeline.load_arrays(psf_dataset, "test", "Y10")
    assert arrays[PSF_FWHM].dtype == np.float32 and arrays[PSF_FWHM].shape == (2,)
    np.testing.assert_array_equal(arrays[PSF_FWHM], np.float32(OWN))
    assert PSF_FWHM not in pipeline.load_arrays(blob_dataset, "test", "Y10", n=2)
    # The in-memory training stream keeps each galaxy's own value beside its id.
    batch = next(iter(pipeline.make_dataset(psf_dataset, "train", "Y10", batch_size=4,
                                            training=True, cache=True, with_ids=True)))
    expected = dict(zip(range(4), np.float32(np.linspace(*OWN, 4))))
    got = dict(zip(batch["galaxy_id"].numpy().tolist(), batch[PSF_FWHM].numpy()))
    assert got == expected


# --------------------------------------------------------------------------- seeing


def _seeing(images, own_fwhm_r, severity=1):
    x = tf.constant(np.stack(images))
    ids = tf.range(len(images), dtype=tf.int64)
    seeds = C.per_galaxy_seeds(0, "seeing", ids, tf.zeros_like(ids))
    own = None if own_fwhm_r is None else tf.constant(own_fwhm_r, tf.float32)
    return C.corrupt(x, "seeing", tf.fill([len(images)], severity), seeds,
                     C.Context(own_fwhm_r=0.7), own).numpy()


def test_seeing_widens_each_galaxy_own_psf_to_the_target():
    images = [gaussian_source(f) for f in OWN]
    for k, fwhm in enumerate(OWN):  # the measurement itself, on the clean sources
        assert_at_target(images[k][None], fwhm, rel=0.005)
    target = C.CORRUPTIONS["seeing"].table[1, 0]  # 1.0"
    assert_at_target(_seeing(images, OWN), target)
    # The dataset-wide 0.7" would leave one too sharp and the other too wide, by ~10%.
    shared = _seeing(images, None)
    r = survey.BANDS.index("r")
    assert moment_fwhm(shared[0, ..., r]) < 0.93 * target
    assert moment_fwhm(shared[1, ..., r]) > 1.07 * target


def test_neighbour_star_is_drawn_at_each_galaxy_own_seeing():
    x = tf.zeros([2, 96, 96, 3])
    ids = tf.constant([3, 3], tf.int64)  # the same draw, so the star lands in one place
    seeds = C.per_galaxy_seeds(0, "neighbour", ids, tf.zeros_like(ids))
    both = C.corrupt(x, "neighbour", tf.constant([1, 1]), seeds, C.Context(),
                     tf.constant(OWN)).numpy()
    for k, fwhm in enumerate(OWN):  # as if each were a dataset of its own seeing
        alone = C.corrupt(x[k:k + 1], "neighbour", tf.constant([1]), seeds[k:k + 1],
                          C.Context(own_fwhm_r=fwhm)).numpy()
        np.testing.assert_allclose(both[k], alone[0], rtol=1e-6, atol=0)
    assert both[0].max() > 2 * both[1].max()  # the sharper seeing, the brighter core


def test_seeing_in_the_pipeline_reads_each_galaxy_psf_from_its_record(psf_dataset):
    plan = C.Plan.fixed("seeing", 2)  # 1.2"
    arrays = pipeline.load_arrays(psf_dataset, "test", "noiseless", stretch=stretch.IDENTITY,
                                  corruption=plan)
    assert_at_target(arrays["images"], C.CORRUPTIONS["seeing"].table[2, 0])
