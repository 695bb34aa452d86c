"""The command-line tools take their choices and defaults from the config and the library,
so they cannot drift; a bad config is one line naming the key and exit status 2."""

import inspect

import pytest

from tfgal import attack, cli, config, data
from tfgal.data import importers


def _options(parser):
    return {action.dest: action for action in parser._actions}


def _subcommands(parser):
    return next(a for a in parser._actions if a.dest == "command").choices


def _defaults(fn):
    return {name: p.default for name, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty}


@pytest.mark.parametrize("make", [cli.train.parser, cli.study.parser])
def test_strategy_choices_are_the_configs(make):
    strategy = _options(make())["strategy"]
    assert tuple(strategy.choices) == config.choices("train.strategy")
    assert strategy.default is None  # unset: the config's train.strategy applies


def test_attack_choices_are_the_config_and_attack_wings():
    options = _options(cli.attack.parser())
    assert tuple(options["evaluator"].choices) == config.ATTACK_EVALUATORS == attack.EVALUATORS
    assert options["evaluator"].default == config.default("study.attack_evaluator")
    assert tuple(options["success"].choices) == attack.SUCCESS_MODES
    assert options["success"].default == _defaults(attack.OnePixelAttack.__init__)["success"]
    assert tuple(options["init"].choices) == config.choices("study.attack_init") == \
        tuple(attack.INITS)
    assert options["init"].default == config.default("study.attack_init") == \
        _defaults(attack.OnePixelAttack.__init__)["init"]


def test_attack_defaults_are_the_studys_the_papers_and_the_librarys():
    options = _options(cli.attack.parser())
    keys = {"n": "attack_n", "popsize": "attack_popsize", "iters": "attack_iters",
            "f": "attack_f", "pixels": "attack_pixels", "split": "split"}
    for option, key in keys.items():
        assert options[option].default == config.default(f"study.{key}"), option
    paper = {"n": 150, "popsize": 400, "iters": 100, "f": 0.5, "pixels": 1, "split": "test"}
    assert {o: options[o].default for o in paper} == paper
    one_pixel = _defaults(attack.OnePixelAttack.__init__)
    for option in ("pixels", "popsize", "iters", "f", "seed"):
        assert options[option].default == one_pixel[option], option
    dataset = _defaults(attack.attack_dataset)
    for option in ("split", "n", "base_depth", "noisy_depth", "target", "data_seed"):
        assert options[option].default == dataset[option], option
    assert options["base_depth"].default == config.default("data.source_depth")
    assert options["noisy_depth"].default == config.default("data.target_depth")


def test_data_defaults_are_the_configs_and_the_data_wings():
    commands = _subcommands(cli.data.parser())
    mock = _options(commands["mock"])
    for split in ("train", "val", "test"):
        assert mock[split].default == config.default(f"data.mock_{split}")
    assert mock["seed"].default == config.default("seed")
    for name in ("mock", "import-npy", "import-fits"):
        assert _options(commands[name])["shard_size"].default == data.DEFAULT_SHARD_SIZE
    build = _defaults(data.build_mocks)
    assert build["shard_size"] == data.DEFAULT_SHARD_SIZE
    stretch = _options(commands["import-npy"])["stretch"]
    assert tuple(stretch.choices) == importers.STRETCH_CHOICES
    assert stretch.default == _defaults(importers.import_npy)["stretch"]
    fits = _options(commands["import-fits"])
    fits_defaults = _defaults(importers.import_fits)
    assert fits["seed"].default == fits_defaults["seed"]
    assert tuple(float(v) for v in fits["split_fractions"].default.split(",")) == \
        tuple(fits_defaults["split_fractions"])


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize("main", [cli.train_main, cli.study_main])
@pytest.mark.parametrize("override, key, listed", [
    ("train.epocs=3", "train.epocs", "train.epochs"),
    ("train.epochs=0", "train.epochs", None),
    ('train.strategy="ring"', "train.strategy", "multiworker"),
])
def test_bad_config_is_one_line_naming_the_key(main, override, key, listed, capsys, tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[loss]\nmmd_weight = 0.01\n")
    assert main(["--config", str(path), "--set", override]) == 2
    line = _one_error_line(capsys)
    assert key in line
    if listed:
        assert listed in line


def test_bad_config_file_is_one_line_naming_the_key(capsys, tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[train]\nepocs = 3\n")
    assert cli.train_main(["--config", str(path)]) == 2
    line = _one_error_line(capsys)
    assert "train.epocs" in line and "train.epochs" in line
