"""tfgal-study end to end on tiny data: numbers, figures, report, resumption, imported data."""

import collections
import csv
import dataclasses
import json
import os
import struct

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from sklearn import metrics as skm

from tfgal import cli, config, data, seeds, study, survey
from tfgal.attack import apply_pixels
from tfgal.data import pipeline, stretch
from tfgal.errors import ConfigError
from tfgal.model import export, training
from tfgal.study import attacks, models, outputs, report, runner, store

SIZE = 16
# Small but learnable: 2 x 150 steps of 16 galaxies. Faint galaxies, so that Y1 noise hurts
# (tiny blobs bright enough to survive Y1 would show no depth effect). The lenient attack
# threshold (true-class probability below 0.9) makes successes likely on so small a model.
TINY_TOML = """
seed = 0
[data]
dir = "{data}"
mock = false
[train]
epochs = 2
steps_per_epoch = 150
batch_size = 16
learning_rate = 1e-3
[log]
images = 0
projector = 0
[loss]
mmd_weight = 0.01
[study]
models = ["baseline", "target-bn", "mmd", "depth-aug", "depth-aug+mmd"]
attack_n = 12
attack_popsize = 30
attack_iters = 8
attack_threshold = 0.9
curve_per_decade = 1
isomap_n = 12
isomap_neighbors = 8
church_windows = 2
church_grid = 9
"""


def galaxy_images(labels, rng, size=SIZE):
    """Faint class-shaped blobs (e-/s per pixel): 0 wide and blue, 1 compact and red,
    2 two blobs."""
    yy, xx = np.mgrid[:size, :size]
    out = np.empty((len(labels), size, size, 3), np.float32)

    def blob(cx, cy, w):
        return np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * w * w))

    for k, c in enumerate(labels):
        cx, cy = rng.uniform(size * 0.4, size * 0.6, 2)
        if c == 0:
            profile, colour = blob(cx, cy, rng.uniform(3.0, 4.0)), (4.0, 3.0, 2.0)
        elif c == 1:
            profile, colour = blob(cx, cy, rng.uniform(1.0, 1.5)), (1.0, 3.0, 6.0)
        else:
            d = rng.uniform(2.5, 4.0)
            profile, colour = blob(cx + d, cy, 1.5) + blob(cx - d, cy, 1.5), (2.0, 4.0, 4.0)
        out[k] = profile[..., None] * np.array(colour) * rng.uniform(0.05, 0.15)
    return out


def write_galaxies(root, counts=(60, 15, 24), seed=0):
    rng = np.random.default_rng(seed)
    galaxy_id, sample = 0, []
    with data.DatasetWriter(root, images={"flux": {"noise": False}},
                            image_shape=(SIZE, SIZE, 3), shard_size=16) as writer:
        for split, n in zip(data.SPLITS, counts):
            labels = np.arange(n) % 3
            for image, label in zip(galaxy_images(labels, rng), labels):
                writer.add(split, {"flux": image}, int(label), galaxy_id)
                galaxy_id += 1
                if split == "train":
                    sample.append(image)
        fitted = stretch.fit(np.stack(sample), noiseless=True, depth=survey.Y10, seed=seed)
        return writer.finish(stretch=fitted, generator={"name": "tests.galaxies", "seed": seed})


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


STAGE_CLASSES = (models.Evaluate, models.Curve, attacks.Attack, attacks.Distances,
                 attacks.Latent, attacks.Church, outputs.Figures, runner.Report)
KINDS = ("baseline", "target-bn", "mmd", "depth-aug", "depth-aug+mmd")


def counting_stages(monkeypatch, calls, fail=(), classes=STAGE_CLASSES):
    """Counts each stage's runs by stage name in `calls` (and trainings as "train");
    stages named in `fail` raise."""
    def train(*args, original=training.train, **kwargs):
        calls["train"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(training, "train", train)
    for cls in classes:
        def wrapped(self, ctx, inputs, original=cls.run):
            calls[self.name] += 1
            if self.name in fail:
                raise RuntimeError(f"{self.name} interrupted")
            return original(self, ctx, inputs)

        monkeypatch.setattr(cls, "run", wrapped)


def tiny_study(root, toml):
    """(manifest, config path, resolved config, output directory) of a tiny study in `root`
    whose config is `toml` with ``{data}`` filled in."""
    manifest = write_galaxies(str(root / "data"))
    config_path = root / "tiny.toml"
    config_path.write_text(toml.format(data=manifest.root))
    return manifest, config_path, study.load_config(config_path), str(root / "out")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A study interrupted at the church stage, then resumed to the end."""
    manifest, config_path, cfg, out = tiny_study(tmp_path_factory.mktemp("study"), TINY_TOML)
    first = collections.Counter()
    with pytest.MonkeyPatch.context() as mp:
        counting_stages(mp, first, fail=("church",))
        with pytest.raises(RuntimeError, match="interrupted"):
            study.run(cfg, out, progress=False, train_verbose=0)
    stage_dir = os.path.join(out, "stages")
    before = {n: os.stat(os.path.join(stage_dir, n)).st_mtime_ns for n in os.listdir(stage_dir)}
    calls = collections.Counter()
    with pytest.MonkeyPatch.context() as mp:
        counting_stages(mp, calls)
        results = study.run(cfg, out, progress=False, train_verbose=0)
    return {"cfg": cfg, "out": out, "config_path": str(config_path), "results": results,
            "before": before, "calls": calls, "manifest": manifest}


def stage_arrays(out, name):
    with np.load(os.path.join(out, "stages", f"{name}.npz")) as f:
        return {k: f[k] for k in f.files}


# --------------------------------------------------------------------------- resumption


def test_resumes_after_an_interrupted_stage(finished):
    before, calls = finished["before"], finished["calls"]
    names = study.stage_names(finished["cfg"])
    assert names[:5] == [f"train_{k}" for k in KINDS]
    done_first = {f"{s}.json" for s in names[:names.index("church")]}
    assert done_first <= set(before)
    assert not {"church.json", "figures.json", "report.json"} & set(before)
    # The resumed run redid only the interrupted stage and those after it.
    assert calls["train"] == 0
    assert all(calls[m] == 0 for m in ("evaluate", "curve", *(f"attack_{k}" for k in KINDS),
                                       "distances", "latent"))
    assert calls["church"] == 1 and calls["figures"] == 1 and calls["report"] == 1
    stage_dir = os.path.join(finished["out"], "stages")
    for name, mtime in before.items():
        assert os.stat(os.path.join(stage_dir, name)).st_mtime_ns == mtime, name
    times = finished["results"]["run_times"]["stages"]
    assert list(times) == names[:-1]  # the report cannot time itself
    assert times["evaluate"]["reused"] and not times["church"]["reused"]
    leftovers = [n for n in os.listdir(stage_dir) if ".tmp-" in n]
    assert leftovers == []


def test_models_reused_only_when_the_config_matches(finished):
    cfg, out = finished["cfg"], finished["out"]
    same = study.Study(cfg, out, progress=False).ctx
    assert same.labels == list(KINDS)
    assert all(models.Train(kind).model_matches(same) for kind in KINDS)
    other = config.merge(cfg, {"train": {"learning_rate": 5e-4}})
    changed = study.Study(other, out, progress=False).ctx
    assert not any(models.Train(kind).model_matches(changed) for kind in KINDS)
    for kind in KINDS:
        assets = export.load(os.path.join(out, "models", kind)).assets
        assert assets["config"] == store.plain(same.derived[kind].to_dict())
    # Each control differs from the config only by its switches (same seed and budget).
    d = same.derived
    switches = {k: (d[k].loss.mmd_weight, d[k].loss.feed_target, d[k].data.depth_augment)
                for k in KINDS}
    assert switches == {"baseline": (0.0, False, False), "target-bn": (0.0, True, False),
                        "mmd": (0.01, False, False), "depth-aug": (0.0, False, True),
                        "depth-aug+mmd": (0.01, False, True)}
    for kind in KINDS:
        assert d[kind].train == cfg.train and d[kind].model == cfg.model and d[kind].seed == 0
    assert "study" not in d["mmd"].to_dict()
    # The results give each model's loss weights as a dict (the report's table reads them).
    for kind in KINDS:
        assert finished["results"]["members"][kind]["loss"] == d[kind].to_dict()["loss"]


# --------------------------------------------------------------------------- numbers


def test_metrics_match_sklearn_on_the_stored_predictions(finished):
    res, out = finished["results"], finished["out"]
    arrays = stage_arrays(out, "evaluate")
    labels = arrays["labels"]
    assert len(labels) == 24 and res["dataset"]["counts"]["test"] == 24
    for kind in KINDS:
        for depth in ("Y10", "Y1"):
            probs = arrays[f"probabilities/{kind}/{depth}"]
            got, pred = res["evaluation"][kind][depth], probs.argmax(1)
            assert got["accuracy"] == pytest.approx(skm.accuracy_score(labels, pred))
            assert got["f1/weighted"] == pytest.approx(
                skm.f1_score(labels, pred, average="weighted", zero_division=0))
            assert got["precision/weighted"] == pytest.approx(
                skm.precision_score(labels, pred, average="weighted", zero_division=0))
            assert got["recall/spiral"] == pytest.approx(
                skm.recall_score(labels == 0, pred == 0))
            assert got["brier"] == pytest.approx(
                skm.brier_score_loss(labels, probs, labels=[0, 1, 2]), rel=1e-5)
            assert got["roc_auc/macro"] == pytest.approx(
                skm.roc_auc_score(labels, probs, multi_class="ovr"), rel=1e-6)
            assert got["confusion"] == skm.confusion_matrix(labels, pred).tolist()
            conf = probs.astype(np.float64).max(1)
            ece = sum(abs(np.mean(pred[b] == labels[b]) - conf[b].mean()) * b.sum()
                      for b in ((conf > lo) & (conf <= lo + 1 / 15)
                                for lo in np.arange(15) / 15) if b.any()) / len(labels)
            assert got["ece"] == pytest.approx(ece, rel=1e-9)
            assert res["reliability"][kind][depth]["ece"] == got["ece"]
            assert sum(res["reliability"][kind][depth]["count"]) == 24
    # The predictions are the exported model's on the pipeline's images.
    model = export.load(os.path.join(out, "models", "mmd"))
    images = pipeline.load_arrays(finished["manifest"], "test", "Y1")["images"]
    np.testing.assert_allclose(model.predict(images)["probabilities"],
                               arrays["probabilities/mmd/Y1"], atol=1e-5)
    # The study's effect, on data built to show it: noise hurts the baseline.
    base = res["evaluation"]["baseline"]
    assert base["Y10"]["accuracy"] > base["Y1"]["accuracy"]


def test_robustness_curve_passes_through_both_depths(finished):
    res = finished["results"]
    curve = res["robustness_curve"]
    years = curve["years"]
    assert years == pytest.approx([0.1, 1, 10, 20])
    assert years[0] == pytest.approx(0.1) and years[-1] == pytest.approx(20)
    for kind in KINDS:
        acc = dict(zip(curve["depths"], curve["models"][kind]["accuracy"]))
        # Same galaxies, same per-galaxy noise seeds: 10y and 1y are the Y10 and Y1 images.
        assert acc["10y"] == pytest.approx(res["evaluation"][kind]["Y10"]["accuracy"])
        assert acc["1y"] == pytest.approx(res["evaluation"][kind]["Y1"]["accuracy"])
        assert curve["models"][kind]["n"] == [24] * 4


def test_attack_numbers(finished):
    res, out, s = finished["results"], finished["out"], finished["cfg"].study
    base = pipeline.load_arrays(finished["manifest"], "test", "Y10", n=s.attack_n)
    evaluated = stage_arrays(out, "evaluate")
    successes = 0
    for kind in KINDS:
        a, arrays = res["attack"][kind], stage_arrays(out, f"attack_{kind}")
        # Only the galaxies the model classifies correctly at Y10 are attacked.
        pred = evaluated[f"probabilities/{kind}/Y10"][:12].argmax(1)
        correct = pred == evaluated["labels"][:12]
        np.testing.assert_array_equal(arrays["galaxy_id"], base["galaxy_id"][correct])
        np.testing.assert_array_equal(arrays["original_class"], arrays["labels"])
        assert a["n_galaxies"] == 12 and a["n_misclassified"] == int((~correct).sum())
        assert a["n_correct"] == a["n_attacked"] + a["n_already_adversarial"] == correct.sum()
        assert a["n_success"] == int(arrays["success"].sum())
        # Both rules, read on the returned images, with their counts and intervals.
        changed = arrays["final_class"] != arrays["labels"]
        rates = a["rates"]
        assert rates["class_change"]["k"] == int(changed.sum())
        assert rates["paper"]["k"] == a["n_success"]
        assert rates["class_change"]["n"] == rates["paper"]["n"] == a["n_attacked"]
        for r in rates.values():
            if r["n"]:
                assert r["low"] <= r["rate"] <= r["high"]
        np.testing.assert_allclose(arrays["d_attack"][arrays["success"]],
                                   arrays["d_returned"][arrays["success"]])
        if a["n_attacked"]:
            assert a["success_rate"] == pytest.approx(a["n_success"] / a["n_attacked"])
        assert a["settings"]["popsize"] == 30 and a["settings"]["threshold"] == 0.9
        assert a["settings"]["init"] == "bounds"
        assert a["queries"]["total"] == int(arrays["queries"].sum())
        assert np.all(arrays["queries"] <= 1 + 30 * 9)
        d = a["latent_distance"]
        assert d["attack"]["n"] == a["n_success"]
        if a["n_success"]:
            assert d["attack"]["mean"] == pytest.approx(np.nanmean(arrays["d_attack"]))
        assert d["noisy"]["mean"] == pytest.approx(arrays["d_noisy"].mean())
        # The stored pixels reproduce the attacked images and their latent distances.
        model = export.load(os.path.join(out, "models", kind))
        images, labels = base["images"][correct], base["labels"][correct]
        attacked = apply_pixels(images, arrays["pixels"], arrays["values"])
        won = arrays["success"]
        lat0, lat1 = (model.predict(x)["latent"] for x in (images, attacked))
        np.testing.assert_allclose(np.linalg.norm(lat1 - lat0, axis=1)[won],
                                   arrays["d_attack"][won], rtol=1e-4, atol=1e-5)
        true_prob = model.predict(attacked)["probabilities"][np.arange(len(labels)), labels]
        assert np.all(true_prob[won] < 0.9)
        with open(os.path.join(out, f"attacks_{kind}.csv")) as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == correct.sum()
        assert sum(r["success"] == "True" for r in rows) == a["n_success"]
        successes += a["n_success"]
    assert successes > 0  # otherwise the church and isomap checks below prove little
    # The paper's DA / baseline ratio is taken on the same galaxies for both models.
    ratio = res["latent_distance_ratio"]["noisy"]
    shift = [np.linalg.norm(evaluated[f"latents/{k}/Y1"] - evaluated[f"latents/{k}/Y10"],
                            axis=1).mean() for k in ("mmd", "baseline")]
    assert ratio["ratio"] == pytest.approx(shift[0] / shift[1]) and ratio["n"] == 12


def test_scale_free_distances(finished):
    res, out = finished["results"], finished["out"]
    evaluated = stage_arrays(out, "evaluate")
    common = evaluated["galaxy_id"][:12]  # isomap_n: the same galaxies for every model
    per_model = res["latent_measures"]["per_model"]
    for kind in KINDS:
        arrays = stage_arrays(out, f"attack_{kind}")
        lat = evaluated[f"latents/{kind}/Y10"]
        pairs = [np.linalg.norm(lat[i] - lat[j]) for i in range(len(lat))
                 for j in range(i + 1, len(lat))]
        scale = per_model[kind]["scale"]
        assert scale == pytest.approx(np.median(pairs), rel=1e-6)
        shift = np.linalg.norm(evaluated[f"latents/{kind}/Y1"] - lat, axis=1)
        assert per_model[kind]["noisy"]["estimate"] == pytest.approx(shift.mean() / scale)
        assert per_model[kind]["noisy"]["n"] == 12
        assert per_model[kind]["returned"]["estimate"] == pytest.approx(
            arrays["d_returned"].mean() / scale)
        # Under each rule, attack and shift are measured on the same successful galaxies.
        changed = arrays["final_class"] != arrays["labels"]
        cc = per_model[kind]["class_change"]
        assert cc["n"] == cc["attack"]["n"] == cc["noisy"]["n"] == int(changed.sum())
        if changed.any():
            assert cc["noisy"]["estimate"] == pytest.approx(
                arrays["d_noisy"][changed].mean() / scale)
        row = res["latent"][kind]
        assert row["scale"]["mean"] == scale and row["scale"]["std"] is None
    # Each model against its seed's baseline, on galaxies chosen before the outcome.
    base = stage_arrays(out, "attack_baseline")
    for kind in KINDS[1:]:
        arrays = stage_arrays(out, f"attack_{kind}")
        both = sorted(set(base["galaxy_id"]) & set(arrays["galaxy_id"]))
        paired = res["latent_measures"]["vs_baseline"][kind]
        assert paired["attacked"]["galaxy_id"] == both  # attacked by both, success or not
        assert paired["noisy"]["galaxy_id"] == common.tolist()
        if both:
            da = dict(zip(arrays["galaxy_id"], arrays["d_returned"]))
            db = dict(zip(base["galaxy_id"], base["d_returned"]))
            raw = np.mean([da[g] for g in both]) / np.mean([db[g] for g in both])
            assert paired["attacked"]["raw"]["estimate"] == pytest.approx(raw)
            scales = [per_model[k]["scale"] for k in (kind, "baseline")]
            assert paired["attacked"]["scaled"]["estimate"] == pytest.approx(
                raw * scales[1] / scales[0])
    assert "baseline" not in res["latent_measures"]["vs_baseline"]


def test_controlled_table(finished):
    res = finished["results"]
    table, ev = res["controlled"], res["evaluation"]
    assert list(table) == list(KINDS)
    for kind in KINDS:
        row = table[kind]
        assert row["accuracy_target"]["values"] == [ev[kind]["Y1"]["accuracy"]]
        assert row["accuracy_target"]["std"] is None  # one seed: no spread to show
        rates = res["attack"][kind]["rates"]
        assert row["attack_class_change"]["mean"] == rates["class_change"]["rate"]
        assert row["attack_paper"]["mean"] == rates["paper"]["rate"]
        assert row["attack_rates"]["class_change"]["per_seed"][0]["k"] == \
            rates["class_change"]["k"]
        assert row["ece_source"]["mean"] == ev[kind]["Y10"]["ece"]
        curve = res["robustness_curve"]["models"][kind]["accuracy"]
        assert row["curve_mean_accuracy"]["mean"] == pytest.approx(np.mean(curve))
        for ref in ("baseline", "target-bn"):
            if kind == ref:
                assert f"gain_over_{ref}" not in row
                continue
            gain = row[f"gain_over_{ref}"]["target"]
            assert gain["mean"] == pytest.approx(ev[kind]["Y1"]["accuracy"]
                                                 - ev[ref]["Y1"]["accuracy"])
            ci = gain["ci95"]
            assert ci["n_galaxies"] == 24 and ci["covers"] == "galaxies"
            assert ci["identical"] or ci["low"] <= gain["mean"] <= ci["high"]


def test_church_windows_and_isomap(finished):
    res, out = finished["results"], finished["out"]
    church, latent = stage_arrays(out, "church"), stage_arrays(out, "latent")
    coords = church["coords"]
    assert coords.tolist() == [-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0]
    zero, one = 4, 6
    for kind in KINDS:
        attacks = stage_arrays(out, f"attack_{kind}")
        windows = res["church_windows"][kind]
        changed = attacks["final_class"] != attacks["labels"]  # the class-change rule
        assert len(windows) == min(2, int(changed.sum()))
        assert church[f"classes/{kind}"].shape == (len(windows), 9, 9)
        for grid, w in zip(church[f"classes/{kind}"], windows):
            # The base image at (0, 0) and the attacked one at (1, 0), through classify_latent.
            assert grid[zero, zero] == attacks["original_class"][w["index"]]
            assert grid[zero, one] == attacks["final_class"][w["index"]]
            assert sum(w["class_share"]) == pytest.approx(1.0)
        group = latent[f"group/{kind}"]
        assert latent[f"embedding/{kind}"].shape == (len(group), 2)
        assert (group == 0).sum() == (group == 1).sum() == 12  # isomap_n
        assert (group == 2).sum() == changed.sum()


# --------------------------------------------------------------------------- outputs


def test_figures_are_pngs(finished):
    res, out = finished["results"], finished["out"]
    assert set(res["figures"]) == set(study.FIGURES)
    for name, rel in res["figures"].items():
        path = os.path.join(out, rel)
        width, height = png_size(path)
        assert 300 <= width <= 4000 and 200 <= height <= 4000, (name, width, height)
        assert os.path.getsize(path) > 5000, name


def test_report_and_results(finished):
    res, out = finished["results"], finished["out"]
    with open(os.path.join(out, "results.json")) as f:
        assert json.load(f) == res  # strict JSON (no NaN) that round-trips
    assert res["config"] == store.plain(finished["cfg"].to_dict())
    assert res["paper"] == store.plain(report.PAPER)
    assert res["seeds"] == [0] and res["kinds"] == list(KINDS)
    assert res["seed_streams"]["root"] == 0
    assert res["seed_streams"]["attack"] == seeds.derive(0, "attack")
    assert {"tensorflow", "keras", "scikit-learn", "matplotlib", "tfgal"} <= set(res["versions"])
    assert res["run_times"]["total_s"] > 0
    rows = {r["quantity"]: r for r in res["paper_comparison"]}
    assert rows["accuracy at Y10, no DA"]["paper_resnet18"] == 0.722
    assert rows["accuracy at Y1, no DA"]["study"] == res["evaluation"]["baseline"]["Y1"]["accuracy"]
    assert rows["latent distance base -> Y1, DA / baseline (raw)"]["paper_convnet"] == \
        pytest.approx(9.2 / 7.5)
    # Each row names its galaxies; the depth shift is on the same ones for both models.
    for model in ("baseline", "mmd"):
        row = rows[f"latent distance base -> Y1, {model}"]
        assert row["galaxies"].startswith("the first 12 test galaxies")
        m = res["latent_measures"]["per_model"][model]
        assert row["study"] == pytest.approx(m["noisy"]["estimate"] * m["scale"])
    assert rows["accuracy gain at Y1 from DA"]["paper_bound"]
    with open(os.path.join(out, "report.md")) as f:
        text = f.read()
    for rel in res["figures"].values():
        assert f"]({rel})" in text
    for needle in ("## The controlled table", "## Where the domain-adaptation gain comes from",
                   "## Latent distances, scale-free", "## The paper's headline figures",
                   "paper, ResNet18", "0.722", "18.6", "## Robustness to survey depth",
                   "## One-pixel attacks", "misclassified (skipped)", "Church windows",
                   "Training seeds [0]", "Versions:", "`target-bn`: target images"):
        assert needle in text, needle
    # The report opens with the controlled table.
    assert text.index("## The controlled table") < text.index("## The paper's headline")
    acc = res["evaluation"]["baseline"]["Y10"]["accuracy"]
    assert f"| baseline | Y10 | {acc:.3g} |" in text
    row = res["controlled"]["target-bn"]
    gain = row["gain_over_baseline"]["target"]
    assert (f"| `target-bn` | {100 * row['accuracy_source']['mean']:.1f} | "
            f"{100 * row['accuracy_target']['mean']:.1f} |") in text
    if gain["ci95"]["identical"]:
        assert f"{100 * gain['mean']:.1f} (no galaxy differs)" in text
    else:
        assert f"{100 * gain['mean']:.1f} [{100 * gain['ci95']['low']:.1f}, " in text
    # Attack rates under both rules, with counts and intervals, in the controlled table.
    rate = res["attack"]["target-bn"]["rates"]["class_change"]
    if rate["n"]:
        assert f"{100 * rate['rate']:.1f} ({rate['k']}/{rate['n']}) [" in text
    for needle in ("attack: class change", "attack: paper's rule", "Clopper-Pearson",
                   f"({finished['cfg'].study.ece_bins} bins)", "galaxies both models attacked"):
        assert needle in text, needle


def test_cli_reuses_the_finished_study(finished, capsys):
    calls = collections.Counter()
    with pytest.MonkeyPatch.context() as mp:
        counting_stages(mp, calls)
        status = cli.study_main(["--config", finished["config_path"], "--out", finished["out"],
                                 "--quiet"])
    assert status == 0 and sum(calls.values()) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["accuracy"]["baseline"]["Y10"] == \
        finished["results"]["evaluation"]["baseline"]["Y10"]["accuracy"]


# --------------------------------------------------------------------------- adding a stage


@dataclasses.dataclass
class MeanOutput:
    mean: dict                               # {kind: mean probability of class 0}
    per_class: dict = store.array_field()    # {kind: [K] mean probabilities}


class MeanProbability(study.Stage):
    """A stage added by a test: one class, one line in the stage list."""

    name, deps, Output = "mean_probability", ("evaluate",), MeanOutput

    def __init__(self, scale=1.0):
        self.scale = scale

    def settings(self, ctx):
        return {"scale": self.scale}

    def run(self, ctx, inputs):
        probs = {k: inputs["evaluate"].probabilities[k][ctx.target] for k in ctx.labels}
        return MeanOutput(mean={k: self.scale * float(p[:, 0].mean()) for k, p in probs.items()},
                          per_class={k: self.scale * p.mean(axis=0) for k, p in probs.items()})


def test_an_added_stage_runs_resumes_and_is_reused(finished):
    cfg, out = finished["cfg"], finished["out"]

    def run_with(stage, calls, fail=()):
        with pytest.MonkeyPatch.context() as mp:
            counting_stages(mp, calls, fail=fail, classes=(MeanProbability, *STAGE_CLASSES))
            s = study.Study(cfg, out, progress=False, stages=[*study.default_stages(cfg), stage])
            s.run()
        return s.ctx.records["mean_probability"]

    calls = collections.Counter()
    with pytest.raises(RuntimeError, match="interrupted"):
        run_with(MeanProbability(), calls, fail=("mean_probability",))
    assert not os.path.exists(os.path.join(out, "stages", "mean_probability.json"))
    first = run_with(MeanProbability(), calls)  # resumes
    probs = stage_arrays(out, "evaluate")["probabilities/mmd/Y1"]
    assert not first.reused and first.output.mean["mmd"] == pytest.approx(probs[:, 0].mean())
    stored = stage_arrays(out, "mean_probability")
    np.testing.assert_allclose(stored["per_class/mmd"], probs.mean(axis=0))
    again = run_with(MeanProbability(), calls)
    assert again.reused and again.id == first.id and again.output.mean == first.output.mean
    np.testing.assert_array_equal(again.output.per_class["baseline"],
                                  first.output.per_class["baseline"])
    scaled = run_with(MeanProbability(scale=2.0), calls)  # a changed setting reruns it
    assert not scaled.reused
    assert scaled.output.mean["mmd"] == pytest.approx(2 * first.output.mean["mmd"])
    assert calls == {"mean_probability": 3}  # the failed run, the resumed one, the rescaled
    # Its dependency must run before it.
    with pytest.raises(ValueError, match="evaluate"):
        study.Study(cfg, out, stages=[MeanProbability(), *study.default_stages(cfg)])
    with pytest.raises(ConfigError):
        study.Study(cfg, out).redo(["mean_probability"])


def test_changed_study_setting_reruns_only_what_depends_on_it(finished):
    cfg = config.merge(finished["cfg"], {"study": {"church_grid": 5}})
    calls = collections.Counter()
    with pytest.MonkeyPatch.context() as mp:
        counting_stages(mp, calls)
        results = study.run(cfg, finished["out"], progress=False)
        assert stage_arrays(finished["out"], "church")["coords"].tolist() == [-2, -1, 0, 1, 2]
        # --redo forces a stage whose inputs did not change.
        study.run(cfg, finished["out"], progress=False, redo=["latent"])
    assert calls == {"church": 1, "figures": 2, "report": 2, "latent": 1}
    assert results["config"]["study"]["church_grid"] == 5


# --------------------------------------------------------------------------- imported data


def write_study_npy(directory, sizes=(("train", 30), ("valid", 6), ("test", 9)), seed=1):
    """The paper's file layout (N x 3 x H x W, one-hot labels) with noise baked in."""
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    for split, n in sizes:
        labels = np.arange(n) % 3
        flux = galaxy_images(labels, rng) * 20
        y10 = flux + rng.normal(0, 0.05, flux.shape)
        y1 = flux + rng.normal(0, 0.2, flux.shape)
        for name, images in (("Y10", y10), ("Y1", y1)):
            np.save(os.path.join(directory, f"images_{name}_{split}.npy"),
                    images.transpose(0, 3, 1, 2).astype(np.float32))
        np.save(os.path.join(directory, f"labels_{split}.npy"), np.eye(3)[labels])


def test_imported_data_skips_the_curve_with_a_reason(tmp_path):
    write_study_npy(tmp_path / "zenodo")
    manifest = data.import_npy(str(tmp_path / "zenodo"), str(tmp_path / "imported"))
    assert not manifest.noiseless
    cfg = study.load_config(overrides=[
        f'data.dir="{manifest.root}"', "data.mock=false", "train.epochs=1",
        'study.models=["baseline", "mmd", "depth-aug"]',
        "train.steps_per_epoch=5", "train.batch_size=8", "log.images=0", "log.projector=0",
        "train.precise_bn_batches=0",
        "study.attack_n=4", "study.attack_popsize=8", "study.attack_iters=2",
        "study.isomap_n=6", "study.church_windows=1", "study.church_grid=5"])
    results = study.run(cfg, tmp_path / "out", progress=False, train_verbose=0)
    reason = results["robustness_curve"]["skipped"]
    assert "noise baked in" in reason and "Y1" in reason and "Y10" in reason
    assert "robustness_curve" not in results["figures"]
    assert set(results["figures"]) == set(study.FIGURES) - {"robustness_curve"}
    for rel in results["figures"].values():
        png_size(tmp_path / "out" / rel)
    assert results["evaluation"]["mmd"]["Y1"]["n"] == 9
    assert results["attack"]["baseline"]["n_galaxies"] == 4
    assert not results["dataset"]["noiseless"]
    text = (tmp_path / "out" / "report.md").read_text()
    assert f"Skipped: {reason}" in text


# --------------------------------------------------------------------------- config


def test_study_defaults_and_shipped_configs():
    cfg = study.load_config()
    assert cfg.study == config.StudyConfig()
    root = os.path.join(os.path.dirname(__file__), "..", "pipelines")
    quick = study.load_config(os.path.join(root, "quick.toml"))
    # The paper's 150 galaxies, with a smaller population and fewer generations.
    assert quick.study.attack_n == 150 and quick.study.attack_popsize < 400
    assert quick.study.attack_iters < 100
    # The quick recipe: whole passes, warm-up then cosine, fixed noise held in memory.
    t = quick.train
    assert (t.schedule, t.steps_per_epoch, t.epochs) == ("warmup-cosine", 0, 6)
    assert quick.data.cache and not quick.data.fresh_noise
    # The quick study has the four controls its 10-minute budget allows; quick-controls all.
    assert quick.study.models == ["baseline", "target-bn", "mmd", "depth-aug"]
    both = study.load_config(os.path.join(root, "quick-controls.toml"))
    assert both.study.models == list(config.DEFAULT_STUDY_MODELS)
    # The classical baseline measures no network: the quick study carries it, the other
    # two compare networks only.
    assert quick.study.morphology_n > 0 and both.study.morphology_n == 0
    classical = {"morphology_n": quick.study.morphology_n,
                 "morphology_train_n": quick.study.morphology_train_n}
    assert dataclasses.replace(both.study, models=quick.study.models, **classical) == quick.study
    assert (both.data, both.train, both.loss, both.model) == \
        (quick.data, quick.train, quick.loss, quick.model)
    defence = study.load_config(os.path.join(root, "quick-corruptions.toml"))
    assert defence.study.models == ["baseline", "corrupt-aug"]
    held_out = set(defence.study.corruptions) - set(defence.study.corruption_train)
    assert len(held_out) == 5 and set(defence.study.corruptions) == set(config.CORRUPTIONS)
    assert dataclasses.replace(defence.study, models=quick.study.models,
                               corruption_train=[], **classical) == quick.study
    assert (defence.data, defence.train, defence.loss, defence.model) == \
        (quick.data, quick.train, quick.loss, quick.model)
    for name in ("paper-convnet", "paper-resnet18"):
        paper = study.load_config(os.path.join(root, f"{name}.toml"))
        s = paper.study
        assert (s.attack.n, s.attack.popsize, s.attack.iters) == (150, 400, 100)
        # The paper's recipe (../shared/REFERENCE.md).
        t = paper.train
        assert (t.learning_rate, t.beta_1, t.beta_2, t.batch_size) == (1e-5, 0.7, 0.8, 128)
        assert (t.weight_decay_mode, t.weight_decay, t.source_only_weight_decay) == \
            ("l2", 1e-4, 1e-3)
        assert (t.schedule, t.precise_bn_batches, t.patience, t.epochs) == \
            ("constant", 0, 10, 100)
        assert not paper.data.augment and not paper.data.fresh_noise
        assert s.attack_init == "gaussian" and paper.loss.mmd_weight == 0.01
    depths = models.curve_years(study.Study(quick, "unused").ctx)
    assert len(depths) >= 8 and depths[0].years == pytest.approx(0.1)
    assert depths[-1].years == pytest.approx(20.0)


def test_unknown_study_key_lists_valid_keys():
    with pytest.raises(ConfigError) as err:
        study.load_config(overrides=["study.attack_nn=3"])
    assert err.value.key == "study.attack_nn" and "study.attack_n" in err.value.valid


@pytest.mark.parametrize("override, key", [
    ("study.attack_n=0", "study.attack_n"),
    ("study.attack_popsize=3", "study.attack_popsize"),
    ("study.attack_threshold=1.5", "study.attack_threshold"),
    ('study.split="dev"', "study.split"),
    ("study.curve_depths=[1, -2]", "study.curve_depths"),
    ('study.curve_depths="auto"', "study.curve_depths"),
    ("study.curve_min_years=30.0", "study.curve_min_years"),
    ("study.church_grid=2", "study.church_grid"),
    ("loss.mmd_weight=0", "loss.mmd_weight"),
    ('study.models=["baseline", "fancy"]', "study.models"),
    ('study.models=["mmd", "mmd"]', "study.models"),
    ("study.models=[]", "study.models"),
    ("study.seeds=[1, 1]", "study.seeds"),
    ("study.seeds=[-1]", "study.seeds"),
])
def test_bad_study_settings_name_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        study.load_config(overrides=[override])
    assert err.value.key == key


def test_controls_without_mmd_need_no_adaptation_loss():
    cfg = study.load_config(overrides=['study.models=["baseline", "target-bn", "depth-aug"]',
                                       "loss.mmd_weight=0"])
    assert [m.label for m in study.members(cfg)] == ["baseline", "target-bn", "depth-aug"]
    cfg = study.load_config(overrides=['study.models=["baseline", "mmd"]', "study.seeds=[3, 5]"])
    assert [(m.kind, m.seed, m.label) for m in study.members(cfg)] == [
        ("baseline", 3, "baseline_s3"), ("baseline", 5, "baseline_s5"),
        ("mmd", 3, "mmd_s3"), ("mmd", 5, "mmd_s5")]
    derived = study.derived_configs(cfg, "out")
    assert derived["mmd_s5"].seed == 5 and derived["baseline_s3"].loss.mmd_weight == 0
    assert derived["mmd_s5"].export.dir == os.path.join("out", "models", "mmd_s5")


def test_seeds_give_mean_and_spread(tmp_path):
    manifest = write_galaxies(str(tmp_path / "data"), counts=(45, 9, 12))
    cfg = study.load_config(overrides=[
        f'data.dir="{manifest.root}"', "data.mock=false", "train.epochs=1",
        "train.steps_per_epoch=10", "train.batch_size=8", "log.images=0", "log.projector=0",
        "train.precise_bn_batches=0",
        'study.models=["baseline", "target-bn"]', "study.seeds=[0, 1]", "loss.mmd_weight=0",
        "study.attack_n=4", "study.attack_popsize=8", "study.attack_iters=2",
        "study.attack_threshold=0.9", "study.curve_per_decade=1", "study.isomap_n=6",
        "study.church_windows=1", "study.church_grid=5", "study.bootstrap=50"])
    res = study.run(cfg, tmp_path / "out", progress=False, train_verbose=0)
    assert list(res["members"]) == ["baseline_s0", "baseline_s1", "target-bn_s0", "target-bn_s1"]
    ev = res["evaluation"]
    for kind in ("baseline", "target-bn"):
        values = [ev[f"{kind}_s{s}"]["Y1"]["accuracy"] for s in (0, 1)]
        row = res["controlled"][kind]["accuracy_target"]
        assert row["values"] == values and row["n"] == 2
        assert row["mean"] == pytest.approx(np.mean(values))
        assert row["std"] == pytest.approx(np.std(values, ddof=1))
    # Seeds change training: the two baselines differ.
    w = [export.load(tmp_path / "out" / "models" / f"baseline_s{s}").predict(
        np.zeros((1, SIZE, SIZE, 3), np.float32))["latent"] for s in (0, 1)]
    assert not np.array_equal(w[0], w[1])
    gain = res["controlled"]["target-bn"]["gain_over_baseline"]["target"]
    assert gain["values"] == pytest.approx([ev[f"target-bn_s{s}"]["Y1"]["accuracy"]
                                            - ev[f"baseline_s{s}"]["Y1"]["accuracy"]
                                            for s in (0, 1)])
    assert res["attack"]["target-bn_s1"]["settings"]["seed"] == seeds.derive(1, "attack")
    text = (tmp_path / "out" / "report.md").read_text()
    assert "mean ± standard deviation over seeds" in text and " ± " in text


def test_cli_reports_config_errors(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text("[study]\nattack_n = -1\n")
    assert cli.study_main(["--config", str(path), "--out", str(tmp_path / "s")]) == 2
    assert "study.attack_n" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "s")


def test_study_measures_reach_tensorboard(finished):
    """Each member's HParams session holds its study measures in a `study` group, which
    TensorBoard's HParams tab lists beside the training metrics (tests/test_tensorboard_live
    checks the server side)."""
    import glob
    import tensorflow as tf
    res, out = finished["results"], finished["out"]
    for label in KINDS:
        files = glob.glob(os.path.join(out, "runs", label, "hparams", "study",
                                       "events.out.tfevents.*"))
        assert len(files) == 1, files  # reruns replace, never add a second point
        values = {v.tag: float(tf.make_ndarray(v.tensor))
                  for e in tf.compat.v1.train.summary_iterator(files[0])
                  for v in e.summary.value}
        for depth in ("Y10", "Y1"):
            m = res["evaluation"][label][depth]
            assert values[f"study/accuracy_{depth}"] == pytest.approx(m["accuracy"], abs=1e-6)
            assert values[f"study/ece_{depth}"] == pytest.approx(m["ece"], abs=1e-6)
        rate = res["attack"][label]["success_rate"]
        if rate is None:  # nothing classified correctly, nothing attacked
            assert "study/attack_success" not in values
        else:
            assert values["study/attack_success"] == pytest.approx(rate, abs=1e-6)
            changed = res["attack"][label]["rates"]["class_change"]["rate"]
            assert values["study/attack_class_change"] == pytest.approx(changed, abs=1e-6)
