"""Messages a user reads say what is wrong in the words of the tool they typed: config
lists, existing outputs, splits, depths, gallery formats; and no library warning that is
not the user's concern reaches stderr (issue 26, point 7)."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from tfgal import cli, config, io
from tfgal.cli import common
from tfgal.data import pipeline
from tfgal.errors import ConfigError, ManifestError, OutputExists

DEPTH_FORMS = "a depth is Y10, Y1, Y<years> or <years>y (survey years, e.g. Y3 or 0.5y), " \
              "or exp:<g>,<r>,<i> (exposure seconds per band)"


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def _quick_config(tmp_path, text=""):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return str(path)


# --------------------------------------------------------------------------- config lists


def test_an_unknown_study_model_is_named_with_the_valid_ones(capsys, tmp_path):
    valid = ", ".join(config.STUDY_MODELS)
    expected = f"config key study.models: unknown model 'dann'; valid: {valid}"
    with pytest.raises(ConfigError) as err:
        config.load(overrides=['study.models=["baseline","dann"]'])
    assert str(err.value) == expected and err.value.key == "study.models"
    # from a TOML file, and through the command line
    toml = _quick_config(tmp_path, '[study]\nmodels = ["baseline", "dann"]\n')
    with pytest.raises(ConfigError, match="unknown model 'dann'"):
        config.load(toml)
    assert cli.train_main(["--config", _quick_config(tmp_path), "--set",
                           'study.models=["baseline","dann"]']) == 2
    assert _error_line(capsys) == f"error: {expected}"


def test_repeated_and_empty_model_lists_have_their_own_messages():
    with pytest.raises(ConfigError) as err:
        config.load(overrides=['study.models=["mmd","baseline","mmd"]'])
    assert str(err.value) == ("config key study.models lists 'mmd' more than once; each model "
                              "may appear once; received ['mmd', 'baseline', 'mmd']")
    with pytest.raises(ConfigError) as err:
        config.load(overrides=["study.models=[]"])
    assert str(err.value).startswith("config key study.models lists no model; name at least "
                                     "one; valid: baseline, ")
    # corruption lists read the same way (and may be empty)
    with pytest.raises(ConfigError, match=r"^config key study.corruptions: unknown corruption "
                                          r"'fog'; valid: seeing, "):
        config.load(overrides=['study.corruptions=["seeing","fog","fog"]'])
    with pytest.raises(ConfigError, match="lists 'sky' more than once; each corruption"):
        config.load(overrides=['data.corrupt_augment=["sky","sky"]'])
    assert config.load(overrides=["study.corruptions=[]"]).study.corruptions == []


def test_a_list_key_given_a_word_shows_the_list_syntax(capsys, tmp_path):
    expected = ("config key study.models must be a list, e.g. --set "
                "'study.models=[\"baseline\",\"mmd\"]' (in a TOML file: models = "
                "[\"baseline\", \"mmd\"] under [study]); received 'baseline'")
    with pytest.raises(ConfigError) as err:
        config.load(overrides=["study.models=baseline"])
    assert str(err.value) == expected
    assert cli.train_main(["--config", _quick_config(tmp_path), "--set",
                           "study.models=baseline"]) == 2
    assert _error_line(capsys) == f"error: {expected}"
    # what the shell leaves of an unquoted --set study.models=["baseline","mmd"]
    with pytest.raises(ConfigError, match="its strings need double quotes, which the shell "
                                          "removes unless the whole KEY=VALUE is in single"):
        config.load(overrides=["study.models=[baseline,mmd]"])


@pytest.mark.parametrize("key, value, example", [
    ("data.corrupt_augment", '"seeing"', '["seeing","sky"]'),
    ("study.seeds", "1", "[0,1,2]"),
    ("study.curve_depths", '"auto"', "[1.0,10.0]"),
    ("study.corruptions", "true", '["seeing","sky"]'),
    ("study.corruption_train", '"seeing"', '["seeing"]'),
])
def test_every_list_key_shows_its_syntax(key, value, example):
    with pytest.raises(ConfigError) as err:
        config.load(overrides=[f"{key}={value}"])
    assert str(err.value).startswith(f"config key {key} must be a list, e.g. --set "
                                     f"'{key}={example}' (in a TOML file: ")
    # and the example shown is itself a valid value
    assert config.load(overrides=[f"{key}={example}"]) is not None


# --------------------------------------------------------------------------- outputs


def test_an_existing_mock_output_names_the_overwrite_flag(capsys, tmp_path):
    out = tmp_path / "mock"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    assert cli.data_main(["mock", "--out", str(out), "--train", "3", "--val", "1",
                          "--test", "1", "--no-progress"]) == 2
    assert _error_line(capsys) == (f"error: {out} exists and is not empty; rerun with "
                                   "--overwrite to replace it")
    assert sorted(os.listdir(out)) == ["notes.txt"]  # left as it was
    from tfgal import data
    with pytest.raises(OutputExists, match="rerun with --overwrite"):
        data.build_mocks(out, n_train=3, n_val=1, n_test=1, seed=0)


# --------------------------------------------------------------------------- splits


def test_a_split_the_dataset_lacks_names_the_dataset_and_its_splits(blob_dataset, capsys,
                                                                    tmp_path):
    expected = (f"split 'testing' is not in the dataset {blob_dataset.root}; its splits are "
                "train, val, test")
    with pytest.raises(ManifestError) as err:
        pipeline.load_arrays(blob_dataset, "testing", "Y10")
    assert str(err.value) == expected and err.value.index == "testing"
    assert cli.data_main(["gallery", "--data", blob_dataset.root, "--out",
                          str(tmp_path / "g.png"), "--split", "testing"]) == 2
    assert _error_line(capsys) == f"error: {expected}"
    assert not (tmp_path / "g.png").exists()


@pytest.fixture(scope="module")
def linear_model(tmp_path_factory):
    """A tiny exported model on 16x16 images (flatten, dense latent, dense head)."""
    import keras

    from tfgal.model import export
    images = keras.Input((16, 16, 3))
    encoder = keras.Model(images, keras.layers.Dense(4)(keras.layers.Flatten()(images)))
    latent = keras.Input((4,))
    head = keras.Model(latent, keras.layers.Dense(3)(latent))
    path = tmp_path_factory.mktemp("models") / "linear"
    return str(export.export_saved_model(encoder, head, path, image_shape=(16, 16, 3)))


def test_predict_on_a_missing_split_says_so(blob_dataset, linear_model, capsys, tmp_path):
    out = tmp_path / "c.csv"
    assert cli.predict_main(["--model", linear_model, "--data", blob_dataset.root, "--split",
                             "testing", "--out", str(out), "--no-progress"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == (f"error: split 'testing' is not in the dataset {blob_dataset.root}; its "
                    "splits are train, val, test")
    assert not out.exists()


# --------------------------------------------------------------------------- depths


@pytest.mark.parametrize("main, argv, option", [
    (cli.predict_main, ["--model", "m", "--data", "d", "--out", "c.csv", "--depth", "Y0"],
     "--depth"),
    (cli.data_main, ["gallery", "--data", "d", "--out", "g.png", "--depth", "Y0"], "--depth"),
    (cli.attack_main, ["--model", "m", "--data", "d", "--out", "o", "--base-depth", "Y0"],
     "--base-depth"),
    (cli.attack_main, ["--model", "m", "--data", "d", "--out", "o", "--noisy-depth", "Y0"],
     "--noisy-depth"),
])
def test_a_bad_depth_is_a_usage_error_naming_the_option(main, argv, option, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.endswith(f": error: argument {option}: 'Y0' is not a depth (survey years "
                         f"must be positive; received years=0.0); {DEPTH_FORMS}, or "
                         "noiseless (mock data's flux, no noise added)")


def test_import_fits_depth_has_no_noiseless_name(capsys):
    with pytest.raises(SystemExit):
        cli.data_main(["import-fits", "--table", "t.csv", "--out", "o", "--depth", "deep"])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == ("tfgal-data import-fits: error: argument --depth: 'deep' is not a depth; "
                    f"{DEPTH_FORMS}; omit the option for noiseless flux")


def test_good_depths_pass_unchanged_and_parsing_needs_no_tensorflow():
    from tfgal.data import observation
    assert common.NOISELESS == observation.NOISELESS
    check = common.depth_type()
    for text in ("Y10", "Y1", "Y3", "0.5y", "exp:100,200,300", "noiseless"):
        assert check(text) == text
    script = ("import sys; from tfgal.cli import predict; "
              "args = predict.parser().parse_args(['--model', 'm', '--data', 'd', '--out', "
              "'c.csv', '--depth', 'Y3']); assert args.depth == 'Y3'; "
              "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    subprocess.run([sys.executable, "-c", script], check=True)


# --------------------------------------------------------------------------- gallery


def test_the_gallery_writes_the_format_its_extension_names(blob_dataset, capsys, tmp_path):
    out = tmp_path / "g.jpg"
    assert cli.data_main(["gallery", "--data", blob_dataset.root, "--out", str(out),
                          "--corruptions", "seeing"]) == 0
    assert out.read_bytes()[:2] == b"\xff\xd8"  # JPEG, not PNG bytes under a .jpg name
    from matplotlib.figure import Figure
    fig = Figure(figsize=(1, 1))
    magic = {"png": b"\x89PNG", "JPEG": b"\xff\xd8", "pdf": b"%PDF", "svg": b"<?xml"}
    for ext, start in magic.items():
        io.write_figure(tmp_path / f"f.{ext}", fig, dpi=20)
        assert (tmp_path / f"f.{ext}").read_bytes().startswith(start), ext


def test_an_unknown_gallery_extension_names_out_and_the_valid_ones(blob_dataset, capsys,
                                                                   tmp_path):
    out = tmp_path / "g.gif"
    assert cli.data_main(["gallery", "--data", blob_dataset.root, "--out", str(out)]) == 2
    assert _error_line(capsys) == (f"error: --out {out}: unknown image extension '.gif' (the "
                                   "extension names the format); valid: .png, .jpg, .jpeg, "
                                   ".pdf, .svg")
    assert cli.data_main(["gallery", "--data", blob_dataset.root, "--out",
                          str(tmp_path / "g")]) == 2
    assert "has no extension to name the image format; valid: .png" in _error_line(capsys)
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- warnings


def _recorded(call):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return [f"{w.category.__name__}: {w.message}" for w in caught]


def test_isomap_of_separate_clusters_warns_nothing():
    from scipy.sparse.csgraph import connected_components
    from sklearn.neighbors import kneighbors_graph

    from tfgal.study import latent
    rng = np.random.default_rng(0)
    # two depths' latents, far apart: the neighbour graph falls in two pieces
    points = np.concatenate([rng.normal(0, 1, (12, 8)), rng.normal(50, 1, (12, 8))])
    assert connected_components(kneighbors_graph(points, 8))[0] == 2
    caught = _recorded(lambda: latent.isomap(points, n_neighbors=8))
    assert caught == []


def test_distributed_validation_ends_without_keras_warning(blob_dataset):
    import keras
    import tensorflow as tf

    from tfgal.model import training
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Flatten(),
                                  keras.layers.Dense(3)])
        model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    train = pipeline.make_dataset(blob_dataset, "train", "Y10", batch_size=4, training=True,
                                  repeat=True)

    def val():  # as `training.datasets` hands it over with several replicas or workers
        return strategy.distribute_datasets_from_function(
            lambda ctx: pipeline.make_dataset(blob_dataset, "val", "Y10", batch_size=4,
                                              input_context=ctx))
    fit = dict(steps_per_epoch=2, epochs=1, verbose=0, shuffle=False)
    # Keras alone warns at the validation set's end (what tfgal-train printed)...
    plain = _recorded(lambda: model.fit(train, validation_data=val(), **fit))
    assert any("Your input ran out of data" in w for w in plain), plain
    # ...tfgal's fit does not, and a plain validation set needs no silencing at all
    assert _recorded(lambda: training._fit(model, train, val(), **fit)) == []
    plain_val = pipeline.make_dataset(blob_dataset, "val", "Y10", batch_size=4)
    assert _recorded(lambda: model.fit(train, validation_data=plain_val, **fit)) == []
