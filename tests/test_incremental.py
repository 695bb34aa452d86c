"""Incremental one-pixel evaluation: exact against the full model, used by the attacker."""

import os
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfgal.attack import host
from tfgal.model import export
from tfgal.attack import incremental
from tfgal.model import architectures as models
from tfgal.attack import OnePixelAttack
from tfgal.errors import ConfigError, ModelContractError

SIZE = 12
CELL = (4, 3)  # (x, y) of the pooled cell the vulnerable model reads (x 8-9, y 6-7)


def _randomise(model, seed=0):
    """Batch-norm statistics off the identity, dense weights at a scale that moves outputs."""
    rng = np.random.default_rng(seed)
    for layer in incremental.flatten_layers(model):
        if isinstance(layer, keras.layers.Dense):
            fan_in = layer.kernel.shape[0]
            layer.kernel.assign(rng.normal(0, 3 / np.sqrt(fan_in), layer.kernel.shape))
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape
            layer.moving_mean.assign(rng.normal(0, 0.2, n))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n))
            layer.gamma.assign(rng.uniform(0.5, 1.5, n))
            layer.beta.assign(rng.normal(0, 0.2, n))


def study_convnet(size=SIZE, seed=1):
    encoder, head = models.build("convnet", image_shape=(size, size, 3), seed=seed)
    images = keras.Input((size, size, 3))
    model = keras.Model(images, keras.layers.Softmax()(head(encoder(images))))
    _randomise(model, seed)
    return model, encoder, head


def chain(size, *layers):
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((size, size, 3)), *layers,
                              keras.layers.Flatten(), keras.layers.Dense(3),
                              keras.layers.Softmax()])
    _randomise(model)
    return model


GEOMETRIES = {
    "study-convnet-odd": lambda: study_convnet(13)[0],
    "stride-2-conv-and-same-maxpool": lambda: chain(
        15, keras.layers.Conv2D(4, 7, 2, padding="same"), keras.layers.BatchNormalization(),
        keras.layers.ReLU(), keras.layers.MaxPooling2D(3, 2, padding="same"),
        keras.layers.Conv2D(4, 3, padding="same", activation="relu")),
    "valid-conv-and-avgpool": lambda: chain(
        16, keras.layers.Conv2D(4, 3, padding="valid", activation="tanh"),
        keras.layers.AveragePooling2D(2), keras.layers.Conv2D(5, 3, padding="valid")),
    "global-average-boundary": lambda: keras.Sequential([
        keras.Input((14, 14, 3)), keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2), keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3, activation="softmax")]),
}


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_matches_the_full_model(name):
    model = GEOMETRIES[name]()
    shape = tuple(model.inputs[0].shape[1:])
    evaluator = incremental.LocalEvaluator(model, shape)
    assert evaluator.windowed  # something is computed in windows
    images = np.random.default_rng(0).uniform(0.3, 0.9, (3, *shape)).astype(np.float32)
    deviation = incremental.max_deviation(evaluator, model, images, n_pixels=40,
                                          value_range=(0.0, 3.0))
    assert deviation < 1e-5
    # ... and the pixels do change the output (a constant would pass the line above).
    rows = tf.constant([0, 1], tf.int32)
    x, y = tf.constant([1, shape[1] - 1]), tf.constant([2, 0])
    values = tf.constant(np.full((2, 3), 3.0, np.float32))
    cache = evaluator.prepare(images)
    moved = evaluator.probabilities(cache, rows, x, y, values).numpy() - model(images[:2]).numpy()
    assert np.abs(moved).max() > 1e-4


def test_study_convnet_windows_and_linear_boundary():
    model, _, _ = study_convnet(100)
    evaluator = incremental.LocalEvaluator(model, (100, 100, 3))
    assert evaluator.windowed == ["conv0", "pool0", "conv1", "pool1", "conv2", "pool2"]
    assert evaluator.patch == (3, 3) and evaluator.boundary_shape == (12, 12, 32)
    assert evaluator.dense is not None and evaluator.dense.name == "latent"
    images = np.random.default_rng(1).uniform(0.4, 0.9, (2, 100, 100, 3)).astype(np.float32)
    assert incremental.max_deviation(evaluator, model, images, n_pixels=30) < 1e-5


def test_branching_and_position_mixing_models_are_refused():
    resnet, head = models.build("resnet18", image_shape=(32, 32, 3), width=8)
    with pytest.raises(incremental.Unsupported, match="merges branches"):
        incremental.LocalEvaluator(resnet, (32, 32, 3))
    dense_first = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                                    keras.layers.Dense(3, activation="softmax")])
    with pytest.raises(incremental.Unsupported, match="mix all positions"):
        incremental.LocalEvaluator(dense_first, (8, 8, 3))


# --------------------------------------------------------------------------- in the attack


def vulnerable_convnet():
    """Class 1 once a pixel of pooled cell CELL is bright (> 0.6 in band mean)."""
    images = keras.Input((SIZE, SIZE, 3), name="images")
    conv = keras.layers.Conv2D(1, 3, padding="same", name="conv")
    x = keras.layers.MaxPooling2D(2, name="pool")(keras.layers.ReLU()(conv(images)))
    dense = keras.layers.Dense(3, name="logits")
    encoder = keras.Model(images, dense(keras.layers.Flatten()(x)))
    kernel = np.zeros((3, 3, 3, 1), np.float32)
    kernel[1, 1, :, 0] = 1.0 / 3
    conv.set_weights([kernel, np.array([-0.6], np.float32)])
    weights = np.zeros((SIZE // 2 * SIZE // 2, 3), np.float32)
    weights[CELL[1] * (SIZE // 2) + CELL[0], 1] = 100.0
    dense.set_weights([weights, np.array([2.0, 0.0, 0.0], np.float32)])
    latent = keras.Input((3,), name="latent")
    head = keras.Model(latent, keras.layers.Identity()(latent))
    return encoder, head


def dim(n, seed=0):
    return (0.2 + np.random.default_rng(seed).uniform(0, 0.05, (n, SIZE, SIZE, 3))
            ).astype(np.float32)


@pytest.fixture(scope="module")
def saved_vulnerable(tmp_path_factory):
    encoder, head = vulnerable_convnet()
    path = tmp_path_factory.mktemp("models") / "vulnerable"
    return export.export_saved_model(encoder, head, path, image_shape=(SIZE, SIZE, 3),
                                     assets={"value_range": [[0.0] * 3, [1.0] * 3]})


def test_savedmodel_attacked_incrementally_finds_the_cell(saved_vulnerable):
    settings = dict(popsize=60, iters=30, seed=4)
    fast = OnePixelAttack(saved_vulnerable, **settings).attack(dim(4), np.zeros(4))
    assert fast.settings["evaluator"] == "incremental"
    assert fast.settings["evaluator_deviation"] < 1e-5
    assert fast.success.all()
    cells = fast.pixels[:, 0] // 2
    assert (cells == CELL).all()
    # The same search evaluated in full: the same answers, queries and generations.
    full = OnePixelAttack(saved_vulnerable, evaluator="full", **settings).attack(
        dim(4), np.zeros(4))
    assert full.settings["evaluator"] == "full" and full.settings["evaluator_deviation"] is None
    for name in ("success", "generations", "queries", "pixels"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(full, name))
    np.testing.assert_allclose(fast.final_score, full.final_score, atol=1e-6)


def test_reported_results_are_the_served_models(saved_vulnerable, monkeypatch):
    """An evaluator that is wrong after the check: the served model's verdict is reported."""
    att = OnePixelAttack(saved_vulnerable, popsize=60, iters=5, seed=0)
    original = incremental.LocalEvaluator.probabilities

    def optimistic(self, *args):  # claims every candidate reaches class 1
        probs = original(self, *args)
        return tf.one_hot(tf.ones(tf.shape(probs)[0], tf.int32), 3) + 0 * probs
    att._engines.clear()
    engine = att._engine(dim(1), (np.zeros(3, np.float32), np.ones(3, np.float32)))
    monkeypatch.setattr(incremental.LocalEvaluator, "probabilities", optimistic)
    images = dim(3) * 0.1  # dim: a random pixel rarely lands in the cell in one generation
    result = att.attack(images, np.zeros(3))
    assert engine.local is not None
    served = export.load(saved_vulnerable).predict(result.images)["probabilities"]
    np.testing.assert_allclose(result.final_score, served[:, 0], atol=1e-6)
    assert result.success.tolist() == (served[:, 0] < 0.05).tolist()


def test_keras_model_and_cache_groups(monkeypatch):
    encoder, head = vulnerable_convnet()
    images_in = keras.Input((SIZE, SIZE, 3))
    model = keras.Model(images_in, keras.layers.Softmax()(head(encoder(images_in))))
    settings = dict(popsize=40, iters=20, seed=2, value_range=(0.0, 1.0), max_batch=80)
    one = OnePixelAttack(model, **settings).attack(dim(5), np.zeros(5))
    monkeypatch.setitem(host.CACHE_BUDGET_BYTES, "CPU", 1)  # groups of 2 images (2 slots)
    grouped = OnePixelAttack(model, **settings).attack(dim(5), np.zeros(5))
    assert one.settings["evaluator"] == grouped.settings["evaluator"] == "incremental"
    for name in ("success", "generations", "queries", "pixels", "values"):
        np.testing.assert_array_equal(getattr(one, name), getattr(grouped, name))


def test_incremental_refused_with_reasons():
    def spotlight(x):
        return tf.nn.softmax(tf.reduce_mean(x, axis=[1, 2]))
    with pytest.raises(ModelContractError, match="no Keras layers"):
        OnePixelAttack(spotlight, evaluator="incremental", popsize=8, iters=1,
                       value_range=(0, 1)).attack(dim(1), np.zeros(1))
    encoder, head = vulnerable_convnet()
    with pytest.raises(ModelContractError, match="one pixel, not 2"):
        OnePixelAttack(encoder, evaluator="incremental", pixels=2, popsize=8, iters=1,
                       value_range=(0, 1)).attack(dim(1), np.zeros(1))
    with pytest.raises(ConfigError, match="evaluator"):
        OnePixelAttack(encoder, evaluator="fast")


def test_disagreeing_evaluator_is_dropped_or_refused(saved_vulnerable, monkeypatch):
    original = incremental.LocalEvaluator.probabilities
    monkeypatch.setattr(incremental.LocalEvaluator, "probabilities",
                        lambda self, *a: original(self, *a) * 0.9)
    with pytest.raises(ModelContractError, match="differs from model"):
        OnePixelAttack(saved_vulnerable, evaluator="incremental", popsize=8, iters=1).attack(
            dim(1), np.zeros(1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = OnePixelAttack(saved_vulnerable, popsize=8, iters=1).attack(dim(1), np.zeros(1))
    assert result.settings["evaluator"] == "full"
    assert any("evaluating candidates in full" in str(w.message) for w in caught)
