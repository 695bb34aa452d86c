"""Output stages: the study's figures (the report is the runner's, it holds the schema)."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from tfgal.attack import apply_pixels
from tfgal.data import pipeline
from tfgal.study import plots
from tfgal.study.attacks import ATTACKED, Attack
from tfgal.study.models import TRAINED
from tfgal.study.stage import MODELS, Stage

__all__ = ["FIGURES", "Figures", "FiguresOutput", "figure_names"]

FIGURES = {"robustness_curve": "robustness_curve.png", "confusion": "confusion.png",
           "isomap": "isomap.png", "church_windows": "church_windows.png",
           "latent_distances": "latent_distances.png", "examples": "examples.png"}


@dataclasses.dataclass
class FiguresOutput:
    figures: dict  # {figure: path relative to the study directory}


def figure_names(curve_skipped):
    """{figure: relative path} of the figures drawn (no curve when it was skipped)."""
    skip = {"robustness_curve"} if curve_skipped else set()
    return {k: os.path.join("figures", f) for k, f in FIGURES.items() if k not in skip}


class Figures(Stage):
    """Every figure of the study, from the stored stage outputs."""

    name, Output = "figures", FiguresOutput
    deps = (*TRAINED, "evaluate", "curve", *ATTACKED, "latent", "church")

    def settings(self, ctx):
        return {"examples": ctx.study.examples}

    def outputs(self, ctx, inputs):
        return [os.path.join(ctx.out, p)
                for p in figure_names(inputs["curve"].skipped).values()]

    def run(self, ctx, inputs):
        names = list(ctx.manifest.class_names)
        rel = figure_names(inputs["curve"].skipped)
        path = {k: os.path.join(ctx.out, p) for k, p in rel.items()}
        ev, attacks = inputs["evaluate"], {k: inputs[Attack.name_of(k)] for k in MODELS}
        if "robustness_curve" in path:
            counts = np.asarray(ev.class_counts)
            plots.robustness_curve(inputs["curve"].table, path["robustness_curve"],
                                   marks=zip(ctx.training_years(), ctx.depths),
                                   chance=float(counts.max() / counts.sum()))
        plots.confusion_matrices({(k, d): ev.metrics[k][d]["confusion"] for k in MODELS
                                  for d in ctx.depths}, names, path["confusion"])
        lat = inputs["latent"]
        plots.isomap({k: {"embedding": lat.embedding[k], "group": lat.group[k],
                          "label": lat.label[k]} for k in MODELS},
                     names, path["isomap"], ctx.depths)
        plots.church_windows(inputs["church"].panels(), names, path["church_windows"])
        plots.latent_distances({k: {"attack": a.d_attack, "noisy": a.d_noisy}
                                for k, a in attacks.items()}, path["latent_distances"])
        plots.example_galaxies(_examples(ctx), _attacked_example(attacks), names,
                               path["examples"])
        return FiguresOutput(rel)


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
    """The first successful attack (baseline model first), as the example figure draws it."""
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
