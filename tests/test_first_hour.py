"""A new user's first hour: help answers at once and shows defaults, progress bars draw on a
terminal behind the stderr filter and not in a pipe, results alone on stdout, and a run
from another directory says where its paths lead."""

import argparse
import json
import os
import subprocess
import sys

import pytest

from conftest import run_in_terminal
from tfgal import cli, config
from tfgal.cli import common

BIN = os.path.dirname(sys.executable)
HEAVY = ("tensorflow", "keras", "galsim", "astropy.table", "sklearn")

PROBE = """
import json, sys, time
started = time.perf_counter()
from tfgal import cli
try:
    status = getattr(cli, sys.argv[1] + "_main")(sys.argv[2:])
except SystemExit as e:
    status = e.code
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print(json.dumps({{"status": status, "heavy": heavy,
                  "seconds": time.perf_counter() - started}}), file=sys.stderr)
""".format(heavy=HEAVY)


def _probe(command, *argv):
    done = subprocess.run([sys.executable, "-c", PROBE, command, *argv], capture_output=True,
                          text=True, timeout=120)
    return done, json.loads(done.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", [
    ["attack", "--help"], ["predict", "--help"], ["train", "--help"], ["study", "--help"],
    ["data", "--help"], ["data", "mock", "--help"], ["data", "gallery", "--help"],
    ["attack", "--model", "m", "--data", "d"],           # usage error: no --out
    ["predict", "--model", "m", "--data", "d", "--out", "x.fits", "--depth", "Y0"],
])
def test_help_and_usage_errors_import_no_tensorflow(argv):
    done, probe = _probe(*argv)
    assert probe["heavy"] == [], f"{argv} imported {probe['heavy']} before answering"
    if "--help" in argv:
        assert probe["status"] in (0, None) and "usage: tfgal-" in done.stdout
    else:
        assert probe["status"] == 2 and "error:" in done.stderr


def _parsers():
    found = {"tfgal-attack": cli.attack.parser(), "tfgal-predict": cli.predict.parser(),
             "tfgal-train": cli.train.parser(), "tfgal-study": cli.study.parser()}
    data = cli.data.parser()
    commands = next(a for a in data._actions if isinstance(a, argparse._SubParsersAction))
    found.update({f"tfgal-data {name}": p for name, p in commands.choices.items()})
    return found


def test_every_option_has_help_and_shows_its_default():
    for name, parser in _parsers().items():
        text = parser.format_help()
        for action in parser._actions:
            if not action.option_strings or action.dest == "help":
                continue
            assert action.help, f"{name} {action.option_strings[0]} has no help text"
            default = action.default
            if default is not None and default is not False and default != []:
                formatter = parser._get_formatter()
                assert "default" in formatter._get_help_string(action), \
                    f"{name} {action.option_strings[0]} does not show its default"
        assert "examples:" in text or name.startswith("tfgal-data "), name


def test_the_defaults_a_user_asked_for_are_shown():
    attack = " ".join(cli.attack.parser().format_help().split())
    for needle in ("(default: 150)", "(default: 400)", "(default: 100)", "(default: test)"):
        assert needle in attack
    mock = " ".join(_parsers()["tfgal-data mock"].format_help().split())
    for split, key in (("training", "data.mock_train"), ("validation", "data.mock_val"),
                       ("test", "data.mock_test")):
        assert f"galaxies in the {split} split (default: {config.default(key)})" in mock
    assert "--seed SEED seed of every galaxy's" in mock and "(default: 0)" in mock


def test_study_help_lists_every_model():
    text = " ".join(cli.study.parser().format_help().split())
    for model in config.STUDY_MODELS:
        assert model in text
    assert "corrupt-aug" in text


# ----------------------------------------------------------------------------- terminals


def test_mock_draws_its_bar_on_a_terminal_and_not_in_a_pipe(tmp_path):
    argv = [os.path.join(BIN, "tfgal-data"), "mock", "--train", "2", "--val", "1", "--test",
            "1", "--workers", "1"]
    status, out, shown = run_in_terminal(argv + ["--out", str(tmp_path / "tty")])
    assert status == 0, shown[-2000:]
    assert "rendering: 100%|" in shown and "4/4" in shown  # tqdm's bar, at its end
    assert json.loads(out)["splits"]["train"]["count"] == 2  # stdout: the JSON alone
    piped = subprocess.run(argv + ["--out", str(tmp_path / "pipe")], capture_output=True,
                           text=True, timeout=300)
    assert piped.returncode == 0, piped.stderr[-2000:]
    assert "rendering" not in piped.stderr and "%|" not in piped.stderr
    assert json.loads(piped.stdout)["splits"]["test"]["count"] == 1
    # the same bytes either way: the bar changes nothing
    for split in ("train", "val", "test"):
        a = json.loads((tmp_path / "tty" / "manifest.json").read_text())["splits"][split]
        b = json.loads((tmp_path / "pipe" / "manifest.json").read_text())["splits"][split]
        assert [f["sha256"] for f in a["files"]] == [f["sha256"] for f in b["files"]]


# ----------------------------------------------------------------------------- paths


def test_a_run_from_another_directory_says_where_its_data_is(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "pipelines").mkdir(parents=True)
    (project / "data" / "mock").mkdir(parents=True)
    config_path = project / "pipelines" / "quick.toml"
    config_path.write_text('name = "quick"\n[data]\ndir = "data/mock"\n')
    cfg = config.load(config_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    [line] = common.path_hints(str(config_path), cfg)
    assert "relative to the current directory" in line and str(elsewhere) in line
    assert str(project / "data" / "mock") in line and f"run from {project}" in line
    assert f'--set data.dir="{project / "data" / "mock"}"' in line
    monkeypatch.chdir(project)  # from the project itself: nothing to say
    assert common.path_hints("pipelines/quick.toml", cfg) == []
    monkeypatch.chdir(elsewhere)  # an absolute data.dir: nothing to say either
    cfg = config.load(config_path, [f'data.dir="{project / "data" / "mock"}"'])
    assert common.path_hints(str(config_path), cfg) == []
