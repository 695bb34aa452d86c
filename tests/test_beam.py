"""Apache Beam (the ``beam`` extra): mock datasets byte-identical to the local build, the
TFDS builder on Beam, catalogues by RunInference equal to the local catalogue, and the
options' refusals."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("apache_beam", reason="the beam extra is not installed "
                                          "(pip install -e '.[beam]'); CI installs it")
pytest.importorskip("tensorflow_hub", reason="the beam extra is not installed "
                                             "(pip install -e '.[beam]'): Beam's TensorFlow "
                                             "model handler imports tensorflow_hub")

import test_predict  # noqa: E402  (its exported tiny model, spread to distinct outputs)
from astropy.table import Table  # noqa: E402

from tfgal import beam as beam_lib  # noqa: E402
from tfgal import cli  # noqa: E402
from tfgal.data import mock  # noqa: E402
from tfgal.errors import ConfigError  # noqa: E402
from tfgal.model import predict as predict_lib  # noqa: E402

BIN = os.path.dirname(sys.executable)
IN_PROCESS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
tiny_model = test_predict.tiny_model


def _files(root):
    return {name: open(os.path.join(root, name), "rb").read()
            for name in sorted(os.listdir(root))}


@pytest.fixture(scope="module")
def plain_mocks(tmp_path_factory):
    """A small mock set built locally: 7 / 3 / 2 galaxies in shards of 4, seed 5."""
    out = tmp_path_factory.mktemp("mocks") / "plain"
    mock.build(out, n_train=7, n_val=3, n_test=2, seed=5, workers=1, shard_size=4,
                     progress=False)
    return out


def test_tfgal_data_mock_beam_is_byte_identical_to_the_local_build(plain_mocks, tmp_path):
    """The user's command: `tfgal-data mock --beam` on the DirectRunner's default, two
    worker processes; every record file and the manifest equal the local build's bytes."""
    out = tmp_path / "beam"
    done = subprocess.run(
        [os.path.join(BIN, "tfgal-data"), "mock", "--out", str(out), "--train", "7",
         "--val", "3", "--test", "2", "--seed", "5", "--shard-size", "4", "--workers", "2",
         "--beam"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["splits"]["train"]["shards"] == 2
    # the workers' start-up chatter is kept off the command's stderr
    assert "INFO:" not in done.stderr and "WARNING:root" not in done.stderr, done.stderr
    plain, beam = _files(plain_mocks), _files(out)
    assert sorted(beam) == sorted(plain) == [
        "manifest.json", "test-00000-of-00001.tfrecord.gz", "train-00000-of-00002.tfrecord.gz",
        "train-00001-of-00002.tfrecord.gz", "val-00000-of-00001.tfrecord.gz"]
    for name in plain:
        if name == "manifest.json":  # the same up to the root path it records, if any
            a = json.loads(plain[name].decode().replace(str(plain_mocks), "ROOT"))
            b = json.loads(beam[name].decode().replace(str(out), "ROOT"))
            assert a == b
        else:
            assert beam[name] == plain[name], name
    assert not (tmp_path / ".parts").exists() and not os.path.exists(out / ".parts")


def test_beam_build_with_other_options_writes_the_same_bytes(plain_mocks, tmp_path):
    """In-process DirectRunner (the options a user passes replace the defaults)."""
    out = tmp_path / "inproc"
    mock.build(out, n_train=7, n_val=3, n_test=2, seed=5, shard_size=4, progress=False,
                     beam=" ".join(IN_PROCESS))
    assert _files(out).keys() == _files(plain_mocks).keys()
    for name, data in _files(plain_mocks).items():
        if name != "manifest.json":
            assert _files(out)[name] == data


def test_tfds_builder_renders_on_beam_when_given_a_runner(tmp_path):
    import apache_beam as beam
    import tensorflow_datasets as tfds

    from tfgal.data import tfds_builders
    config = tfds_builders.TfgalMockConfig(name="beamtest", n_train=4, n_val=2, n_test=2,
                                           seed=1, description="test")
    local = tfds_builders.TfgalMock(config=config, data_dir=str(tmp_path / "local"))
    local.download_and_prepare()
    on_beam = tfds_builders.TfgalMock(config=config, data_dir=str(tmp_path / "beam"))
    on_beam.download_and_prepare(download_config=tfds.download.DownloadConfig(
        beam_runner=beam.runners.DirectRunner()))
    assert on_beam._on_beam and not local._on_beam  # really the Beam path
    for split in ("train", "validation", "test"):
        a = list(tfds.as_numpy(local.as_dataset(split=split)))
        b = list(tfds.as_numpy(on_beam.as_dataset(split=split)))
        assert [e["galaxy_id"] for e in a] == [e["galaxy_id"] for e in b]
        assert len(a) == {"train": 4, "validation": 2, "test": 2}[split]
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x["flux"], y["flux"])
            assert x["label"] == y["label"]


@pytest.fixture(scope="module")
def catalogues(tiny_model, blob_dataset, tmp_path_factory):
    """The test split's catalogue, locally and by `tfgal-predict --beam` (in process)."""
    out = tmp_path_factory.mktemp("catalogues")
    local = predict_lib.predict(tiny_model, out / "local.fits", data=blob_dataset.root,
                                split="test", latent=True, progress=False)
    status = cli.predict_main(["--model", str(tiny_model), "--data", blob_dataset.root,
                               "--split", "test", "--out", str(out / "beam.fits"), "--latent",
                               "--batch-size", "3", "--beam",
                               "--beam-options=" + ",".join(IN_PROCESS)])
    assert status == 0
    return Table.read(out / "local.fits"), Table.read(out / "beam.fits"), local


def test_predict_beam_writes_the_local_catalogue(catalogues):
    local, beam, _ = catalogues
    assert len(beam) == len(local) == 8
    assert beam.colnames == local.colnames
    np.testing.assert_array_equal(beam["galaxy_id"], local["galaxy_id"])  # same order
    np.testing.assert_array_equal(beam["true_class"], local["true_class"])
    np.testing.assert_array_equal(beam["predicted_class"], local["predicted_class"])
    for name in ("p_spiral", "p_elliptical", "p_merger", "latent"):
        np.testing.assert_allclose(beam[name], local[name], atol=1e-5)
    assert np.ptp(np.asarray(local["p_spiral"])) > 0.01  # outputs differ between galaxies
    assert {k: v for k, v in beam.meta.items() if k != "DATE"} == \
        {k: v for k, v in local.meta.items() if k != "DATE"}


def test_predict_beam_prints_the_local_summary(catalogues, tiny_model, blob_dataset,
                                               tmp_path, capsys):
    _, _, local = catalogues
    status = cli.predict_main(["--model", str(tiny_model), "--data", blob_dataset.root,
                               "--split", "test", "--out", str(tmp_path / "c.csv"), "--beam",
                               "--beam-options", "direct_num_workers=1"])
    assert status == 0
    summary = json.loads(capsys.readouterr().out)
    assert "DirectRunner" in summary["runner"]
    for key in ("n_galaxies", "class_counts", "model", "model_version", "split", "depth"):
        assert summary[key] == local[key], key
    assert len(Table.read(tmp_path / "c.csv", format="ascii.csv")) == 8


@pytest.mark.parametrize("argv, words", [
    (["--beam-options=--runner=DirectRunner"], ["--beam-options needs --beam"]),
    (["--beam", "--beam-options=--no_such_flag=1"], ["unknown Beam option", "--no_such_flag=1"]),
    (["--beam", "--beam-options=--runner=NoSuchRunner"], ["cannot start", "NoSuchRunner"]),
])
def test_predict_beam_refusals_are_one_line(argv, words, tiny_model, blob_dataset, tmp_path,
                                            capsys):
    out = tmp_path / "c.fits"
    try:
        status = cli.predict_main(["--model", str(tiny_model), "--data", blob_dataset.root,
                                   "--out", str(out), *argv])
    except SystemExit as usage:  # argparse's refusals
        status = usage.code
    err = capsys.readouterr().err
    for word in words:
        assert word in err
    assert status == 2
    assert not out.exists()


def test_mock_beam_refusals(tmp_path):
    with pytest.raises(ConfigError, match="shard and beam"):
        mock.build(tmp_path / "x", n_train=2, n_val=0, n_test=0, seed=0, shard=(0, 2),
                         beam=True)
    with pytest.raises(ConfigError, match="--name=value"):
        beam_lib.option_flags("-x")
    assert not (tmp_path / "x").exists()


def test_option_flags_replace_the_defaults():
    defaults = beam_lib.direct_defaults(2)
    assert beam_lib.option_flags("direct_num_workers=4", defaults)[-1] == "--direct_num_workers=4"
    assert "--direct_num_workers=2" not in beam_lib.option_flags("direct_num_workers=4",
                                                                 defaults)
    # another runner drops every DirectRunner default
    assert beam_lib.option_flags("--runner=FlinkRunner,--flink_master=h:8081", defaults) == [
        "--runner=FlinkRunner", "--flink_master=h:8081"]
    options = beam_lib.pipeline_options("--runner=FlinkRunner --flink_master=h:8081")
    assert options.get_all_options()["flink_master"] == "h:8081"
