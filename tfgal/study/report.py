"""The study's report: ``results.json`` (every number) and ``report.md`` (figures embedded).

The report opens with the controlled table (every model kind, mean ± standard deviation
over seeds, gains over the baseline and the target-bn control with 95% intervals), then
the scale-free latent measures, then the paper comparison with every difference stated.

`PAPER` holds the headline figures published by Ciprijanovic et al. (2022), cited in
``PAPER["source"]``: data, not this package's measurements. They were measured on the
paper's data (TNG100 mock LSST images, 23,487 training galaxies) and sit beside this
study's numbers labelled as the paper's: the absolute latent distances depend on the
architecture and the data, so their DA / baseline ratios are the comparable part.
"""

from __future__ import annotations

import os
import platform

from tfgal import io
from tfgal.model import export
from tfgal.study import classical
from tfgal.study.markdown import (agg as _agg, ci as _ci, figure as _figure, fmt as _fmt,
                                   get as _get, pct as _pct, pct_ci as _pct_ci, pm as _pm,
                                   table as _table)

__all__ = ["PAPER", "write", "versions", "headline", "markdown"]

PAPER = {
    "source": "Ciprijanovic et al. 2022, Mach. Learn.: Sci. Technol. 3 035007 "
              "(arXiv:2112.14299), on the paper's own data (TNG100 mock LSST images)",
    "resnet18": {
        "accuracy": {"Y10": 0.722, "Y1": 0.429},
        "f1_weighted": {"Y10": 0.723, "Y1": 0.359},
        "distance_attack": {"baseline": {"mean": 18.57, "std": 6.01},
                            "adapted": {"mean": 41.88, "std": 20.79}},
        "distance_noisy": {"baseline": {"mean": 23.4}, "adapted": {"mean": 29.3}},
    },
    "convnet": {
        "distance_attack": {"baseline": {"mean": 3.00}, "adapted": {"mean": 3.76}},
        "distance_noisy": {"baseline": {"mean": 7.5}, "adapted": {"mean": 9.2}},
    },
    "da_gain_y1_accuracy_up_to": 0.23,
    "attack": {"n": 150, "popsize": 400, "iters": 100, "threshold": 0.05},
}


def write(out, results):
    """Writes ``results.json`` and ``report.md`` into `out`, each atomically."""
    io.write_json(os.path.join(out, "results.json"), results)
    io.write_text(os.path.join(out, "report.md"), markdown(results))
    return os.path.join(out, "report.md")


def versions():
    """Library versions behind the numbers."""
    import matplotlib
    import scipy
    import sklearn
    return {**export.library_versions(), "scikit-learn": sklearn.__version__,
            "scipy": scipy.__version__, "matplotlib": matplotlib.__version__,
            "python": platform.python_version()}


# --------------------------------------------------------------------------- numbers


def _ratio(a, b):
    return None if a is None or not b else a / b


def _diff(a, b):
    return None if a is None or b is None else a - b


def _first(results, kind):
    """The label of `kind`'s model at the first seed (None when the study has none)."""
    seed = results["seeds"][0]
    return next((label for label, m in results["members"].items()
                 if m["kind"] == kind and m["seed"] == seed), None)


# Differences from the paper, stated beside every comparison with it.
DIFFERENCES = (
    "data: tfgal's GalSim mocks (or imported files), not the paper's TNG100 images",
    "stretch: fitted once on training Y10 images (the paper: per split and depth)",
    "attacks: only correctly classified galaxies; the budget is the config's",
)


def headline(results):
    """Rows comparing the paper's headline figures with this study's (JSON-able): the
    first seed's baseline and mmd models."""
    ev, att = results["evaluation"], results.get("attack", {})
    src, tgt = results["depths"]["source"], results["depths"]["target"]
    base, da = _first(results, "baseline"), _first(results, "mmd")
    rows = []

    def row(quantity, paper_resnet, paper_convnet, study):
        rows.append({"quantity": quantity, "paper_resnet18": paper_resnet,
                     "paper_convnet": paper_convnet, "study": study})

    p = PAPER["resnet18"]
    for metric, key in (("accuracy", "accuracy"), ("f1_weighted", "f1/weighted")):
        for depth, paper_depth in ((src, "Y10"), (tgt, "Y1")):
            row(f"{metric} at {depth}, no DA", p[metric][paper_depth], None,
                _get(ev, base, depth, key))
    row(f"accuracy gain at {tgt} from DA", PAPER["da_gain_y1_accuracy_up_to"],
        None, _diff(_get(ev, da, tgt, "accuracy"), _get(ev, base, tgt, "accuracy")))
    for kind, label in (("attack", "base -> attacked"), ("noisy", f"base -> {tgt}")):
        for paper_model, model in (("baseline", base), ("adapted", da)):
            row(f"latent distance {label}, {model or paper_model}",
                _get(p, f"distance_{kind}", paper_model, "mean"),
                _get(PAPER["convnet"], f"distance_{kind}", paper_model, "mean"),
                _get(att, model, "latent_distance", kind, "mean"))
        row(f"latent distance {label}, DA / baseline (raw)",
            *(_ratio(_get(PAPER[m], f"distance_{kind}", "adapted", "mean"),
                     _get(PAPER[m], f"distance_{kind}", "baseline", "mean"))
              for m in ("resnet18", "convnet")),
            _get(results, "latent_distance_ratio", kind, "ratio"))
    return rows


# --------------------------------------------------------------------------- markdown


def markdown(results):
    """The report as Markdown; figures are linked relative to the study directory."""
    parts = [_intro(results), _controlled_md(results), _decomposition_md(results),
             _latent_table_md(results), _headline_md(results), _models_md(results),
             _classification_md(results), _curve_md(results), _attack_md(results),
             classical.markdown(results), classical.mock_check_markdown(results),
             _corruptions_md(results), _latent_md(results), _examples_md(results),
             _reproduce_md(results)]
    return "\n\n".join(p for p in parts if p) + "\n"


def _intro(results):
    seeds = results["seeds"]
    lines = [f"# Robustness study: {results['name']}", "",
             f"Generated {results['created']} by tfgal {results['versions'].get('tfgal')}; "
             f"dataset `{results['dataset']['root']}` ({results['dataset']['kind']}), "
             f"split `{results['split']}`; {results['model_name']} models, "
             f"{len(seeds)} training seed(s) ({', '.join(map(str, seeds))}). Every model is "
             "trained by the same code, data, seed and budget; only these switches differ:", ""]
    lines += [f"- `{k}`: {what}." for k, what in results["controls"].items()]
    clip = (results.get("stretch") or {}).get("lower_clip")
    lines += ["", "Stretch lower clip: " + (
        f"{clip['sigma']:g} sigma of sky noise below zero at {clip['depth']} "
        "(`data.stretch_clip = \"target-floor\"`)." if clip else
        "the fitted source-depth percentile (`data.stretch_clip = \"percentile\"`).")]
    return "\n".join(lines)


def _controlled_md(results):
    src, tgt = results["depths"]["source"], results["depths"]["target"]
    many = len(results["seeds"]) > 1
    rows = []
    for kind, r in results["controlled"].items():
        gains = [(_agg(_get(r, f"gain_over_{ref}", "target"), 100)
                  + _ci(_get(r, f"gain_over_{ref}", "target", "ci95"), 100)
                  if f"gain_over_{ref}" in r else "—") for ref in ("baseline", "target-bn")]
        rows.append((f"`{kind}`", _agg(r["accuracy_source"], 100), _agg(r["accuracy_target"], 100),
                     _agg(r["curve_mean_accuracy"], 100), _agg(r["attack_success"], 100),
                     _agg(r["ece_source"]), _agg(r["ece_target"]), *gains))
    spread = "mean ± standard deviation over seeds" if many else "one seed"
    classical = results.get("classical") or {}
    note = []
    if classical and not classical.get("skipped"):
        r = classical["row"]
        rows.append(("`classical` (†)", _pct(r["accuracy_source"]), _pct(r["accuracy_target"]),
                     _pct(r["curve_mean_accuracy"]), "—", _fmt(r["ece_source"]),
                     _fmt(r["ece_target"]), "—", "—"))
        note = ["", f"(†) statmorph measurements and a random forest, on the first "
                f"{classical['n_galaxies']} galaxies of the split only (the networks: "
                f"{results['evaluation_n']}); the networks on those same galaxies are in "
                "\"Classical morphology beside the networks\"."]
    return "\n".join([
        "## The controlled table", "",
        f"Accuracy and attack success in percent ({spread}); the mean accuracy is over the "
        "robustness curve's depths; attack success is over the galaxies each model "
        "classifies correctly; ECE is the expected calibration error (15 bins). Gains are "
        f"percentage points of accuracy at {tgt}, seed by seed against the same seed's "
        "control on the same galaxies, with a 95% paired bootstrap interval over galaxies.", "",
        _table(("model", f"accuracy {src}", f"accuracy {tgt}", "mean over curve",
                "attack success", f"ECE {src}", f"ECE {tgt}", "gain over baseline",
                "gain over target-bn"), rows), *note])


def _decomposition_md(results):
    c, tgt = results["controlled"], results["depths"]["target"]

    def gain(kind, ref):
        return _get(c, kind, f"gain_over_{ref}", "target", "mean")
    total, bn = gain("mmd", "baseline"), gain("target-bn", "baseline")
    if total is None or bn is None:
        return ""
    lines = ["## Where the domain-adaptation gain comes from", "",
             f"At {tgt}, the `mmd` model gains {_pct(total)} points over the baseline. "
             f"Feeding {tgt} images through the network with no adaptation loss (`target-bn`, "
             f"batch-norm statistics of both depths) gains {_pct(bn)}; the MMD term adds "
             f"{_pct(gain('mmd', 'target-bn'))} beyond that."]
    aug = gain("depth-aug", "baseline")
    if aug is not None:
        lines.append(f"Depth augmentation alone (labelled images at random depths, no target "
                     f"images) gains {_pct(aug)} points.")
    both = gain("depth-aug+mmd", "baseline")
    if both is not None:
        lines.append(f"Depth augmentation with MMD gains {_pct(both)} points.")
    return "\n".join(lines)


def _latent_table_md(results):
    rows = []
    for kind, r in results["latent"].items():
        vs = r.get("vs_baseline", {})
        rows.append((f"`{kind}`", _agg(r["scale"]),
                     _agg(r["attack"]) + _ci(r["attack_ci95_first_seed"]),
                     _agg(r["noisy"]) + _ci(r["noisy_ci95_first_seed"]),
                     _agg(r["attack_over_noisy"]) + _ci(r["attack_over_noisy_ci95_first_seed"]),
                     _agg(vs.get("scaled")) + _ci(_get(vs, "scaled", "ci95_first_seed")),
                     _agg(vs.get("raw")) + _ci(_get(vs, "raw", "ci95_first_seed")),
                     ", ".join(map(str, _get(vs, "scaled", "n_pairs") or [])) or "—"))
    tgt = results["depths"]["target"]
    return "\n".join([
        "## Latent distances, scale-free", "",
        "Each model's latent distances divided by its own scale, the median distance between "
        "different galaxies: `attack` base -> successfully attacked copy, `noisy` base -> the "
        f"same galaxy at {tgt}; `attack / noisy` per galaxy. `vs baseline`: the ratio of mean "
        "distances to the same seed's baseline on the galaxies attacked successfully under "
        "both (paired), scaled and raw. Brackets: 95% bootstrap intervals (first seed).", "",
        _table(("model", "scale", "attack / scale", "noisy / scale", "attack / noisy",
                "vs baseline (scaled)", "vs baseline (raw)", "pairs"), rows)])


def _headline_md(results):
    rows = [(r["quantity"], _fmt(r["paper_resnet18"]), _fmt(r["paper_convnet"]),
             _fmt(r["study"])) for r in results["paper_comparison"]]
    return "\n".join([
        "## The paper's headline figures beside this study's", "",
        f"Paper columns: {PAPER['source']}. They are the paper's numbers on the paper's "
        f"data, not reruns. This study: {results['model_name']} on "
        f"`{results['dataset']['root']}`, first seed. Differences: "
        + "; ".join(DIFFERENCES) + ". Raw distances depend on each model's latent scale; "
        "the scale-free table above is the comparable one.", "",
        _table(("quantity", "paper, ResNet18", "paper, ConvNet", "this study"), rows)])


def _models_md(results):
    rows = []
    for label, info in results["members"].items():
        loss = info["loss"]
        rows.append((label, info["kind"], info["seed"], _fmt(loss["mmd_weight"]),
                     str(loss.get("feed_target", False)), str(info.get("depth_augment")),
                     info.get("epochs", "n/a"), "reused" if info.get("reused") else "trained",
                     f"`{info['export_dir']}`"))
    return "\n".join(["## Models", "", _table(
        ("model", "kind", "seed", "MMD weight", "target through BN", "depth augmentation",
         "epochs run", "this run", "SavedModel"), rows)])


def _classification_md(results):
    ev, names = results["evaluation"], results["class_names"]
    rows, per_class = [], []
    for m, depths in ev.items():
        for depth, met in depths.items():
            rows.append((m, depth, _fmt(met["accuracy"]), _fmt(met["f1/weighted"]),
                         _fmt(met["brier"]), _fmt(met.get("ece")), _fmt(met["roc_auc/macro"])))
            for c in names:
                per_class.append((m, depth, c, _fmt(met[f"precision/{c}"]),
                                  _fmt(met[f"recall/{c}"]), _fmt(met[f"f1/{c}"]),
                                  met[f"support/{c}"]))
    return "\n".join([
        "## Classification at both depths", "",
        _table(("model", "depth", "accuracy", "F1 (w)", "Brier", "ECE",
                "ROC AUC (macro, one-vs-rest)"), rows), "",
        _figure(results, "reliability", "reliability diagrams"), "",
        "Per class:", "",
        _table(("model", "depth", "class", "precision", "recall", "F1", "support"), per_class),
        "", _figure(results, "confusion", "confusion matrices")])


def _curve_md(results):
    curve = results["robustness_curve"]
    head = "## Robustness to survey depth (beyond the paper)"
    if curve.get("skipped"):
        return f"{head}\n\nSkipped: {curve['skipped']}"
    labels = list(curve["models"])
    rows = [(d, _fmt(y), *(_fmt(curve["models"][m]["accuracy"][i]) for m in labels))
            for i, (d, y) in enumerate(zip(curve["depths"], curve["years"]))]
    return "\n".join([
        head, "", "The same noiseless test galaxies observed at each depth with on-the-fly "
        "noise (exposure linear in survey years); the figure shows each kind's mean over "
        "seeds.", "", _figure(results, "robustness_curve", "accuracy against depth"), "",
        _table(("depth", "years", *(f"{m} accuracy" for m in labels)), rows)])


def _attack_md(results):
    attack = results.get("attack", {})
    rows, dist = [], []
    for m, a in attack.items():
        rows.append((m, a.get("n_galaxies", "n/a"), a.get("n_misclassified", "n/a"),
                     a["n_attacked"], _fmt(a["success_rate"]), _fmt(a["queries"]["mean"]),
                     _fmt(a["queries"]["mean_success"]), _fmt(a["seconds"])))
        for kind in ("attack", "noisy", "noisy_success"):
            dist.append((m, kind, _pm(a["latent_distance"][kind])))
    first = next(iter(attack.values()))
    s = first["settings"]
    return "\n".join([
        "## One-pixel attacks", "",
        f"The first {first.get('n_galaxies', 'n/a')} {results['split']} galaxies at "
        f"{results['depths']['source']}; only those a model classifies correctly are attacked "
        "(its misclassified ones are counted apart, never attacked). "
        f"{s['pixels']} pixel(s), population {s['popsize']} (initial values: "
        f"`{s.get('init', 'n/a')}`), up to {s['iters']} generations, success when the "
        f"true-class probability < {s['threshold']}; inserted values bounded by "
        f"{s['value_range_source']}.", "",
        _table(("model", "galaxies", "misclassified (skipped)", "attacked", "success rate",
                "queries / image", "queries / success", "seconds"), rows), "",
        "Raw latent distances (mean ± std, standard error): `attack` base -> successfully "
        "attacked; `noisy` base -> same galaxy at the target depth (all attacked galaxies); "
        "`noisy_success` the same for the successfully attacked ones.", "",
        _table(("model", "distance", "value"), dist), "",
        _figure(results, "latent_distances", "latent distance histograms")])


def _corruptions_md(results):
    c = results.get("corruptions") or {"skipped": "no corruption stage in this study"}
    head = "## Corruptions: what surveys do to images"
    if c.get("skipped"):
        return f"{head}\n\nSkipped: {c['skipped']}"
    names, src, measures = c["corruptions"], results["depths"]["source"], c["measures"]
    rows = [(f"`{k}`", d, _pct_ci(m["clean_accuracy"]), _pct_ci(m["mean_accuracy"]),
             _pct_ci(m["relative_drop"]))
            for k, per in measures.items() for d, m in per.items()]
    severities = [(n, t["stage"], col, *(_fmt(v) for v in values))
                  for n, t in c["severity_table"].items()
                  for col, values in t["parameters"].items()]
    per_corruption = [(n, *(_pct(measures[k][src]["per_corruption"][n]["mean"])
                            for k in measures)) for n in names]
    worst = [(f"`{k}`", ", ".join(f"{n} ({_pct(per[src]['per_corruption'][n]['drop'])})"
                                  for n in per[src]["worst"][:3])) for k, per in measures.items()]
    parts = [
        head, "", c["conventions"], "",
        "Severities (0 is the clean image):", "",
        _table(("corruption", "acts on", "parameter", *(f"severity {s}" for s in
                                                       c["severities"][1:])), severities), "",
        "Accuracy in percent with 95% bootstrap intervals over galaxies; the relative drop is "
        "(clean - mean corruption accuracy) / clean.", "",
        _table(("model", "depth", "clean accuracy", "mean corruption accuracy",
                "relative drop"), rows), "",
        f"Mean accuracy over severities 1-5 per corruption, at {src} (percent):", "",
        _table(("corruption", *(f"`{k}`" for k in measures)), per_corruption), "",
        "The corruptions that hurt most (drop in accuracy points from clean, mean over "
        "severities):", "", _table(("model", "worst corruptions"), worst)]
    if c.get("held_in") is not None:
        parts += ["", _held_out_md(c, src)]
    parts += ["", _displacement_md(c), "",
              _figure(results, "corruption_accuracy", "accuracy per corruption and severity"),
              "", _figure(results, "corruption_displacement",
                          "latent displacement against severity, beside the one-pixel attack")]
    return "\n".join(parts)


def _held_out_md(c, src):
    gains = c.get("gain_over_baseline", {})
    rows = []
    for k, per in c["measures"].items():
        m, g = per[src], _get(gains, k, src) or {}
        rows.append((f"`{k}`", *(_pct_ci(_get(m, group, "mean_accuracy"))
                                 for group in ("held_in", "held_out")),
                     *(_pct_ci(g.get(group)) if g.get(group) else "—"
                       for group in ("held_in", "held_out"))))
    return "\n".join([
        f"Held in (`study.corruption_train`, what `corrupt-aug` trains on): "
        f"{', '.join(c['held_in']) or 'none'}; held out (never seen in training): "
        f"{', '.join(c['held_out']) or 'none'}. Mean accuracy over each group at {src} in "
        "percent; gains are percentage points over the same seed's baseline on the same "
        "galaxies (paired bootstrap).", "",
        _table(("model", "held-in accuracy", "held-out accuracy", "held-in gain over baseline",
                "held-out gain over baseline"), rows)])


def _displacement_md(c):
    rows = []
    for k, v in c["vs_attack"].items():
        attack, noisy = v["attack"] or {}, v.get("noisy") or {}
        for n, d in v["corruptions"].items():
            cells = [_fmt(d["displacement"][s]) + _ci({"low": d["low"][s], "high": d["high"][s]})
                     for s in (3, 5)]
            rows.append((f"`{k}`", n, *cells, _fmt(attack.get("estimate")) + _ci(attack),
                         _fmt(noisy.get("estimate")) + _ci(noisy),
                         d["first_severity_beyond_attack"] or "—"))
    return "\n".join([
        "Is a one-pixel attack a realistic threat next to what surveys do? Latent "
        "displacement from the clean image, ||z(s) - z(0)|| over the model's latent scale, "
        "beside the one-pixel attack's base -> attacked distance in the same unit (successful "
        "attacks, first seed's per-model measure) and beside the shift from the source to the "
        "target depth of the same attacked galaxies (the noise the study is about), 95% "
        "bootstrap intervals; n/a where no attack succeeded:", "",
        _table(("model", "corruption", "severity 3", "severity 5", "one-pixel attack",
                "source -> target depth", "first severity beyond the attack"), rows)])


def _latent_md(results):
    return "\n".join([
        "## Latent space", "", _figure(results, "isomap", "isomap of latents"), "",
        "Church windows: classes on the latent plane through the base image (0, 0), its "
        "attacked copy (1, 0) and its noisy copy (0, 1), classified by the model's "
        "`classify_latent` signature.", "", _figure(results, "church_windows", "church windows")])


def _examples_md(results):
    return "\n".join(["## Example galaxies", "", _figure(results, "examples", "examples")])


def _reproduce_md(results):
    times = [(stage, _fmt(t.get("seconds")), "reused" if t.get("reused") else "run")
             for stage, t in results["run_times"]["stages"].items()]
    versions = ", ".join(f"{k} {v}" for k, v in results["versions"].items())
    seeds = ", ".join(f"{k} {v}" for k, v in results["seed_streams"].items())
    return "\n".join([
        "## Reproducibility", "", f"Command: `{results.get('command') or 'n/a'}`", "",
        f"Training seeds {results['seeds']}; seed streams of the config's seed: {seeds}.", "",
        f"Versions: {versions}.", "",
        _table(("stage", "seconds", "this invocation"), times), "",
        f"Total stage time {_fmt(results['run_times']['total_s'])} s. The resolved config "
        "is in `results.json` (`config`)."])
