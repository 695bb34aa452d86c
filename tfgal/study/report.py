"""The study's report: ``results.json`` (every number) and ``report.md`` (figures embedded).

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
from tfgal.study.stage import MODELS

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


def _get(obj, *keys):
    for key in keys:
        if not isinstance(obj, dict) or obj.get(key) is None:
            return None
        obj = obj[key]
    return obj


def _ratio(a, b):
    return None if a is None or not b else a / b


def headline(results):
    """Rows comparing the paper's headline figures with this study's (JSON-able)."""
    ev, att = results["evaluation"], results.get("attack", {})
    src, tgt = results["depths"]["source"], results["depths"]["target"]
    rows = []

    def row(quantity, paper_resnet, paper_convnet, study):
        rows.append({"quantity": quantity, "paper_resnet18": paper_resnet,
                     "paper_convnet": paper_convnet, "study": study})

    p = PAPER["resnet18"]
    for metric, key in (("accuracy", "accuracy"), ("f1_weighted", "f1/weighted")):
        for depth, paper_depth in ((src, "Y10"), (tgt, "Y1")):
            row(f"{metric} at {depth}, no DA", p[metric][paper_depth], None,
                _get(ev, "baseline", depth, key))
    row(f"accuracy gain at {tgt} from DA", PAPER["da_gain_y1_accuracy_up_to"],
        None, _diff(_get(ev, "adapted", tgt, "accuracy"), _get(ev, "baseline", tgt, "accuracy")))
    for kind, label in (("attack", "base -> attacked"), ("noisy", f"base -> {tgt}")):
        for model in MODELS:
            row(f"latent distance {label}, {model}",
                _get(p, f"distance_{kind}", model, "mean"),
                _get(PAPER["convnet"], f"distance_{kind}", model, "mean"),
                _get(att, model, "latent_distance", kind, "mean"))
        row(f"latent distance {label}, DA / baseline",
            *(_ratio(_get(PAPER[m], f"distance_{kind}", "adapted", "mean"),
                     _get(PAPER[m], f"distance_{kind}", "baseline", "mean"))
              for m in ("resnet18", "convnet")),
            _get(results, "latent_distance_ratio", kind, "ratio"))
    return rows


def _diff(a, b):
    return None if a is None or b is None else a - b


# --------------------------------------------------------------------------- markdown


def _fmt(value, digits=3):
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


def _pm(d):
    if not d or d.get("mean") is None:
        return "n/a"
    return f"{_fmt(d['mean'])} ± {_fmt(d['std'])} (sem {_fmt(d['sem'])}, n={d['n']})"


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _figure(results, name, alt):
    path = results.get("figures", {}).get(name)
    return f"![{alt}]({path})" if path else f"*(figure {name} not drawn)*"


def markdown(results):
    """The report as Markdown; figures are linked relative to the study directory."""
    parts = [_intro(results), _headline_md(results), _models_md(results),
             _classification_md(results), _curve_md(results), _attack_md(results),
             _latent_md(results), _examples_md(results), _reproduce_md(results)]
    return "\n\n".join(parts) + "\n"


def _intro(results):
    ev = results["evaluation"]
    src, tgt = results["depths"]["source"], results["depths"]["target"]
    acc = {m: {d: _get(ev, m, d, "accuracy") for d in (src, tgt)} for m in MODELS}
    lines = [f"# Robustness study: {results['name']}", "",
             f"Generated {results['created']} by tfgal {results['versions'].get('tfgal')}; "
             f"dataset `{results['dataset']['root']}` ({results['dataset']['kind']}), "
             f"split `{results['split']}`.", "",
             f"- Baseline (no DA): accuracy {_fmt(acc['baseline'][src])} at {src}, "
             f"{_fmt(acc['baseline'][tgt])} at {tgt}.",
             f"- Domain-adapted (MMD): {_fmt(acc['adapted'][src])} at {src}, "
             f"{_fmt(acc['adapted'][tgt])} at {tgt} "
             f"(change at {tgt}: {_fmt(_diff(acc['adapted'][tgt], acc['baseline'][tgt]))})."]
    for model in MODELS:
        a = _get(results, "attack", model)
        if a:
            lines.append(f"- One-pixel attack on the {model} model: success rate "
                         f"{_fmt(a['success_rate'])} ({a['n_success']} of {a['n_attacked']} "
                         f"attacked).")
    r = _get(results, "latent_distance_ratio", "attack", "ratio")
    paper = [_ratio(_get(PAPER[m], "distance_attack", "adapted", "mean"),
                    _get(PAPER[m], "distance_attack", "baseline", "mean"))
             for m in ("resnet18", "convnet")]
    lines.append(f"- Latent distance base -> attacked, DA / baseline: {_fmt(r)} "
                 f"(the paper's: {_fmt(paper[0])} ResNet18, {_fmt(paper[1])} ConvNet).")
    return "\n".join(lines)


def _headline_md(results):
    rows = [(r["quantity"], _fmt(r["paper_resnet18"]), _fmt(r["paper_convnet"]),
             _fmt(r["study"])) for r in results["paper_comparison"]]
    return "\n".join([
        "## The paper's headline figures beside this study's", "",
        f"Paper columns: {PAPER['source']}. They are the paper's numbers on the paper's "
        f"data, not reruns. This study: {results['model_name']} on "
        f"`{results['dataset']['root']}`.", "",
        _table(("quantity", "paper, ResNet18", "paper, ConvNet", "this study"), rows)])


def _models_md(results):
    rows = []
    for m in MODELS:
        info = results["models"][m]
        loss = info["loss"]
        rows.append((m, _fmt(loss["mmd_weight"]), _fmt(loss["fisher_weight"]),
                     _fmt(loss["entropy_weight"]), info.get("epochs", "n/a"),
                     "reused" if info.get("reused") else "trained",
                     f"`{info['export_dir']}`"))
    return "\n".join(["## Models", "", _table(
        ("model", "MMD weight", "Fisher weight", "entropy weight", "epochs run", "this run",
         "SavedModel"), rows)])


def _classification_md(results):
    ev, names = results["evaluation"], results["class_names"]
    rows, per_class = [], []
    for m in MODELS:
        for depth, met in ev[m].items():
            rows.append((m, depth, _fmt(met["accuracy"]), _fmt(met["precision/weighted"]),
                         _fmt(met["recall/weighted"]), _fmt(met["f1/weighted"]),
                         _fmt(met["brier"]), _fmt(met["roc_auc/macro"])))
            for c in names:
                per_class.append((m, depth, c, _fmt(met[f"precision/{c}"]),
                                  _fmt(met[f"recall/{c}"]), _fmt(met[f"f1/{c}"]),
                                  _fmt(met[f"roc_auc/{c}"]), met[f"support/{c}"]))
    return "\n".join([
        "## Classification at both depths", "",
        _table(("model", "depth", "accuracy", "precision (w)", "recall (w)", "F1 (w)",
                "Brier", "ROC AUC (macro, one-vs-rest)"), rows), "",
        "Per class:", "",
        _table(("model", "depth", "class", "precision", "recall", "F1", "ROC AUC", "support"),
               per_class), "", _figure(results, "confusion", "confusion matrices")])


def _curve_md(results):
    curve = results["robustness_curve"]
    head = "## Robustness to survey depth (beyond the paper)"
    if curve.get("skipped"):
        return f"{head}\n\nSkipped: {curve['skipped']}"
    rows = [(d, _fmt(y), *(_fmt(curve["models"][m]["accuracy"][i]) for m in MODELS))
            for i, (d, y) in enumerate(zip(curve["depths"], curve["years"]))]
    return "\n".join([
        head, "", "The same noiseless test galaxies observed at each depth with on-the-fly "
        "noise (exposure linear in survey years).", "",
        _figure(results, "robustness_curve", "accuracy against depth"), "",
        _table(("depth", "years", "baseline accuracy", "adapted accuracy"), rows)])


def _attack_md(results):
    attack = results.get("attack", {})
    rows, dist = [], []
    for m in MODELS:
        a = attack[m]
        rows.append((m, a["n_attacked"], a["n_already_adversarial"], _fmt(a["success_rate"]),
                     _fmt(a["queries"]["mean"]), _fmt(a["queries"]["mean_success"]),
                     _fmt(a["seconds"])))
        for kind in ("attack", "noisy", "noisy_success"):
            dist.append((m, kind, _pm(a["latent_distance"][kind])))
    for kind, r in results["latent_distance_ratio"].items():
        value = "n/a" if r["ratio"] is None else f"{_fmt(r['ratio'])} ± {_fmt(r['sem'])}"
        dist.append(("DA / baseline", kind, value))
    s = attack[MODELS[0]]["settings"]
    return "\n".join([
        "## One-pixel attacks", "",
        f"First {attack[MODELS[0]]['n_galaxies']} {results['split']} galaxies at "
        f"{results['depths']['source']}; {s['pixels']} pixel(s), population {s['popsize']}, "
        f"up to {s['iters']} generations, success when the true-class probability < "
        f"{s['threshold']}; inserted values bounded by {s['value_range_source']}.", "",
        _table(("model", "attacked", "already below threshold", "success rate",
                "queries / image", "queries / success", "seconds"), rows), "",
        "Latent distances (mean ± std, standard error): `attack` base -> successfully "
        "attacked; `noisy` base -> same galaxy at the target depth (all attacked galaxies); "
        "`noisy_success` the same for the successfully attacked ones.", "",
        _table(("model", "distance", "value"), dist), "",
        _figure(results, "latent_distances", "latent distance histograms")])


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
    seeds = ", ".join(f"{k} {v}" for k, v in results["seeds"].items())
    return "\n".join([
        "## Reproducibility", "", f"Command: `{results.get('command') or 'n/a'}`", "",
        f"Seeds: {seeds}.", "", f"Versions: {versions}.", "",
        _table(("stage", "seconds", "this invocation"), times), "",
        f"Total stage time {_fmt(results['run_times']['total_s'])} s. The resolved config "
        "is in `results.json` (`config`)."])
