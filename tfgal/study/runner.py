"""`tfgal-study`: the DeepAdversaries robustness study in one resumable command.

    tfgal-study --config pipelines/quick.toml --out studies/quick

Stages, in order (each writes ``OUT/stages/<stage>.json``, plus ``<stage>.npz`` for arrays):

1. ``train_baseline``, ``train_adapted``: a model without domain adaptation (every
   adaptation weight 0) and one with the config's adaptation loss, trained by
   `tfgal.training.train` into ``OUT/models/<kind>`` (SavedModels) and ``OUT/runs/<kind>``.
   A model whose exported config equals the derived one and that loads is reused.
2. ``evaluate``: both models on the study split at the source and target depths.
3. ``curve``: accuracy against depth, from the same noiseless galaxies (skipped, with the
   reason, on data with noise baked in, e.g. the paper's files from ``import-npy``).
4. ``attack_baseline``, ``attack_adapted``: one-pixel attacks and latent distances.
5. ``latent`` (isomap), ``church`` (church windows), ``figures``, ``report``.

Resumption: a stage's JSON is written last and atomically; it records a key (digest of
the stage's settings and of the stages it reads), so a stage reruns exactly when its
output is missing, its settings changed or a stage it reads was redone. An interrupted
training resumes from its last epoch (`tfgal.training`).

Settings live in the config's ``[study]`` section (`tfgal.config.StudyConfig`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import uuid

import numpy as np

from tfgal import io
from tfgal.attack import pixel_attack as attack_lib
from tfgal.attack import driver as attack_report
from tfgal.attack import summary as attack_summary
from tfgal import config as config_lib
from tfgal import seeds, survey
from tfgal.study import evaluation
from tfgal.model import export
from tfgal.data import pipeline
from tfgal.study import plots
from tfgal.data import records
from tfgal.study import report
from tfgal.model import training
from tfgal.errors import ConfigError, DataError, ModelContractError

MODELS = ("baseline", "adapted")
STAGES = ("train_baseline", "train_adapted", "evaluate", "curve", "attack_baseline",
          "attack_adapted", "latent", "church", "figures", "report")
SPLITS = ("train", "val", "test")
REPORT_FILES = ("report.md", "results.json")
FIGURES = {"robustness_curve": "robustness_curve.png", "confusion": "confusion.png",
           "isomap": "isomap.png", "church_windows": "church_windows.png",
           "latent_distances": "latent_distances.png", "examples": "examples.png"}


# --------------------------------------------------------------------------- config


def load_config(path=None, overrides=()):
    """Defaults (with ``[study]``) + the TOML file + ``key=value`` overrides, checked."""
    cfg = config_lib.load(path, overrides)
    derived_configs(cfg, "study")  # raises early when the config has no adaptation term
    return cfg


def _escape(path):
    return path.replace("{", "{{").replace("}", "}}")  # config.expand formats paths


def derived_configs(cfg, out):
    """{"baseline", "adapted"}: the training configs of the study's two models."""
    if not cfg.loss.adapts:
        raise ConfigError("the study compares a domain-adapted model with a baseline, but the "
                          "config's loss has no adaptation term: set loss.mmd_weight > 0",
                          key="loss.mmd_weight")
    derived = {}
    for kind in MODELS:
        update = {"name": f"{cfg.name}-{kind}",
                  "export": {"dir": _escape(os.path.join(out, "models", kind))},
                  "log": {"dir": _escape(os.path.join(out, "runs", kind))}}
        if kind == "baseline":
            update["loss"] = {w: 0.0 for w in cfg.loss.ADAPTATION_WEIGHTS}
        derived[kind] = config_lib.merge(cfg, update).without_study()
    return derived


def _plain(obj):
    """A JSON-safe copy: NumPy scalars to Python, NaN and infinities to None."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


def digest(obj):
    return hashlib.sha256(json.dumps(_plain(obj), sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- stages


@dataclasses.dataclass
class StageRecord:
    """A finished stage: its JSON result, its arrays (loaded on demand) and timing."""

    name: str
    key: str
    id: str
    result: dict
    seconds: float
    reused: bool
    npz_path: str | None = None
    _arrays: dict | None = None

    @property
    def arrays(self):
        if self._arrays is None:
            with np.load(self.npz_path) as f:
                self._arrays = {k: f[k] for k in f.files}
        return self._arrays


class StageStore:
    """Stage records under ``root``: ``<name>.json`` (written last) and ``<name>.npz``."""

    def __init__(self, root, log=print):
        self.root, self.log = root, log

    def path(self, name, ext="json"):
        return os.path.join(self.root, f"{name}.{ext}")

    def load(self, name):
        try:
            with open(self.path(name)) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def forget(self, name):
        for ext in ("json", "npz"):
            if os.path.exists(self.path(name, ext)):
                os.remove(self.path(name, ext))

    def run(self, name, settings, fn, *, deps=(), outputs=(), valid=None):
        """Runs `fn` unless a record with the same key exists, its outputs exist and
        `valid(record)` holds. `fn()` returns (result, arrays or None, id or None)."""
        key = digest({"settings": settings, "deps": {d.name: d.id for d in deps}})
        saved = self.load(name)
        if saved and saved["key"] == key and all(map(os.path.exists, outputs)) and (
                not saved.get("npz") or os.path.exists(self.path(name, "npz"))) and (
                valid is None or valid(saved)):
            self.log(f"{name}: done before ({saved['seconds']:.1f} s), reused")
            return self._record(saved, reused=True)
        self.log(f"{name}: running")
        os.makedirs(self.root, exist_ok=True)
        self.forget(name)  # stale: a crash below must not pair the old record with new arrays
        started = time.time()
        result, arrays, record_id = fn()
        if arrays is not None:
            io.write_npz(self.path(name, "npz"), arrays)
        saved = {"stage": name, "key": key, "id": record_id or uuid.uuid4().hex[:16],
                 "seconds": round(time.time() - started, 2), "npz": arrays is not None,
                 "finished": _now(), "settings": _plain(settings), "result": _plain(result)}
        io.write_json(self.path(name), saved)
        self.log(f"{name}: done in {saved['seconds']:.1f} s")
        return self._record(saved, reused=False, arrays=arrays)

    def _record(self, saved, *, reused, arrays=None):
        npz = self.path(saved["stage"], "npz") if saved.get("npz") else None
        return StageRecord(saved["stage"], saved["key"], saved["id"], saved["result"],
                           saved["seconds"], reused, npz, arrays)


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def model_fingerprint(path):
    """Digest of a SavedModel's graph and variables: what downstream stages depend on."""
    h = hashlib.sha256()
    for root, _, files in sorted(os.walk(path)):
        for name in sorted(files):
            if name.endswith(".pb") or root.endswith("variables"):
                with open(os.path.join(root, name), "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- the study


class Study:
    """The robustness study of a resolved config (`load_config`), run into `out`."""

    def __init__(self, cfg, out, *, progress=True, train_verbose=None, command=None):
        self.cfg, self.s, self.out = cfg, cfg.study, os.fspath(out)
        self.derived = derived_configs(cfg, self.out)
        self.progress, self.train_verbose, self.command = progress, train_verbose, command
        self.store = StageStore(os.path.join(self.out, "stages"), log=self._log)
        self.stage_records = {}
        self._models, self._attack_data, self.manifest = {}, None, None
        self._retrain = set()
        self.source = cfg.data.source_depth
        self.target = cfg.data.target_depth

    def _log(self, message):
        if self.progress:
            print(f"[tfgal-study] {message}", flush=True)

    def model(self, kind):
        if kind not in self._models:
            self._models[kind] = export.load(self._export_dir(kind))
        return self._models[kind]

    def _export_dir(self, kind):
        return config_lib.expand(self.derived[kind].export.dir, self.derived[kind])

    def _run_dir(self, kind):
        return config_lib.expand(self.derived[kind].log.dir, self.derived[kind])

    def redo(self, stages):
        """Forgets the records of `stages` ("all": every stage) so they run again; a
        redone train stage retrains its model even when the one on disk matches."""
        for name in STAGES if "all" in stages else stages:
            if name not in STAGES:
                raise ConfigError(f"unknown stage {name!r}", key="redo", valid=(*STAGES, "all"))
            self.store.forget(name)
            self._retrain.add(name)

    def run(self):
        """Runs (or resumes) every stage; returns the results dict of ``results.json``."""
        os.makedirs(self.out, exist_ok=True)
        self.manifest = training.ensure_dataset(self.cfg.data, self.cfg.seed)
        r, trained = self.stage_records, [f"train_{k}" for k in MODELS]
        for kind in MODELS:
            r[f"train_{kind}"] = self._stage(
                f"train_{kind}", lambda k=kind: self._train(k), {"config": self.derived[kind].to_dict()},
                valid=lambda saved, k=kind: self._trained(k, saved))
        r["evaluate"] = self._stage("evaluate", self._evaluate, self._eval_settings(), trained)
        r["curve"] = self._stage("curve", self._curve, self._curve_settings(), trained)
        for kind in MODELS:
            r[f"attack_{kind}"] = self._stage(f"attack_{kind}", lambda k=kind: self._attack(k),
                                              self._attack_settings(), [f"train_{kind}"])
        attacks = [f"attack_{k}" for k in MODELS]
        r["latent"] = self._stage("latent", self._latent, self._latent_settings(),
                                  ["evaluate", *attacks])
        r["church"] = self._stage("church", self._church, self._church_settings(),
                                  [*trained, *attacks])
        r["figures"] = self._stage("figures", self._figures, {"examples": self.s.examples},
                                   STAGES[:-2], outputs=self._figure_paths())
        r["report"] = self._stage("report", self._report, {}, STAGES[:-1],
                                  outputs=[os.path.join(self.out, n) for n in REPORT_FILES])
        with open(os.path.join(self.out, "results.json")) as f:
            return json.load(f)

    def _stage(self, name, fn, settings, deps=(), *, outputs=(), valid=None):
        index = STAGES.index(name) + 1
        self.store.log = lambda m: self._log(f"[{index}/{len(STAGES)}] {m}")
        return self.store.run(name, settings, fn, deps=[self.stage_records[d] for d in deps],
                              outputs=outputs, valid=valid)

    # ---- training

    def _trained(self, kind, saved):
        """A finished train stage still describes the model on disk."""
        return (self._model_matches(kind)
                and saved["id"] == model_fingerprint(self._export_dir(kind)))

    def _model_matches(self, kind):
        """The model at the export dir was trained, to the end, with the derived config."""
        if not os.path.exists(os.path.join(self._run_dir(kind), training.SUMMARY)):
            return False
        try:
            model = export.load(self._export_dir(kind))
        except ModelContractError:
            return False
        return model.assets.get("config") == _plain(self.derived[kind].to_dict())

    def _train(self, kind):
        cfg, run_dir = self.derived[kind], self._run_dir(kind)
        reused = f"train_{kind}" not in self._retrain and self._model_matches(kind)
        if reused:
            self._log(f"train_{kind}: the model at {self._export_dir(kind)} matches; reused")
            with open(os.path.join(run_dir, training.SUMMARY)) as f:
                summary = json.load(f)
        else:
            self._drop_stale_backup(run_dir, cfg)
            self._models.pop(kind, None)
            summary = training.train(cfg, verbose=self.train_verbose)
        result = {"summary": summary, "reused_model": reused, "epochs": _epochs(run_dir),
                  "export_dir": self._export_dir(kind), "run_dir": run_dir}
        return result, None, model_fingerprint(self._export_dir(kind))

    def _drop_stale_backup(self, run_dir, cfg):
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
        if previous != _plain(cfg.to_dict()):
            self._log(f"{run_dir} holds an interrupted run of another config: starting over")
            shutil.rmtree(backup)

    # ---- evaluation

    def _eval_settings(self):
        return {"data": self._data_id(), "split": self.s.split, "n": self.s.eval_n,
                "seed": self.cfg.seed, "noise_mode": self.cfg.data.noise_mode,
                "depths": [self.source, self.target], "isomap_n": self.s.isomap_n}

    def _data_id(self):
        with open(os.path.join(self.manifest.root, records.MANIFEST_NAME), "rb") as f:
            return {"root": os.path.abspath(self.manifest.root),
                    "manifest": hashlib.sha256(f.read()).hexdigest()[:16]}

    def _predict(self, depth, n):
        models = {k: self.model(k) for k in MODELS}
        return evaluation.predict_split(
            models, self.manifest, self.s.split, depth, n=n or None, seed=self.cfg.seed,
            noise_mode=self.cfg.data.noise_mode)

    def _evaluate(self):
        names = list(self.manifest.class_names)
        out = {d: self._predict(d, self.s.eval_n) for d in (self.source, self.target)}
        src, tgt = out[self.source], out[self.target]
        if not np.array_equal(src["galaxy_id"], tgt["galaxy_id"]):
            raise DataError(f"{self.source} and {self.target} images are not the same galaxies "
                            "in the same order", path=self.manifest.root)
        metrics, arrays = {}, {"labels": src["labels"], "galaxy_id": src["galaxy_id"]}
        m = self.s.isomap_n
        for kind in MODELS:
            metrics[kind] = {}
            for i, depth in enumerate((self.source, self.target)):
                probs = out[depth][kind]["probabilities"]
                metrics[kind][depth] = evaluation.collect(
                    evaluation.ClassificationEvaluator(src["labels"], probs, names))
                arrays[f"probabilities_{kind}_{i}"] = probs
                arrays[f"latent_{kind}_{i}"] = out[depth][kind]["latent"][:m]
        counts = np.bincount(src["labels"], minlength=len(names)).tolist()
        return {"metrics": metrics, "n": int(len(src["labels"])), "class_counts": counts}, \
            arrays, None

    # ---- robustness curve

    def _curve_years(self):
        s = self.s
        return evaluation.curve_depths(s.curve_depths, low=s.curve_min_years,
                                       high=s.curve_max_years, per_decade=s.curve_per_decade,
                                       always=self._training_years())

    def _training_years(self):
        return tuple(survey.Depth.parse(d).years for d in (self.source, self.target))

    def _curve_settings(self):
        return {"data": self._data_id(), "split": self.s.split, "n": self.s.curve_n,
                "seed": self.cfg.seed, "noise_mode": self.cfg.data.noise_mode,
                "years": [d.years for d in self._curve_years()]}

    def _curve(self):
        if not self.manifest.noiseless:
            return {"skipped": (
                f"dataset {self.manifest.root} holds images with noise baked in at "
                f"{', '.join(sorted(self.manifest.images))} only (imported survey data, e.g. "
                "the paper's files from tfgal-data import-npy); other depths need noiseless "
                "flux to draw on-the-fly noise from")}, None, None
        depths = self._curve_years()
        models = {k: self.model(k) for k in MODELS}
        curve = evaluation.RobustnessCurve(
            models, self.manifest, self.s.split, depths, n=self.s.curve_n or None,
            seed=self.cfg.seed, noise_mode=self.cfg.data.noise_mode,
            progress=lambda d: self._log(f"curve: depth {d.name} "
                                         f"({depths.index(d) + 1}/{len(depths)})"))
        return curve.table(), None, None

    # ---- attacks

    def _attack_settings(self):
        s = self.s
        return {"data": self._data_id(), "split": s.split, "n": s.attack_n,
                "seed": seeds.derive(self.cfg.seed, "attack"), "data_seed": self.cfg.seed,
                "depths": [self.source, self.target],
                **{k: getattr(s, k) for k in ("attack_pixels", "attack_popsize", "attack_iters",
                                     "attack_f", "attack_threshold", "attack_max_batch")}}

    def attack_data(self):
        """The attacked galaxies at the source depth and the same galaxies at the target."""
        if self._attack_data is None:
            kw = dict(n=self.s.attack_n, seed=self.cfg.seed,
                      noise_mode=self.cfg.data.noise_mode)
            base = pipeline.load_arrays(self.manifest, self.s.split, self.source, **kw)
            noisy = pipeline.load_arrays(self.manifest, self.s.split, self.target, **kw)
            if not np.array_equal(base["galaxy_id"], noisy["galaxy_id"]):
                raise DataError("attacked galaxies differ between depths", path=self.manifest.root)
            self._attack_data = {"base": base, "noisy": noisy}
        return self._attack_data

    def _attack(self, kind):
        s, model, data = self.s, self.model(kind), self.attack_data()
        images, labels = data["base"]["images"], data["base"]["labels"]
        attacker = attack_lib.OnePixelAttack(
            model, pixels=s.attack_pixels, popsize=s.attack_popsize,
            iters=s.attack_iters, f=s.attack_f, threshold=s.attack_threshold,
            seed=seeds.derive(self.cfg.seed, "attack"),
            max_batch=s.attack_max_batch or None, evaluator=s.attack_evaluator)
        with _progress_bar(len(images), f"attack {kind}", self.progress) as callback:
            result = attacker.attack(images, labels, callback=callback)
        latents = {name: model.predict(x)["latent"] for name, x in (
            ("base", images), ("attacked", result.images), ("noisy", data["noisy"]["images"]))}
        d_attack = np.where(result.success,
                            np.linalg.norm(latents["attacked"] - latents["base"], axis=1), np.nan)
        d_noisy = np.linalg.norm(latents["noisy"] - latents["base"], axis=1)
        self._write_attack_table(kind, result, d_attack, d_noisy)
        arrays = {"galaxy_id": data["base"]["galaxy_id"], "labels": labels,
                  "success": result.success, "already": result.already,
                  "queries": result.queries, "generations": result.generations,
                  "pixels": result.pixels, "values": result.values,
                  "original_class": result.original_class, "final_class": result.final_class,
                  "final_score": result.final_score, "d_attack": d_attack, "d_noisy": d_noisy,
                  **{f"latent_{k}": v for k, v in latents.items()}}
        return attack_summary.summarize(result, d_attack, d_noisy), arrays, None

    def _write_attack_table(self, kind, result, d_attack, d_noisy):
        rows = attack_report.table(result, galaxy_id=self.attack_data()["base"]["galaxy_id"],
                                bands=list(self.manifest.bands),
                                extra={"latent_distance_attack": d_attack,
                                       "latent_distance_noisy": d_noisy})
        io.write_csv(os.path.join(self.out, f"attacks_{kind}.csv"), rows)

    # ---- latent space

    def _latent_settings(self):
        return {"isomap_n": self.s.isomap_n, "neighbors": self.s.isomap_neighbors,
                "solver": "dense"}

    def _latent(self):
        ev = self.stage_records["evaluate"].arrays
        m = len(ev["latent_baseline_0"])
        arrays, result = {}, {}
        for kind in MODELS:
            att = self.stage_records[f"attack_{kind}"].arrays
            hit = att["success"]
            latents = np.concatenate([ev[f"latent_{kind}_0"], ev[f"latent_{kind}_1"],
                                      att["latent_attacked"][hit]])
            arrays[f"embedding_{kind}"] = evaluation.isomap(
                latents, n_neighbors=self.s.isomap_neighbors)
            arrays[f"group_{kind}"] = np.repeat([0, 1, 2], [m, m, int(hit.sum())])
            arrays[f"label_{kind}"] = np.concatenate([ev["labels"][:m], ev["labels"][:m],
                                                      att["labels"][hit]])
            result[kind] = {"points": int(len(latents)), "attacked": int(hit.sum())}
        return result, arrays, None

    # ---- church windows

    def _church_settings(self):
        return {k: getattr(self.s, k) for k in ("church_windows", "church_grid", "church_span")}

    def _church(self):
        result, arrays = {}, {}
        for kind in MODELS:
            att, model = self.stage_records[f"attack_{kind}"].arrays, self.model(kind)
            chosen = np.flatnonzero(att["success"])[:self.s.church_windows]
            grids, windows = [], []
            for i in chosen:
                coords, classes = evaluation.church_window(
                    model, att["latent_base"][i], att["latent_attacked"][i],
                    att["latent_noisy"][i], grid=self.s.church_grid, span=self.s.church_span)
                grids.append(classes)
                windows.append(evaluation.window_summary(att, i, coords, classes,
                                               len(self.manifest.class_names)))
            g = self.s.church_grid
            arrays[f"classes_{kind}"] = np.asarray(grids, np.int16).reshape(-1, g, g)
            arrays["coords"] = np.linspace(-self.s.church_span, self.s.church_span, g)
            result[kind] = windows
        return result, arrays, None

    # ---- figures and report

    def _figure_names(self):
        skip = {"robustness_curve"} if self.stage_records["curve"].result.get("skipped") else set()
        return {k: os.path.join("figures", f) for k, f in FIGURES.items() if k not in skip}

    def _figure_paths(self):
        return [os.path.join(self.out, p) for p in self._figure_names().values()]

    def _figures(self):
        r, names = self.stage_records, list(self.manifest.class_names)
        path = {k: os.path.join(self.out, p) for k, p in self._figure_names().items()}
        if "robustness_curve" in path:
            counts = np.asarray(r["evaluate"].result["class_counts"])
            plots.robustness_curve(r["curve"].result, path["robustness_curve"],
                                   marks=zip(self._training_years(), (self.source, self.target)),
                                   chance=float(counts.max() / counts.sum()))
        metrics = r["evaluate"].result["metrics"]
        plots.confusion_matrices({(k, d): metrics[k][d]["confusion"] for k in MODELS
                                  for d in (self.source, self.target)}, names, path["confusion"])
        plots.isomap({k: {key: r["latent"].arrays[f"{key}_{k}"]
                          for key in ("embedding", "group", "label")} for k in MODELS},
                     names, path["isomap"], (self.source, self.target))
        plots.church_windows(self._church_panels(), names, path["church_windows"])
        plots.latent_distances({k: {"attack": r[f"attack_{k}"].arrays["d_attack"],
                                    "noisy": r[f"attack_{k}"].arrays["d_noisy"]} for k in MODELS},
                               path["latent_distances"])
        plots.example_galaxies(self._examples(), self._attacked_example(), names, path["examples"])
        return {"figures": self._figure_names()}, None, None

    def _church_panels(self):
        church = self.stage_records["church"]
        return {k: [{"coords": church.arrays["coords"], "classes": grid, **w}
                    for grid, w in zip(church.arrays[f"classes_{k}"], church.result[k])]
                for k in MODELS}

    def _examples(self):
        """The first `examples` galaxies of each class, at both depths."""
        n = min(self.manifest.count(self.s.split), 64 * self.s.examples)
        data = {d: pipeline.load_arrays(self.manifest, self.s.split, d, n=n,
                                        seed=self.cfg.seed,
                                        noise_mode=self.cfg.data.noise_mode)
                for d in (self.source, self.target)}
        labels = data[self.source]["labels"]
        pick = [i for c in range(len(self.manifest.class_names))
                for i in np.flatnonzero(labels == c)[:self.s.examples]]
        return {d: (data[d]["images"][pick], labels[pick]) for d in data}

    def _attacked_example(self):
        for kind in MODELS:
            att = self.stage_records[f"attack_{kind}"].arrays
            hit = np.flatnonzero(att["success"])
            if len(hit):
                i = hit[0]
                base = self.attack_data()["base"]["images"][i:i + 1]
                image = attack_lib.apply_pixels(base, att["pixels"][i:i + 1],
                                                att["values"][i:i + 1])
                return {"base": base[0], "image": image[0], "pixels": att["pixels"][i],
                        "label": int(att["labels"][i]), "final_class": int(att["final_class"][i]),
                        "final_score": float(att["final_score"][i]), "model": kind}
        return None

    def _report(self):
        report.write(self.out, _plain(self.results()))
        return {"report": os.path.join(self.out, "report.md")}, None, None

    def results(self):
        """Every number of the study, JSON-able (what ``results.json`` holds)."""
        r, names = self.stage_records, list(self.manifest.class_names)
        attack = {k: r[f"attack_{k}"].result for k in MODELS}
        results = {
            "name": self.cfg.name, "created": _now(), "command": self.command,
            "model_name": self.cfg.model.name, "class_names": names,
            "split": self.s.split, "depths": {"source": self.source, "target": self.target},
            "dataset": self._dataset_info(),
            "models": {k: self._model_info(k) for k in MODELS},
            "evaluation": r["evaluate"].result["metrics"],
            "robustness_curve": r["curve"].result,
            "attack": attack,
            "latent_distance_ratio": attack_summary.distance_ratios(
                attack["adapted"]["latent_distance"], attack["baseline"]["latent_distance"]),
            "church_windows": r["church"].result,
            "figures": self._figure_names(),
            "paper": report.PAPER,
            "config": self.cfg.to_dict(), "seeds": self._seeds(), "versions": report.versions(),
            "run_times": self._run_times(),
        }
        results["paper_comparison"] = report.headline(results)
        return results

    def _dataset_info(self):
        m = self.manifest
        return {"root": os.path.abspath(m.root), "noiseless": m.noiseless,
                "kind": ("noiseless flux, noise drawn on the fly" if m.noiseless
                         else f"noise baked in at {', '.join(sorted(m.images))}"),
                "image_shape": list(m.image_shape), "generator": (m.generator or {}).get("name"),
                "counts": {s: m.count(s) for s in m.splits}}

    def _model_info(self, kind):
        rec = self.stage_records[f"train_{kind}"]
        cfg = self.derived[kind]
        return {"loss": cfg.loss, "epochs": rec.result.get("epochs"),
                "export_dir": rec.result["export_dir"], "run_dir": rec.result["run_dir"],
                "reused": rec.reused or rec.result.get("reused_model", False),
                "fingerprint": rec.id, "train_summary": rec.result["summary"]}

    def _seeds(self):
        seed = self.cfg.seed
        return {"root": seed, "init": seeds.derive(seed, "init"), "noise": seed,
                "attack": seeds.derive(seed, "attack")}

    def _run_times(self):
        stages = {name: {"seconds": rec.seconds, "reused": rec.reused}
                  for name, rec in self.stage_records.items()}
        return {"stages": stages, "total_s": round(sum(s.seconds for s in stages.values()), 1)}


def _epochs(run_dir):
    path = os.path.join(run_dir, "history.csv")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return max(0, sum(1 for line in f if line.strip()) - 1)


@contextlib.contextmanager
def _progress_bar(total, desc, enabled):
    if not enabled:
        yield None
        return
    from tqdm import tqdm
    with tqdm(total=total, desc=desc, unit="galaxy", mininterval=2.0, file=sys.stdout) as bar:
        def update(indices, successes):
            bar.update(len(indices))
        yield update


def run(cfg, out, *, redo=(), progress=True, train_verbose=None, command=None):
    """Runs (or resumes) the study of resolved config `cfg` into directory `out`."""
    study = Study(cfg, out, progress=progress, train_verbose=train_verbose, command=command)
    study.redo(redo)
    return study.run()
