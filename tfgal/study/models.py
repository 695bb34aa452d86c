"""Model stages: train (or reuse) each model, evaluate both, the robustness curve."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

import numpy as np

from tfgal.errors import DataError, ModelContractError
from tfgal.model import export, final_eval, training
from tfgal.study import curve as curve_lib
from tfgal.study import metrics
from tfgal.study.stage import Stage
from tfgal.study.store import array_field, model_fingerprint, plain

__all__ = ["Train", "Evaluate", "Curve", "trained", "TrainOutput", "EvaluateOutput", "CurveOutput"]


# --------------------------------------------------------------------------- training


@dataclasses.dataclass
class TrainOutput:
    summary: dict
    reused_model: bool
    epochs: int | None
    export_dir: str
    run_dir: str


def _epochs(run_dir):
    if not os.path.exists(os.path.join(run_dir, training.HISTORY)):
        return None
    return len(training.history_rows(run_dir))


class Train(Stage):
    """Trains study member `kind` (a label) into ``OUT/models/<label>``, or reuses it.

    Reuse policy: a model whose exported config equals the derived config, whose training
    finished (its summary exists) and that loads is reused, unless the stage is redone.
    The stage's id is the SavedModel's fingerprint, so dependants rerun exactly when the
    model changed.
    """

    Output = TrainOutput

    def __init__(self, kind):
        self.kind, self.name = kind, self.name_of(kind)

    @staticmethod
    def name_of(kind):
        return f"train_{kind}"

    def settings(self, ctx):
        return {"config": ctx.derived[self.kind].to_dict()}

    def valid(self, ctx, saved):
        """A finished train stage still describes the model on disk."""
        return (self.model_matches(ctx)
                and saved["id"] == model_fingerprint(ctx.export_dir(self.kind)))

    def record_id(self, ctx, output):
        return model_fingerprint(ctx.export_dir(self.kind))

    def model_matches(self, ctx):
        """The model at the export dir was trained, to the end, with the derived config."""
        if not os.path.exists(os.path.join(ctx.run_dir(self.kind), training.SUMMARY)):
            return False
        try:
            model = export.load(ctx.export_dir(self.kind))
        except ModelContractError:
            return False
        return model.assets.get("config") == plain(ctx.derived[self.kind].to_dict())

    def run(self, ctx, inputs):
        kind, cfg, run_dir = self.kind, ctx.derived[self.kind], ctx.run_dir(self.kind)
        reused = self.name not in ctx.retrain and self.model_matches(ctx)
        if reused:
            ctx.log(f"{self.name}: the model at {ctx.export_dir(kind)} matches; reused")
            with open(os.path.join(run_dir, training.SUMMARY)) as f:
                summary = json.load(f)
        else:
            self._drop_stale_backup(ctx, run_dir, cfg)
            ctx.forget_model(kind)
            # The study owns its run directories: it resumes an interrupted run of this
            # config and otherwise trains from scratch, over whatever is there.
            summary = training.train(cfg, verbose=ctx.train_verbose,
                                     overwrite=not training.resumable(run_dir, cfg))
        return TrainOutput(summary=summary, reused_model=reused, epochs=_epochs(run_dir),
                           export_dir=ctx.export_dir(kind), run_dir=run_dir)

    @staticmethod
    def _drop_stale_backup(ctx, run_dir, cfg):
        # An interrupted run of an older config would make training refuse to start; the
        # study owns its run directories, so it starts that model over instead.
        backup = os.path.join(run_dir, training.BACKUP)
        saved = os.path.join(run_dir, training.CONFIG)
        if not os.path.isdir(backup):
            return
        previous = None
        if os.path.exists(saved):
            with open(saved) as f:
                previous = json.load(f)
        if previous != plain(cfg.to_dict()):
            ctx.log(f"{run_dir} holds an interrupted run of another config: starting over")
            shutil.rmtree(backup)


def trained(labels):
    """The names of the train stages of members `labels`."""
    return tuple(Train.name_of(label) for label in labels)


# --------------------------------------------------------------------------- evaluation


@dataclasses.dataclass
class EvaluateOutput:
    metrics: dict                 # {label: {depth: {metric: value}}}
    reliability: dict             # {label: {depth: `metrics.reliability`}}
    n: int
    class_counts: list
    labels: np.ndarray = array_field(default=None)
    galaxy_id: np.ndarray = array_field(default=None)
    probabilities: dict = array_field()  # {label: {depth: [N, K]}}
    latents: dict = array_field()        # {label: {depth: [isomap_n, D]}}: the isomap's


class Evaluate(Stage):
    """Every model on the study split at the source and target depths (the same images).

    Training saved each model's predictions on the whole split at both depths in its run
    directory (`tfgal.model.final_eval`); a model's are reused when they are exactly what
    `predict_split` would compute now (same model, data, split, depth names, seed, noise
    mode and galaxies), and only the other models are predicted.
    """

    name, Output = "evaluate", EvaluateOutput

    def __init__(self, labels):
        self.labels, self.deps = list(labels), trained(labels)

    def settings(self, ctx):
        s = ctx.study
        return {**ctx.data_settings(), "n": s.eval_n, "depths": list(ctx.depths),
                "isomap_n": s.isomap_n, "ece_bins": s.ece_bins}

    def run(self, ctx, inputs):
        names, labels = list(ctx.manifest.class_names), self.labels
        out = self.predictions(ctx)
        src, tgt = out[ctx.source], out[ctx.target]
        if not np.array_equal(src["galaxy_id"], tgt["galaxy_id"]):
            raise DataError(f"{ctx.source} and {ctx.target} images are not the same galaxies "
                            "in the same order", path=ctx.manifest.root)
        m, bins = ctx.study.isomap_n, ctx.study.ece_bins
        prob = {k: {d: out[d][k]["probabilities"] for d in ctx.depths} for k in labels}
        return EvaluateOutput(
            metrics={k: {d: metrics.collect(metrics.ClassificationEvaluator(
                src["labels"], prob[k][d], names, n_bins=bins)) for d in ctx.depths}
                for k in labels},
            reliability={k: {d: metrics.reliability(src["labels"], prob[k][d], bins)
                             for d in ctx.depths} for k in labels},
            n=int(len(src["labels"])),
            class_counts=np.bincount(src["labels"], minlength=len(names)).tolist(),
            labels=src["labels"], galaxy_id=src["galaxy_id"], probabilities=prob,
            latents={k: {d: out[d][k]["latent"][:m] for d in ctx.depths} for k in labels})

    def predictions(self, ctx):
        """{depth: `predict_split`'s output} for every model: saved predictions where they
        match, `curve_lib.predict_split` for the rest."""
        split, n = ctx.study.split, ctx.study.eval_n or None
        common = dict(seed=ctx.cfg.seed, noise_mode=ctx.cfg.data.noise_mode,
                      batch_size=final_eval.BATCH_SIZE)
        saved = {k: final_eval.lookup(os.path.join(ctx.run_dir(k), training.PREDICTIONS),
                                      ctx.export_dir(k), ctx.manifest, split, ctx.depths, n=n,
                                      **common) for k in self.labels}
        saved = {k: v for k, v in saved.items() if v is not None}
        missing = [k for k in self.labels if k not in saved]
        if saved:
            ctx.log(f"{self.name}: reusing the predictions training saved for "
                    f"{', '.join(saved)}; predicting {', '.join(missing) or 'none'}")
        out = {}
        for d in ctx.depths:
            if missing:
                out[d] = curve_lib.predict_split({k: ctx.model(k) for k in missing},
                                                 ctx.manifest, split, d, n=n, **common)
            else:
                first = next(iter(saved.values()))[d]
                out[d] = {"labels": first["labels"], "galaxy_id": first["galaxy_id"]}
            for k, arrays in saved.items():
                if not (np.array_equal(arrays[d]["galaxy_id"], out[d]["galaxy_id"])
                        and np.array_equal(arrays[d]["labels"], out[d]["labels"])):
                    raise DataError(f"the predictions saved for {k} hold other galaxies than "
                                    f"{split} at {d}", path=ctx.run_dir(k))
                out[d][k] = {"probabilities": arrays[d]["probabilities"],
                             "latent": arrays[d]["latent"]}
        return out


# --------------------------------------------------------------------------- robustness curve


@dataclasses.dataclass
class CurveOutput:
    table: dict  # `RobustnessCurve.table()`, or {"skipped": reason}
    predicted: dict = array_field()                   # {label: [depths, N] predicted class}
    labels: np.ndarray = array_field(default=None)    # [N] true class
    galaxy_id: np.ndarray = array_field(default=None)  # [N]

    @property
    def skipped(self):
        return self.table.get("skipped")


def curve_years(ctx):
    """The curve's depths: the configured or auto grid, always through the study's two."""
    c = ctx.study.curve
    return curve_lib.curve_depths(c.depths, low=c.min_years, high=c.max_years,
                                  per_decade=c.per_decade, always=ctx.training_years())


class Curve(Stage):
    """Accuracy against depth, from the same noiseless galaxies (skipped, with the reason,
    on data with noise baked in, e.g. the paper's files from ``import-npy``)."""

    name, Output = "curve", CurveOutput

    def __init__(self, labels):
        self.labels, self.deps = list(labels), trained(labels)

    def settings(self, ctx):
        return {**ctx.data_settings(), "n": ctx.study.curve.n,
                "years": [d.years for d in curve_years(ctx)], "per_galaxy": True}

    def run(self, ctx, inputs):
        m = ctx.manifest
        if not m.noiseless:
            return CurveOutput({"skipped": (
                f"dataset {m.root} holds images with noise baked in at "
                f"{', '.join(sorted(m.images))} only (imported survey data, e.g. "
                "the paper's files from tfgal-data import-npy); other depths need noiseless "
                "flux to draw on-the-fly noise from")})
        depths = curve_years(ctx)
        curve = curve_lib.RobustnessCurve(
            {k: ctx.model(k) for k in self.labels}, m, ctx.study.split, depths,
            n=ctx.study.curve.n or None, seed=ctx.cfg.seed, noise_mode=ctx.cfg.data.noise_mode,
            progress=lambda d: ctx.log(f"curve: depth {d.name} "
                                       f"({depths.index(d) + 1}/{len(depths)})"))
        table = curve.table()
        return CurveOutput(table, predicted=curve.predicted, labels=curve.labels,
                           galaxy_id=curve.galaxy_id)
