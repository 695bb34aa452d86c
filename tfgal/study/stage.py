"""A study stage, and the context every stage reads.

A stage is a small object: a `name`, the names of the stages it reads (`deps`), the
`settings` its cache key digests, and `run(ctx, inputs)` returning its typed `Output`
(a dataclass, see `tfgal.study.store`). ``inputs`` maps each dependency's name to its
output. A stage may also refuse the dataset before any stage runs (`check`), name files
that must exist for its record to count (`outputs`), check a record against the world
(`valid`, e.g. a trained model still on disk) and name its result (`record_id`, e.g. the
SavedModel's fingerprint).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

from tfgal import config as config_lib
from tfgal import data, survey
from tfgal.errors import ConfigError
from tfgal.model import export

__all__ = ["CONTROLS", "Control", "Member", "members", "Stage", "StudyContext",
           "derived_configs"]


@dataclasses.dataclass(frozen=True)
class Control:
    """How one model of the controlled study trains; everything else is the config's."""
    adapt: bool          # the config's adaptation loss (else every adaptation weight 0)
    feed_target: bool    # target images through the network (and its batch norm)
    depth_augment: bool  # labelled images at random depths between target and source
    what: str
    corrupt_augment: bool = False  # labelled images corrupted by study.corruption_train


# Same code path, seed and budget for all: only these switches differ.
CONTROLS = {
    "baseline": Control(False, False, False, "source depth only; target images never seen"),
    "target-bn": Control(False, True, False, "target images through the network (batch-norm "
                         "statistics see both depths), every adaptation weight 0"),
    "mmd": Control(True, False, False, "the config's adaptation loss (the study's MMD)"),
    "depth-aug": Control(False, False, True, "labelled images at random depths, log-uniform "
                         "between target and source; target images never seen"),
    "depth-aug+mmd": Control(True, False, True, "depth augmentation and the adaptation loss"),
    "corrupt-aug": Control(False, False, False, "labelled images corrupted by "
                           "study.corruption_train at random severities (the corruption "
                           "defence); target images never seen", corrupt_augment=True),
}
assert tuple(CONTROLS) == config_lib.STUDY_MODELS


@dataclasses.dataclass(frozen=True)
class Member:
    """One trained model: a control `kind` at a training `seed`; `label` names its files."""
    kind: str
    seed: int
    label: str


def members(cfg):
    """The study's models, kind-major: every kind of ``study.models`` at every seed."""
    seeds = list(cfg.study.seeds) or [cfg.seed]
    many = len(seeds) > 1
    return [Member(k, s, f"{k}_s{s}" if many else k) for k in cfg.study.models for s in seeds]


class Stage:
    """One step of the study; subclasses set `name`, `deps`, `Output` and `run`."""

    name: str = ""
    deps: tuple = ()
    Output: type = None
    # Raised when what the stage computes changes, so records of the old code rerun; 0
    # leaves the key as it was before versions existed.
    version: int = 0

    def settings(self, ctx):
        """What the stage's cache key digests (with the ids of `deps`)."""
        return {}

    def check(self, ctx):
        """Refuses settings that cannot work on the dataset (`ctx.manifest`), with the
        reason; the study calls it for every stage before any stage runs."""

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
    """{member label: training config}: each control of ``study.models`` at each seed."""
    adapting = [k for k in cfg.study.models if CONTROLS[k].adapt]
    if adapting and not cfg.loss.adapts:
        raise ConfigError(f"study.models lists {adapting}, which train with the config's "
                          "adaptation loss, but it has no adaptation term: set "
                          "loss.mmd_weight > 0", key="loss.mmd_weight")
    derived = {}
    for m in members(cfg):
        control = CONTROLS[m.kind]
        loss = {} if control.adapt else {w: 0.0 for w in cfg.loss.ADAPTATION_WEIGHTS}
        update = {"name": f"{cfg.name}-{m.label}", "seed": m.seed,
                  "data": {"depth_augment": control.depth_augment,
                           "corrupt_augment": (list(cfg.study.corruption_train)
                                               if control.corrupt_augment else [])},
                  "loss": {**loss, "feed_target": control.feed_target},
                  "export": {"dir": _escape(os.path.join(out, "models", m.label))},
                  "log": {"dir": _escape(os.path.join(out, "runs", m.label))}}
        derived[m.label] = config_lib.merge(cfg, update).without_study()
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
        self.members = members(self.cfg)

    @property
    def labels(self):
        return [m.label for m in self.members]

    @property
    def kinds(self):
        return list(self.cfg.study.models)

    @property
    def seeds(self):
        return list(dict.fromkeys(m.seed for m in self.members))

    def member(self, label):
        return next(m for m in self.members if m.label == label)

    def label_of(self, kind, seed):
        """The member of `kind` at `seed`, or None when the study has no such model."""
        return next((m.label for m in self.members if m.kind == kind and m.seed == seed), None)

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
        """The exported model of member `kind` (a label), loaded once."""
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
