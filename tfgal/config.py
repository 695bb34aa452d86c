"""Experiment configs: typed, frozen sections; TOML files in `pipelines/`; `--set` overrides.

A config is a `Config`: the top-level ``name`` and ``seed`` and one frozen dataclass per
section (`DataConfig`, `ModelConfig`, `TrainConfig`, `LossConfig`, `ExportConfig`,
`StudyConfig`, `LogConfig`). Each field's default, choices and bounds are declared once, on
the field; `load` and `merge` check every key and value against them, so an unknown key or a
bad value is a `ConfigError` that names the key and lists the valid keys (or values). The
command-line tools take their choices and defaults from the same fields (`choices`,
`default`).

Configs travel as JSON (`Config.to_dict`, in field order): the resolved config is saved with
every run, inside every exported model, and in a study's ``results.json``. A training config
derived by the study has no ``study`` section (``Config.study is None``), so that changing
how a model is studied never makes it look retrained.
"""

from __future__ import annotations

import dataclasses
import json
import os

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

from tfgal.errors import ConfigError

__all__ = ["Config", "DataConfig", "ModelConfig", "TrainConfig", "LossConfig", "ExportConfig",
           "StudyConfig", "LogConfig", "AttackSettings", "CurveSettings", "load", "merge",
           "from_dict", "parse_override", "expand", "dumps", "choices", "default", "DEFAULTS",
           "SECTIONS", "STRATEGIES", "NOISE_MODES", "SPLITS", "ATTACK_EVALUATORS", "ATTACK_INITS",
           "STUDY_MODELS", "DEFAULT_STUDY_MODELS", "STRETCH_CLIPS", "STRETCH_BANDS",
           "MORPHOLOGY_CLIPS", "WEIGHT_DECAY_MODES", "CORRUPTIONS", "SCHEDULES"]

STRATEGIES = ("default", "mirrored", "multiworker")
NOISE_MODES = ("fast", "exact")
SPLITS = ("train", "val", "test")
ATTACK_EVALUATORS = ("auto", "incremental", "full")
ATTACK_INITS = ("bounds", "gaussian", "uniform")  # tfgal.attack.engine.INITS
# The controlled study's models (defined in tfgal.study.stage.CONTROLS).
STUDY_MODELS = ("baseline", "target-bn", "mmd", "depth-aug", "depth-aug+mmd", "corrupt-aug")
# The default: the noise controls (corrupt-aug also needs study.corruption_train).
DEFAULT_STUDY_MODELS = STUDY_MODELS[:5]
# tfgal.data.corruptions.NAMES (config loads without TensorFlow, so they are repeated here;
# a test keeps the two equal).
CORRUPTIONS = ("seeing", "sky", "trail", "cosmic-rays", "neighbour", "misregistration",
               "bad-pixels", "calibration", "quantise", "jpeg")
# The stretch's lower clip: the fitted source-depth percentile (the study's), or a floor
# 3 sigma of sky noise below zero at the noisiest training depth. ("none" was listed once
# but never worked: an unclipped stretch has no value range for the attack's bounds.)
STRETCH_CLIPS = ("percentile", "target-floor")
# The stretch's clip pair: each band's own percentiles, or one pair over all bands pooled
# (the paper's code; keeps colours). tfgal.data.stretch.BAND_MODES; a test keeps them equal.
STRETCH_BANDS = ("per-band", "shared")
# What the classical baseline measures: the observed e-/s images, or those images clipped
# per band to the networks' stretch limits (the information the networks get). Unclipped by
# default: statmorph's noise model (detection threshold, weight map, sky-box background)
# assumes an unclipped sky (clipped, it flagged all of 60 mocks at 0.1 y bad: "Full Gini
# segmap"), and a classical pipeline would measure the survey's images.
MORPHOLOGY_CLIPS = ("unclipped", "clipped")
WEIGHT_DECAY_MODES = ("decoupled", "l2")
SCHEDULES = ("constant", "cosine", "warmup-cosine")


def _field(default, *, choices=None, low=None, high=None, low_open=False, example=None):
    """A config field: `default`, and optionally the values or the range it may take.

    `low` is inclusive unless `low_open`; `high` is inclusive. `example`: a value shown in
    the message for a value of the wrong type (lists: how to write one).
    """
    meta = {"choices": choices, "low": low, "high": high, "low_open": low_open,
            "example": example}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _positive(default):
    return _field(default, low=0, low_open=True)


def _non_negative(default):
    return _field(default, low=0)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    dir: str = "data/mock"                      # dataset directory (tfgal-data output)
    mock: bool = True                           # build a mock set at `dir` if it is missing
    mock_train: int = _non_negative(3000)
    mock_val: int = _non_negative(500)
    mock_test: int = _non_negative(1000)
    mock_workers: int = _non_negative(0)        # 0: all cores
    source_depth: str = "Y10"                   # labelled baseline depth
    target_depth: str = "Y1"                    # unlabelled perturbed depth (adaptation)
    noise_mode: str = _field("fast", choices=NOISE_MODES)  # Poisson noise: fast or exact
    augment: bool = True                        # flips and 90-degree rotations in training
    fresh_noise: bool = True                    # new noise each epoch (False: one fixed draw)
    depth_augment: bool = False                 # labelled images at random depths, log-uniform
    #                                             between target_depth and source_depth
    stretch_clip: str = _field("percentile", choices=STRETCH_CLIPS)
    stretch_bands: str = _field("per-band", choices=STRETCH_BANDS)  # "shared": the paper's
    corrupt_augment: list = _field([], example=["seeing", "sky"])  # corruptions
    #                                             (CORRUPTIONS) augmenting the labelled
    #                                             images: the corruption defence
    corrupt_prob: float = _field(0.5, low=0, low_open=True, high=1)  # share of those
    #                                             images corrupted (one corruption, severity 1-5)
    cache: bool = True                          # hold the training split in memory (observed
    #                                             once when the noise is fixed) and validation

    def check(self):
        _check_corruptions("data.corrupt_augment", self.corrupt_augment)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    name: str = _field("convnet", choices=("convnet", "resnet18"))
    latent_dim: int = _positive(256)
    dropout: float = -1.0                       # < 0: the architecture's default
    width: int = _positive(64)                  # resnet18 only: filters of the first stage


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = _positive(100)
    batch_size: int = _positive(128)            # per domain: 128 source + 128 target
    steps_per_epoch: int = _non_negative(0)     # 0: one pass over the training split
    learning_rate: float = _positive(1e-5)
    schedule: str = _field("constant", choices=SCHEDULES)  # cosine: decay to 0;
    #                                             warmup-cosine: linear warm-up, then cosine
    warmup: float = _field(0.2, low=0, high=0.9)  # warmup-cosine: share of all steps warming up
    beta_1: float = 0.7
    beta_2: float = 0.8
    weight_decay: float = _non_negative(1e-4)
    weight_decay_mode: str = _field("decoupled", choices=WEIGHT_DECAY_MODES)  # l2: PyTorch Adam's
    source_only_weight_decay: float = -1.0      # models without adaptation (< 0: weight_decay)
    patience: int = _non_negative(10)           # early stopping on validation loss
    checkpoint_steps: int = _non_negative(0)    # also save the exact training state every
    #                                             N steps, for long epochs (0: epoch ends only)
    precise_bn_batches: int = _non_negative(10)  # recompute BN statistics each epoch (0: off)
    class_weights: bool = True                  # weight_c = N / (n_classes * n_c)
    mixed_precision: bool = False               # mixed_float16 on GPU
    deterministic: bool = True                  # op determinism (same seed, same metrics)
    jit_compile: bool = True                    # XLA-compile the train step (not when
    #                                             deterministic: Keras has no deterministic XLA)
    strategy: str = _field("default", choices=STRATEGIES)


@dataclasses.dataclass(frozen=True)
class LossConfig:
    mmd_weight: float = _non_negative(0.01)     # 0 for the baseline
    mmd_sigmas: str = _field("study", choices=("study", "data"))  # 19 fixed, or x mean distance
    fisher_weight: float = _non_negative(0.0)
    entropy_weight: float = _non_negative(0.0)
    feed_target: bool = False                   # target images through the network (and its
    #                                             batch norm) even with every weight at 0

    ADAPTATION_WEIGHTS = ("mmd_weight", "fisher_weight", "entropy_weight")

    @property
    def adapts(self):
        """Whether any adaptation term is on."""
        return any(getattr(self, w) > 0 for w in self.ADAPTATION_WEIGHTS)

    @property
    def uses_target(self):
        """Whether target images enter training at all (else never seen, not even by BN)."""
        return self.adapts or self.feed_target


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    dir: str = "saved_models/{name}"


@dataclasses.dataclass(frozen=True)
class AttackSettings:
    """The study's ``attack_*`` keys as one group (see `StudyConfig.attack`)."""
    n: int
    pixels: int
    popsize: int
    iters: int
    f: float
    threshold: float
    max_batch: int
    evaluator: str
    init: str


@dataclasses.dataclass(frozen=True)
class CurveSettings:
    """The study's ``curve_*`` keys as one group (see `StudyConfig.curve`)."""
    depths: list
    min_years: float
    max_years: float
    per_decade: int
    n: int


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    split: str = _field("test", choices=SPLITS)  # split evaluated and attacked
    models: list = _field(list(DEFAULT_STUDY_MODELS), example=["baseline", "mmd"])  # the
    #                                             study's models (STUDY_MODELS)
    seeds: list = _field([], example=[0, 1, 2])  # training seeds; [] = the config's seed
    eval_n: int = _non_negative(0)              # galaxies evaluated at both depths (0: all)
    attack_n: int = _field(150, low=1)          # first galaxies attacked (the paper: 150)
    attack_pixels: int = _field(1, low=1)
    attack_popsize: int = _field(400, low=4)    # the paper: 400; DE needs 3 partners
    attack_iters: int = _non_negative(100)      # generations at most (the paper: 100)
    attack_f: float = _field(0.5, low=0, low_open=True, high=2)  # DE mutation scale
    attack_threshold: float = _field(0.05, low=0, low_open=True, high=1)  # p_true below this
    attack_max_batch: int = _non_negative(0)    # candidates per model call; 0: the default
    attack_evaluator: str = _field("auto", choices=ATTACK_EVALUATORS)
    attack_init: str = _field("bounds", choices=ATTACK_INITS)  # "gaussian": Su et al.'s
    curve_depths: list = _field([], example=[1.0, 10.0])  # survey years; [] = auto:
    #                                             log-spaced
    curve_min_years: float = _positive(0.1)     # auto range
    curve_max_years: float = _positive(20.0)
    curve_per_decade: int = _field(3, low=1)    # auto depths per factor of ten in exposure
    curve_n: int = _non_negative(0)             # galaxies per depth (0: the whole split)
    isomap_n: int = _field(300, low=2)          # galaxies per depth in the isomap
    isomap_neighbors: int = _field(10, low=1)
    church_windows: int = _non_negative(3)      # attacked galaxies per model, church plots
    church_grid: int = _field(41, low=3)        # grid points per axis
    church_span: float = _positive(2.0)         # the grid covers [-span, span]
    examples: int = _field(1, low=1)            # galaxies per class in the example figure
    ece_bins: int = _field(15, low=1)           # expected calibration error bins
    bootstrap: int = _field(2000, low=10)       # resamples behind every 95% interval
    corruptions: list = _field([], example=["seeing", "sky"])  # the corruption stage's
    #                                             corruptions (CORRUPTIONS; [] = no
    #                                             corruption stage)
    corruption_n: int = _field(300, low=2)      # first galaxies of the split corrupted
    corruption_target: bool = False             # also at the target depth
    corruption_train: list = _field([], example=["seeing"])  # what the corrupt-aug model
    #                                             trains on; the rest of study.corruptions
    #                                             is held out
    morphology_n: int = _non_negative(0)        # classical baseline: first galaxies of the
    #                                             split measured at every curve depth (0: none)
    morphology_train_n: int = _field(300, low=3)  # first training galaxies it learns from
    morphology_clip: str = _field("unclipped", choices=MORPHOLOGY_CLIPS)  # what statmorph
    #                                             measures (MORPHOLOGY_CLIPS)

    def check(self):
        if self.attack_threshold >= 1:
            _bad("study.attack_threshold", "must lie in (0, 1)")
        if not self.curve_min_years < self.curve_max_years:
            _bad("study.curve_min_years", "must be below study.curve_max_years")
        if not all(isinstance(y, (int, float)) and not isinstance(y, bool) and y > 0
                   for y in self.curve_depths):
            _bad("study.curve_depths", "must list positive survey years (or be [] for auto); "
                 f"received {self.curve_depths!r}")
        _check_names("study.models", self.models, STUDY_MODELS, "model", empty_ok=False)
        _check_corruptions("study.corruptions", self.corruptions)
        _check_corruptions("study.corruption_train", self.corruption_train)
        if self.morphology_n and self.curve_n and self.morphology_n > self.curve_n:
            _bad("study.morphology_n", f"must not exceed study.curve_n ({self.curve_n}): the "
                 "networks are compared with the classical baseline on the same galaxies")
        if self.morphology_n and self.eval_n and self.morphology_n > self.eval_n:
            _bad("study.morphology_n", f"must not exceed study.eval_n ({self.eval_n}): the "
                 "networks are compared with the classical baseline on the same galaxies")
        if "corrupt-aug" in self.models and not self.corruption_train:
            _bad("study.corruption_train", "must list the corruptions the corrupt-aug model "
                 "trains on (study.models lists corrupt-aug)")
        if len(set(map(repr, self.seeds))) != len(self.seeds) or not all(
                isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in self.seeds):
            _bad("study.seeds", f"must list distinct non-negative integers; received "
                 f"{self.seeds!r}")

    @property
    def attack(self):
        return AttackSettings(**{f.name: getattr(self, f"attack_{f.name}")
                                 for f in dataclasses.fields(AttackSettings)})

    @property
    def curve(self):
        return CurveSettings(**{f.name: getattr(self, f"curve_{f.name}")
                                for f in dataclasses.fields(CurveSettings)})


@dataclasses.dataclass(frozen=True)
class LogConfig:
    dir: str = "runs/{name}"
    profile: bool = False                       # TensorBoard profiler on a few steps
    images: int = _non_negative(6)              # example galaxies per depth in TensorBoard
    projector: int = _non_negative(300)         # galaxies per depth in the projector


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "loss": LossConfig,
            "export": ExportConfig, "study": StudyConfig, "log": LogConfig}


@dataclasses.dataclass(frozen=True)
class Config:
    """A resolved experiment config. ``study`` is None in a model's training config."""
    name: str = "run"
    seed: int = _non_negative(0)
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    loss: LossConfig = LossConfig()
    export: ExportConfig = ExportConfig()
    study: StudyConfig | None = StudyConfig()
    log: LogConfig = LogConfig()

    def to_dict(self):
        """Nested plain dict in field order (the JSON saved with runs and exports)."""
        out = dataclasses.asdict(self)
        if self.study is None:
            del out["study"]
        return out

    def without_study(self):
        return dataclasses.replace(self, study=None)


DEFAULTS = Config().to_dict()


def _bad(key, message):
    raise ConfigError(f"config key {key} {message}", key=key)


def _check_corruptions(key, names):
    _check_names(key, names, CORRUPTIONS, "corruption")


def _check_names(key, names, valid, what, *, empty_ok=True):
    """`names` must be names from `valid`, each once; an unknown name, a repeated one and
    an empty list each get their own message."""
    firsts = [n for i, n in enumerate(names) if names.index(n) == i]  # no set: may hold lists
    unknown = [n for n in firsts if n not in valid]
    if unknown:
        raise ConfigError(f"config key {key}: unknown {what}{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(map(repr, unknown))}", key=key, valid=valid)
    repeated = [n for n in firsts if names.count(n) > 1]
    if repeated:
        raise ConfigError(f"config key {key} lists {', '.join(map(repr, repeated))} more "
                          f"than once; each {what} may appear once; received {names!r}",
                          key=key)
    if not names and not empty_ok:
        raise ConfigError(f"config key {key} lists no {what}; name at least one", key=key,
                          valid=valid)


def _not_a_list(key, value, example):
    """The error for a list key given something else, showing how to write a list in
    ``--set`` and in a TOML file."""
    section, _, name = key.rpartition(".")
    where = f"{name} = {json.dumps(example)} under [{section}]" if section else \
        f"{key} = {json.dumps(example)}"
    text = (f"config key {key} must be a list, e.g. --set "
            f"'{key}={json.dumps(example, separators=(',', ':'))}' (in a TOML file: {where})")
    if isinstance(value, str) and value.lstrip().startswith("["):
        # what the shell leaves of --set study.models=["a","b"]: TOML then fails to parse
        text += ("; its strings need double quotes, which the shell removes unless the "
                 "whole KEY=VALUE is in single quotes")
    return ConfigError(f"{text}; received {value!r}", key=key)


def _check_value(key, value, field):
    default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok and isinstance(default, list):
        raise _not_a_list(key, value, field.metadata.get("example") or default)
    if not ok:
        raise ConfigError(f"config key {key} must be {type(default).__name__}; "
                          f"received {value!r}", key=key)
    if isinstance(value, float) and value != value:
        raise ConfigError(f"config key {key} is NaN", key=key)
    meta = field.metadata
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"config key {key} received {value!r}", key=key, valid=meta["choices"])
    low, high = meta.get("low"), meta.get("high")
    if low is not None and (value <= low if meta["low_open"] else value < low):
        _bad(key, f"must be {'>' if meta['low_open'] else '>='} {low}; received {value!r}")
    if high is not None and value > high:
        _bad(key, f"must be <= {high}; received {value!r}")
    return value


def _merge_section(cls, current, update, path):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in update.items():
        full = ".".join((*path, key))
        if key not in fields:
            where = ".".join(path) or "top level"
            raise ConfigError(f"unknown config key {full!r} ({where})", key=full,
                              valid=[".".join((*path, k)) for k in fields])
        section = SECTIONS.get(key) if not path else None
        if section is not None:
            if not isinstance(value, dict):
                raise ConfigError(f"config key {full} is a section", key=full,
                                  valid=[f.name for f in dataclasses.fields(section)])
            base = getattr(current, key) or section()
            values[key] = _merge_section(section, base, value, (key,))
        else:
            values[key] = _check_value(full, value, fields[key])
    merged = dataclasses.replace(current, **values)
    if hasattr(merged, "check"):
        merged.check()
    return merged


def merge(base, update):
    """`base` (a `Config`) updated with nested dict `update`, every key and value checked."""
    if isinstance(base, dict):
        base = _merge_section(Config, Config(), base, ())
    return _merge_section(Config, base, update, ())


def from_dict(obj):
    """A `Config` from its `to_dict` form (a missing ``study`` stays missing)."""
    cfg = merge(Config(), obj)
    return cfg if "study" in obj else cfg.without_study()


def parse_override(text):
    """"train.epochs=5" -> {"train": {"epochs": 5}} (values read as TOML, else strings)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not key=value", key=text)
    key, raw = (part.strip() for part in text.split("=", 1))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    nested = value
    for part in reversed(key.split(".")):
        nested = {part: nested}
    return nested


def load(path=None, overrides=()):
    """Resolves defaults + the TOML file at `path` + `overrides` ("key=value")."""
    cfg = Config()
    if path is not None:
        try:
            with open(path, "rb") as f:
                from_file = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}", key=str(path)) from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {path} is not valid TOML: {e}", key=str(path)) from None
        if "name" not in from_file:
            from_file["name"] = os.path.splitext(os.path.basename(path))[0]
        cfg = merge(cfg, from_file)
    for text in overrides:
        cfg = merge(cfg, parse_override(text))
    return cfg


def _lookup(key):
    section, _, name = key.partition(".")
    cls = SECTIONS.get(section) if name else Config
    fields = {f.name: f for f in dataclasses.fields(cls)} if cls else {}
    if (name or section) not in fields or (not name and section in SECTIONS):
        valid = [f"{s}.{f.name}" for s, c in SECTIONS.items() for f in dataclasses.fields(c)]
        raise ConfigError(f"unknown config key {key!r}", key=key,
                          valid=["name", "seed", *valid])
    return fields[name or section]


def choices(key):
    """The values config key "section.name" may take (for command-line choices)."""
    field = _lookup(key)
    if not field.metadata.get("choices"):
        raise ConfigError(f"config key {key} takes any {field.type}, not one of a few values",
                          key=key)
    return tuple(field.metadata["choices"])


def default(key):
    """The default of config key "section.name" (for command-line defaults)."""
    field = _lookup(key)
    return field.default if field.default is not dataclasses.MISSING else field.default_factory()


def expand(template, cfg):
    """Fills "{name}" in a path template."""
    return template.format(name=cfg.name)


def dumps(cfg):
    return json.dumps(cfg.to_dict(), indent=2, sort_keys=False)
