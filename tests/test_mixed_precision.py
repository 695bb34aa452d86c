"""Mixed precision (``train.mixed_precision``: Keras' mixed_float16 policy, applied by
tfgal-train on a GPU only) checked on the CPU by setting the policy directly: float16
convolutions, float32 latent, logits, losses and MMD, finite losses, float32 exports."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfgal.model import adaptation, architectures, export

SHAPE = (16, 16, 3)
TINY = dict(image_shape=SHAPE, filters=(4, 4, 4), kernels=(3, 3, 3), seed=0)


@pytest.fixture()
def mixed():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:  # the policy is process-wide: later tests must see float32 again
        keras.mixed_precision.set_global_policy(previous)


def _batches(n_batches=2, batch=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.45, 0.89, (n_batches * batch, *SHAPE)).astype(np.float32)
    y = rng.integers(0, 3, n_batches * batch).astype(np.int32)
    return tf.data.Dataset.from_tensor_slices(((x, x[::-1]), y)).batch(batch)


@pytest.mark.parametrize("name, kwargs", [
    ("convnet", TINY), ("resnet18", dict(image_shape=(32, 32, 3), width=4, seed=0))])
def test_float16_compute_float32_latent_and_logits(mixed, name, kwargs):
    encoder, head = architectures.build(name, **kwargs)
    convs = [layer for layer in encoder.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs and all(layer.compute_dtype == "float16" for layer in convs)
    images = tf.random.uniform((2, *kwargs["image_shape"]))
    latent = encoder(images, training=False)
    assert latent.dtype == tf.float32 and head(latent).dtype == tf.float32


def test_float32_policy_keeps_every_layer_float32():
    encoder, head = architectures.build("convnet", **TINY)
    layers = encoder.layers + head.layers
    assert {layer.compute_dtype for layer in layers if layer.weights} == {"float32"}


def test_mixed_train_step_is_finite_and_float32(mixed):
    encoder, head = architectures.build("convnet", **TINY)
    model = adaptation.MorphologyModel(encoder, head, mmd_weight=0.01, fisher_weight=0.01,
                                       entropy_weight=0.01, l2=1e-4)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  run_eagerly=True)  # the same step, without seconds of tracing
    # Keras scales the loss when the model's policy is mixed_float16 (no float16 underflow).
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    history = model.fit(_batches(), epochs=2, verbose=0, shuffle=False).history
    for name in ("loss", "ce", "mmd", "fisher", "entropy"):
        assert np.all(np.isfinite(history[name])), (name, history[name])
    out = model(tf.random.uniform((4, *SHAPE)), training=False)
    assert {v.dtype for v in out.values()} == {tf.float32}
    assert all(v.dtype == tf.float32 for v in model.trainable_variables)  # master weights


def test_mixed_export_serves_float32(mixed, tmp_path):
    encoder, head = architectures.build("convnet", **TINY)
    path = export.export_saved_model(encoder, head, tmp_path / "model", image_shape=SHAPE)
    classifier = export.load(path)
    out = classifier(np.random.default_rng(0).uniform(0.45, 0.89, (3, *SHAPE)))
    assert {k: v.dtype for k, v in out.items()} == {k: tf.float32 for k in export.OUTPUTS}
    np.testing.assert_allclose(out["probabilities"].numpy().sum(1), 1.0, rtol=1e-5)
    # the Keras replica the attack's incremental evaluator reads is float32 too (input
    # layers compute nothing: loaded here, under the mixed policy, they take it), and it
    # equals the served probabilities
    replica = keras.models.load_model(os.path.join(path, "assets", export.KERAS_NAME))
    assert {layer.dtype_policy.name for layer in _layers(replica)
            if not isinstance(layer, keras.layers.InputLayer)} == {"float32"}
    images = np.random.default_rng(1).uniform(0.45, 0.89, (3, *SHAPE)).astype(np.float32)
    np.testing.assert_allclose(replica(images).numpy(),
                               classifier(images)["probabilities"].numpy(), atol=1e-5)


def _layers(model):
    for layer in model.layers:
        yield from (_layers(layer) if hasattr(layer, "layers") else [layer])
