"""The study's corruption stage end to end on tiny data: the numbers against their
definitions, results.json, report, figures, TensorBoard, caching, skipping, refusal."""

import collections
import glob
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from test_study import counting_stages, png_size, stage_arrays, tiny_study, write_study_npy

from tfgal import config, data, seeds, study
from tfgal.data import corruptions, pipeline
from tfgal.errors import ConfigError
from tfgal.model import export
from tfgal.study import corruption, latent, models, outputs, runner

NAMES = ["trail", "calibration", "quantise"]
N = 12
KINDS = ("baseline", "corrupt-aug")
# Two models, a short training and a minimal attack: the corruption stage is under test.
TINY_TOML = """
seed = 0
[data]
dir = "{data}"
mock = false
[train]
epochs = 1
steps_per_epoch = 60
batch_size = 16
learning_rate = 1e-3
precise_bn_batches = 0
[log]
images = 0
projector = 0
[study]
models = ["baseline", "corrupt-aug"]
attack_n = 8
attack_popsize = 16
attack_iters = 4
attack_threshold = 0.9
curve_depths = [1.0, 10.0]
isomap_n = 8
isomap_neighbors = 6
church_windows = 1
church_grid = 5
bootstrap = 200
corruptions = ["trail", "calibration", "quantise"]
corruption_n = 12
corruption_train = ["trail"]
"""
COUNTED = (models.Evaluate, models.Curve, corruption.Corruptions, outputs.Figures,
           runner.Report)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    manifest, _, cfg, out = tiny_study(tmp_path_factory.mktemp("corruption-study"), TINY_TOML)
    results = study.run(cfg, out, progress=False, train_verbose=0)
    return {"cfg": cfg, "out": out, "results": results, "manifest": manifest}


def block(finished):
    return finished["results"]["corruptions"]


def correct(arrays, kind, name, depth="Y10"):
    return arrays[f"predicted/{kind}/{depth}/{name}"] == arrays["galaxies/labels"]


# --------------------------------------------------------------------------- numbers


def test_severity_zero_is_the_evaluated_image(finished):
    c, out = block(finished), finished["out"]
    arrays, ev = stage_arrays(out, "corruptions"), stage_arrays(out, "evaluate")
    assert c["n"] == N and c["depths"] == ["Y10"] and c["severities"] == [0, 1, 2, 3, 4, 5]
    np.testing.assert_array_equal(arrays["galaxies/galaxy_id"], ev["galaxy_id"][:N])
    np.testing.assert_array_equal(arrays["galaxies/labels"], ev["labels"][:N])
    for kind in KINDS:
        evaluated = ev[f"probabilities/{kind}/Y10"][:N].argmax(1)
        for name in NAMES:
            # Severity 0 is the clean image the Evaluate stage saw, whatever the stage at
            # which the corruption acts (flux for the trail, image for the other two).
            np.testing.assert_array_equal(arrays[f"predicted/{kind}/Y10/{name}"][0], evaluated)
            acc = c["accuracy"][kind]["Y10"][name]
            assert acc["accuracy"][0] == pytest.approx(np.mean(evaluated == ev["labels"][:N]))
            ok = correct(arrays, kind, name)
            assert acc["accuracy"] == pytest.approx(ok.mean(axis=1).tolist())
            assert acc["sem"] == pytest.approx([np.sqrt(a * (1 - a) / N) for a in
                                                acc["accuracy"]])
    assert c["stages"] == {"trail": "flux", "calibration": "image", "quantise": "image"}


def test_displacements_are_scale_free_and_grow_with_severity(finished):
    c, out = block(finished), finished["out"]
    arrays, ev = stage_arrays(out, "corruptions"), stage_arrays(out, "evaluate")
    per_model = finished["results"]["latent_measures"]["per_model"]
    boot = dict(n_resamples=200, seed=seeds.derive(0, "bootstrap"))
    for kind in KINDS:
        scale = latent.latent_scale(ev[f"latents/{kind}/Y10"])
        assert c["scale"][kind] == pytest.approx(scale) == per_model[kind]["scale"]
        for name in NAMES:
            d = arrays[f"displacement/{kind}/Y10/{name}"]
            assert d.shape == (6, N)
            assert np.all(d[0] == 0.0)  # the clean image against itself, exactly
            cis = c["displacement"][kind]["Y10"][name]
            assert [ci["estimate"] for ci in cis] == pytest.approx(d.mean(axis=1).tolist())
            assert cis[0] == {"estimate": 0.0, "low": 0.0, "high": 0.0, "n": N}
            assert cis[4] == latent.bootstrap_ci(d[4], **boot)
        # A zero-point error grows with severity, with the same sign per galaxy and band.
        mean = arrays[f"displacement/{kind}/Y10/calibration"].mean(axis=1)
        assert np.all(np.diff(mean) > 0), mean
    # The displacement is the exported model's on the pipeline's swept images.
    model = export.load(os.path.join(out, "models", "baseline"))
    plan = corruptions.Plan.sweep("calibration")
    images = pipeline.load_arrays(finished["manifest"], "test", "Y10", n=N, corruption=plan)
    assert images["severity"].tolist() == np.repeat(np.arange(6), N).tolist()
    z = model.predict(images["images"])["latent"].reshape(6, N, -1)
    d = np.linalg.norm(z - z[0], axis=-1) / c["scale"]["baseline"]
    np.testing.assert_allclose(d, arrays["displacement/baseline/Y10/calibration"],
                               rtol=1e-4, atol=1e-5)


def test_measures_follow_the_per_severity_table(finished):
    c = block(finished)
    arrays = stage_arrays(finished["out"], "corruptions")
    assert c["held_in"] == ["trail"] and c["held_out"] == ["calibration", "quantise"]
    for kind in KINDS:
        m = c["measures"][kind]["Y10"]
        table = {n: np.asarray(c["accuracy"][kind]["Y10"][n]["accuracy"]) for n in NAMES}
        mean = np.mean([table[n][1:] for n in NAMES])
        clean = np.mean([table[n][0] for n in NAMES])
        assert m["mean_accuracy"]["estimate"] == pytest.approx(mean)
        assert m["clean_accuracy"]["estimate"] == pytest.approx(clean)
        assert m["relative_drop"]["estimate"] == pytest.approx((clean - mean) / clean)
        lo, hi = m["mean_accuracy"]["low"], m["mean_accuracy"]["high"]
        assert lo <= mean <= hi
        for n in NAMES:
            per = m["per_corruption"][n]
            assert per["mean"] == pytest.approx(table[n][1:].mean())
            assert per["drop"] == pytest.approx(table[n][0] - table[n][1:].mean())
        drops = [m["per_corruption"][n]["drop"] for n in m["worst"]]
        assert sorted(m["worst"]) == sorted(NAMES) and drops == sorted(drops, reverse=True)
        assert m["held_in"]["mean_accuracy"]["estimate"] == pytest.approx(table["trail"][1:].mean())
        assert m["held_out"]["mean_accuracy"]["estimate"] == pytest.approx(
            np.mean([table[n][1:] for n in ("calibration", "quantise")]))
    # The corruption defence against the baseline, galaxy by galaxy on the same images.
    gain = c["gain_over_baseline"]["corrupt-aug"]["Y10"]
    assert set(c["gain_over_baseline"]) == {"corrupt-aug"}
    for group, names in (("all", NAMES), ("held_in", ["trail"]),
                         ("held_out", ["calibration", "quantise"])):
        diff = np.mean([correct(arrays, "corrupt-aug", n)[1:].mean()
                        - correct(arrays, "baseline", n)[1:].mean() for n in names])
        assert gain[group]["estimate"] == pytest.approx(diff)


def test_displacement_beside_the_one_pixel_attack(finished):
    """Every number of a model's comparison is on the same galaxies: those it attacked among
    the sweep's, matched by id."""
    c, out = block(finished), finished["out"]
    arrays = stage_arrays(out, "corruptions")
    ids = arrays["galaxies/galaxy_id"]
    per_model = finished["results"]["latent_measures"]["per_model"]
    for kind in KINDS:
        v, att = c["vs_attack"][kind], stage_arrays(out, f"attack_{kind}")
        scale = per_model[kind]["scale"]
        common, ic, ia = np.intersect1d(ids, att["galaxy_id"], return_indices=True)
        assert v["n"] == len(common) > 0 and f"the {len(common)} of the first {N}" in v["galaxies"]
        assert v["attack"]["n"] == v["noisy"]["n"] == len(common)
        assert v["attack"]["estimate"] == pytest.approx(att["d_returned"][ia].mean() / scale)
        assert v["noisy"]["estimate"] == pytest.approx(att["d_noisy"][ia].mean() / scale)
        changed = (att["final_class"] != att["labels"])[ia]
        assert v["attack_class_change"]["n"] == int(changed.sum())
        for name in NAMES:
            row = v["corruptions"][name]
            d = arrays[f"displacement/{kind}/Y10/{name}"][:, ic]
            assert row["displacement"] == pytest.approx(d.mean(axis=1).tolist())
            est = v["attack"]["estimate"]
            assert row["over_attack"] == pytest.approx([x / est for x in row["displacement"]])
            beyond = [s for s in range(1, 6) if row["displacement"][s] >= est]
            assert row["first_severity_beyond_attack"] == (beyond[0] if beyond else None)
        # The relative drop's difference from the baseline is paired on the same galaxies.
        if kind != "baseline":
            diff = c["relative_drop_vs_baseline"][kind]["Y10"]
            drops = [c["measures"][k]["Y10"]["relative_drop"]["estimate"]
                     for k in (kind, "baseline")]
            assert diff["estimate"] == pytest.approx(drops[0] - drops[1])
            assert diff["low"] <= diff["estimate"] <= diff["high"] and diff["n"] == N


# --------------------------------------------------------------------------- outputs


def test_results_report_figures_and_tensorboard(finished):
    res, out = finished["results"], finished["out"]
    with open(os.path.join(out, "results.json")) as f:
        assert json.load(f)["corruptions"] == res["corruptions"]
    c = res["corruptions"]
    table = c["severity_table"]
    assert list(table) == NAMES
    assert table["calibration"]["parameters"] == {"zero-point error [mag]":
                                                  [0.01, 0.02, 0.05, 0.1, 0.2]}
    assert table["trail"]["stage"] == "flux" and table["quantise"]["stage"] == "image"
    assert "first 12 test galaxies at Y10" in c["conventions"]
    assert "quantise on the observed image, before the stretch" in c["conventions"]
    # Figures: one heat map per model, one displacement panel per model.
    assert set(res["figures"]) == set(study.FIGURES) | set(study.CORRUPTION_FIGURES)
    sizes = {}
    for name in study.CORRUPTION_FIGURES:
        path = os.path.join(out, res["figures"][name])
        sizes[name] = png_size(path)
        assert os.path.getsize(path) > 5000
    w, h = sizes["corruption_accuracy"]
    assert w >= 2 * 300 and 150 <= h <= 1000, sizes
    w, h = sizes["corruption_displacement"]
    assert w >= 2 * 450 and 300 <= h <= 800, sizes
    with open(os.path.join(out, "report.md")) as f:
        text = f.read()
    section = text[text.index("## Corruptions"):]
    for needle in ("first 12 test galaxies", "| `baseline` | Y10 |", "held-out accuracy",
                   "severity 3", "severity 5", "one-pixel attack", "source -> target depth",
                   "worst corruptions",
                   "zero-point error [mag]", "](figures/corruption_accuracy.png)",
                   "](figures/corruption_displacement.png)"):
        assert needle in section, needle
    m = c["measures"]["corrupt-aug"]["Y10"]
    assert f"{100 * m['mean_accuracy']['estimate']:.1f} [" in section
    assert text.index("## One-pixel attacks") < text.index("## Corruptions")
    for kind in KINDS:
        assert study_scalars(out, kind)["study/corruption_accuracy"] == pytest.approx(
            c["measures"][kind]["Y10"]["mean_accuracy"]["estimate"], abs=1e-6)


def study_scalars(out, kind):
    """The study measures of member `kind` in its TensorBoard HParams session."""
    import tensorflow as tf
    (events,) = glob.glob(os.path.join(out, "runs", kind, "hparams", "study",
                                       "events.out.tfevents.*"))
    return {v.tag: float(tf.make_ndarray(v.tensor))
            for e in tf.compat.v1.train.summary_iterator(events) for v in e.summary.value}


# --------------------------------------------------------------------------- caching


def rerun(cfg, out):
    calls = collections.Counter()
    with pytest.MonkeyPatch.context() as mp:
        counting_stages(mp, calls, classes=COUNTED)
        results = study.run(cfg, out, progress=False, train_verbose=0)
    return results, calls


def test_rerun_reuses_the_stage_and_a_changed_n_reruns_it(finished):
    cfg, out = finished["cfg"], finished["out"]
    results, calls = rerun(cfg, out)
    assert sum(calls.values()) == 0
    assert results["corruptions"] == finished["results"]["corruptions"]
    before = stage_arrays(out, "corruptions")
    smaller = config.merge(cfg, {"study": {"corruption_n": 6}})
    results, calls = rerun(smaller, out)
    assert calls == {"corruptions": 1, "figures": 1, "report": 1}  # no training, no attack
    assert results["corruptions"]["n"] == 6
    after = stage_arrays(out, "corruptions")
    for key, value in before.items():  # the same first galaxies get the same images
        if key.startswith("galaxies/"):
            np.testing.assert_array_equal(after[key], value[:6])
        else:
            np.testing.assert_allclose(after[key], value[:, :6], rtol=1e-4, atol=1e-5)


def test_skipped_without_corruptions(finished):
    cfg = config.merge(finished["cfg"], {"study": {"corruptions": []}})
    results, calls = rerun(cfg, finished["out"])
    assert calls == {"corruptions": 1, "figures": 1, "report": 1}
    reason = results["corruptions"]["skipped"]
    assert "study.corruptions is empty" in reason
    assert set(results["figures"]) == set(study.FIGURES)
    with open(os.path.join(finished["out"], "report.md")) as f:
        text = f.read()
    assert f"## Corruptions: what surveys do to images\n\nSkipped: {reason}" in text
    assert "study/corruption_accuracy" not in study_scalars(finished["out"], "baseline")


# --------------------------------------------------------------------------- refusal


def test_noisy_imported_data_refuses_seeing_before_training(tmp_path):
    write_study_npy(tmp_path / "zenodo")
    manifest = data.import_npy(str(tmp_path / "zenodo"), str(tmp_path / "imported"))
    cfg = study.load_config(overrides=[
        f'data.dir="{manifest.root}"', "data.mock=false", 'study.models=["baseline"]',
        'study.corruptions=["trail", "seeing"]'])
    calls = collections.Counter()
    with pytest.MonkeyPatch.context() as mp:
        counting_stages(mp, calls, classes=COUNTED)
        with pytest.raises(ConfigError) as err:
            study.run(cfg, tmp_path / "out", progress=False)
    assert err.value.key == "study.corruptions"
    message = str(err.value)
    assert "'seeing'" in message and "noise baked in" in message and "blurring" in message
    assert sum(calls.values()) == 0  # refused before any stage, training included
    assert not os.path.exists(tmp_path / "out" / "models")
