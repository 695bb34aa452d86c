"""The batched one-pixel attacker on tiny models that are vulnerable (or robust) on purpose."""

import csv
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfgal import io
from tfgal.attack import INITS, OnePixelAttack, default_max_batch, describe, driver, summarize
from tfgal.attack.one_pixel import DEFAULT_INIT
from tfgal.model import export
from tfgal.data import DatasetWriter, pipeline
from tfgal.cli import attack_main
from tfgal.errors import ConfigError, DataError, ModelContractError

SIZE, BANDS = 8, 3
SPOT = (3, 5)  # (x, y) = (column, row) of the pixel the spotlight model reacts to
SPOT2 = (6, 1)
GAIN, OFFSET = 10.0, 0.3
FAST = dict(popsize=40, iters=20, value_range=(0.0, 1.0))


def spot_margin(x, spot=SPOT, offset=OFFSET):
    """Brightness of pixel `spot` (band mean) above the image mean, minus `offset`."""
    s = tf.reduce_mean(x[:, spot[1], spot[0], :], axis=1)
    return s - tf.reduce_mean(x, axis=[1, 2, 3]) - offset


def logits_of(z):
    return GAIN * tf.stack([-z, z, tf.zeros_like(z)], axis=1)


def spotlight(x):
    """Class 0 for dim images, class 1 once pixel SPOT is bright."""
    return tf.nn.softmax(logits_of(spot_margin(x)))


def two_spots(x):
    """Needs both SPOT and SPOT2 bright: one pixel brings the true class to ~0.13 only."""
    return tf.nn.softmax(logits_of((spot_margin(x, SPOT, 0.32) + spot_margin(x, SPOT2, 0.32)) / 2))


def constant(x):
    """A perfectly robust classifier: always 90% class 0."""
    return tf.tile(tf.constant([[0.9, 0.05, 0.05]]), [tf.shape(x)[0], 1])


def dim_images(n, level=0.2, seed=0):
    rng = np.random.default_rng(seed)
    return (level + rng.uniform(0, 0.02, (n, SIZE, SIZE, BANDS))).astype(np.float32)


def spotlight_keras():
    """The spotlight model as an encoder (linear, 2-d latent) and a head, for export."""
    n = SIZE * SIZE * BANDS
    kernel = np.full((n, 2), 0.0, np.float32)
    kernel[:, 0] = -1.0 / n
    flat = (np.arange(n).reshape(SIZE, SIZE, BANDS))[SPOT[1], SPOT[0]]
    kernel[flat, 0] += 1.0 / BANDS
    images = keras.Input((SIZE, SIZE, BANDS), name="images")
    dense = keras.layers.Dense(2, name="latent")
    encoder = keras.Model(images, dense(keras.layers.Flatten()(images)))
    dense.set_weights([kernel, np.array([-OFFSET, 0.0], np.float32)])
    latent = keras.Input((2,), name="latent")
    out = keras.layers.Dense(3, name="logits")
    head = keras.Model(latent, out(latent))
    out.set_weights([np.array([[-GAIN, GAIN, 0.0], [0, 0, 0]], np.float32),
                     np.zeros(3, np.float32)])
    return encoder, head


@pytest.fixture(scope="module")
def saved_spotlight(tmp_path_factory):
    encoder, head = spotlight_keras()
    path = tmp_path_factory.mktemp("models") / "spotlight"
    return export.export_saved_model(
        encoder, head, path, image_shape=(SIZE, SIZE, BANDS),
        assets={"value_range": [[0.0] * BANDS, [0.9] * BANDS], "bands": ["g", "r", "i"]})


# --------------------------------------------------------------------------- behaviour


def test_finds_the_vulnerable_pixel():
    images = dim_images(5)
    result = OnePixelAttack(spotlight, popsize=200, iters=40, value_range=(0.0, 1.0)).attack(
        images, np.zeros(5))
    assert result.success.all() and not result.already.any()
    assert np.median(result.generations) <= 3  # a needle in 64 pixels: a few are slower
    assert (result.pixels[:, 0] == SPOT).all()
    assert (result.final_score < 0.05).all() and (result.final_class == 1).all()
    assert (result.original_class == 0).all() and (result.original_score > 0.9).all()
    changed = np.any(result.images != images, axis=-1)
    assert changed[:, SPOT[1], SPOT[0]].all() and changed.sum() == 5
    np.testing.assert_allclose(spotlight(result.images).numpy()[:, 0], result.final_score,
                               rtol=1e-5)


def test_robust_model_reports_failure_with_the_full_budget():
    att = OnePixelAttack(constant, **FAST)
    result = att.attack(dim_images(2), np.zeros(2))
    assert not result.success.any()
    assert (result.queries == att.budget).all() and att.budget == 1 + 40 * 21
    assert (result.generations == 20).all()
    assert (result.final_class == 0).all() and result.success_rate == 0.0
    assert result.settings["max_batch"] == default_max_batch((SIZE, SIZE, BANDS))


def test_values_stay_inside_the_bounds():
    low, high = [0.1, 0.2, 0.3], [0.5, 0.6, 0.7]
    images = dim_images(2)
    result = OnePixelAttack(constant, popsize=40, iters=10, value_range=(low, high)).attack(
        images, np.zeros(2))
    assert (result.values >= np.array(low) - 1e-7).all()
    assert (result.values <= np.array(high) + 1e-7).all()
    assert ((result.pixels >= 0) & (result.pixels < SIZE)).all()
    np.testing.assert_allclose(result.settings["value_range"], [low, high], rtol=1e-6)
    assert result.settings["value_range_source"] == "explicit"


def test_bounds_default_to_the_data_range():
    images = dim_images(2)
    result = OnePixelAttack(constant, popsize=8, iters=1).attack(images, np.zeros(2))
    assert result.settings["value_range_source"] == "data"
    assert result.values.max() <= images.max() and result.values.min() >= images.min()


def test_same_seed_same_result_and_batching_does_not_matter():
    images, labels = dim_images(4), np.zeros(4)
    runs = [OnePixelAttack(spotlight, seed=seed, max_batch=batch, **FAST).attack(images, labels)
            for seed, batch in ((0, 4096), (0, 4096), (0, 40), (1, 4096))]
    for other in runs[1:3]:
        for name in ("success", "generations", "queries", "pixels", "values", "images"):
            np.testing.assert_array_equal(getattr(runs[0], name), getattr(other, name))
    assert not np.array_equal(runs[0].values, runs[3].values)


def test_k_pixel_mode():
    images, labels = dim_images(2), np.zeros(2)
    one = OnePixelAttack(two_spots, pixels=1, **FAST).attack(images, labels)
    assert not one.success.any()
    two = OnePixelAttack(two_spots, pixels=2, popsize=100, iters=60,
                         value_range=(0.0, 1.0)).attack(images, labels)
    assert two.success.all()
    assert two.pixels.shape == (2, 2, 2) and two.values.shape == (2, 2, BANDS)
    for pixels in two.pixels:
        assert {tuple(p) for p in pixels} == {SPOT, SPOT2}


def test_targeted_mode_and_already_adversarial_images():
    images = dim_images(3)
    images[2, SPOT[1], SPOT[0]] = 1.0  # already class 1
    att = OnePixelAttack(spotlight, targeted=True, popsize=100, iters=30, value_range=(0.0, 1.0))
    result = att.attack(images, np.zeros(3), targets=np.array([1, 2, 1]))
    assert result.settings["threshold"] == 0.5
    assert result.success.tolist() == [True, False, False]
    assert result.final_score[0] > 0.5 and result.final_class[0] == 1
    assert result.already.tolist() == [False, False, True]
    assert result.queries[2] == 1 and (result.pixels[2] == -1).all()
    assert result.success_rate == 0.5


def test_class_success_mode():
    result = OnePixelAttack(spotlight, success="class", **FAST).attack(dim_images(2), np.zeros(2))
    assert result.success.all() and (result.final_class != 0).all()


def test_queries_count_every_model_evaluation():
    seen = tf.Variable(0, dtype=tf.int64)

    def counted(x):
        seen.assign_add(tf.cast(tf.shape(x)[0], tf.int64))
        return spotlight(x)

    images = np.concatenate([dim_images(3), dim_images(1, level=0.9)])  # the last is robust
    att = OnePixelAttack(counted, popsize=40, iters=30, max_batch=80, value_range=(0.0, 1.0))
    result = att.attack(images, np.zeros(4))
    assert int(seen.numpy()) == result.queries.sum()
    assert result.success.tolist() == [True, True, True, False]
    np.testing.assert_array_equal(result.queries[:3], 1 + 40 * (result.generations[:3] + 1))
    assert (result.queries[:3] < att.budget).all() and result.queries[3] == att.budget


# --------------------------------------------------------------------------- models and errors


def test_savedmodel_round_trip(saved_spotlight):
    att = OnePixelAttack(str(saved_spotlight), popsize=100, iters=30)
    result = att.attack(dim_images(2), np.zeros(2))
    assert result.settings["value_range_source"] == "model assets"
    np.testing.assert_allclose(result.settings["value_range"], [[0.0] * 3, [0.9] * 3], rtol=1e-6)
    assert result.success.all() and (result.pixels[:, 0] == SPOT).all()
    assert result.values.max() <= 0.9


def test_keras_model_is_attacked_too():
    encoder, head = spotlight_keras()
    images = keras.Input((SIZE, SIZE, BANDS))
    model = keras.Model(images, keras.layers.Softmax()(head(encoder(images))))
    result = OnePixelAttack(model, popsize=100, iters=30, value_range=(0.0, 1.0)).attack(
        dim_images(1), np.zeros(1))
    assert result.success.all()


def test_savedmodel_without_serving_signature_is_refused(tmp_path):
    module = tf.Module()
    module.f = tf.function(lambda x: x * 2, input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "bare"), signatures={})
    with pytest.raises(ModelContractError, match="serving_default"):
        OnePixelAttack(str(tmp_path / "bare"))
    with pytest.raises(ModelContractError, match="serving_default"):
        OnePixelAttack(tf.saved_model.load(str(tmp_path / "bare")))


def test_wrong_image_shape_is_refused(saved_spotlight):
    att = OnePixelAttack(str(saved_spotlight), **FAST)
    with pytest.raises(ModelContractError, match="shape"):
        att.attack(np.zeros((1, SIZE + 2, SIZE, BANDS), np.float32), [0])


def test_logits_are_not_probabilities():
    with pytest.raises(ModelContractError, match="probabilities"):
        OnePixelAttack(lambda x: logits_of(spot_margin(x)), **FAST).attack(dim_images(1), [0])


@pytest.mark.parametrize("kwargs,key", [
    ({"popsize": 3}, "popsize"), ({"pixels": 0}, "pixels"), ({"seed": -1}, "seed"),
    ({"success": "maybe"}, "success"), ({"threshold": 1.5}, "threshold"), ({"f": 0}, "f"),
    ({"value_range": (0.0, 1.0, 2.0)}, "value_range"), ({"init": "corners"}, "init")])
def test_bad_settings(kwargs, key):
    with pytest.raises(ConfigError) as err:
        OnePixelAttack(constant, **kwargs).attack(dim_images(1), [0])
    assert err.value.key == key


def test_bad_inputs():
    att = OnePixelAttack(constant, **FAST)
    with pytest.raises(DataError):
        att.attack(dim_images(2), [0, 3])  # label out of range
    with pytest.raises(ConfigError):
        att.attack(dim_images(1), [0], targets=[1])  # targets in untargeted mode
    images = dim_images(2)
    images[1, 0, 0, 0] = np.nan
    with pytest.raises(DataError) as err:
        att.attack(images, [0, 0])
    assert err.value.index == 1


# --------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def paired_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("attack_data") / "ds"
    y10, y1 = dim_images(4, seed=1), dim_images(4, seed=2)
    with DatasetWriter(root, images={"Y10": {"noise": True}, "Y1": {"noise": True}},
                               image_shape=(SIZE, SIZE, BANDS)) as writer:
        for i in range(4):
            writer.add("test", {"Y10": y10[i], "Y1": y1[i]}, 0, 100 + i)
        writer.finish(stretch={"kind": "identity"})
    return root


def test_cli_writes_summary_and_table(saved_spotlight, paired_dataset, tmp_path, capsys):
    out = tmp_path / "results" / "spotlight"
    rc = attack_main(["--model", str(saved_spotlight), "--data", str(paired_dataset),
                      "--n", "3", "--popsize", "200", "--iters", "40", "--seed", "3",
                      "--out", str(out), "--no-progress"])
    assert rc == 0
    # no temporary files left
    assert sorted(os.listdir(out)) == ["attack.csv", "attack.json", "attack.png"]
    summary = json.loads((out / "attack.json").read_text())
    assert summary["n_attacks"] == 3 and summary["success_rate"] == 1.0
    assert summary["settings"]["popsize"] == 200 and summary["settings"]["seed"] == 3
    assert summary["latent_distance"]["attack"]["n"] == 3
    assert summary["latent_distance"]["noisy"]["n"] == 3
    with open(out / "attack.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and [r["galaxy_id"] for r in rows] == ["100", "101", "102"]
    for column in ("success", "generations", "queries", "original_class", "original_prob",
                   "final_class", "final_prob", "pixel0_x", "pixel0_y", "pixel0_g", "pixel0_i",
                   "latent_distance_attack", "latent_distance_noisy"):
        assert column in rows[0]
    assert all(r["success"] == "True" and float(r["latent_distance_attack"]) > 0 for r in rows)
    assert all(r["class_changed"] == "True" for r in rows)  # p_true < 0.05: another class
    assert summary["rates"]["class_change"]["k"] == summary["rates"]["paper"]["k"] == 3
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    assert printed["n_success"] == 3 and printed["rates"]["paper"]["n"] == 3
    assert "class change: 3 of 3 (100.0%, 95% interval 29.2-100.0%)" in captured.err


def test_cli_targeted_rows_and_errors(saved_spotlight, paired_dataset, tmp_path, capsys):
    out = tmp_path / "targeted"
    rc = attack_main(["--model", str(saved_spotlight), "--data", str(paired_dataset),
                      "--n", "2", "--popsize", "20", "--iters", "2", "--targeted",
                      "--out", str(out), "--no-progress"])
    assert rc == 0
    with open(out / "attack.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["galaxy_id"], r["target"]) for r in rows] == [  # classes by name
        ("100", "elliptical"), ("100", "merger"), ("101", "elliptical"), ("101", "merger")]
    assert attack_main(["--model", str(tmp_path / "missing"), "--data", str(paired_dataset),
                        "--out", str(out), "--overwrite"]) == 2
    assert "no SavedModel" in capsys.readouterr().err


def test_csv_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "t.csv"
    io.write_csv(path, [{"a": 1}])

    def broken(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(csv.DictWriter, "writerows", broken)
    with pytest.raises(OSError):
        io.write_csv(path, [{"a": 2}])
    assert path.read_text().splitlines() == ["a", "1"] and os.listdir(tmp_path) == ["t.csv"]


def test_atomic_writes_get_the_mode_of_a_plain_open(tmp_path):
    """Not mkstemp's owner-only 0600: a catalogue or figure on a cluster is for the group."""
    old = os.umask(0o022)
    try:
        io.write_text(tmp_path / "a.txt", "x")
        with open(tmp_path / "b.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "a.txt").st_mode & 0o777 == 0o644
    assert os.stat(tmp_path / "b.txt").st_mode & 0o777 == 0o644


# --------------------------------------------------------------------------- engine


def _engine(att, low=0.1, high=0.7):
    bounds = (np.full(BANDS, low, np.float32), np.full(BANDS, high, np.float32))
    return att._engine(np.zeros((1, SIZE, SIZE, BANDS), np.float32), bounds)


@pytest.mark.parametrize("init", ["bounds", "gaussian", "uniform"])
def test_initial_population(init):
    att = OnePixelAttack(spotlight, popsize=400, init=init)
    pop = _engine(att)._initial(tf.constant([0, 5])).numpy()
    assert pop.shape == (2, 400, 1, 2 + BANDS)
    assert ((pop[..., :2] >= 0) & (pop[..., :2] < SIZE)).all()
    values = pop[..., 2:]
    assert (values >= 0.1 - 1e-6).all() and (values <= 0.7 + 1e-6).all()
    at_bound = np.isclose(values, 0.1) | np.isclose(values, 0.7)
    share = {"bounds": (1.0, 1.0), "gaussian": (0.25, 0.4), "uniform": (0.0, 0.01)}[init]
    assert share[0] <= at_bound.mean() <= share[1]  # gaussian: 2 P(Z > 1) = 0.32 clipped
    assert abs(values.mean() - 0.4) < 0.02
    # an image's population does not depend on the other images drawn with it
    np.testing.assert_array_equal(pop[1], _engine(att)._initial(tf.constant([5])).numpy()[0])


def test_default_init_is_bounds_and_every_init_attacks():
    assert OnePixelAttack(spotlight).init == DEFAULT_INIT == "bounds"
    for init in INITS:
        result = OnePixelAttack(spotlight, init=init, **FAST).attack(dim_images(2), np.zeros(2))
        assert result.success.all() and result.settings["init"] == init


def test_generation_loop_is_traced_once():
    att = OnePixelAttack(spotlight, max_batch=80, **FAST)  # 2 slots
    for n in (1, 3, 5):
        images = dim_images(n, seed=n)
        images[0] += 0.5  # a robust image keeps its slot for the whole budget
        att.attack(images, np.zeros(n))
    (engine,) = att._engines.values()
    assert engine.capacity == 2
    assert engine.loop.experimental_get_tracing_count() == 1
    assert engine.probs.experimental_get_tracing_count() == 1  # reused inside the loop


def test_padded_and_finished_slots_are_neither_computed_nor_counted():
    sizes = []

    def recorded(x):
        seen = tf.numpy_function(lambda v: np.int32(sizes.append(len(v)) or 0), [x], tf.int32)
        with tf.control_dependencies([seen]):
            return spotlight(x)

    images = np.concatenate([dim_images(2), dim_images(1, level=0.9)])  # the last is robust
    att = OnePixelAttack(recorded, popsize=40, iters=30, max_batch=320,
                         value_range=(0.0, 1.0))  # 8 slots for 3 images
    result = att.attack(images, np.zeros(3))
    assert result.success.tolist() == [True, True, False]
    assert sum(sizes) == result.queries.sum()
    assert sizes[0] == 3 and max(sizes[1:]) == 3 * 40  # the clean pass, then live slots only
    assert sizes[-1] == 40  # the robust image alone once the others succeeded


def test_chunked_evaluation_does_not_change_results():
    images, labels = dim_images(3), np.zeros(3)
    runs = [OnePixelAttack(spotlight, max_batch=batch, **FAST).attack(images, labels)
            for batch in (4096, 25)]  # 25 < popsize: each generation in chunks of 25 + 15
    for name in ("success", "generations", "queries", "pixels", "values"):
        np.testing.assert_array_equal(getattr(runs[0], name), getattr(runs[1], name))


# --------------------------------------------------------------------------- driver


@pytest.fixture(scope="module", params=["untargeted", "targeted"])
def attack_run(request, saved_spotlight, paired_dataset):
    if request.param == "untargeted":
        settings = dict(n=3, popsize=200, iters=40, seed=3)
    else:  # class 2 is out of reach of the spotlight model: failures beside successes
        settings = dict(n=2, popsize=40, iters=10, targeted=True)
    run = driver.attack_galaxies(str(saved_spotlight), paired_dataset, progress=False,
                                 **settings)
    return request.param, run


def test_attack_galaxies_latents_match_the_model(attack_run, saved_spotlight, paired_dataset):
    mode, run = attack_run
    model = export.load(saved_spotlight)
    n = len(run.labels)
    assert run.galaxy_id.tolist() == list(range(100, 100 + n))
    if mode == "untargeted":
        np.testing.assert_array_equal(run.rows, np.arange(n))
    else:
        assert run.rows.tolist() == [0, 0, 1, 1] and run.result.targets.tolist() == [1, 2, 1, 2]
        assert run.result.success.any() and not run.result.success.all()
    np.testing.assert_array_equal(run.result.labels, run.labels[run.rows])
    noisy = pipeline.load_arrays(paired_dataset, "test", "Y1", n=n)["images"]
    for name, images in (("base", run.images[run.rows]), ("attacked", run.result.images),
                         ("noisy", noisy[run.rows])):
        np.testing.assert_allclose(run.latents[name], model.predict(images)["latent"],
                                   rtol=1e-5, atol=1e-6)
    attacked = np.linalg.norm(run.latents["attacked"] - run.latents["base"], axis=1)
    np.testing.assert_array_equal(np.isnan(run.d_attack), ~run.result.success)
    np.testing.assert_array_equal(run.d_attack[run.result.success], attacked[run.result.success])
    np.testing.assert_array_equal(
        run.d_noisy, np.linalg.norm(run.latents["noisy"] - run.latents["base"], axis=1))
    np.testing.assert_array_equal(run.d_noisy, run.d_noisy_galaxies[run.rows])
    np.testing.assert_array_equal(run.d_returned, attacked)  # every attack, failed ones too
    assert run.correct.all() and (run.predicted == 0).all()  # dim images, label 0
    assert run.summary == summarize(run.result, run.d_attack, run.d_noisy, n_galaxies=n,
                                    n_correct=n, d_returned=attacked)
    assert run.summary["n_galaxies"] == n and run.summary["n_misclassified"] == 0
    assert run.summary["n_attacks"] == len(run.rows) and run.seconds >= run.result.seconds


def test_attack_dataset_files_match_the_run(attack_run, saved_spotlight, paired_dataset,
                                            tmp_path, monkeypatch):
    mode, run = attack_run
    runs, original = [], driver.attack_galaxies

    def recorded(*args, **kwargs):  # keeps the run attack_dataset writes
        runs.append(original(*args, **kwargs))
        return runs[-1]
    monkeypatch.setattr(driver, "attack_galaxies", recorded)
    settings = ({"n": 3, "popsize": 200, "iters": 40, "seed": 3} if mode == "untargeted"
                else {"n": 2, "popsize": 40, "iters": 10, "targeted": True})
    summary = driver.attack_dataset(str(saved_spotlight), paired_dataset, tmp_path,
                                    progress=False, **settings)
    (new,) = runs
    for name in ("success", "queries", "pixels", "values", "images"):  # same seeds, same run
        np.testing.assert_array_equal(getattr(new.result, name), getattr(run.result, name))
    stored = json.loads((tmp_path / "attack.json").read_text())
    assert stored == json.loads(json.dumps(summary))
    expected = json.loads(json.dumps(new.summary))
    for key, value in expected.items():
        if key != "latent_distance":
            assert stored[key] == value, key
    assert stored["n_galaxies"] == len(new.labels) and stored["n_attacks"] == new.result.n
    assert stored["n_correct"] == len(new.labels) and stored["n_misclassified"] == 0
    assert stored["settings"]["init"] == "bounds"
    assert stored["target"] == (None if mode == "untargeted" else "all")
    distances = stored["latent_distance"]
    assert distances["attack"] == expected["latent_distance"]["attack"]
    assert distances["noisy"] == json.loads(json.dumps(describe(new.d_noisy_galaxies)))
    if mode == "untargeted":
        assert distances == expected["latent_distance"]
    assert stored["seconds_total"] == new.seconds
    with open(tmp_path / "attack.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows == [{k: str(v) for k, v in row.items()}
                    for row in driver.table(new, bands=["g", "r", "i"])]
