"""The README's quick-study numbers come from a recorded run of today's quick config.

`tools/quick_study_readme.py` writes docs/quick_study.json from a run's results.json and
renders the README block from it; these tests fail when the block was edited by hand, or
when pipelines/quick.toml changed since the run (re-run the study and the tool)."""

import importlib.util
import json
import os

from tfgal import study
from tfgal.study import store

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tool():
    spec = importlib.util.spec_from_file_location(
        "quick_study_readme", os.path.join(ROOT, "tools", "quick_study_readme.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_block_is_rendered_from_the_recorded_run():
    t = tool()
    with open(t.DIGEST) as f:
        digest = json.load(f)
    with open(t.README) as f:
        readme = f.read()
    assert readme.count(t.BEGIN) == 1 and readme.count(t.END) == 1
    assert t.block_of(readme) == t.render(digest)
    assert t.main(["--check"]) == 0


def test_the_recorded_run_used_todays_quick_config():
    with open(tool().DIGEST) as f:
        digest = json.load(f)
    cfg = study.load_config(os.path.join(ROOT, "pipelines", "quick.toml"))
    assert digest["config"] == store.plain(cfg.to_dict()), (
        "pipelines/quick.toml changed since docs/quick_study.json was recorded: run "
        "tfgal-study --config pipelines/quick.toml and tools/quick_study_readme.py")
    assert digest["name"] == cfg.name and digest["seeds"] == [cfg.seed]


def test_a_hand_edited_number_is_caught(tmp_path):
    t = tool()
    with open(t.DIGEST) as f:
        digest = json.load(f)
    block = t.render(digest)
    kind = next(iter(digest["controlled"]))
    digest["controlled"][kind]["accuracy_source"]["mean"] += 0.01
    assert t.render(digest) != block
