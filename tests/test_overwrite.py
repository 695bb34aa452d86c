"""Nothing replaced without asking: every command refuses an existing output with one line
naming it and ``--overwrite``, before any work, and leaves it byte-identical; with
``--overwrite`` it is replaced."""

import hashlib
import os

import pytest
from astropy.table import Table

import test_attack
import test_predict
from test_importers import write_npy
from tfgal import cli, io
from tfgal.attack import driver
from tfgal.data import gallery, verify
from tfgal.data.mock import builder as mock_build
from tfgal.data.importers import npy as npy_importer
from tfgal.errors import OutputExists
from tfgal.model import export
from tfgal.model import predict as predict_lib

# Fixtures of the predict and attack tests, reused (module scope here).
tiny_model = test_predict.tiny_model
saved_spotlight = test_attack.saved_spotlight
paired_dataset = test_attack.paired_dataset


def _digest(path):
    """SHA-256 of a file's bytes, or of a directory's file names and bytes."""
    digest = hashlib.sha256()
    if os.path.isfile(path):
        return io.sha256_file(path)
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            digest.update(os.path.relpath(full, path).encode() + b"\0")
            io.update_sha256(digest, full)
    return digest.hexdigest()


def _never(*args, **kwargs):
    raise AssertionError("work started before the existing output was refused")


def _refused(capsys, status, line):
    captured = capsys.readouterr()
    assert status == 2 and captured.out == ""
    assert captured.err.strip().splitlines() == [f"error: {line}"]


def _rerun(capsys, monkeypatch, main, argv, out, line, expensive):
    """`main(argv)` wrote `out`: again it is refused before `expensive` (module, name)
    runs, `out` unchanged; with --overwrite it runs."""
    before = _digest(out)
    capsys.readouterr()
    with monkeypatch.context() as patch:
        patch.setattr(*expensive, _never)
        _refused(capsys, main(argv), line)
    assert _digest(out) == before
    assert main(argv + ["--overwrite"]) == 0


def test_predict(tiny_model, blob_dataset, tmp_path, capsys, monkeypatch):
    out = tmp_path / "saved_catalogue.fits"
    argv = ["--model", str(tiny_model), "--data", blob_dataset.root, "--out", str(out),
            "--no-progress"]
    assert cli.predict_main(argv + ["--latent"]) == 0
    # the case: a rerun without --latent replaced the --latent catalogue
    _rerun(capsys, monkeypatch, cli.predict_main, argv, out,
           f"{out} exists; rerun with --overwrite to replace it", (predict_lib, "load_model"))
    assert "latent" not in Table.read(out).colnames


def test_attack(saved_spotlight, paired_dataset, tmp_path, capsys, monkeypatch):
    out = tmp_path / "attack"
    argv = ["--model", str(saved_spotlight), "--data", str(paired_dataset), "--n", "2",
            "--popsize", "20", "--iters", "2", "--out", str(out), "--no-progress"]
    assert cli.attack_main(argv) == 0
    _rerun(capsys, monkeypatch, cli.attack_main, argv, out,
           f"{out} already holds attack.json, attack.csv and attack.png; rerun with "
           "--overwrite to replace them", (export, "load"))
    assert sorted(os.listdir(out)) == ["attack.csv", "attack.json", "attack.png"]


def test_attack_library_refuses_and_an_unrelated_directory_is_fine(saved_spotlight,
                                                                   paired_dataset, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    kwargs = dict(n=1, popsize=10, iters=1, progress=False)
    driver.attack_dataset(str(saved_spotlight), paired_dataset, tmp_path, **kwargs)
    with pytest.raises(OutputExists, match="already holds attack.json and attack.csv"):
        driver.attack_dataset(str(saved_spotlight), paired_dataset, tmp_path, **kwargs)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_gallery(blob_dataset, tmp_path, capsys, monkeypatch):
    out = tmp_path / "gallery.png"
    argv = ["gallery", "--data", blob_dataset.root, "--out", str(out), "--corruptions", "seeing"]
    assert cli.data_main(argv) == 0
    _rerun(capsys, monkeypatch, cli.data_main, argv, out,
           f"{out} exists; rerun with --overwrite to replace it", (gallery, "_gallery"))


def test_mock(tmp_path, capsys, monkeypatch):
    out = tmp_path / "mock"
    argv = ["mock", "--out", str(out), "--train", "3", "--val", "1", "--test", "1",
            "--workers", "1", "--shard-size", "4"]
    assert cli.data_main(argv) == 0
    _rerun(capsys, monkeypatch, cli.data_main, argv, out,
           f"{out} exists and is not empty; rerun with --overwrite to replace it",
           (mock_build, "_build_part"))
    assert verify(out).count("train") == 3
    assert sorted(os.listdir(tmp_path)) == ["mock"]  # no lock file, no temporary left
    # a part of a sharded build would replace the finished dataset at its merge
    before = _digest(out)
    capsys.readouterr()
    _refused(capsys, cli.data_main(argv + ["--shard", "0/2"]),
             f"{out} already holds manifest.json; rerun with --overwrite to replace it")
    assert _digest(out) == before


def test_import_npy(tmp_path, capsys, monkeypatch):
    write_npy(tmp_path / "zenodo")
    out = tmp_path / "ds"
    argv = ["import-npy", "--source", str(tmp_path / "zenodo"), "--out", str(out)]
    assert cli.data_main(argv) == 0
    _rerun(capsys, monkeypatch, cli.data_main, argv, out,
           f"{out} exists and is not empty; rerun with --overwrite to replace it",
           (npy_importer, "open_npy"))
    assert verify(out).count("test") == 5


def test_refuse_existing(tmp_path):
    io.refuse_existing(tmp_path / "absent", False)
    io.refuse_existing(tmp_path, False)  # an empty directory is no output
    (tmp_path / "notes.txt").write_text("x")
    io.refuse_existing(tmp_path, False, names=("attack.json",))  # unrelated files
    with pytest.raises(OutputExists) as refused:
        io.refuse_existing(tmp_path, False)
    assert str(refused.value) == f"{tmp_path} exists and is not empty; rerun with " \
                                 "--overwrite to replace it"
    assert refused.value.path == str(tmp_path) and isinstance(refused.value, FileExistsError)
    (tmp_path / "attack.json").write_text("{}")
    with pytest.raises(OutputExists, match="already holds attack.json; rerun with --overwrite "
                                           "to replace it$"):
        io.refuse_existing(tmp_path, False, names=("attack.json", "attack.csv"))
    with pytest.raises(OutputExists, match="notes.txt exists; rerun with --force to replace"):
        io.refuse_existing(tmp_path / "notes.txt", False, flag="--force")
    io.refuse_existing(tmp_path / "notes.txt", True)
