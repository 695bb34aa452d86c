import csv
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfgal import config
from tfgal import data
from tfgal.data import pipeline
from tfgal.model import adaptation, architectures, callbacks, export, training
from tfgal.errors import ConfigError, OutputExists


@pytest.fixture()
def tiny_cfg(tmp_path, blob_dataset):
    return config.load(overrides=[
        f'data.dir="{blob_dataset.root}"', "data.mock=false", "train.epochs=2",
        "train.batch_size=8", "train.learning_rate=1e-3", "log.images=2", "log.projector=8",
        f'log.dir="{tmp_path / "run"}"', f'export.dir="{tmp_path / "model"}"', 'name="tiny"'])


def _history(cfg):
    with open(os.path.join(cfg.log.dir, training.HISTORY)) as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------- config


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError, match="unknown config key 'train.epoch'") as err:
        config.load(overrides=["train.epoch=3"])
    assert "train.epochs" in err.value.valid and err.value.key == "train.epoch"
    with pytest.raises(ConfigError) as err:
        config.merge(config.DEFAULTS, {"colour": 1})
    assert "seed" in err.value.valid


@pytest.mark.parametrize("override, key", [
    ("train.epochs=1.5", "train.epochs"), ("train.epochs=0", "train.epochs"),
    ('model.name="vgg"', "model.name"), ("loss.mmd_weight=-1", "loss.mmd_weight"),
    ("train.class_weights=1", "train.class_weights"), ("data=3", "data"),
    ("loss.mmd_weight=nan", "loss.mmd_weight"),
])
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        config.load(overrides=[override])
    assert err.value.key == key


def test_file_and_overrides(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text('[train]\nepochs = 3\n[loss]\nmmd_weight = 0.5\n')
    cfg = config.load(path, ["train.epochs=4", "data.dir=elsewhere"])
    assert cfg.name == "exp" and cfg.train.epochs == 4
    assert cfg.loss.mmd_weight == 0.5 and cfg.data.dir == "elsewhere"
    assert cfg.train.learning_rate == 1e-5  # untouched default
    with pytest.raises(ConfigError, match="not found"):
        config.load(tmp_path / "missing.toml")
    path.write_text("[train\n")
    with pytest.raises(ConfigError, match="TOML"):
        config.load(path)


@pytest.mark.parametrize("name", ["quick", "paper-convnet", "paper-resnet18"])
def test_shipped_configs_resolve(name):
    root = os.path.join(os.path.dirname(__file__), "..", "pipelines", f"{name}.toml")
    assert config.load(root).name == name


PIPELINES = os.path.join(os.path.dirname(__file__), "..", "pipelines")


@pytest.mark.parametrize("name", ["quick", "paper-convnet", "paper-resnet18"])
def test_to_dict_round_trips(name):
    cfg = config.load(os.path.join(PIPELINES, f"{name}.toml"), ["study.curve_depths=[1, 10]"])
    assert config.from_dict(cfg.to_dict()) == cfg
    assert config.from_dict(json.loads(config.dumps(cfg))) == cfg
    training_cfg = cfg.without_study()
    assert config.from_dict(training_cfg.to_dict()) == training_cfg


def test_training_config_has_no_study_section():
    cfg = config.load(overrides=["study.attack_n=7"]).without_study()
    assert cfg.study is None and "study" not in cfg.to_dict()
    assert cfg.to_dict() == {k: v for k, v in config.DEFAULTS.items() if k != "study"}
    with pytest.raises(ConfigError) as err:  # still checked like any config
        config.merge(cfg, {"train": {"epochs": -1}})
    assert err.value.key == "train.epochs"


def test_json_layout_is_stable():
    """Saved configs are compared as JSON: the key order and names must not move."""
    d = config.DEFAULTS
    assert list(d) == ["name", "seed", "data", "model", "train", "loss", "export", "study", "log"]
    assert list(d["train"]) == [
        "epochs", "batch_size", "steps_per_epoch", "learning_rate", "schedule", "warmup",
        "beta_1", "beta_2", "weight_decay", "weight_decay_mode", "source_only_weight_decay",
        "patience", "checkpoint_steps",
        "precise_bn_batches", "class_weights", "mixed_precision", "deterministic",
        "jit_compile", "strategy"]
    assert list(d["loss"]) == ["mmd_weight", "mmd_sigmas", "fisher_weight", "entropy_weight",
                               "feed_target"]
    assert list(d["data"])[-7:] == ["fresh_noise", "depth_augment", "stretch_clip",
                                    "stretch_bands", "corrupt_augment", "corrupt_prob",
                                    "cache"]
    assert isinstance(d["train"]["learning_rate"], float) and d["study"]["curve_depths"] == []


def test_choices_and_defaults_name_unknown_keys():
    assert config.choices("train.strategy") == ("default", "mirrored", "multiworker")
    assert config.default("study.attack_popsize") == 400 and config.default("seed") == 0
    with pytest.raises(ConfigError) as err:
        config.default("train.epoch")
    assert "train.epochs" in err.value.valid
    with pytest.raises(ConfigError):
        config.choices("train.epochs")  # any positive int


# --------------------------------------------------------------------------- training


def test_train_exports_a_model_that_matches_keras(tiny_cfg, blob_dataset, tmp_path):
    summary = training.train(tiny_cfg, verbose=0)
    assert set(summary["val_accuracy"]) == {"Y10", "Y1"}
    rows = _history(tiny_cfg)
    assert len(rows) == 2
    for key in ("loss", "ce", "mmd", "source_accuracy", "val_loss", "val_mmd",
                "val_source_accuracy", "val_target_accuracy"):
        assert key in rows[0] and np.isfinite(float(rows[0][key]))
    assert "target_accuracy" not in rows[0]  # target labels are never used in training

    loaded = export.load(tiny_cfg.export.dir)
    assert loaded.image_shape == (16, 16, 3) and loaded.latent_dim == 256
    assets = loaded.assets
    assert assets["class_names"] == list(data.CLASS_NAMES)
    assert assets["stretch"] == blob_dataset.stretch and assets["config"] == tiny_cfg.to_dict()
    assert set(assets["versions"]) >= {"tensorflow", "keras", "tfgal"}

    model = training.build_model(tiny_cfg, blob_dataset, training.class_weights(blob_dataset))
    model.load_weights(os.path.join(tiny_cfg.log.dir, training.BEST))
    images = pipeline.load_arrays(blob_dataset, "test", "Y1")["images"]
    keras_out = model(images, training=False)
    served = loaded(images)
    np.testing.assert_allclose(served["logits"].numpy(), keras_out["logits"].numpy(), atol=1e-4)
    np.testing.assert_allclose(served["latent"].numpy(), keras_out["latent"].numpy(), atol=1e-4)
    np.testing.assert_allclose(served["probabilities"].numpy().sum(1), 1.0, atol=1e-5)
    again = loaded.classify_latent(served["latent"])
    np.testing.assert_allclose(again["probabilities"].numpy(),
                               served["probabilities"].numpy(), atol=1e-5)
    replica = loaded.keras_replica()  # the attacker's incremental evaluator reads its layers
    np.testing.assert_allclose(replica(images).numpy(), served["probabilities"].numpy(),
                               atol=1e-5)

    # TensorFlow alone serves it, and so does the shell client.
    plain = tf.saved_model.load(tiny_cfg.export.dir).signatures["serving_default"]
    np.testing.assert_allclose(plain(images=tf.constant(images))["probabilities"].numpy(),
                               served["probabilities"].numpy(), atol=1e-6)
    cli_tool = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    np.save(tmp_path / "images.npy", images[:2])
    result = subprocess.run(
        [cli_tool, "run", "--dir", tiny_cfg.export.dir, "--tag_set", "serve",
         "--signature_def", "serving_default", "--inputs", f"images={tmp_path / 'images.npy'}"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "probabilities" in result.stdout

    run_dir = tiny_cfg.log.dir
    assert os.path.exists(os.path.join(run_dir, "projector", "metadata.tsv"))
    assert os.listdir(os.path.join(run_dir, "examples"))
    assert not os.path.exists(os.path.join(run_dir, training.BACKUP))  # cleaned once done


def test_baseline_and_extra_terms_report_their_metrics(tiny_cfg):
    cfg = config.merge(tiny_cfg, {"train": {"epochs": 1}, "log": {"projector": 0, "images": 0},
                                  "loss": {"mmd_weight": 0.0}})
    training.train(cfg, verbose=0)
    row = _history(cfg)[0]
    assert "mmd" not in row and "val_mmd" in row  # baseline: no target images in training
    cfg = config.merge(cfg, {"loss": {"fisher_weight": 0.01, "entropy_weight": 0.05}})
    with pytest.raises(OutputExists, match="--overwrite"):  # another config's finished run
        training.train(cfg, verbose=0)
    training.train(cfg, verbose=0, overwrite=True)
    row = _history(cfg)[0]
    assert len(_history(cfg)) == 1  # started over: one history, not two
    for key in ("fisher", "entropy", "val_fisher", "val_entropy"):
        assert np.isfinite(float(row[key]))


def test_target_bn_with_depth_augmentation_and_l2_trains(tiny_cfg):
    """The controls' switches together, through callbacks and precise BN."""
    cfg = config.merge(tiny_cfg, {
        "train": {"epochs": 1, "weight_decay_mode": "l2", "weight_decay": 1e-4,
                  "source_only_weight_decay": 1e-3, "precise_bn_batches": 2},
        "log": {"projector": 0, "images": 0},
        "data": {"depth_augment": True, "fresh_noise": False},
        "loss": {"mmd_weight": 0.0, "feed_target": True}})
    summary = training.train(cfg, verbose=0)
    row = _history(cfg)[0]
    assert float(row["mmd"]) > 0  # target images were fed: the MMD is logged
    assert float(row["loss"]) > float(row["ce"])  # + the L2 penalty
    assert float(row["val_loss"]) == pytest.approx(float(row["val_ce"]))  # not in validation
    assert set(summary["val_accuracy"]) == {"Y10", "Y1"}


def test_corruption_defence_corrupts_only_the_labelled_stream(tiny_cfg, blob_dataset):
    """data.corrupt_augment reaches the source stream of training (and precise-BN) batches,
    never the unlabelled target stream; a bad name is refused naming the key."""
    cfg = config.merge(tiny_cfg, {"data": {"corrupt_augment": ["calibration", "trail"],
                                           "corrupt_prob": 1.0}})
    plan = training.source_corruption(cfg)
    assert plan.names == ("calibration", "trail") and plan.prob == 1.0
    assert training.source_corruption(tiny_cfg) is None

    def first(corruption):
        ds = data.make_paired_dataset(blob_dataset, "train", batch_size=8, seed=3,
                                      source_corruption=corruption)
        (x_s, x_t), y = next(iter(ds))
        return x_s.numpy(), x_t.numpy(), y.numpy()

    clean, corrupted = first(None), first(plan)
    np.testing.assert_array_equal(clean[1], corrupted[1])  # target: untouched
    np.testing.assert_array_equal(clean[2], corrupted[2])  # same galaxies, same order
    changed = np.abs(clean[0] - corrupted[0]).reshape(8, -1).max(axis=1)
    assert np.all(changed > 0)  # prob 1: every labelled galaxy corrupted
    with pytest.raises(ConfigError) as err:
        config.merge(tiny_cfg, {"data": {"corrupt_augment": ["glare"]}})
    assert err.value.key == "data.corrupt_augment" and "trail" in err.value.valid


class _Kill(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 2:
            raise KeyboardInterrupt


def test_interrupted_run_resumes(tiny_cfg, monkeypatch):
    cfg = config.merge(tiny_cfg, {"train": {"epochs": 3}, "log": {"projector": 0}})
    original = training._callbacks
    monkeypatch.setattr(training, "_callbacks", lambda *a, **k: original(*a, **k) + [_Kill()])
    with pytest.raises(KeyboardInterrupt):
        training.train(cfg, verbose=0)
    assert len(_history(cfg)) == 2
    assert os.path.isdir(os.path.join(cfg.log.dir, training.BACKUP))
    assert not os.path.exists(cfg.export.dir)
    with pytest.raises(ConfigError, match="another config"):
        training.train(config.merge(cfg, {"seed": 5}), verbose=0)
    monkeypatch.setattr(training, "_callbacks", original)
    training.train(cfg, verbose=0)
    epochs = [int(r["epoch"]) for r in _history(cfg)]
    assert epochs == [0, 1, 2]  # continued from epoch 2, nothing redone
    # Seconds of training add up across the resume: a learning curve against time.
    spent = [float(r["epoch_seconds"]) for r in _history(cfg)]
    total = [float(r["train_seconds"]) for r in _history(cfg)]
    assert all(s > 0 for s in spent)
    np.testing.assert_allclose(total, np.cumsum(spent), rtol=1e-6)
    assert export.load(cfg.export.dir).latent_dim == 256


def test_same_seed_trains_the_same_model(tiny_cfg, tmp_path):
    """The quick recipe (memory stream, fixed noise, warm-up + cosine) is reproducible: two
    runs with one seed log the same losses and export the same weights; another seed not."""
    recipe = {"data": {"cache": True, "fresh_noise": False},
              "train": {"schedule": "warmup-cosine"}, "log": {"projector": 0, "images": 0}}

    def run(tag, seed=0):
        cfg = config.merge(tiny_cfg, {**recipe, "seed": seed, "log": {
            **recipe["log"], "dir": str(tmp_path / tag / "run")},
            "export": {"dir": str(tmp_path / tag / "model")}})
        summary = training.train(cfg, verbose=0)
        weights = export.load(cfg.export.dir).keras_replica().get_weights()
        return [r["loss"] for r in _history(cfg)], weights, summary["test_accuracy"]

    first, again, other = run("a"), run("b"), run("c", seed=1)
    assert first[0] == again[0] and first[2] == again[2]
    for x, y in zip(first[1], again[1]):
        np.testing.assert_array_equal(x, y)
    assert first[0] != other[0]


def test_warmup_cosine_schedule():
    cfg = config.load("pipelines/quick.toml")
    assert cfg.train.schedule == "warmup-cosine"
    schedule = training.learning_rate(cfg, steps_per_epoch=100)
    peak, total = cfg.train.learning_rate, cfg.train.epochs * 100
    warm = round(cfg.train.warmup * total)
    rate = [float(schedule(step)) for step in (0, warm // 2, warm, (warm + total) // 2, total)]
    np.testing.assert_allclose(rate, [peak / 10, peak * 0.55, peak, peak / 2, 0], atol=1e-9)
    paper = config.load("pipelines/paper-convnet.toml")
    assert training.learning_rate(paper, 10) == paper.train.learning_rate  # the study's


def test_nan_loss_stops_with_a_message(tiny_cfg):
    cfg = config.merge(tiny_cfg, {"train": {"learning_rate": 1e30, "epochs": 3},
                                  "log": {"projector": 0}})
    with pytest.raises(callbacks.TrainingDiverged, match="epoch") as err:
        training.train(cfg, verbose=0)
    assert "learning_rate" in str(err.value)
    assert not os.path.exists(cfg.export.dir)


def test_domain_adaptation_reduces_mmd(blob_dataset):
    """Y10 vs a very shallow depth: MMD training pulls the two latent clouds together."""
    def val_mmd(weight):
        keras.utils.set_random_seed(0)
        encoder, head = architectures.build("convnet", image_shape=(16, 16, 3), seed=0, latent_dim=16)
        model = adaptation.MorphologyModel(encoder, head, mmd_weight=weight, mmd_sigmas="data")
        model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        # As training.build_model does: slots built inside the first step trace it twice.
        model.optimizer.build(model.trainable_variables)
        train = pipeline.make_paired_dataset(blob_dataset, "train", "Y10", "0.01y",
                                             batch_size=8, seed=0)
        val = pipeline.make_paired_dataset(blob_dataset, "val", "Y10", "0.01y", batch_size=8,
                                           training=False, seed=0)
        model.fit(train, epochs=6, verbose=0)
        return model.evaluate(val, return_dict=True, verbose=0)["mmd"]
    baseline, adapted = val_mmd(0.0), val_mmd(5.0)
    assert adapted < 0.5 * baseline, (adapted, baseline)


def test_precise_batch_norm_matches_population_statistics():
    rng = np.random.default_rng(0)
    encoder, _ = architectures.build("convnet", image_shape=(16, 16, 3), seed=0)
    batches = [tf.constant(rng.normal(0.5, 0.1, (8, 16, 16, 3)), tf.float32) for _ in range(3)]
    callbacks.recalibrate_batch_norm(encoder, batches)
    bn0 = encoder.get_layer("bn0")
    conv0 = encoder.get_layer("conv0")
    outs = [conv0(b) for b in batches]
    want_mean = np.mean([tf.reduce_mean(o, [0, 1, 2]).numpy() for o in outs], axis=0)
    want_var = np.mean([tf.math.reduce_variance(o, [0, 1, 2]).numpy() for o in outs], axis=0)
    np.testing.assert_allclose(bn0.moving_mean.numpy(), want_mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(bn0.moving_variance.numpy(), want_var, rtol=1e-4, atol=1e-7)
    # Inference now normalises a batch like training mode does (same statistics).
    x = tf.concat(batches, 0)
    np.testing.assert_allclose(encoder(x, training=False).numpy(),
                               encoder(x, training=True).numpy(), rtol=0.05, atol=0.05)
