"""The in-memory training stream (`make_dataset(cache=True)`) and the batched symmetries."""

import numpy as np
import pytest
import tensorflow as tf

from tfgal.data import observation, pipeline


def _epochs(manifest, n_epochs=2, **kw):
    """The first passes (3 batches of 8 over 24 galaxies) of one repeating stream."""
    args = dict(batch_size=8, training=True, seed=3, with_ids=True, cache=True, repeat=True)
    batches = list(pipeline.make_dataset(manifest, "train", "Y1", **{**args, **kw})
                   .take(3 * n_epochs))
    return [batches[3 * e:3 * (e + 1)] for e in range(n_epochs)]


def _by_id(batches):
    return {int(i): image for b in batches
            for i, image in zip(b["galaxy_id"].numpy(), b["images"].numpy())}


def _views(image):
    """The eight symmetries of a square image [H, W, C]."""
    return [np.rot90(v, k) for v in (image, image[:, ::-1]) for k in range(4)]


def test_fixed_noise_in_memory_is_the_streaming_draw(blob_dataset):
    cached = _epochs(blob_dataset, fresh_noise=False, augment_images=False)
    streamed = _epochs(blob_dataset, fresh_noise=False, augment_images=False, cache=False)
    a, b = _by_id(cached[0]), _by_id(cached[1])
    assert set(a) == set(b) == set(_by_id(streamed[0]))  # every galaxy, once per epoch
    order = [[int(i) for bt in e for i in bt["galaxy_id"]] for e in cached]
    assert order[0] != order[1]  # reshuffled each epoch
    for i, image in _by_id(streamed[0]).items():  # the same one draw per galaxy, bit for bit
        np.testing.assert_array_equal(a[i], image)
        np.testing.assert_array_equal(b[i], image)


def test_fixed_noise_in_memory_is_seeded(blob_dataset):
    def ids(seed):
        return [[int(i) for bt in e for i in bt["galaxy_id"]]
                for e in _epochs(blob_dataset, fresh_noise=False, seed=seed)]
    assert ids(3) == ids(3)
    assert ids(3) != ids(4)
    first, again = (_epochs(blob_dataset, fresh_noise=False) for _ in range(2))
    for x, y in zip(first[1], again[1]):  # augmentation included
        np.testing.assert_array_equal(x["images"], y["images"])


def test_augmented_images_are_symmetries_and_vary(blob_dataset):
    plain = _by_id(_epochs(blob_dataset, 1, fresh_noise=False, augment_images=False)[0])
    first, second = (_by_id(e) for e in _epochs(blob_dataset, fresh_noise=False))
    turned = 0
    for i, image in first.items():
        assert min(np.abs(v - image).max() for v in _views(plain[i])) == 0
        turned += not np.array_equal(image, second[i])
    assert turned > len(first) // 2  # 7 in 8 change from one epoch to the next


def test_fresh_noise_in_memory_redraws_each_epoch(blob_dataset):
    first, second = (_by_id(e) for e in _epochs(blob_dataset, fresh_noise=True,
                                                augment_images=False))
    assert set(first) == set(second)
    assert all(not np.array_equal(first[i], second[i]) for i in first)
    fixed = _by_id(_epochs(blob_dataset, 1, fresh_noise=False, augment_images=False)[0])
    for i in first:  # the same galaxy, other noise of the same depth
        assert abs(float(np.std(first[i] - fixed[i]))) > 0
        assert abs(float(np.mean(first[i])) - float(np.mean(fixed[i]))) < 0.05


def test_depth_range_with_fixed_noise_keeps_each_galaxys_depth(blob_dataset):
    kw = dict(fresh_noise=False, augment_images=False, depth_range=("Y1", "Y10"))
    cached = _epochs(blob_dataset, **kw)
    streamed = _epochs(blob_dataset, 1, cache=False, **kw)[0]

    def exposures(batches):
        return {int(i): e for b in batches
                for i, e in zip(b["galaxy_id"].numpy(), b["exposure_s"].numpy())}
    want = exposures(streamed)
    for epoch in cached:
        got = exposures(epoch)
        for i in want:
            np.testing.assert_array_equal(got[i], want[i])


def test_evaluation_cache_replays_the_same_batches(blob_dataset):
    kw = dict(batch_size=8, seed=5, with_ids=True)
    ds = pipeline.make_dataset(blob_dataset, "val", "Y1", cache=True, **kw)
    plain = list(pipeline.make_dataset(blob_dataset, "val", "Y1", **kw))
    for run in (list(ds), list(ds)):
        assert len(run) == len(plain)
        for x, y in zip(run, plain):
            np.testing.assert_array_equal(x["images"], y["images"])
            np.testing.assert_array_equal(x["galaxy_id"], y["galaxy_id"])


def test_symmetry_table_holds_the_eight_symmetries():
    image = np.arange(4 * 4 * 2, dtype=np.float32).reshape(4, 4, 2)
    table = observation.symmetry_indices(4, 4)
    assert table.shape == (8, 16)
    got = [image.reshape(16, 2)[row].reshape(4, 4, 2) for row in table]
    want = _views(image)
    assert all(any(np.array_equal(g, w) for g in got) for w in want)  # all eight, no repeat
    assert observation.symmetry_indices(4, 6).shape == (4, 24)  # flips only when not square


@pytest.mark.parametrize("shape", [(64, 6, 6, 3), (64, 4, 6, 1)])
def test_augment_batch_draws_each_image_its_own_symmetry(shape):
    rng = np.random.default_rng(0)
    images = rng.normal(size=shape).astype(np.float32)
    seen = []
    for salt in range(4):
        out = observation.augment_batch(tf.constant(images),
                                        tf.constant([7, salt], tf.int64)).numpy()
        for x, y in zip(images, out):
            if shape[1] == shape[2]:
                views = _views(x)
            else:
                views = [x, x[::-1], x[:, ::-1], x[::-1, ::-1]]
            matches = [k for k, v in enumerate(views) if np.array_equal(v, y)]
            assert matches, "an output is not a symmetry of its input"
            seen.append(matches[0])
    counts = np.bincount(seen, minlength=8 if shape[1] == shape[2] else 4)
    assert counts.min() > 0.5 * counts.mean()  # 256 draws: every symmetry, roughly uniform
