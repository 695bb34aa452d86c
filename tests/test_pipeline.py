import zlib

import numpy as np
import pytest
import tensorflow as tf

from tfgal import survey
from tfgal.data import noise, pipeline
from tfgal.data import DatasetWriter, Manifest, read_examples
from tfgal.data import stretch
from tfgal.errors import ConfigError, DataError

IDENTITY = {"kind": "identity"}


def _flux(manifest, split):
    return np.stack([e["flux"] for p in manifest.files(split) for e in read_examples(p)])


def test_batches_shapes_and_range(blob_dataset):
    ds = pipeline.make_dataset(blob_dataset, "train", "Y10", batch_size=8, training=True, seed=1)
    batches = list(ds)
    assert len(batches) == 3  # 24 galaxies, partial batches dropped in training
    x, y = batches[0]
    assert x.shape == (8, 16, 16, 3) and x.dtype == tf.float32 and y.dtype == tf.int32
    lo, hi = stretch.value_range(blob_dataset.stretch)
    assert np.all(x.numpy() >= np.array(lo) - 1e-6) and np.all(x.numpy() <= np.array(hi) + 1e-6)


def test_noise_matches_depth_statistics(blob_dataset):
    flux = _flux(blob_dataset, "test")
    for depth in (survey.Y10, survey.Y1):
        out = pipeline.load_arrays(blob_dataset, "test", depth, stretch=IDENTITY, seed=2)
        residual = out["images"] - flux
        expected_var = ((flux + survey.sky_vector()) / depth.exposure_vector()).mean((0, 1, 2))
        np.testing.assert_allclose(residual.var((0, 1, 2)), expected_var, rtol=0.1)
        standard_error = np.sqrt(expected_var / residual[..., 0].size)
        assert np.all(np.abs(residual.mean((0, 1, 2))) < 4 * standard_error)


def test_stretch_is_the_manifest_one(blob_dataset):
    raw = pipeline.load_arrays(blob_dataset, "val", "Y1", stretch=IDENTITY, seed=4)
    stretched = pipeline.load_arrays(blob_dataset, "val", "Y1", seed=4)
    np.testing.assert_allclose(stretched["images"],
                               stretch.apply_numpy(raw["images"], blob_dataset.stretch), atol=1e-6)
    noiseless = pipeline.load_arrays(blob_dataset, "val", "noiseless")
    np.testing.assert_allclose(noiseless["images"],
                               stretch.apply_numpy(_flux(blob_dataset, "val"), blob_dataset.stretch),
                               atol=1e-6)


def test_eval_noise_is_per_galaxy_whatever_the_batching(blob_dataset):
    a = pipeline.load_arrays(blob_dataset, "train", "Y1", seed=5, batch_size=5)
    b = pipeline.load_arrays(blob_dataset, "train", "Y1", seed=5, batch_size=24)
    c = pipeline.load_arrays(blob_dataset, "train", "Y1", seed=6)
    np.testing.assert_array_equal(a["images"], b["images"])
    np.testing.assert_array_equal(a["galaxy_id"], np.arange(24))
    assert not np.array_equal(a["images"], c["images"])
    y10 = pipeline.load_arrays(blob_dataset, "train", "Y10", seed=5)
    assert not np.array_equal(a["images"], y10["images"])


def _collect(ds):
    return [(x.numpy(), y.numpy()) for x, y in ds]


def test_training_is_reproducible_and_fresh_each_epoch(blob_dataset):
    make = lambda seed, **k: pipeline.make_dataset(blob_dataset, "train", "Y1", batch_size=8,
                                                   training=True, seed=seed, **k)
    stream = _collect(make(3, repeat=True).take(6))
    epoch1, epoch2 = stream[:3], stream[3:]
    again = _collect(make(3, repeat=True).take(3))
    # Addressed by position, not by iterator: iterating again replays the stream, and a
    # stream started at batch 4 is the same stream from there.
    for (x, _), (x2, _) in zip(stream, _collect(make(3, repeat=True).take(6))):
        np.testing.assert_array_equal(x, x2)
    for (x, y), (x2, y2) in zip(stream[4:], _collect(make(3, repeat=True, start=4).take(2))):
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)
    for (x1, y1), (x1b, y1b) in zip(epoch1, again):
        np.testing.assert_array_equal(x1, x1b)
        np.testing.assert_array_equal(y1, y1b)
    assert not np.array_equal(epoch1[0][0], epoch2[0][0])  # new order, noise, augmentation
    labels = np.sort(np.concatenate([y for _, y in epoch1]))
    np.testing.assert_array_equal(labels, np.sort(np.arange(24) % 3))


def test_augment_is_a_dihedral_transform():
    image = tf.reshape(tf.range(4 * 4 * 3, dtype=tf.float32), (4, 4, 3))
    candidates = []
    for flip in (False, True):
        base = tf.image.flip_left_right(image) if flip else image
        candidates += [tf.image.rot90(base, k).numpy() for k in range(4)]
    seen = set()
    for s in range(40):
        out = pipeline.augment(image, tf.constant([s, 0], tf.int64)).numpy()
        matches = [i for i, c in enumerate(candidates) if np.array_equal(out, c)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) == 8


def test_paired_training_and_eval(blob_dataset):
    train = pipeline.make_paired_dataset(blob_dataset, "train", batch_size=8, seed=1)
    batches = list(train)
    assert len(batches) == 3
    x, y = batches[0]
    assert len(x) == 2 and x[1].shape == (8, 16, 16, 3)
    val = pipeline.make_paired_dataset(blob_dataset, "val", batch_size=8, training=False, seed=1)
    (x, y), = list(val)
    ref_y10 = pipeline.load_arrays(blob_dataset, "val", "Y10", seed=1)
    ref_y1 = pipeline.load_arrays(blob_dataset, "val", "Y1", seed=1)
    np.testing.assert_array_equal(x[0].numpy(), ref_y10["images"])
    np.testing.assert_array_equal(x[1].numpy(), ref_y1["images"])
    np.testing.assert_array_equal(y.numpy(), ref_y10["labels"])


def test_input_context_shards_files(blob_dataset):
    ids = []
    for i in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=i,
                                         num_replicas_in_sync=2)
        ds = pipeline.make_dataset(blob_dataset, "train", batch_size=8, input_context=ctx,
                                   with_ids=True)
        batches = list(ds)
        assert all(b["images"].shape[0] <= 4 for b in batches)  # per-replica batch
        ids.append(np.concatenate([b["galaxy_id"].numpy() for b in batches]))
    assert not set(ids[0]) & set(ids[1])
    assert sorted(np.concatenate(ids)) == list(range(24))
    # Fewer shards (1) than pipelines (3): records are dealt out instead of files.
    ids = []
    for i in range(3):
        ctx = tf.distribute.InputContext(num_input_pipelines=3, input_pipeline_id=i)
        ds = pipeline.make_dataset(blob_dataset, "val", batch_size=3, input_context=ctx,
                                   with_ids=True)
        ids.append(np.concatenate([b["galaxy_id"].numpy() for b in ds]))
    assert [len(i) for i in ids] == [3, 3, 2]
    assert sorted(np.concatenate(ids)) == list(range(24, 32))


@pytest.fixture(scope="module")
def noisy_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("noisy") / "ds"
    rng = np.random.default_rng(0)
    with DatasetWriter(root, images={"Y10": {"noise": True}, "Y1": {"noise": True}},
                       image_shape=(8, 8, 3)) as w:
        for i in range(6):
            w.add("test", {"Y10": rng.normal(0, 0.1, (8, 8, 3)),
                           "Y1": rng.normal(0, 0.3, (8, 8, 3))}, i % 3, i)
        return w.finish(stretch=IDENTITY)


def test_stored_depths_are_picked(noisy_dataset):
    stored = [e for p in noisy_dataset.files("test") for e in read_examples(p)]
    for name in ("Y10", "Y1"):
        out = pipeline.load_arrays(noisy_dataset, "test", name)
        np.testing.assert_array_equal(out["images"], np.stack([e[name] for e in stored]))
    with pytest.raises(ConfigError, match="Y3") as err:
        pipeline.make_dataset(noisy_dataset, "test", "Y3")
    assert set(err.value.valid) == {"Y10", "Y1"}
    with pytest.raises(ConfigError, match="noiseless"):
        pipeline.make_dataset(noisy_dataset, "test", "noiseless")


def test_missing_stretch_is_an_error(noisy_dataset):
    manifest = Manifest.load(noisy_dataset.root)
    manifest.stretch = None
    with pytest.raises(DataError, match="stretch"):
        pipeline.make_dataset(manifest, "test", "Y1")


def test_corrupt_record_while_streaming_names_the_file(blob_dataset, tmp_path):
    import gzip
    import shutil
    root = tmp_path / "copy"
    shutil.copytree(blob_dataset.root, root)
    manifest = Manifest.load(root)
    path = manifest.files("test")[0]
    data = bytearray(gzip.decompress(open(path, "rb").read()))
    data[len(data) // 2] ^= 0xFF  # same length, bad CRC
    with open(path, "wb") as f:
        f.write(gzip.compress(bytes(data)))
    manifest.split("test")["files"][0]["bytes"] = __import__("os").path.getsize(path)
    manifest.save()
    with pytest.raises(DataError, match="corrupt") as err:
        pipeline.load_arrays(root, "test", "Y10")
    assert err.value.path == path and err.value.index is not None


# --------------------------------------------------------------------------- noise seeding


def _by_id(batches, key="images"):
    return {int(i): x for b in batches for i, x in zip(b["galaxy_id"].numpy(), b[key].numpy())}


def _fold(seed, *values):
    for v in values:  # int64, as the pipeline folds them (int32 gives other seeds)
        seed = tf.random.experimental.stateless_fold_in(seed, tf.constant(v, tf.int64))
    return seed


def test_fixed_depth_noise_is_seeded_by_seed_depth_galaxy_and_salt(blob_dataset):
    """Pins the noise scheme: a depth's numbers must not move when features are added."""
    out = pipeline.load_arrays(blob_dataset, "val", "Y1", seed=4, stretch=IDENTITY)
    flux = _flux(blob_dataset, "val")
    t, sky = survey.Y1.exposure_vector(), survey.sky_vector()
    code = zlib.crc32(",".join(f"{v:.6g}" for v in survey.Y1.exposure_s).encode()) & 0x7FFFFFFF
    for image, f, galaxy_id in zip(out["images"], flux, out["galaxy_id"]):
        seed = _fold(tf.constant([4, code], tf.int64), galaxy_id, 0)
        z = noise.standard_normal(f.shape, seed)
        np.testing.assert_allclose(image, noise.observe_from_normal(f, t, sky, z), atol=1e-5)


def _train_ids(ds, epochs=2, per_pass=3):
    """The first `epochs` passes of a repeating training stream (24 galaxies, batches of
    8): a new pass draws anew; iterating the stream again replays it."""
    batches = list(ds.take(epochs * per_pass))
    return [batches[e * per_pass:(e + 1) * per_pass] for e in range(epochs)]


def test_fixed_noise_is_one_draw_per_galaxy(blob_dataset):
    def epochs(fresh, augment=False, **kw):
        ds = pipeline.make_dataset(blob_dataset, "train", "Y1", batch_size=8, training=True,
                                   seed=3, augment_images=augment, fresh_noise=fresh,
                                   with_ids=True, repeat=True, **kw)
        return _train_ids(ds)

    first, second = epochs(False)
    a, b = _by_id(first), _by_id(second)
    assert [int(i) for i in first[0]["galaxy_id"]] != [int(i) for i in second[0]["galaxy_id"]]
    for i in a:  # reshuffled, but the same noisy image of every galaxy
        np.testing.assert_array_equal(a[i], b[i])
    # The fixed draw is the evaluation one (salt 0), as from a stored noisy file.
    evaluation = pipeline.load_arrays(blob_dataset, "train", "Y1", seed=3)
    for i, image in zip(evaluation["galaxy_id"], evaluation["images"]):
        np.testing.assert_allclose(a[int(i)], image, atol=1e-6)
    fresh = [_by_id(e) for e in epochs(True)]
    assert all(not np.array_equal(fresh[0][i], fresh[1][i]) for i in a)

    # Augmented: the fixed noisy image turns with its galaxy, and the turns vary by epoch.
    first, second = (_by_id(e) for e in epochs(False, augment=True))
    turned = 0
    for i, image in first.items():
        views = [np.rot90(v, k) for v in (image, image[:, ::-1]) for k in range(4)]
        assert min(np.abs(v - second[i]).max() for v in views) < 1e-6
        turned += not np.array_equal(image, second[i])
    assert turned > 0


def test_depth_range_observes_each_galaxy_at_its_own_depth(blob_dataset):
    lo, hi = survey.Y1.exposure_vector(), survey.Y10.exposure_vector()
    flux = dict(zip(range(24), _flux(blob_dataset, "train")))
    sky = survey.sky_vector()

    def epochs(fresh):
        ds = pipeline.make_dataset(blob_dataset, "train", "Y10", batch_size=8, training=True,
                                   seed=7, augment_images=False, stretch=IDENTITY,
                                   with_ids=True, depth_range=("Y1", "Y10"), fresh_noise=fresh,
                                   repeat=True)
        return [(_by_id(e), _by_id(e, "exposure_s")) for e in _train_ids(ds)]

    (images, t), (images2, t2) = epochs(True)
    u = {}
    for i, exposure in t.items():
        assert np.all(exposure >= lo * (1 - 1e-6)) and np.all(exposure <= hi * (1 + 1e-6))
        frac = np.log(exposure / lo) / np.log(hi / lo)
        np.testing.assert_allclose(frac, frac[0], atol=1e-5)  # one u for every band
        u[i] = frac[0]
    assert len({round(v, 6) for v in u.values()}) == 24  # differs between galaxies
    assert all(not np.isclose(t2[i][0], t[i][0]) for i in t)  # and between epochs
    residual = np.stack([images[i] - flux[i] for i in t])
    var = np.stack([(flux[i] + sky) / t[i] for i in t])
    np.testing.assert_allclose((residual**2 / var).mean(), 1.0, rtol=0.05)
    # Between the two depths' variances (Y10's is a tenth of Y1's), galaxy by galaxy.
    y1_var = np.stack([(flux[i] + sky) / lo for i in t])
    per_galaxy = (residual**2 / y1_var).mean((1, 2, 3))  # 768 pixels each
    assert np.all(per_galaxy > 0.1 * 0.8) and np.all(per_galaxy < 1.2)
    assert per_galaxy.min() < 0.3 < per_galaxy.max()  # spread over the range
    (_, fixed), (_, fixed2) = epochs(False)
    assert all(np.array_equal(fixed[i], fixed2[i]) for i in fixed)


def test_depth_range_leaves_the_target_stream_alone(blob_dataset):
    kw = dict(batch_size=8, seed=1, augment_images=False)
    plain = list(pipeline.make_paired_dataset(blob_dataset, "train", **kw))
    ranged = list(pipeline.make_paired_dataset(blob_dataset, "train", **kw,
                                               source_depth_range=("Y1", "Y10")))
    for (x, y), (xr, yr) in zip(plain, ranged):
        np.testing.assert_array_equal(x[1].numpy(), xr[1].numpy())
        np.testing.assert_array_equal(y.numpy(), yr.numpy())
        assert not np.array_equal(x[0].numpy(), xr[0].numpy())


@pytest.fixture(scope="module")
def baked_dataset(tmp_path_factory):
    """Imported-style data: noise baked in at Y10, in sky-subtracted e-/s (some < 0)."""
    root = tmp_path_factory.mktemp("baked") / "ds"
    rng = np.random.default_rng(1)
    sky = survey.sky_vector()
    level = rng.uniform(0, 3, (12, 1, 1, 3)) * np.array([1.0, 2.0, 3.0])
    images = (level + rng.normal(0, 1, (12, 24, 24, 3))
              * np.sqrt((level + sky) / survey.Y10.exposure_vector())).astype(np.float32)
    images[:, :4] = rng.normal(-0.5, 0.2, (12, 4, 24, 3))  # negative pixels: variance of 0
    with DatasetWriter(root, images={"Y10": {"noise": True, "depth": survey.Y10.to_json(),
                                             "units": "e-/s"}}, image_shape=(24, 24, 3)) as w:
        for i, image in enumerate(images):
            w.add("train", {"Y10": image}, i % 3, i)
        return w.finish(stretch=stretch.fit(images, noiseless=False))


def test_depth_range_on_baked_noise_adds_the_missing_variance(baked_dataset):
    stored = dict(enumerate(np.stack(
        [e["Y10"] for p in baked_dataset.files("train") for e in read_examples(p)])))
    make = lambda **kw: list(pipeline.make_dataset(
        baked_dataset, "train", "Y10", batch_size=4, training=True, seed=2,
        augment_images=False, with_ids=True, depth_range=("Y1", "Y10"), **kw))
    raw = make(stretch=IDENTITY)
    images, t = _by_id(raw), _by_id(raw, "exposure_s")
    sky, t10 = survey.sky_vector(), survey.Y10.exposure_vector()
    residual = np.stack([images[i] - stored[i] for i in t])
    want = np.stack([(np.maximum(stored[i], 0) + sky) * (1 / t[i] - 1 / t10) for i in t])
    z = residual / np.sqrt(want)
    np.testing.assert_allclose(z.var(), 1.0, rtol=0.03)
    assert abs(z.mean()) < 4 / np.sqrt(z.size)
    np.testing.assert_allclose(z[:, :4].var(), 1.0, rtol=0.1)  # negatives: sky only
    # Noise first, then the dataset's stretch.
    stretched = _by_id(make())
    for i in t:
        np.testing.assert_allclose(stretched[i], stretch.apply_numpy(images[i],
                                                                     baked_dataset.stretch),
                                   atol=1e-6)
    with pytest.raises(ConfigError, match="shallower") as err:
        pipeline.make_dataset(baked_dataset, "train", "Y10", depth_range=("Y1", "Y20"))
    assert err.value.key == "data.depth_augment"


def test_depth_range_refuses_data_stored_stretched(noisy_dataset):
    with pytest.raises(ConfigError, match="data.depth_augment") as err:
        pipeline.make_paired_dataset(noisy_dataset, "test", "Y10", "Y1",
                                     source_depth_range=("Y1", "Y10"))
    assert str(noisy_dataset.root) in str(err.value)
    with pytest.raises(ConfigError, match="noiseless"):
        pipeline.make_dataset(noisy_dataset, "test", "noiseless", depth_range=("Y1", "Y10"))
