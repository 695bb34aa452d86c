"""The study's report: ``results.json`` (every number) and ``report.md`` (figures embedded).

The report opens with the controlled table (every model kind, mean ± standard deviation
over seeds, gains over the baseline and the target-bn control with 95% intervals), then
the scale-free latent measures, then the paper comparison with every difference stated
(`tfgal.study.paper`). Every number names the galaxies it is measured on and its count.
"""

from __future__ import annotations

import os
import platform

from tfgal import io
from tfgal.model import export
from tfgal.study import classical, corruption, paper
from tfgal.study.controlled import COLLAPSE, over_seeds
from tfgal.study.markdown import (agg as _agg, ci as _ci, figure as _figure, fmt as _fmt,
                                   get as _get, pct as _pct, pm as _pm, table as _table)
from tfgal.study.paper import PAPER, headline

__all__ = ["PAPER", "write", "versions", "headline", "markdown"]


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


# --------------------------------------------------------------------------- markdown


def markdown(results):
    """The report as Markdown; figures are linked relative to the study directory."""
    parts = [_intro(results), _controlled_md(results), _decomposition_md(results),
             _latent_table_md(results), paper.markdown(results), _models_md(results),
             _classification_md(results), _curve_md(results), _attack_md(results),
             classical.markdown(results), classical.mock_check_markdown(results),
             corruption.markdown(results), _latent_md(results), _examples_md(results),
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


def _rate_cell(rates, many):
    """An attack rate: percent (k/n) [95% Clopper-Pearson]; over seeds mean ± std and the
    pooled counts."""
    if many:
        pooled = rates["pooled"]
        per = [r["rate"] for r in rates["per_seed"]]
        if any(r is None for r in per):
            return "n/a"
        return (f"{_agg(over_seeds(per), 100)} "
                f"(pooled {pooled['k']}/{pooled['n']}{_ci(pooled, 100)})")
    r = rates["per_seed"][0]
    if r["rate"] is None:
        return "n/a (none attacked)"
    return f"{100 * r['rate']:.1f} ({r['k']}/{r['n']}){_ci(r, 100)}"


def _gain_cell(gain):
    if not gain:
        return "—"
    ci95 = gain.get("ci95") or {}
    if ci95.get("identical"):
        return f"{_agg(gain, 100)} (no galaxy differs)"
    return _agg(gain, 100) + _ci(ci95, 100)


def _collapsed(results):
    """Sentences naming each model that gives one class to most galaxies at a depth."""
    depths = results["depths"]
    out = []
    for kind, r in results["controlled"].items():
        for side, per in (r.get("majority") or {}).items():
            for m, seed in zip(per, results["seeds"]):
                if m["share"] >= COLLAPSE:
                    who = f"`{kind}`" + (f" (seed {seed})" if len(results["seeds"]) > 1 else "")
                    out.append(f"{who} calls {100 * m['share']:.1f}% of the {depths[side]} "
                               f"galaxies `{m['class']}`")
    return out


def _controlled_md(results):
    src, tgt = results["depths"]["source"], results["depths"]["target"]
    many = len(results["seeds"]) > 1
    bins = _get(results, "config", "study", "ece_bins") or "n/a"
    curve_n = _curve_n(results)
    rows = []
    for kind, r in results["controlled"].items():
        gains = [_gain_cell(_get(r, f"gain_over_{ref}", "target"))
                 for ref in ("baseline", "target-bn")]
        rates = r["attack_rates"]
        rows.append((f"`{kind}`", _agg(r["accuracy_source"], 100), _agg(r["accuracy_target"], 100),
                     _agg(r["curve_mean_accuracy"], 100), _rate_cell(rates["class_change"], many),
                     _rate_cell(rates["paper"], many), _agg(r["ece_source"]),
                     _agg(r["ece_target"]), *gains))
    spread = "mean ± standard deviation over seeds" if many else "one seed"
    covers = ("a paired bootstrap over seeds, then galaxies (each replicate redraws the "
              "seeds and one set of galaxies for all of them), so it includes the "
              "seed-to-seed spread" if many else
              "a paired bootstrap over galaxies (one seed: it says nothing of another seed)")
    classical = results.get("classical") or {}
    note = []
    if classical and not classical.get("skipped"):
        r = classical["row"]
        rows.append(("`classical` (†)", _pct(r["accuracy_source"]), _pct(r["accuracy_target"]),
                     _pct(r["curve_mean_accuracy"]), "—", "—", _fmt(r["ece_source"]),
                     _fmt(r["ece_target"]), "—", "—"))
        note = ["", f"(†) statmorph measurements and a random forest, on the first "
                f"{classical['n_galaxies']} galaxies of the split only (the networks: "
                f"{results['evaluation_n']}); the networks on those same galaxies are in "
                "\"Classical morphology beside the networks\"."]
        for extra in (r.get("ece_note"), _get(classical, "information", "text")):
            if extra:
                note += ["", extra.rstrip(".") + "."]
    collapsed = _collapsed(results)
    if collapsed:
        note += ["", "Models that give one class to most galaxies (their accuracy there is "
                 "the share of that class, not a skill): " + "; ".join(collapsed) + "."]
    attacks = results.get("attack") or {}
    first = next(iter(attacks.values()), {})
    threshold = _get(first, "settings", "threshold")
    return "\n".join([
        "## The controlled table", "",
        f"Accuracy in percent ({spread}) on {results['evaluation_n']} {results['split']} "
        f"galaxies; the mean over the curve is over its depths on the first {curve_n} "
        "galaxies. Attacks (percent of the galaxies each model classifies correctly and "
        f"attacks, with the count and a 95% Clopper-Pearson interval): *class change*, the "
        "attack's image is classified as another class (Su et al., ART); *paper's rule*, the "
        f"true-class probability fell below {_fmt(threshold)}. ECE is the expected "
        f"calibration error ({bins} bins). Gains are percentage points of accuracy at {tgt}, "
        "seed by seed against the same seed's control on the same galaxies; their 95% "
        f"interval is {covers}.", "",
        _table(("model", f"accuracy {src}", f"accuracy {tgt}", f"mean over curve ({curve_n})",
                "attack: class change", "attack: paper's rule", f"ECE {src}", f"ECE {tgt}",
                "gain over baseline", "gain over target-bn"), rows), *note])


def _curve_n(results):
    curve = results.get("robustness_curve") or {}
    if curve.get("skipped") or not curve.get("models"):
        return "n/a"
    return next(iter(curve["models"].values()))["n"][0]


def _gain_sentence(c, kind, ref):
    gain = _get(c, kind, f"gain_over_{ref}", "target")
    if not gain or gain.get("mean") is None:
        return None
    ci95 = gain.get("ci95") or {}
    if ci95.get("identical"):
        return "0.0 points: the two models are right and wrong on exactly the same galaxies"
    return f"{_pct(gain['mean'])} points{_ci(ci95, 100)}"


def _decomposition_md(results):
    c, tgt = results["controlled"], results["depths"]["target"]
    total, bn = _gain_sentence(c, "mmd", "baseline"), _gain_sentence(c, "target-bn", "baseline")
    if total is None or bn is None:
        return ""
    lines = ["## Where the domain-adaptation gain comes from", "",
             f"At {tgt}, the `mmd` model gains {total} over the baseline. "
             f"Feeding {tgt} images through the network with no adaptation loss (`target-bn`, "
             f"batch-norm statistics of both depths) gains {bn}; the MMD term adds "
             f"{_gain_sentence(c, 'mmd', 'target-bn')} beyond that (95% intervals, paired)."]
    aug = _gain_sentence(c, "depth-aug", "baseline")
    if aug is not None:
        lines.append(f"Depth augmentation alone (labelled images at random depths, no target "
                     f"images) gains {aug}.")
    both = _gain_sentence(c, "depth-aug+mmd", "baseline")
    if both is not None:
        lines.append(f"Depth augmentation with MMD gains {both}.")
    collapsed = _collapsed(results)
    if collapsed:
        lines.append("Read these beside what the models predict: " + "; ".join(collapsed) + ".")
    return "\n".join(lines)


def _with_ci(row, key):
    r = row.get(key) or {}
    n = _get(r, "ci95_first_seed", "n")
    return _agg(r) + _ci(r.get("ci95_first_seed")) + (f" (n={n})" if n is not None else "")


def _latent_table_md(results):
    tgt = results["depths"]["target"]
    common = _get(results, "latent_measures", "galaxies", "common", "what") or "n/a"
    rows, paired = [], []
    for kind, r in results["latent"].items():
        rows.append((f"`{kind}`", _agg(r["scale"]), _with_ci(r, "noisy"), _with_ci(r, "returned"),
                     *(_with_ci(r, f"class_change_{q}")
                       for q in ("attack", "noisy", "attack_over_noisy")),
                     _with_ci(r, "paper_attack")))
        vs = r.get("vs_baseline")
        if vs:
            paired.append((f"`{kind}`", *(_with_ci(vs, k) for k in (
                "attacked_scaled", "attacked_raw", "noisy_scaled", "noisy_raw"))))
    parts = [
        "## Latent distances, scale-free", "",
        "Each model's latent distances divided by its own scale, the median distance between "
        "different galaxies; brackets: 95% bootstrap intervals of the first seed, in which "
        "the galaxies behind the scale are redrawn with the others (n: galaxies). Each "
        "column names its galaxies:", "",
        f"- `{tgt} shift`: base -> the same galaxy at {tgt}, on {common};",
        "- `attack, every attack`: base -> the image the attack returned, on every galaxy the "
        "model attacked (those it classifies correctly: a set chosen before the outcome);",
        "- `class changed`: the attacks that changed the class, base -> attacked and base -> "
        f"{tgt} on those same galaxies, and their per-galaxy ratio; `paper's rule`: base -> "
        "attacked on the attacks that met the paper's rule. These select on the outcome, as "
        "the paper does.", "",
        _table(("model", "scale", f"{tgt} shift / scale", "attack, every attack / scale",
                "class changed: attack / scale", f"class changed: {tgt} shift / scale",
                "class changed: attack / shift", "paper's rule: attack / scale"), rows)]
    if paired:
        parts += [
            "", "Against the same seed's baseline, on the same galaxies chosen before any "
            "outcome: the ratio of mean distances, model over baseline. *Attacked*: the "
            "galaxies both models attacked (both classify them correctly), base -> returned "
            f"image; *{tgt} shift*: {common}. Scaled: each model's distances over its own "
            "scale, the scales redrawn with the galaxies; raw: as measured.", "",
            _table(("model", "attacked, scaled", "attacked, raw", f"{tgt} shift, scaled",
                    f"{tgt} shift, raw"), paired)]
    return "\n".join(parts)


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
    band = ("the band is the standard deviation over seeds" if len(results["seeds"]) > 1
            else "the band is ±1 binomial standard error over galaxies (one seed)")
    return "\n".join([
        head, "", f"The same {_curve_n(results)} noiseless {results['split']} galaxies "
        "observed at each depth with on-the-fly noise (exposure linear in survey years); the "
        f"figure shows each kind's mean over seeds; {band}.", "",
        _figure(results, "robustness_curve", "accuracy against depth"), "",
        _table(("depth", "years", *(f"{m} accuracy" for m in labels)), rows)])


def _rate(r):
    if r.get("rate") is None:
        return "n/a"
    return f"{100 * r['rate']:.1f} ({r['k']}/{r['n']}){_ci(r, 100)}"


def _attack_md(results):
    attack = results.get("attack", {})
    rows, dist = [], []
    for m, a in attack.items():
        rates = a["rates"]
        rows.append((m, a.get("n_galaxies", "n/a"), a.get("n_misclassified", "n/a"),
                     a["n_attacked"], _rate(rates["class_change"]), _rate(rates["paper"]),
                     _fmt(a["queries"]["mean"]), _fmt(a["queries"]["mean_success"]),
                     _fmt(a["seconds"])))
        ld = a["latent_distance"]
        for kind, what in (("returned", "base -> returned image, every attack"),
                           ("attack_class_change", "base -> attacked, class changed"),
                           ("noisy_class_change", "base -> target depth, the same galaxies"),
                           ("attack", "base -> attacked, paper's rule met"),
                           ("noisy_success", "base -> target depth, the same galaxies"),
                           ("noisy", "base -> target depth, every attacked galaxy")):
            if kind in ld:
                dist.append((m, what, _pm(ld[kind])))
    first = next(iter(attack.values()))
    s = first["settings"]
    return "\n".join([
        "## One-pixel attacks", "",
        f"The first {first.get('n_galaxies', 'n/a')} {results['split']} galaxies at "
        f"{results['depths']['source']}; only those a model classifies correctly are attacked "
        "(its misclassified ones are counted apart, never attacked). "
        f"{s['pixels']} pixel(s), population {s['popsize']} (initial values: "
        f"`{s.get('init', 'n/a')}`), up to {s['iters']} generations; the search minimises "
        f"the true-class probability and stops when it falls below {s['threshold']} (the "
        "paper's rule), otherwise it returns the best image found. Both rules read that "
        "image: *class change* (another class is predicted: the rule of Su et al., ART's "
        "PixelAttack and one-pixel-attack-keras, which stop at the first such image, so this "
        "rate is a lower bound of theirs at the same budget) and the *paper's rule*. Rates in "
        "percent (successes / galaxies attacked) with 95% Clopper-Pearson intervals. Inserted "
        f"values bounded by {s['value_range_source']}.", "",
        _table(("model", "galaxies", "misclassified (skipped)", "attacked", "class change",
                "paper's rule", "queries / image", "queries / paper success", "seconds"),
               rows), "",
        "Raw latent distances (mean ± std, standard error, n galaxies), each on the galaxies "
        "it names:", "",
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
    seeds = ", ".join(f"{k} {v}" for k, v in results["seed_streams"].items())
    return "\n".join([
        "## Reproducibility", "", f"Command: `{results.get('command') or 'n/a'}`", "",
        f"Training seeds {results['seeds']}; seed streams of the config's seed: {seeds}.", "",
        f"Versions: {versions}.", "",
        _table(("stage", "seconds", "this invocation"), times), "",
        f"Total stage time {_fmt(results['run_times']['total_s'])} s. The resolved config "
        "is in `results.json` (`config`)."])
