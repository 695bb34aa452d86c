"""A study stage, and the context every stage reads.

A stage is a small object: a `name`, the names of the stages it reads (`deps`), the
`settings` its cache key digests, and `run(ctx, inputs)` returning its typed `Output`
(a dataclass, see `tfgal.study.store`). ``inputs`` maps each dependency's name to its
output. A stage may also name files that must exist for its record to count (`outputs`),
check a record against the world (`valid`, e.g. a trained model still on disk) and name
its result (`record_id`, e.g. the SavedModel's fingerprint).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

from tfgal import config as config_lib
from tfgal import data, survey
from tfgal.errors import ConfigError
from tfgal.model import export

__all__ = ["MODELS", "Stage", "StudyContext", "derived_configs"]

MODELS = ("baseline", "adapted")


class Stage:
    """One step of the study; subclasses set `name`, `deps`, `Output` and `run`."""

    name: str = ""
    deps: tuple = ()
    Output: type = None

    def settings(self, ctx):
        """What the stage's cache key digests (with the ids of `deps`)."""
        return {}

    def outputs(self, ctx, inputs):
        """Files the stage writes: a record without them does not count."""
        return ()

    def valid(self, ctx, saved):
        """Whether a stored record (the JSON dict) still describes the world."""
        return True

    def record_id(self, ctx, output):
        """The id dependants' keys digest; None: a fresh random one per run."""
        return None

    def run(self, ctx, inputs):
        raise NotImplementedError


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


@dataclasses.dataclass
class StudyContext:
    """What every stage reads: the config, the output directory, the dataset, the models."""

    cfg: object
    out: str
    progress: bool = True
    train_verbose: object = None
    command: str | None = None
    manifest: object = None      # set by the study once the dataset exists
    retrain: set = dataclasses.field(default_factory=set)   # train stages to redo
    records: dict = dataclasses.field(default_factory=dict)  # finished stages, in order
    log: object = print
    _models: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.derived = derived_configs(self.cfg, self.out)

    @property
    def study(self):
        return self.cfg.study

    @property
    def source(self):
        return self.cfg.data.source_depth

    @property
    def target(self):
        return self.cfg.data.target_depth

    @property
    def depths(self):
        return (self.source, self.target)

    def training_years(self):
        return tuple(survey.Depth.parse(d).years for d in self.depths)

    def export_dir(self, kind):
        return config_lib.expand(self.derived[kind].export.dir, self.derived[kind])

    def run_dir(self, kind):
        return config_lib.expand(self.derived[kind].log.dir, self.derived[kind])

    def model(self, kind):
        """The exported model of `kind`, loaded once."""
        if kind not in self._models:
            self._models[kind] = export.load(self.export_dir(kind))
        return self._models[kind]

    def forget_model(self, kind):
        self._models.pop(kind, None)

    def data_id(self):
        """The dataset as stage settings: its root and its manifest's digest."""
        with open(os.path.join(self.manifest.root, data.MANIFEST_NAME), "rb") as f:
            return {"root": os.path.abspath(self.manifest.root),
                    "manifest": hashlib.sha256(f.read()).hexdigest()[:16]}

    def data_settings(self):
        """Settings of stages that draw galaxies of the study's split."""
        return {"data": self.data_id(), "split": self.study.split, "seed": self.cfg.seed,
                "noise_mode": self.cfg.data.noise_mode}
