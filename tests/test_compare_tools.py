"""The refactoring guards in tools/: mock builds compared byte by byte across trees and ways
of building, and two studies' results.json compared with timings and paths aside."""

import importlib.util
import json
import pathlib

import pytest

TOOLS = pathlib.Path(__file__).resolve().parents[1] / "tools"
TREE = TOOLS.parent


def _load(name):
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mock_builds_of_two_trees_agree(tmp_path, capsys):
    # The same tree twice, built locally: the real command, digests and report. (That Beam
    # and --shard parts write the local build's bytes is tested in test_beam, test_mocks.)
    cmb = _load("compare_mock_builds")
    code = cmb.main(["--tree", str(TREE), "--tree", str(TREE), "--out", str(tmp_path / "b"),
                     "--train", "3", "--val", "1", "--test", "2", "--shard-size", "2",
                     "--modes", "local"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2 builds (tree0-local, tree1-local): identical, file by file" in out
    listed = {line.split()[1] for line in out.splitlines() if len(line.split()) == 2}
    assert listed == {"manifest.json", "train-00000-of-00002.tfrecord.gz",
                      "train-00001-of-00002.tfrecord.gz", "val-00000-of-00001.tfrecord.gz",
                      "test-00000-of-00001.tfrecord.gz"}
    with pytest.raises(SystemExit, match="choose among local, beam, parts"):
        cmb.main(["--tree", str(TREE), "--out", str(tmp_path / "c"), "--modes", "gpu"])


def test_a_build_that_differs_is_named(tmp_path, capsys, monkeypatch):
    cmb = _load("compare_mock_builds")

    def fake_build(tree, out, mode, sizes):  # the beam build differs in one file
        pathlib.Path(out).mkdir()
        (pathlib.Path(out) / "manifest.json").write_text("{}")
        (pathlib.Path(out) / "train.gz").write_bytes(b"x" if mode == "beam" else b"y")
    monkeypatch.setattr(cmb, "build", fake_build)
    assert cmb.main(["--tree", str(TREE), "--out", str(tmp_path / "b")]) == 1
    out = capsys.readouterr().out
    assert "tree0-beam differs from tree0-local: ['train.gz']" in out
    assert "1 differ" in out
    with pytest.raises(SystemExit, match="not empty"):
        cmb.main(["--tree", str(TREE), "--out", str(tmp_path / "b")])


def test_results_compare_ignores_timings_and_paths_only(tmp_path, capsys):
    cr = _load("compare_results")
    old = {"accuracy": {"mmd": {"Y10": 0.876}}, "seconds": 3.0, "dataset": {"root": "/a"},
           "seeds": {"root": 0}, "runs": [{"run_dir": "/x", "n": 1}],
           "classical": {"wall_s": 48.2, "seconds_per_galaxy": 0.29, "n": 60}}
    new = json.loads(json.dumps(old))
    new.update(seconds=9.0, dataset={"root": "/b"},
               classical={"wall_s": 48.8, "seconds_per_galaxy": 0.30, "n": 60})
    new["runs"][0]["run_dir"] = "/y"
    paths = []
    for name, doc in (("old", old), ("new", new)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(doc))
    assert cr.main([str(p) for p in paths]) == 0
    new["accuracy"]["mmd"]["Y10"], new["seeds"]["root"] = 0.877, 1
    paths[1].write_text(json.dumps(new))
    assert cr.main([str(p) for p in paths]) == 1
    out = capsys.readouterr().out
    assert "accuracy.mmd.Y10: 0.876 != 0.877" in out and "seeds.root: 0 != 1" in out
