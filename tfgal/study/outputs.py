"""Output stages: the study's figures (the report is the runner's, it holds the schema)."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from tfgal.attack import apply_pixels
from tfgal.data import pipeline
from tfgal.data.morphology import FLAG_BAD, LITERATURE
from tfgal.study import corruption, plots
from tfgal.study.attacks import Attack, attacked, figure_labels
from tfgal.study.models import trained
from tfgal.study.stage import Stage

__all__ = ["FIGURES", "CORRUPTION_FIGURES", "MORPHOLOGY_FIGURES", "Figures", "FiguresOutput",
           "figure_names", "kind_curve"]

FIGURES = {"robustness_curve": "robustness_curve.png", "confusion": "confusion.png",
           "reliability": "reliability.png", "isomap": "isomap.png",
           "church_windows": "church_windows.png", "latent_distances": "latent_distances.png",
           "examples": "examples.png"}
# Drawn only when the corruption stage ran (study.corruptions not empty).
CORRUPTION_FIGURES = {"corruption_accuracy": "corruption_accuracy.png",
                      "corruption_displacement": "corruption_displacement.png"}
# Drawn only when the classical baseline ran (study.morphology_n > 0).
MORPHOLOGY_FIGURES = {"morphology": "morphology.png"}


@dataclasses.dataclass
class FiguresOutput:
    figures: dict  # {figure: path relative to the study directory}


def figure_names(curve_skipped, corruptions_skipped=True, morphology_skipped=True):
    """{figure: relative path} of the figures drawn (no curve when it was skipped, the
    corruption and morphology figures only when their stages ran)."""
    skip = {"robustness_curve"} if curve_skipped else set()
    drawn = {**FIGURES, **({} if corruptions_skipped else CORRUPTION_FIGURES),
             **({} if morphology_skipped else MORPHOLOGY_FIGURES)}
    return {k: os.path.join("figures", f) for k, f in drawn.items() if k not in skip}


def kind_curve(curve, members):
    """The curve per model kind: mean accuracy over seeds, with the standard deviation over
    seeds as its band (the binomial standard error with one seed)."""
    kinds = list(dict.fromkeys(m.kind for m in members))
    out = {**curve, "models": {}}
    for kind in kinds:
        rows = [curve["models"][m.label] for m in members if m.kind == kind]
        acc = np.asarray([r["accuracy"] for r in rows], float)
        spread = (acc.std(axis=0, ddof=1) if len(rows) > 1
                  else np.asarray([s or 0.0 for s in rows[0]["accuracy_sem"]]))
        out["models"][kind] = {"accuracy": acc.mean(axis=0).tolist(),
                               "accuracy_sem": spread.tolist(), "n": rows[0]["n"]}
    return out


class Figures(Stage):
    """Every figure of the study, from the stored stage outputs (per-galaxy figures for the
    first seed's models; the curve over all seeds)."""

    name, Output = "figures", FiguresOutput

    def __init__(self, labels):
        self.deps = (*trained(labels), "evaluate", "curve", "morphology", "corruptions",
                     *attacked(labels), "distances", "latent", "church")

    def settings(self, ctx):
        return {"examples": ctx.study.examples}

    def outputs(self, ctx, inputs):
        return [os.path.join(ctx.out, p) for p in _names(inputs).values()]

    def run(self, ctx, inputs):
        names = list(ctx.manifest.class_names)
        rel = _names(inputs)
        path = {k: os.path.join(ctx.out, p) for k, p in rel.items()}
        shown = figure_labels(ctx)
        ev, attacks = inputs["evaluate"], {k: inputs[Attack.name_of(k)] for k in shown}
        if "robustness_curve" in path:
            counts = np.asarray(ev.class_counts)
            plots.robustness_curve(_with_classical(kind_curve(inputs["curve"].table, ctx.members),
                                                   inputs["morphology"]),
                                   path["robustness_curve"],
                                   marks=zip(ctx.training_years(), ctx.depths),
                                   chance=float(counts.max() / counts.sum()),
                                   band=("band: standard deviation over seeds"
                                         if len(ctx.seeds) > 1 else
                                         "band: ±1 binomial standard error (one seed)"))
        plots.confusion_matrices({(k, d): ev.metrics[k][d]["confusion"] for k in shown
                                  for d in ctx.depths}, names, path["confusion"])
        plots.reliability_diagram({k: ev.reliability[k] for k in shown}, path["reliability"])
        lat = inputs["latent"]
        plots.isomap({k: {"embedding": lat.embedding[k], "group": lat.group[k],
                          "label": lat.label[k]} for k in shown},
                     names, path["isomap"], ctx.depths)
        plots.church_windows(inputs["church"].panels(), names, path["church_windows"])
        plots.latent_distances(_distance_panels(ctx, inputs["distances"], shown),
                               path["latent_distances"],
                               xlabel="latent distance / the model's median distance "
                                      "between different galaxies")
        plots.example_galaxies(_examples(ctx), _attacked_example(attacks), names,
                               path["examples"])
        if "corruption_accuracy" in path:
            _corruption_figures(ctx, inputs["corruptions"], inputs["distances"], shown, path)
        if "morphology" in path:
            morph = inputs["morphology"]
            values = dict(morph.train)  # Sersic n as the table takes it: failed fits out
            values["sersic_n"] = np.where(np.asarray(values["flag_sersic"]) < FLAG_BAD,
                                          values["sersic_n"], np.nan)
            plots.morphology_classes(values, values["labels"], names, LITERATURE,
                                     path["morphology"], depth=ctx.source)
        return FiguresOutput(rel)


def _with_classical(curve, morph):
    """The curve with the classical baseline's line, when it ran at the curve's depths."""
    if morph.skipped or morph.table["depths"] != curve["depths"]:
        return curve
    rows = morph.table["per_depth"]
    line = {q: [r[q] for r in rows] for q in ("accuracy", "accuracy_sem", "n")}
    return {**curve, "models": {**curve["models"], "classical": line}}


def _names(inputs):
    return figure_names(inputs["curve"].skipped, inputs["corruptions"].skipped,
                        inputs["morphology"].skipped)


def _distance_panels(ctx, distances, shown):
    """The histograms' panels: every attack, the class-changing ones, the depth shift of the
    same attacked galaxies; each over the model's scale."""
    att = {k: distances.attacked[k] for k in shown}
    tgt = ctx.target
    return {
        "base -> returned image, every attack": {k: a["returned"] for k, a in att.items()},
        "base -> attacked, class changed": {
            k: np.asarray(a["returned"])[np.asarray(a["class_change"], bool)]
            for k, a in att.items()},
        f"base -> same galaxy at {tgt}, every attacked galaxy": {k: a["noisy"]
                                                                 for k, a in att.items()}}


def _corruption_figures(ctx, out, distances, shown, path):
    """Accuracy heat maps (model x depth) and displacement against severity (source depth)
    beside the one-pixel attack's, in the same scale-free unit and on the same galaxies."""
    t = out.table
    plots.corruption_accuracy({(k, d): t["accuracy"][k][d] for d in t["depths"] for k in shown},
                              t["severities"], path["corruption_accuracy"])
    same = corruption.vs_attack(ctx, out, distances)
    plots.corruption_displacement(
        {k: {"corruptions": {c: [{"estimate": e, "low": lo, "high": hi}
                                 for e, lo, hi in zip(v["displacement"], v["low"], v["high"])]
                             for c, v in same[k]["corruptions"].items()},
             "attack": same[k]["attack"], "noisy": same[k]["noisy"], "n": same[k]["n"]}
         for k in shown},
        t["severities"], path["corruption_displacement"], depth=ctx.source)


def _examples(ctx):
    """The first `examples` galaxies of each class, at both depths."""
    s = ctx.study
    n = min(ctx.manifest.count(s.split), 64 * s.examples)
    data = {d: pipeline.load_arrays(ctx.manifest, s.split, d, n=n, seed=ctx.cfg.seed,
                                    noise_mode=ctx.cfg.data.noise_mode) for d in ctx.depths}
    labels = data[ctx.source]["labels"]
    pick = [i for c in range(len(ctx.manifest.class_names))
            for i in np.flatnonzero(labels == c)[:s.examples]]
    return {d: (data[d]["images"][pick], labels[pick]) for d in data}


def _attacked_example(attacks):
    """The first attack that changed the class (baseline model first), as the example
    figure draws it."""
    for kind, att in attacks.items():
        i = att.first_success()
        if i is None:
            continue
        base = att.example[:1]
        image = apply_pixels(base, att.pixels[i:i + 1], att.values[i:i + 1])
        return {"base": base[0], "image": image[0], "pixels": att.pixels[i],
                "label": int(att.labels[i]), "final_class": int(att.final_class[i]),
                "final_score": float(att.final_score[i]), "model": kind}
    return None
