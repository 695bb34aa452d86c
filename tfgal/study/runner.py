"""`tfgal-study`: the controlled robustness study in one resumable command.

    tfgal-study --config pipelines/quick.toml --out studies/quick

The study trains every model kind of ``study.models`` (the controls of
`tfgal.study.stage.CONTROLS`: ``baseline``, ``target-bn``, ``mmd``, ``depth-aug``,
``depth-aug+mmd``, ``corrupt-aug``) once per seed of ``study.seeds``, by the same code
path, data and budget, and measures them all on the same galaxies. Its stages
(`default_stages`), each writing ``OUT/stages/<stage>.json`` (plus ``<stage>.npz`` for
arrays):

1. ``train_<label>``: one per member (``<kind>``, or ``<kind>_s<seed>`` with several
   seeds), trained by `tfgal.model.training.train` into ``OUT/models/<label>`` and
   ``OUT/runs/<label>``. A model whose exported config equals the derived one is reused.
2. ``evaluate``: every model on the study split at the source and target depths
   (accuracy, F1, Brier, ROC AUC, expected calibration error, reliability bins).
3. ``curve``: accuracy against depth, from the same noiseless galaxies (skipped, with the
   reason, on data with noise baked in).
4. ``morphology``: the classical baseline, statmorph measurements and a random forest on
   the same galaxies at every curve depth (`tfgal.study.classical`; skipped, with the
   reason, when ``study.morphology_n`` is 0).
5. ``corruptions``: every model on the physical corruptions of ``study.corruptions``,
   severities 0-5, accuracy and scale-free latent displacement (skipped when the list is
   empty; corruptions the dataset cannot take are refused before anything runs).
6. ``attack_<label>``: one-pixel attacks on the galaxies each model classifies correctly.
7. ``distances``: scale-free latent distances, and each model against its seed's baseline
   on the galaxies attacked successfully under both, with bootstrap intervals.
8. ``latent`` (isomap), ``church`` (church windows), ``figures``, ``report``.

Resumption: a stage's JSON is written last and atomically; it records a key (digest of
the stage's settings and of the ids of the stages it reads), so a stage reruns exactly
when its output is missing, its settings changed or a stage it reads was redone. An
interrupted training resumes from its last epoch (`tfgal.model.training`).

A new stage is one `tfgal.study.stage.Stage` subclass and one line in `default_stages`
(or in the ``stages`` given to `Study`). Settings live in the config's ``[study]``
section (`tfgal.config.StudyConfig`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

from tfgal import config as config_lib
from tfgal import seeds
from tfgal.errors import ConfigError
from tfgal.model import tensorboard, training
from tfgal.study import classical, controlled, corruption, report
from tfgal.study.attacks import Attack, Church, Distances, Latent, attacked
from tfgal.study.corruption import Corruptions
from tfgal.study.models import Curve, Evaluate, Train, trained
from tfgal.study.outputs import FIGURES, Figures
from tfgal.study.stage import CONTROLS, Stage, StudyContext, derived_configs, members
from tfgal.study.store import StageStore, now, plain

__all__ = ["load_config", "run", "Study", "Report", "default_stages", "results",
           "stage_names", "FIGURES", "REPORT_FILES"]

REPORT_FILES = ("report.md", "results.json")


def load_config(path=None, overrides=()):
    """Defaults (with ``[study]``) + the TOML file + ``key=value`` overrides, checked."""
    cfg = config_lib.load(path, overrides)
    derived_configs(cfg, "study")  # raises early when an mmd model has no adaptation term
    return cfg


# --------------------------------------------------------------------------- the report


@dataclasses.dataclass
class ReportOutput:
    report: str


class Report(Stage):
    """``results.json`` (every number, see `results`) and ``report.md``."""

    name, Output = "report", ReportOutput

    def __init__(self, labels):
        self.deps = (*trained(labels), "evaluate", "curve", "morphology", "corruptions",
                     *attacked(labels), "distances", "latent", "church", "figures")

    def outputs(self, ctx, inputs):
        return [os.path.join(ctx.out, n) for n in REPORT_FILES]

    def run(self, ctx, inputs):
        out = plain(results(ctx, inputs))
        path = report.write(ctx.out, out)
        write_tensorboard(ctx, out)
        return ReportOutput(path)


STUDY_GROUP = "study"  # the study's measures: an HParams metric group of each model's session


def write_tensorboard(ctx, results):
    """Each member's study measures (accuracy and ECE per depth, attack success, mean
    corruption accuracy at the source depth when the corruption stage ran) as scalars in
    ``OUT/runs/<label>/hparams/study``: `tensorboard --logdir OUT` then lists them beside
    each model's training metrics in the HParams tab (metric group "study")."""
    for label in ctx.labels:
        values = {}
        for depth, m in results["evaluation"][label].items():
            values[f"study/accuracy_{depth}"] = m["accuracy"]
            values[f"study/ece_{depth}"] = m["ece"]
        rate = results["attack"][label].get("success_rate")
        if rate is not None:
            values["study/attack_success"] = rate
        changed = results["attack"][label]["rates"]["class_change"]["rate"]
        if changed is not None:
            values["study/attack_class_change"] = changed
        corrupted = results["corruptions"]
        if not corrupted.get("skipped"):
            m = corrupted["measures"][label][ctx.source]
            values["study/corruption_accuracy"] = m["mean_accuracy"]["estimate"]
        tensorboard.replace_scalars(
            os.path.join(ctx.run_dir(label), tensorboard.HPARAMS, STUDY_GROUP), values, step=0)


def results(ctx, inputs):
    """Every number of the study, JSON-able: the schema of ``results.json``.

    Per member (``members``, ``evaluation``, ``attack``, ``latent_measures``) and per model
    kind over seeds (``controlled``, ``latent``); ``latent_distance_ratio`` is the raw
    mmd / baseline ratio of the first seed, the paper's comparison, measured on the same
    galaxies for both models (`tfgal.study.attacks.paired_measures`); ``corruptions`` is
    `tfgal.study.corruption.summary` (or {"skipped": reason}); ``classical`` is
    `tfgal.study.classical.summary` (or {"skipped": reason}).
    """
    ev, curve = inputs["evaluate"], inputs["curve"].table
    attack = {k: inputs[Attack.name_of(k)].summary for k in ctx.labels}
    dist = inputs["distances"]
    first = ctx.seeds[0]
    da, base = ctx.label_of("mmd", first), ctx.label_of("baseline", first)
    out = {
        "name": ctx.cfg.name, "created": now(), "command": ctx.command,
        "model_name": ctx.cfg.model.name, "class_names": list(ctx.manifest.class_names),
        "split": ctx.study.split, "depths": {"source": ctx.source, "target": ctx.target},
        "dataset": _dataset_info(ctx.manifest), "stretch": ctx.manifest.stretch,
        "kinds": ctx.kinds, "seeds": ctx.seeds,
        "controls": {k: CONTROLS[k].what for k in ctx.kinds},
        "members": {m.label: {"kind": m.kind, "seed": m.seed, **_model_info(ctx, m.label)}
                    for m in ctx.members},
        "controlled": controlled.controlled_table(ctx, ev, curve, attack),
        "latent": controlled.latent_table(ctx, dist),
        "evaluation": ev.metrics, "evaluation_n": ev.n, "reliability": ev.reliability,
        "robustness_curve": curve,
        "attack": attack,
        "latent_measures": {"per_model": dist.measures, "vs_baseline": dist.paired,
                            "galaxies": dist.galaxies},
        "latent_distance_ratio": _paper_ratio(dist, da, base),
        "corruptions": corruption.summary(ctx, inputs["corruptions"], dist),
        "classical": classical.summary(ctx, inputs["morphology"], inputs["curve"], ev),
        "church_windows": inputs["church"].windows,
        "figures": inputs["figures"].figures,
        "paper": report.PAPER,
        "config": ctx.cfg.to_dict(), "seed_streams": _seeds(ctx.cfg.seed),
        "versions": report.versions(), "run_times": _run_times(ctx.records),
    }
    out["paper_comparison"] = report.headline(out)
    return out


def _paper_ratio(dist, da, base):
    """The paper's DA / baseline ratio of raw latent distances, like for like: the attack on
    the galaxies both models attacked (returned images), the depth shift on the common
    galaxies; each {"ratio", "low", "high", "n", "galaxies"}."""
    paired = dist.paired.get(da) if da and base else None
    if paired is None:
        return None
    where = {"attack": ("attacked", "galaxies both models attacked (classified correctly), "
                                    "base -> returned image"),
             "noisy": ("noisy", dist.galaxies["common"]["what"])}
    return {kind: {"ratio": paired[key]["raw"]["estimate"], "low": paired[key]["raw"]["low"],
                   "high": paired[key]["raw"]["high"], "n": paired[key]["n"], "galaxies": what}
            for kind, (key, what) in where.items()}


def _dataset_info(m):
    return {"root": os.path.abspath(m.root), "noiseless": m.noiseless,
            "kind": ("noiseless flux, noise drawn on the fly" if m.noiseless
                     else f"noise baked in at {', '.join(sorted(m.images))}"),
            "image_shape": list(m.image_shape), "generator": (m.generator or {}).get("name"),
            "counts": {s: m.count(s) for s in m.splits}}


def _model_info(ctx, kind):
    rec, derived = ctx.records[Train.name_of(kind)], ctx.derived[kind].to_dict()
    return {"loss": derived["loss"], "depth_augment": derived["data"]["depth_augment"],
            "epochs": rec.output.epochs,
            "export_dir": rec.output.export_dir, "run_dir": rec.output.run_dir,
            "reused": rec.reused or rec.output.reused_model,
            "fingerprint": rec.id, "train_summary": rec.output.summary}


def _seeds(seed):
    return {"root": seed, "init": seeds.derive(seed, "init"), "noise": seed,
            "attack": seeds.derive(seed, "attack")}


def _run_times(records):
    stages = {name: {"seconds": rec.seconds, "reused": rec.reused}
              for name, rec in records.items()}
    return {"stages": stages, "total_s": round(sum(s["seconds"] for s in stages.values()), 1)}


# --------------------------------------------------------------------------- the study


def default_stages(cfg):
    """The stages of the study of config `cfg`, in the order they run."""
    labels = [m.label for m in members(cfg)]
    return [*(Train(k) for k in labels), Evaluate(labels), Curve(labels), classical.Morphology(),
            Corruptions(labels),
            *(Attack(k) for k in labels), Distances(labels), Latent(labels), Church(labels),
            Figures(labels), Report(labels)]


def stage_names(cfg):
    return [s.name for s in default_stages(cfg)]


class Study:
    """The robustness study of a resolved config (`load_config`), run into `out`."""

    def __init__(self, cfg, out, *, progress=True, train_verbose=None, command=None,
                 stages=None):
        self.ctx = StudyContext(cfg, os.fspath(out), progress=progress,
                                train_verbose=train_verbose, command=command, log=self._log)
        self.stages = list(default_stages(cfg) if stages is None else stages)
        self._check(self.stages)
        self.store = StageStore(os.path.join(self.ctx.out, "stages"), log=self._log)

    @staticmethod
    def _check(stages):
        seen = set()
        for stage in stages:
            if stage.name in seen:
                raise ValueError(f"stage {stage.name!r} listed twice")
            missing = [d for d in stage.deps if d not in seen]
            if missing:
                raise ValueError(f"stage {stage.name!r} reads {missing}, which do not run "
                                 "before it")
            seen.add(stage.name)

    def _log(self, message):
        if self.ctx.progress:
            print(f"[tfgal-study] {message}", file=sys.stderr, flush=True)

    @property
    def names(self):
        return [s.name for s in self.stages]

    def redo(self, names):
        """Forgets the records of stages `names` ("all": every stage) so they run again; a
        redone train stage retrains its model even when the one on disk matches."""
        for name in self.names if "all" in names else names:
            if name not in self.names:
                raise ConfigError(f"unknown stage {name!r}", key="redo",
                                  valid=(*self.names, "all"))
            self.store.forget(name)
            self.ctx.retrain.add(name)

    def run(self):
        """Runs (or resumes) every stage; returns the results dict of ``results.json``."""
        ctx = self.ctx
        os.makedirs(ctx.out, exist_ok=True)
        ctx.manifest = training.ensure_dataset(ctx.cfg.data, ctx.cfg.seed)  # clipped stretch
        for stage in self.stages:  # refuse what cannot work before training for hours
            stage.check(ctx)
        for index, stage in enumerate(self.stages, 1):
            ctx.records[stage.name] = self._run_stage(stage, index)
        with open(os.path.join(ctx.out, "results.json")) as f:
            return json.load(f)

    def _run_stage(self, stage, index):
        ctx, total = self.ctx, len(self.stages)
        self.store.log = lambda m: self._log(f"[{index}/{total}] {m}")
        deps = [ctx.records[d] for d in stage.deps]
        inputs = {rec.name: rec.output for rec in deps}
        settings = stage.settings(ctx)
        if stage.version:
            settings = {**settings, "stage_version": stage.version}
        return self.store.run(
            stage.name, stage.Output, settings, lambda: stage.run(ctx, inputs),
            deps=deps, outputs=stage.outputs(ctx, inputs),
            valid=lambda saved: stage.valid(ctx, saved),
            record_id=lambda output: stage.record_id(ctx, output))


def run(cfg, out, *, redo=(), progress=True, train_verbose=None, command=None):
    """Runs (or resumes) the study of resolved config `cfg` into directory `out`."""
    study = Study(cfg, out, progress=progress, train_verbose=train_verbose, command=command)
    study.redo(redo)
    return study.run()
