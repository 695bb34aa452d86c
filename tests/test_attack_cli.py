"""tfgal-attack's outputs for a reader: the figure of the attacked galaxies, class names in
attack.csv, both success rules on stderr, --n and model-directory refusals shared with
tfgal-predict.

The model sees the brightest pixel of an image (band mean, above the image mean): any one
bright pixel changes its class, but within the model's value range the true class keeps
a probability of about 0.13, above the paper's 0.05; so the class-change rule and the
paper's rule disagree on every attack, as they do for weak attacks on real models.
"""

import contextlib
import io
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
from astropy.table import Table
from matplotlib import image as mpimg

from tfgal import cli
from tfgal.attack import driver, figure
from tfgal.attack import summary as attack_summary
from tfgal.data import DatasetWriter
from tfgal.data import display
from tfgal.model import export

SIZE, BANDS = 16, 3
LABELS = (0, 0, 2, 0, 0, 0)  # the model calls every dim image class 0: the 2 is skipped
NAMES = ("disc", "spheroid", "merger")  # the model's own, not the dataset's
OFFSET, GAIN = 0.3, 2.0
ATTACK = ["--popsize", "8", "--iters", "2", "--no-progress"]


def brightest_pixel_model():
    """Encoder: latent (max band-mean pixel - mean - OFFSET, 0); head: logits of class 0
    against 1 with GAIN. Standard layers only, so the export holds a Keras replica."""
    images = keras.Input((SIZE, SIZE, BANDS), name="images")
    mean = keras.layers.Conv2D(1, 1, use_bias=False, name="band_mean")
    pixel_mean = mean(images)
    peak = keras.layers.GlobalMaxPooling2D()(pixel_mean)
    level = keras.layers.GlobalAveragePooling2D()(pixel_mean)
    latent = keras.layers.Dense(2, name="latent")
    encoder = keras.Model(images, latent(keras.layers.Concatenate()([peak, level])))
    mean.set_weights([np.full((1, 1, BANDS, 1), 1 / BANDS, np.float32)])
    latent.set_weights([np.array([[1, 0], [-1, 0]], np.float32),
                        np.array([-OFFSET, 0], np.float32)])
    z = keras.Input((2,), name="latent")
    logits = keras.layers.Dense(3, name="logits")
    head = keras.Model(z, logits(z))
    logits.set_weights([np.array([[-GAIN, GAIN, 0], [0, 0, 0]], np.float32),
                        np.zeros(3, np.float32)])
    return encoder, head


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    encoder, head = brightest_pixel_model()
    path = tmp_path_factory.mktemp("models") / "peak"
    assets = {"value_range": [[0.0] * BANDS, [0.9] * BANDS], "bands": ["g", "r", "i"],
              "class_names": list(NAMES), "config": {"name": "peak"}}
    return str(export.export_saved_model(encoder, head, path,
                                         image_shape=(SIZE, SIZE, BANDS), assets=assets))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Six dim 16x16 galaxies stored at Y10 and Y1, stretched already (identity)."""
    root = tmp_path_factory.mktemp("attack_cli") / "dim"
    rng = np.random.default_rng(0)
    with DatasetWriter(root, images={"Y10": {"noise": True}, "Y1": {"noise": True}},
                       image_shape=(SIZE, SIZE, BANDS)) as writer:
        for i, label in enumerate(LABELS):
            y10, y1 = (0.2 + rng.uniform(0, 0.02, (SIZE, SIZE, BANDS)).astype(np.float32)
                       for _ in range(2))
            writer.add("test", {"Y10": y10, "Y1": y1}, label, 500 + i)
        writer.finish(stretch={"kind": "identity"})
    return str(root)


@pytest.fixture(scope="module")
def attacked(model, data, tmp_path_factory):
    """One tfgal-attack run: (status, its JSON on stdout, stderr, --out)."""
    out = tmp_path_factory.mktemp("runs") / "peak"
    stdout, stderr = io.StringIO(), io.StringIO()  # capsys is per test; this run is shared
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = cli.attack_main(["--model", model, "--data", data, "--n", "6", "--out", str(out),
                              *ATTACK])
    return rc, json.loads(stdout.getvalue()), stderr.getvalue(), out


def test_the_figure_is_a_real_image_named_in_the_json(attacked):
    rc, printed, _, out = attacked
    assert rc == 0
    assert sorted(os.listdir(out)) == ["attack.csv", "attack.json", "attack.png"]
    assert printed["files"] == {"summary": str(out / "attack.json"),
                                "table": str(out / "attack.csv"),
                                "figure": str(out / "attack.png")}
    assert json.loads((out / "attack.json").read_text())["files"]["figure"] == "attack.png"
    pixels = mpimg.imread(out / "attack.png")
    width, height = figure.figure_size(5)  # five attacks: three rows of two blocks
    expected = np.array([height, width]) * figure.DPI  # Agg drops the fraction
    assert np.abs(np.array(pixels.shape[:2]) - expected).max() < 1
    rgb = pixels[..., :3]
    assert rgb.std() > 0.05 and len(np.unique(rgb.reshape(-1, 3), axis=0)) > 50


def test_the_table_names_the_classes(attacked):
    _, _, _, out = attacked
    table = Table.read(out / "attack.csv", format="ascii.csv")
    assert list(table["galaxy_id"]) == [500, 501, 503, 504, 505]  # 502 misclassified
    assert set(table["label"]) == set(table["original_class"]) == {"disc"}
    assert set(table["final_class"]) == {"spheroid"}
    assert table["target"].mask.all()  # untargeted: no target
    assert list(table["class_changed"]) == ["True"] * 5
    assert list(table["success"]) == ["False"] * 5


def test_stderr_reports_both_rules(attacked):
    _, printed, err, _ = attacked
    assert printed["rates"]["class_change"]["k"] == 5 and printed["rates"]["paper"]["k"] == 0
    assert printed["n_success"] == 0 and printed["success_rate"] == 0.0
    lines = err.splitlines()
    change = [line for line in lines if line.startswith("class change: ")]
    paper = [line for line in lines if line.startswith("paper: ")]
    assert change == ["class change: 5 of 5 (100.0%, 95% interval 47.8-100.0%): the returned "
                      "image is classified as another class (Su et al., ART)"]
    assert paper == ["paper: 0 of 5 (0.0%, 95% interval 0.0-52.2%): the true-class "
                     "probability of the returned image is below the threshold (0.05) "
                     "[the stopping rule, --success]"]


def test_class_rule_still_reports_the_paper_rule(model, data, tmp_path, capsys):
    assert cli.attack_main(["--model", model, "--data", data, "--n", "2", "--success", "class",
                            "--out", str(tmp_path), *ATTACK]) == 0
    err = capsys.readouterr().err
    assert "class change: 2 of 2 (100.0%" in err and "(Su et al., ART) [the stopping rule" in err
    assert "paper: 0 of 2 (0.0%" in err


def test_a_rule_without_attacks_is_still_reported():
    settings = {"success": "probability", "threshold": 0.05}
    masks = {"class_change": np.zeros(0, bool), "paper": np.zeros(0, bool)}
    lines = attack_summary.rate_lines({"settings": settings,
                                       "rates": attack_summary.rates(masks, np.zeros(0, bool))})
    assert [line.split(":")[0] for line in lines] == ["class change", "paper"]
    assert all(": no rate, no galaxy was attacked: " in line for line in lines)


@pytest.mark.parametrize("n, message", [
    ("0", "--n 0: at least 1 galaxy must be loaded"),
    ("-3", "--n -3: at least 1 galaxy must be loaded"),
    ("7", "--n 7: split test of {data} holds 6 galaxies"),
])
def test_n_is_refused_before_the_model_loads(model, data, tmp_path, capsys, monkeypatch, n,
                                             message):
    def never(*args, **kwargs):
        raise AssertionError("the model was loaded")
    monkeypatch.setattr(export.ExportedClassifier, "__init__", never)
    out = tmp_path / "out"
    assert cli.attack_main(["--model", model, "--data", data, "--n", n, "--out", str(out),
                            *ATTACK]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [f"error: {message.format(data=data)}"]
    assert captured.out == "" and not out.exists()


@pytest.mark.parametrize("kind", ["missing", "empty", "file"])
def test_a_bad_model_directory_reads_the_same_from_both_commands(data, tmp_path, capsys, kind):
    bad = tmp_path / kind
    if kind == "empty":
        bad.mkdir()
    elif kind == "file":
        bad.write_text("not a model")
    why = {"missing": "no such directory", "file": "not a directory",
           "empty": "it has no saved_model.pb and no integer-named version subdirectories "
                    "holding one (TF Serving layout BASE/<version>/)"}[kind]
    expected = [f"error: no SavedModel at {bad}: {why}"]
    assert cli.attack_main(["--model", str(bad), "--data", data, "--n", "2",
                            "--out", str(tmp_path / "attack"), *ATTACK]) == 2
    assert capsys.readouterr().err.splitlines() == expected
    assert cli.predict_main(["--model", str(bad), "--data", data, "--split", "test",
                             "--out", str(tmp_path / "c.fits"), "--no-progress"]) == 2
    assert capsys.readouterr().err.splitlines() == expected
    assert not (tmp_path / "attack").exists() and not (tmp_path / "c.fits").exists()


def test_the_library_draws_only_when_asked(model, data, tmp_path):
    """The study's driver call stays figure-free; an overwritten run's figure goes."""
    (tmp_path / "attack.png").write_bytes(b"an older run's figure")
    summary = driver.attack_dataset(model, data, tmp_path, n=2, popsize=8, iters=2,
                                    progress=False, overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["attack.csv", "attack.json"]
    assert summary["files"] == {"table": "attack.csv"}
    assert summary["class_names"] == list(NAMES)


def test_figure_order_and_display_helpers():
    success = [False, True, False, True, False]
    changed = [True, True, False, True, True]
    assert figure.order(success, changed).tolist() == [1, 3, 0, 4, 2]
    assert figure.order(success, changed, limit=3).tolist() == [1, 3, 0]
    gri = np.zeros((2, 2, 3), np.float32)
    gri[..., 1], gri[..., 2] = 0.5, 1.0  # g, r, i
    np.testing.assert_allclose(display.to_rgb(gri, [0, 0, 0], [1, 1, 1])[0, 0], [1, 0.5, 0])
    grey = display.to_rgb(np.full((2, 2, 1), 0.25, np.float32), [0.0], [0.5])
    np.testing.assert_allclose(grey, 0.5)
    low, high = display.display_limits(np.arange(200, dtype=np.float32).reshape(10, 10, 2))
    assert (low < 2).all() and (high > 197).all()
