"""No work done twice: training saves its final evaluation, the study's evaluation reuses it.

`tfgal-train` ends by predicting val and test at both depths (`tfgal.model.final_eval`)
and keeps the arrays in ``predictions.npz``; the study's ``evaluate`` stage reads them
back when they are exactly what it would compute, and predicts only what is missing.
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from tfgal import config, io, study
from tfgal.model import final_eval, training
from tfgal.study import curve as curve_lib
from tfgal.study import models, store

from test_study import tiny_study

KINDS = ("baseline", "target-bn")
TOML = """
seed = 0
[data]
dir = "{data}"
mock = false
[train]
epochs = 1
steps_per_epoch = 3
batch_size = 16
[log]
images = 0
projector = 0
[study]
models = ["baseline", "target-bn"]
seeds = [0]
"""
FIELDS = ("probabilities", "latent")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The context of a tiny study whose two models its train stages have trained."""
    _, _, cfg, out = tiny_study(tmp_path_factory.mktemp("shared"), TOML)
    ctx = study.StudyContext(cfg, out, progress=False, train_verbose=0, log=lambda m: None)
    ctx.manifest = training.ensure_dataset(cfg.data, cfg.seed)
    for k in KINDS:
        assert not models.Train(k).run(ctx, {}).reused_model
    return ctx


def context(trained, **update):
    """A fresh study context on the same output directory (and models), config updated."""
    cfg = config.merge(trained.cfg, update) if update else trained.cfg
    ctx = study.StudyContext(cfg, trained.out, progress=False, log=lambda m: None)
    ctx.manifest = trained.manifest
    assert all(models.Train(k).model_matches(ctx) for k in KINDS)  # same models on disk
    return ctx


def counting(monkeypatch):
    """Counts `curve_lib.predict_split` calls, by the models each one predicts."""
    calls = []
    original = curve_lib.predict_split

    def wrapped(models_, *args, **kwargs):
        calls.append(sorted(models_))
        return original(models_, *args, **kwargs)

    monkeypatch.setattr(curve_lib, "predict_split", wrapped)
    return calls


def fresh(ctx, n=None):
    """What the study would compute without saved predictions: {depth: predict_split}."""
    loaded = {k: ctx.model(k) for k in KINDS}
    return {d: final_eval.predict_split(loaded, ctx.manifest, ctx.study.split, d, n=n,
                                        seed=ctx.cfg.seed, noise_mode=ctx.cfg.data.noise_mode)
            for d in ctx.depths}


def assert_identical(got, want):
    for d, expected in want.items():
        np.testing.assert_array_equal(got[d]["labels"], expected["labels"])
        np.testing.assert_array_equal(got[d]["galaxy_id"], expected["galaxy_id"])
        for k in KINDS:
            for field in FIELDS:
                assert got[d][k][field].dtype == expected[k][field].dtype
                np.testing.assert_array_equal(got[d][k][field], expected[k][field],
                                              err_msg=f"{k} {d} {field}")


def test_training_saves_its_final_evaluation(trained):
    ctx = trained
    for k in KINDS:
        run_dir = ctx.run_dir(k)
        with np.load(os.path.join(run_dir, training.PREDICTIONS)) as f:
            arrays = {name: f[name] for name in f.files}
        settings = json.loads(str(arrays.pop("settings")))
        assert settings["model"] == store.model_fingerprint(ctx.export_dir(k))
        assert settings["seed"] == 0 and settings["noise_mode"] == ctx.cfg.data.noise_mode
        assert settings["data"]["root"] == os.path.abspath(ctx.manifest.root)
        entries = {f"{s}/{d}": {"split": s, "depth": d, "n": ctx.manifest.count(s)}
                   for s in ("val", "test") for d in ("Y10", "Y1")}
        assert settings["entries"] == entries
        assert set(arrays) == {f"{key}/{field}" for key in entries
                               for field in final_eval.FIELDS}
        with open(os.path.join(run_dir, training.SUMMARY)) as f:
            summary = json.load(f)
        for split in ("val", "test"):  # the summary's accuracies are these arrays'
            for d in ("Y10", "Y1"):
                probs, labels = arrays[f"{split}/{d}/probabilities"], arrays[f"{split}/{d}/labels"]
                assert summary[f"{split}_accuracy"][d] == float(
                    np.mean(probs.argmax(1) == labels))


def test_evaluate_reuses_the_saved_predictions_exactly(trained, monkeypatch):
    ctx = context(trained)
    calls = counting(monkeypatch)
    got = models.Evaluate(list(KINDS)).predictions(ctx)
    assert calls == []  # every model's predictions were saved: nothing predicted
    assert_identical(got, fresh(ctx))
    # The stage's output too, end to end.
    output = models.Evaluate(list(KINDS)).run(ctx, {})
    assert calls == []
    want = fresh(ctx)
    for k in KINDS:
        for d in ctx.depths:
            np.testing.assert_array_equal(output.probabilities[k][d],
                                          want[d][k]["probabilities"])


def test_only_missing_predictions_are_made(trained, monkeypatch, tmp_path):
    ctx = context(trained)
    path = os.path.join(ctx.run_dir("target-bn"), training.PREDICTIONS)
    moved = str(tmp_path / "predictions.npz")
    os.replace(path, moved)
    try:
        calls = counting(monkeypatch)
        got = models.Evaluate(list(KINDS)).predictions(ctx)
        assert calls == [["target-bn"]] * len(ctx.depths)
        assert_identical(got, fresh(ctx))
    finally:
        os.replace(moved, path)


@pytest.mark.parametrize("eval_n, reused", [(5, False), (24, True), (1000, True)])
def test_a_subset_is_sliced_only_where_the_batches_line_up(trained, monkeypatch, eval_n,
                                                           reused):
    # 24 test galaxies, one batch of 256: the first 5 would run as a batch of 5, whose
    # outputs may differ in the last bit, so they are predicted; 24 or more is the split.
    ctx = context(trained, study={"eval_n": eval_n})
    calls = counting(monkeypatch)
    got = models.Evaluate(list(KINDS)).predictions(ctx)
    assert calls == ([] if reused else [sorted(KINDS)] * len(ctx.depths))
    assert_identical(got, fresh(ctx, n=eval_n))
    assert len(got[ctx.source]["labels"]) == min(eval_n, 24)


def test_another_seed_falls_back_to_predicting(trained, monkeypatch):
    ctx = context(trained, seed=1)  # the models train at study.seeds' 0; the noise is 1
    assert ctx.cfg.seed == 1 and all(ctx.derived[k].seed == 0 for k in KINDS)
    calls = counting(monkeypatch)
    got = models.Evaluate(list(KINDS)).predictions(ctx)
    assert calls == [sorted(KINDS)] * len(ctx.depths)
    assert_identical(got, fresh(ctx))


def test_stale_or_broken_files_are_never_reused(trained, tmp_path):
    ctx = context(trained)
    k = "baseline"
    path = os.path.join(ctx.run_dir(k), training.PREDICTIONS)
    common = dict(seed=0, noise_mode=ctx.cfg.data.noise_mode)

    def look(p, export_dir=ctx.export_dir(k), split="test", depths=ctx.depths, **kwargs):
        return final_eval.lookup(p, export_dir, ctx.manifest, split, depths,
                                 **{**common, **kwargs})

    assert look(path) is not None
    assert look(path, export_dir=ctx.export_dir("target-bn")) is None  # another model
    assert look(path, noise_mode="exact" if common["noise_mode"] != "exact" else "fast") is None
    assert look(path, depths=("Y10", "2y")) is None                   # a depth not saved
    assert look(path, split="train") is None                          # a split not saved
    assert look(path, batch_size=128) is None
    assert look(str(tmp_path / "missing.npz")) is None
    with np.load(path) as f:
        arrays = {name: f[name] for name in f.files}
    settings = json.loads(str(arrays["settings"]))
    changed = str(tmp_path / "changed.npz")
    for key, value in (("model", "0" * 16), ("data", {**settings["data"], "manifest": "x"})):
        io.write_npz(changed, {**arrays, "settings": np.array(json.dumps(
            {**settings, key: value}))})
        assert look(changed) is None, key
    # Fewer rows saved than asked for (a file of the first 16 galaxies): not reused.
    entries = {key: {**e, "n": 16} for key, e in settings["entries"].items()}
    io.write_npz(changed, {
        **{name: (a[:16] if name != "settings" else a) for name, a in arrays.items()},
        "settings": np.array(json.dumps({**settings, "entries": entries}))})
    assert look(changed, n=16) is not None and look(changed) is None
    assert look(changed, n=20) is None
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip file")
    assert look(str(broken)) is None
