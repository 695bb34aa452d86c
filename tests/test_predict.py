"""tfgal-predict: catalogues equal the served model's outputs, in every format, from
datasets and from FITS tables; data that do not fit the model are refused and nothing is
written."""

import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from astropy.io import fits
from astropy.table import Table

from conftest import run_in_terminal, write_blob_dataset
from tfgal import cli
from tfgal.data import pipeline
from tfgal.data import stretch as stretch_lib
from tfgal.errors import ConfigError, DataError, ManifestError, ModelContractError
from tfgal.model import architectures, export
from tfgal.model import predict as predict_lib

BIN = os.path.dirname(sys.executable)
CLASSES = ("spiral", "elliptical", "merger")


def _spread(encoder, head, images):
    """Whitens the latent on `images` and widens the head: the study's initialisation gives
    nearly the same probabilities to every galaxy, so a comparison to 1e-5 would hold for
    any model; these differ by tenths between galaxies."""
    latent = encoder.get_layer("latent")
    kernel, bias = latent.get_weights()
    z = encoder(images, training=False).numpy()
    mean, std = z.mean(axis=0), z.std(axis=0) + 1e-6
    latent.set_weights([kernel / std, (bias - mean) / std])
    logits = head.get_layer("logits")
    kernel, bias = logits.get_weights()
    rng = np.random.default_rng(0)
    logits.set_weights([rng.normal(0.0, 1.0, kernel.shape).astype(np.float32), bias])


@pytest.fixture(scope="module")
def tiny_model(blob_dataset, tmp_path_factory):
    """A 16x16 ConvNet exported untrained, with assets as tfgal-train writes them."""
    keras.utils.set_random_seed(0)
    encoder, head = architectures.build("convnet", image_shape=(16, 16, 3), latent_dim=8,
                                        n_classes=3, seed=0)
    _spread(encoder, head, pipeline.load_arrays(blob_dataset, "train", "Y10")["images"])
    assets = {"class_names": list(blob_dataset.class_names), "bands": list(blob_dataset.bands),
              "image_shape": list(blob_dataset.image_shape), "stretch": blob_dataset.stretch,
              "source_depth": "Y10", "target_depth": "Y1",
              "config": {"name": "tiny", "seed": 0, "data": {"source_depth": "Y10"}}}
    path = tmp_path_factory.mktemp("models") / "tiny"
    return export.export_saved_model(encoder, head, path, image_shape=(16, 16, 3), assets=assets)


@pytest.fixture(scope="module")
def served(tiny_model):
    return export.load(tiny_model)


@pytest.fixture(scope="module")
def test_images(blob_dataset, served):
    """The test split as the catalogue sees it: the model's stretch, Y10 noise, seed 0."""
    return pipeline.load_arrays(blob_dataset, "test", "Y10", seed=0,
                                stretch=served.assets["stretch"])


def _text(column):
    values = np.asarray(column)
    return np.char.decode(values, "ascii") if values.dtype.kind == "S" else values.astype(str)


def _probabilities(table):
    return np.stack([np.asarray(table[f"p_{c}"]) for c in CLASSES], axis=1)


def _by_id(table, ids):
    row = {int(g): i for i, g in enumerate(np.asarray(table["galaxy_id"]))}
    assert sorted(row) == sorted(int(g) for g in ids)
    return np.array([row[int(g)] for g in ids])


def _read(path):
    """A catalogue read back as the README says: astropy's `Table.read`, Parquet included."""
    return Table.read(path)


# ----------------------------------------------------------------------------- acceptance


def _start(*argv):
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process):
    out, err = process.communicate(timeout=240)
    assert process.returncode == 0, err[-2000:]
    return out


def test_tfgal_predict_equals_saved_model_cli(tiny_model, blob_dataset, test_images, tmp_path):
    # Both commands run as a user would; side by side, since each spends seconds starting.
    np.save(tmp_path / "images.npy", test_images["images"])
    served_dir = tmp_path / "served"
    served = _start(
        os.path.join(BIN, "saved_model_cli"), "run", "--dir", tiny_model, "--tag_set", "serve",
        "--signature_def", "serving_default", "--inputs", f"images={tmp_path / 'images.npy'}",
        "--outdir", str(served_dir))
    out = tmp_path / "catalogue.fits"
    predicted = _start(os.path.join(BIN, "tfgal-predict"), "--model", tiny_model, "--data",
                       blob_dataset.root, "--split", "test", "--out", str(out))
    summary = json.loads(_finish(predicted))  # stdout: the JSON summary alone
    _finish(served)
    assert summary["n_galaxies"] == len(test_images["images"]) == 8
    assert summary["model"] == "tiny" and summary["depth"] == "Y10"
    expected = np.load(served_dir / "probabilities.npy")
    assert np.ptp(expected, axis=0).max() > 0.2  # outputs differ between galaxies

    table = Table.read(out)
    rows = _by_id(table, test_images["galaxy_id"])
    probabilities = _probabilities(table)[rows]
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    predicted = _text(table["predicted_class"])[rows]
    assert list(predicted) == [CLASSES[k] for k in np.argmax(probabilities, axis=1)]
    assert list(_text(table["true_class"])[rows]) == [CLASSES[k] for k in test_images["labels"]]
    version = str(tf.saved_model.experimental.read_fingerprint(tiny_model).saved_model_checksum)
    assert table.meta["MODEL"] == "tiny" and table.meta["MODELVER"] == version
    assert table.meta["NGAL"] == 8 and table.meta["SPLIT"] == "test"
    assert table.meta["CLASSES"] == ",".join(CLASSES)
    # labels known: the summary scores the catalogue (rows true, columns predicted)
    true = _text(table["true_class"])
    scores = summary["scores"]
    assert scores["n_labelled"] == 8
    assert scores["accuracy"] == pytest.approx(np.mean(true == _text(table["predicted_class"])))
    counts = np.array(scores["confusion"]["counts"])
    assert scores["confusion"]["classes"] == list(CLASSES) and counts.sum() == 8
    for i, t in enumerate(CLASSES):
        for j, p in enumerate(CLASSES):
            assert counts[i, j] == np.sum((true == t) & (_text(table["predicted_class"]) == p))


def test_progress_on_a_terminal_and_scores_on_stderr(tiny_model, blob_dataset, tmp_path):
    argv = [os.path.join(BIN, "tfgal-predict"), "--model", tiny_model, "--data",
            blob_dataset.root, "--batch-size", "2"]
    status, out, shown = run_in_terminal(argv + ["--out", str(tmp_path / "tty.fits")])
    assert status == 0, shown[-2000:]
    assert "predict: 100%|" in shown and "8/8" in shown  # behind the stderr filter
    summary = json.loads(out)
    accuracy = f"accuracy {100 * summary['scores']['accuracy']:.1f}% of 8 labelled galaxies"
    assert accuracy in shown and "true \\ predicted" in shown
    piped = subprocess.run(argv + ["--out", str(tmp_path / "pipe.fits")], capture_output=True,
                           text=True, timeout=300)
    assert piped.returncode == 0 and "%|" not in piped.stderr and accuracy in piped.stderr
    assert json.loads(piped.stdout)["scores"] == summary["scores"]


# ----------------------------------------------------------------------------- formats


@pytest.mark.parametrize("ext", [".fits", ".parquet", ".ecsv", ".csv"])
def test_formats_round_trip_with_the_latent(ext, tiny_model, blob_dataset, served, test_images,
                                            tmp_path):
    out = str(tmp_path / f"catalogue{ext}")
    summary = predict_lib.predict(tiny_model, out, data=blob_dataset.root, latent=True,
                                  progress=False)
    assert summary["out"] == out and summary["n_galaxies"] == 8
    assert sum(summary["class_counts"].values()) == 8
    table = _read(out)
    reference = served.predict(test_images["images"])
    rows = _by_id(table, test_images["galaxy_id"])
    np.testing.assert_allclose(_probabilities(table)[rows], reference["probabilities"], atol=1e-5)
    if ext == ".csv":
        assert "latent" not in table.colnames
        latent = np.stack([np.asarray(table[f"latent_{k}"]) for k in range(8)], axis=1)
    else:
        latent = np.asarray(table["latent"])
    np.testing.assert_allclose(latent[rows], reference["latent"], atol=1e-5)
    meta = table.meta
    if ext == ".csv":  # plain CSV: nothing before the header, default readers read it
        assert dict(meta) == {}
        assert open(out).readline().startswith("galaxy_id,true_class,p_spiral,")
    else:
        assert meta["MODEL"] == "tiny" and meta["NGAL"] == 8
        assert meta["MODELVER"] == summary["model_version"]
    assert os.listdir(tmp_path) == [os.path.basename(out)]  # no temporary file left


# ----------------------------------------------------------------------------- FITS tables


def _write_cutouts(directory, n, rng, size=16):
    images = rng.gamma(2.0, 1.0, (n, size, size, 3)).astype(np.float32)
    for k, image in enumerate(images):
        fits.PrimaryHDU(np.moveaxis(image, -1, 0)).writeto(directory / f"g{k}.fits")
    return images


def test_fits_table_input_equals_the_model(tiny_model, served, tmp_path):
    images = _write_cutouts(tmp_path, 5, np.random.default_rng(1))
    ids = np.arange(100, 105)
    Table({"file": [f"g{k}.fits" for k in range(5)], "label": ["spiral", "merger", 0, 1, 2],
           "galaxy_id": ids}).write(tmp_path / "table.csv", format="ascii.csv")
    out = str(tmp_path / "out" / "catalogue.fits")
    summary = predict_lib.predict(tiny_model, out, fits_table=tmp_path / "table.csv",
                                  batch_size=2, progress=False)
    assert summary["n_galaxies"] == 5 and summary["split"] == "all"
    table = Table.read(out)
    expected = served.predict(stretch_lib.apply_numpy(images, served.assets["stretch"]))
    np.testing.assert_allclose(_probabilities(table), expected["probabilities"], atol=1e-5)
    assert list(table["galaxy_id"]) == list(ids)
    assert list(_text(table["true_class"])) == ["spiral", "merger", "spiral", "elliptical",
                                                "merger"]
    assert table.meta["DEPTH"] == predict_lib.AS_OBSERVED


def test_fits_table_without_labels_filters_the_split(tiny_model, served, tmp_path):
    images = _write_cutouts(tmp_path, 4, np.random.default_rng(2))
    Table({"file": [f"g{k}.fits" for k in range(4)],
           "split": ["test", "train", "test", "val"]}).write(tmp_path / "t.csv", format="ascii.csv")
    out = str(tmp_path / "catalogue.ecsv")
    predict_lib.predict(tiny_model, out, fits_table=tmp_path / "t.csv", split="test",
                        progress=False)
    table = _read(out)
    assert "true_class" not in table.colnames
    assert list(table["galaxy_id"]) == [0, 2]  # row numbers, rows of the test split
    expected = served.predict(stretch_lib.apply_numpy(images[[0, 2]], served.assets["stretch"]))
    np.testing.assert_allclose(_probabilities(table), expected["probabilities"], atol=1e-5)
    assert table.meta["SPLIT"] == "test"


def test_a_missing_cutout_names_file_and_row_and_writes_nothing(tiny_model, tmp_path):
    _write_cutouts(tmp_path, 3, np.random.default_rng(3))
    files = ["g0.fits", "g1.fits", "gone.fits", "g2.fits"]
    Table({"file": files}).write(tmp_path / "t.csv", format="ascii.csv")
    out = tmp_path / "out" / "catalogue.fits"
    with pytest.raises(DataError) as info:
        predict_lib.predict(tiny_model, str(out), fits_table=tmp_path / "t.csv", batch_size=2,
                            progress=False)
    assert info.value.path.endswith("gone.fits") and info.value.index == 2
    assert not out.parent.exists() or os.listdir(out.parent) == []


# ----------------------------------------------------------------------------- refusals


@pytest.fixture(scope="module")
def zband_model(tiny_model, tmp_path_factory):
    """The tiny model, its assets claiming bands g, r, z."""
    path = tmp_path_factory.mktemp("models") / "zband"
    shutil.copytree(tiny_model, path)
    assets_path = path / "assets" / export.ASSETS_NAME
    assets = json.loads(assets_path.read_text())
    assets["bands"] = ["g", "r", "z"]
    assets_path.write_text(json.dumps(assets))
    return str(path)


@pytest.fixture(scope="module")
def wide_dataset(tmp_path_factory):
    return write_blob_dataset(tmp_path_factory.mktemp("data") / "wide", counts=(8, 2, 2), size=24)


REFUSALS = {  # case -> (error type, words the message must hold)
    "image shape": (ModelContractError, ["(16, 16, 3)", "(24, 24, 3)", "wide"]),
    "bands": (ModelContractError, ["'z'", "'i'", "zband"]),
    "extension": (ConfigError, [".txt", ".fits", ".parquet", ".ecsv", ".csv"]),
    "split": (ManifestError, ["split 'nosuch' is not in the dataset", "its splits are"]),
    "no source": (ConfigError, ["exactly one"]),
}


def _refusal_args(case, tiny_model, zband_model, blob_dataset, wide_dataset, out_dir):
    args = {"model": tiny_model, "out": str(out_dir / "c.fits"), "data": blob_dataset.root}
    if case == "image shape":
        args["data"] = wide_dataset.root
    elif case == "bands":
        args["model"] = zband_model
    elif case == "extension":
        args["out"] = str(out_dir / "c.txt")
    elif case == "split":
        args["split"] = "nosuch"
    elif case == "no source":
        args.pop("data")
    return args


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusals_name_the_problem_and_write_nothing(case, tiny_model, zband_model,
                                                     blob_dataset, wide_dataset, tmp_path,
                                                     capsys):
    error, words = REFUSALS[case]
    out_dir = tmp_path / "out"
    args = _refusal_args(case, tiny_model, zband_model, blob_dataset, wide_dataset, out_dir)
    model, out = args.pop("model"), args.pop("out")
    with pytest.raises(error) as info:
        predict_lib.predict(model, out, progress=False, **args)
    for word in words:
        assert word in str(info.value), (word, str(info.value))
    assert not out_dir.exists() or os.listdir(out_dir) == []

    if case == "no source":
        return  # argparse refuses it before the library (usage line, exit status 2)
    argv = ["--model", model, "--out", out, "--no-progress"]
    for key, value in args.items():
        argv += [f"--{key}", value]
    capsys.readouterr()
    assert cli.predict_main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and captured.out == ""
    assert not out_dir.exists() or os.listdir(out_dir) == []


@pytest.mark.parametrize("missing", ["pyarrow", "pandas"])
def test_parquet_without_its_readers_is_refused(missing, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, missing, None)  # import it -> ImportError
    with pytest.raises(ConfigError, match=rf"{missing} is not installed.*\[parquet\]"):
        predict_lib.output_format(tmp_path / "c.parquet")
    assert predict_lib.output_format(tmp_path / "c.FITS") == "fits"


# ----------------------------------------------------------------------------- TF Serving


def test_tf_serving_layout_uses_the_highest_version(tiny_model, blob_dataset, tmp_path):
    base = tmp_path / "tiny-serving"
    for version in ("1", "3"):
        shutil.copytree(tiny_model, base / version)
    (base / "notes").mkdir()
    classifier, name, version = predict_lib.load_model(base)
    assert version == "3" and name == "tiny"
    assert classifier.path == str(base / "3")
    out = str(tmp_path / "c.fits")
    summary = predict_lib.predict(base, out, data=blob_dataset.root, progress=False)
    table = Table.read(out)
    assert table.meta["MODELVER"] == "3" == summary["model_version"]
    assert table.meta["MODELDIR"] == str(base / "3")

    with pytest.raises(ModelContractError, match="version subdirectories"):
        predict_lib.load_model(base / "notes")
