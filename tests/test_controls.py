"""The study's controls train on exactly what their definitions say.

baseline: source images only; target-bn: source + target through the network as one
batch, the baseline's loss; mmd: + w * MMD; depth-aug: source depths drawn between the
target and source depths (pipeline side: tests/test_pipeline.py). Also the weight-decay
modes and budgets.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfgal import config
from tfgal.data import SPLITS, DatasetWriter, pipeline, read_examples
from tfgal.model import adaptation, losses, training

B = 8


@pytest.fixture(scope="module", autouse=True)
def deterministic_ops():
    tf.config.experimental.enable_op_determinism()  # process-wide, as training.train sets it


def _cfg(root, *overrides):
    return config.load(overrides=[
        f'data.dir="{root}"', "data.mock=false", f"train.batch_size={B}",
        "train.learning_rate=1e-3", "train.jit_compile=false", "model.latent_dim=16",
        *overrides]).without_study()


CONTROLS = {"baseline": ["loss.mmd_weight=0.0"],
            "target-bn": ["loss.mmd_weight=0.0", "loss.feed_target=true"],
            "mmd": ["loss.mmd_weight=0.5"]}


def _model(manifest, control, *overrides):
    keras.utils.set_random_seed(0)
    cfg = _cfg(manifest.root, *CONTROLS[control], *overrides)
    return training.build_model(cfg, manifest, training.class_weights(manifest))


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    xs = rng.uniform(0, 1, (B, 16, 16, 3)).astype(np.float32)
    xt = rng.uniform(0, 1, (B, 16, 16, 3)).astype(np.float32) * 0.5 + 0.2  # another domain
    return xs, xt, np.arange(B, dtype=np.int32) % 3


def _fit(model, xs, xt, y):
    ds = tf.data.Dataset.from_tensors(((xs, xt), y))
    return {k: v[-1] for k, v in model.fit(ds, epochs=1, verbose=0, shuffle=False)
            .history.items()}


# --------------------------------------------------------------------------- target labels


def _relabelled(manifest, root, swap):
    """The same dataset (images, ids, shards, stretch) with the train split's labels moved."""
    with DatasetWriter(root, images={"flux": {"noise": False}},
                       image_shape=manifest.image_shape, shard_size=8,
                       compression=manifest.compression) as writer:
        for split in SPLITS:
            examples = [e for p in manifest.files(split) for e in read_examples(p)]
            labels = [int(e["label"]) for e in examples]
            if split == "train":
                labels = swap(labels)
            for e, label in zip(examples, labels):
                writer.add(split, {"flux": e["flux"]}, label, int(e["galaxy_id"]))
        return writer.finish(stretch=manifest.stretch, generator=manifest.generator)


def test_target_labels_are_never_read(blob_dataset, tmp_path, monkeypatch):
    """The mmd model trained with the Y1 stream's labels permuted: bit-identical weights."""
    permuted = _relabelled(blob_dataset, tmp_path / "permuted", lambda y: y[5:] + y[:5])
    assert training.class_weights(permuted) == training.class_weights(blob_dataset)
    original = pipeline.make_dataset

    def train(permuted_depth):
        def make(data, split, depth="Y10", **kwargs):
            return original(permuted if depth == permuted_depth else data, split, depth,
                            **kwargs)
        monkeypatch.setattr(pipeline, "make_dataset", make)
        keras.utils.set_random_seed(0)
        cfg = _cfg(blob_dataset.root, "loss.mmd_weight=0.5", "train.steps_per_epoch=3")
        model = training.build_model(cfg, blob_dataset, training.class_weights(blob_dataset))
        train_ds, _ = training.datasets(cfg, blob_dataset, tf.distribute.get_strategy())
        model.fit(train_ds, epochs=1, steps_per_epoch=3, verbose=0, shuffle=False)
        return [w.numpy() for w in model.weights]

    reference, target_permuted = train(None), train("Y1")
    assert all(np.array_equal(a, b) for a, b in zip(reference, target_permuted))
    # The same swap on the labelled stream does change training: the test can see it.
    source_permuted = train("Y10")
    assert not all(np.array_equal(a, b) for a, b in zip(reference, source_permuted))


# --------------------------------------------------------------------------- what each sees


def test_each_control_feeds_the_network_what_it_defines(blob_dataset, monkeypatch):
    seen = []
    call = adaptation.MorphologyModel.call

    def recording(self, inputs, training=False):
        if training and not isinstance(inputs, (tuple, list)):
            seen.append(int(inputs.shape[0]))  # the batch the encoder and its BN get
        return call(self, inputs, training)

    monkeypatch.setattr(adaptation.MorphologyModel, "call", recording)
    xs, xt, y = _batch()
    garbage = np.full_like(xt, np.nan)
    sizes, weights = {}, {}
    for control in CONTROLS:
        seen.clear()
        model = _model(blob_dataset, control)
        _fit(model, xs, xt, y)
        sizes[control] = set(seen)
        weights[control] = [w.numpy() for w in model.weights]
        poisoned = _model(blob_dataset, control)
        _fit(poisoned, xs, garbage, y)
        finite = all(np.isfinite(w.numpy()).all() for w in poisoned.weights)
        assert finite == (control == "baseline"), control  # NaN targets reach the others
        if control == "baseline":
            assert all(np.array_equal(a, b.numpy())
                       for a, b in zip(weights[control], poisoned.weights))
    assert sizes == {"baseline": {B}, "target-bn": {2 * B}, "mmd": {2 * B}}
    # target-bn differs from the baseline only by what batch norm saw.
    assert not all(np.array_equal(a, b)
                   for a, b in zip(weights["baseline"], weights["target-bn"]))


def _ce_by_hand(logits, y, class_weights):
    logits = np.asarray(logits, np.float64)
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    return np.mean(np.asarray(class_weights)[y] * -log_p[np.arange(len(y)), y])


@pytest.mark.parametrize("control", ["baseline", "target-bn", "mmd"])
def test_losses_and_batch_norm_statistics(blob_dataset, control):
    model = _model(blob_dataset, control)
    xs, xt, y = _batch(1)
    weights0 = model.get_weights()
    fed = np.concatenate([xs, xt]) if control != "baseline" else xs
    latent = model.encoder(fed, training=True)
    logits = model.head(latent).numpy()
    conv0 = model.encoder.get_layer("conv0")(fed).numpy()
    model.set_weights(weights0)  # undo the moving-statistics update of that forward pass
    logs = _fit(model, xs, xt, y)

    ce = _ce_by_hand(logits[:B], y, training.class_weights(blob_dataset))
    np.testing.assert_allclose(logs["ce"], ce, rtol=1e-5)
    if control == "mmd":
        mmd = losses.mmd(latent[:B], latent[B:]).numpy()
        np.testing.assert_allclose(logs["mmd"], mmd, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(logs["loss"], logs["ce"] + 0.5 * logs["mmd"], rtol=1e-6)
        assert logs["mmd"] > 0
    else:
        assert logs["loss"] == logs["ce"]  # the baseline's loss, whatever target-bn logs
    if control == "target-bn":
        assert logs["mmd"] > 0  # logged as a diagnostic only
    # BN's moving mean after one step (momentum 0.9 from 0): the batch it was fed.
    bn0 = model.encoder.get_layer("bn0")
    np.testing.assert_allclose(bn0.moving_mean.numpy(), 0.1 * conv0.mean((0, 1, 2)),
                               rtol=1e-4, atol=1e-6)


def test_precise_bn_batches_match_training(blob_dataset):
    for control, size in (("baseline", B), ("target-bn", 2 * B), ("mmd", 2 * B)):
        cfg = _cfg(blob_dataset.root, *CONTROLS[control], "train.precise_bn_batches=2",
                   "data.depth_augment=true")
        model = _model(blob_dataset, control)
        batches = list(training._calibration_batches(cfg, blob_dataset, model)(0))
        assert len(batches) == 2 and all(b.shape[0] == size for b in batches), control


# --------------------------------------------------------------------------- weight decay


@pytest.mark.parametrize("mode", ["l2", "decoupled"])
def test_one_step_matches_a_hand_step(blob_dataset, mode):
    wd = 0.5
    over = [f'train.weight_decay_mode="{mode}"', f"train.weight_decay={wd}",
            "train.learning_rate=1e-2"]
    model, twin, plain = (_model(blob_dataset, "baseline", *over) for _ in range(3))
    assert type(model.optimizer) is (keras.optimizers.Adam if mode == "l2"
                                     else keras.optimizers.AdamW)
    assert model.l2 == (wd if mode == "l2" else 0.0)
    # A larger epsilon: biases ahead of batch norm have pure rounding-noise gradients, which
    # Adam's tiny default epsilon would blow up to whole steps, differently in each graph.
    model.optimizer.epsilon = 1e-3
    xs, xt, y = _batch(2)
    w0 = [w.numpy() for w in twin.trainable_variables]
    twin.l2 = 0.0
    with tf.GradientTape() as tape:
        y_pred = twin((xs,), training=True)
        loss = twin.compute_loss(y=y, y_pred=y_pred, training=True)
    grads = tape.gradient(loss, twin.trainable_variables)
    logs = _fit(model, xs, xt, y)

    adam = dict(learning_rate=1e-2, beta_1=0.7, beta_2=0.8, epsilon=1e-3)
    if mode == "l2":  # PyTorch's Adam(weight_decay): the gradient gets + wd * w
        np.testing.assert_allclose(logs["loss"] - logs["ce"],
                                   0.5 * wd * sum((w**2).sum() for w in w0), rtol=1e-4)
        keras.optimizers.Adam(**adam).apply(
            [g + wd * w for g, w in zip(grads, w0)], twin.trainable_variables)
    else:
        assert logs["loss"] == logs["ce"]
        keras.optimizers.AdamW(**adam, weight_decay=wd).apply(grads, twin.trainable_variables)
    for got, want in zip(model.trainable_variables, twin.trainable_variables):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    # Without its decay the step would differ: the comparison can fail.
    keras.optimizers.Adam(**adam).apply(grads, plain.trainable_variables)
    assert max(np.abs(p.numpy() - w.numpy()).max()
               for p, w in zip(plain.trainable_variables, model.trainable_variables)) > 1e-4


def test_source_only_models_get_the_source_only_budget(blob_dataset):
    budget = ["train.weight_decay=1e-4", "train.source_only_weight_decay=1e-3"]
    want = {"baseline": 1e-3, "target-bn": 1e-3, "mmd": 1e-4}
    for mode in ("decoupled", "l2"):
        for control, decay in want.items():
            model = _model(blob_dataset, control, *budget, f'train.weight_decay_mode="{mode}"')
            got = model.l2 if mode == "l2" else model.optimizer.weight_decay
            assert got == pytest.approx(decay), (mode, control)
    unset = _model(blob_dataset, "baseline", "train.weight_decay=1e-4")
    assert unset.optimizer.weight_decay == pytest.approx(1e-4)  # < 0: train.weight_decay
