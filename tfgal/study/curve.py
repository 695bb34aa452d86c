"""Predictions over a split, and the robustness curve: accuracy against survey depth."""

from __future__ import annotations

import numpy as np

from tfgal import survey
from tfgal.model.final_eval import predict_split
from tfgal.study.metrics import ClassificationEvaluator, accuracy_sem, collect

# `predict_split` lives in the model wing (`tfgal.model.final_eval`): training saves its
# final evaluation with it, so that the study's evaluation, reading those arrays back, gets
# exactly the bits it would compute itself.
__all__ = ["predict_split", "curve_depths", "RobustnessCurve"]


# --------------------------------------------------------------------------- robustness curve


def curve_depths(years=(), *, low=0.1, high=20.0, per_decade=3, always=(1.0, 10.0)):
    """Survey depths for the robustness curve.

    `years` given: exactly those. Else a grid log-spaced in exposure with `per_decade`
    depths per factor of ten, anchored at one year (so Y1 and Y10 are grid points and the
    curve passes through the study's depths with the very images the main evaluation
    used), from `low` to `high` years (both included), plus the depths in `always`.
    """
    if len(years):
        values = {float(y) for y in years}
    else:
        lo, hi = np.log10(low) * per_decade, np.log10(high) * per_decade
        steps = np.arange(np.ceil(lo - 1e-9), np.floor(hi + 1e-9) + 1)
        values = {round(float(10 ** (k / per_decade)), 4) for k in steps}
        values |= {float(low), float(high), *(float(y) for y in always)}
    return [survey.Depth.from_years(y, name=f"{y:.3g}y") for y in sorted(values)]


class RobustnessCurve:
    """Accuracy and weighted F1 of each model against survey depth.

    The same test galaxies are observed at every depth with the pipeline's on-the-fly,
    per-galaxy seeded noise (so 10y reproduces the Y10 images exactly). Needs noiseless
    (mock) data: `pipeline.resolve_depth` refuses other depths on imported data.
    `run()` yields ``("<model>/<depth>/<metric>", value)``; `table()` gathers them, and
    leaves each galaxy's predicted class in `predicted` ({model: [depths, N] int8}) beside
    `labels` and `galaxy_id`, so that other classifiers of the same galaxies (the classical
    baseline) are compared galaxy by galaxy.
    """

    METRICS = ("accuracy", "accuracy_sem", "f1_weighted", "n")

    def __init__(self, models, data, split, depths, *, n=None, seed=0, noise_mode="fast",
                 progress=None):
        self.models, self.data, self.split = models, data, split
        self.depths = list(depths)
        self.n, self.seed, self.noise_mode = n, seed, noise_mode
        self.progress = progress or (lambda depth: None)
        self.predicted, self.labels, self.galaxy_id = {}, None, None

    def run(self):
        self.predicted = {name: [] for name in self.models}
        for depth in self.depths:
            self.progress(depth)
            out = predict_split(self.models, self.data, self.split, depth, n=self.n,
                                seed=self.seed, noise_mode=self.noise_mode, latent=False)
            self.labels, self.galaxy_id = out["labels"], out["galaxy_id"]
            for name in self.models:
                self.predicted[name].append(out[name]["probabilities"].argmax(1).astype(np.int8))
                metrics = collect(ClassificationEvaluator(
                    out["labels"], out[name]["probabilities"],
                    [str(c) for c in range(out[name]["probabilities"].shape[1])]))
                prefix = f"{name}/{depth.name}"
                yield f"{prefix}/accuracy", metrics["accuracy"]
                yield f"{prefix}/accuracy_sem", accuracy_sem(metrics["accuracy"], metrics["n"])
                yield f"{prefix}/f1_weighted", metrics["f1/weighted"]
                yield f"{prefix}/n", metrics["n"]

    def table(self):
        """{"years", "depths", "exposure_s", "models": {name: {metric: [per depth]}}}."""
        values = collect(self)
        self.predicted = {name: np.stack(rows) for name, rows in self.predicted.items()}
        models = {name: {m: [values[f"{name}/{d.name}/{m}"] for d in self.depths]
                         for m in self.METRICS} for name in self.models}
        return {"years": [d.years for d in self.depths], "depths": [d.name for d in self.depths],
                "exposure_s": [list(d.exposure_s) for d in self.depths], "models": models}
