"""Experiment configs: TOML files in `pipelines/`, defaults here, `--set key=value` overrides.

A config is a nested dict of sections (data, model, train, loss, export, study, log) plus the
top-level `name` and `seed`. Every key must be one of the defaults' keys and of the same
type; an unknown key or a bad value is a `ConfigError` that lists the valid keys.
The resolved config (defaults + file + overrides) is saved with every run.
"""

from __future__ import annotations

import copy
import json
import os

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

from tfgal.errors import ConfigError

DEFAULTS = {
    "name": "run",
    "seed": 0,
    "data": {
        "dir": "data/mock",           # dataset directory (tfgal-data output)
        "mock": True,                 # build a mock set at `dir` if it is missing
        "mock_train": 3000,
        "mock_val": 500,
        "mock_test": 1000,
        "mock_workers": 0,            # 0: all cores
        "source_depth": "Y10",        # labelled baseline depth
        "target_depth": "Y1",         # unlabelled perturbed depth (domain adaptation)
        "noise_mode": "fast",         # "fast" or "exact" Poisson noise
        "augment": True,              # flips and 90-degree rotations in training
    },
    "model": {
        "name": "convnet",            # "convnet" or "resnet18"
        "latent_dim": 256,
        "dropout": -1.0,              # < 0: the architecture's default
        "width": 64,                  # resnet18 only: filters of the first stage
    },
    "train": {
        "epochs": 100,
        "batch_size": 128,            # per domain: 128 source + 128 target
        "steps_per_epoch": 0,         # 0: one pass over the training split
        "learning_rate": 1e-5,
        "schedule": "constant",       # "constant" (the study) or "cosine" decay to 0
        "beta_1": 0.7,
        "beta_2": 0.8,
        "weight_decay": 1e-4,
        "patience": 10,               # early stopping on validation loss
        "precise_bn_batches": 10,     # recompute batch-norm statistics each epoch (0: off)
        "class_weights": True,        # weight_c = N / (n_classes * n_c)
        "mixed_precision": False,     # mixed_float16 on GPU
        "deterministic": True,        # TensorFlow op determinism (same seed, same metrics)
        "jit_compile": True,          # XLA-compile the train step (~30% faster on CPU)
        "strategy": "default",        # "default", "mirrored" or "multiworker"
    },
    "loss": {
        "mmd_weight": 0.01,           # 0 for the baseline
        "mmd_sigmas": "study",        # "study" (19 fixed) or "data" (x mean distance)
        "fisher_weight": 0.0,
        "entropy_weight": 0.0,
    },
    "export": {
        "dir": "saved_models/{name}",
    },
    "study": {
        "split": "test",              # split evaluated and attacked
        "eval_n": 0,                  # galaxies evaluated at both depths (0: the whole split)
        "attack_n": 150,              # first galaxies of the split attacked (the paper: 150)
        "attack_pixels": 1,
        "attack_popsize": 400,        # the paper: 400
        "attack_iters": 100,          # generations at most (the paper: 100)
        "attack_f": 0.5,              # DE mutation scale
        "attack_threshold": 0.05,     # success: true-class probability below this
        "attack_max_batch": 0,        # candidate images per model call; 0: the attack's default
        "attack_evaluator": "auto",   # auto / incremental / full (tfgal.attack.OnePixelAttack)
        "curve_depths": [],           # survey years; [] = auto: log-spaced, through 1 and 10
        "curve_min_years": 0.1,       # auto range
        "curve_max_years": 20.0,
        "curve_per_decade": 3,        # auto depths per factor of ten in exposure
        "curve_n": 0,                 # galaxies per depth (0: the whole split)
        "isomap_n": 300,              # galaxies per depth in the isomap
        "isomap_neighbors": 10,
        "church_windows": 3,          # attacked galaxies per model with a church-window plot
        "church_grid": 41,            # grid points per axis
        "church_span": 2.0,           # the grid covers [-span, span] along both directions
        "examples": 1,                # galaxies per class in the example figure
    },
    "log": {
        "dir": "runs/{name}",
        "profile": False,             # TensorBoard profiler on a few steps
        "images": 6,                  # example galaxies per depth in TensorBoard
        "projector": 300,             # galaxies per depth in the embedding projector
    },
}

CHOICES = {
    ("model", "name"): ("convnet", "resnet18"),
    ("train", "strategy"): ("default", "mirrored", "multiworker"),
    ("data", "noise_mode"): ("fast", "exact"),
    ("loss", "mmd_sigmas"): ("study", "data"),
    ("train", "schedule"): ("constant", "cosine"),
}
POSITIVE = {("train", "epochs"), ("train", "batch_size"), ("train", "learning_rate"),
            ("model", "latent_dim"), ("model", "width")}
NON_NEGATIVE = {("train", "steps_per_epoch"), ("train", "precise_bn_batches"), ("train", "weight_decay"), ("train", "patience"),
                ("loss", "mmd_weight"), ("loss", "fisher_weight"), ("loss", "entropy_weight"),
                ("data", "mock_train"), ("data", "mock_val"), ("data", "mock_test"),
                ("data", "mock_workers"), ("log", "images"), ("log", "projector")}


def _check_value(path, value, default):
    key = ".".join(path)
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(f"config key {key} must be {type(default).__name__}; "
                          f"received {value!r}", key=key)
    choices = CHOICES.get(tuple(path))
    if choices and value not in choices:
        raise ConfigError(f"config key {key} received {value!r}", key=key, valid=choices)
    if tuple(path) in POSITIVE and not value > 0:
        raise ConfigError(f"config key {key} must be > 0; received {value!r}", key=key)
    if tuple(path) in NON_NEGATIVE and not value >= 0:
        raise ConfigError(f"config key {key} must be >= 0; received {value!r}", key=key)
    if isinstance(value, float) and value != value:
        raise ConfigError(f"config key {key} is NaN", key=key)
    return value


def merge(base, update, path=()):
    """Returns `base` updated with `update`, validating every key and value."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if key not in base:
            where = ".".join(path) or "top level"
            valid = [".".join((*path, k)) for k in base]
            raise ConfigError(f"unknown config key {'.'.join((*path, key))!r} ({where})",
                              key=".".join((*path, key)), valid=valid)
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {'.'.join((*path, key))} is a section",
                                  key=".".join((*path, key)), valid=list(base[key]))
            out[key] = merge(base[key], value, (*path, key))
        else:
            out[key] = _check_value((*path, key), value, base[key])
    return out


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
    config = copy.deepcopy(DEFAULTS)
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
        config = merge(config, from_file)
    for text in overrides:
        config = merge(config, parse_override(text))
    return config


def expand(template, config):
    """Fills "{name}" in a path template."""
    return template.format(name=config["name"])


def dumps(config):
    return json.dumps(config, indent=2, sort_keys=False)
