"""The attack wing: one-pixel attacks on a model, and on a dataset with latent distances.

Layers, each importing only those above it (and the leaves, data and model wings):
classifier and bounds (what is attacked, within which values) -> results (what an attack
returns) -> engine and host (the compiled DE loop and its host side, with the incremental
evaluator) -> one_pixel (`OnePixelAttack`) -> summary and figure (``tfgal-attack``'s
attack.png) -> driver (`tfgal-attack`, the study).

Names load on first use (PEP 562): ``import tfgal.attack`` does not import TensorFlow.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    # what is attacked: any model as a probabilities function, the values a pixel may take
    "wrap_model": "classifier", "resolve_value_range": "bounds",
    # what an attack returns
    "AttackResult": "results", "apply_pixels": "results",
    # how candidates are searched and evaluated
    "INITS": "engine", "default_max_batch": "engine", "LocalEvaluator": "incremental",
    "Unsupported": "incremental",
    # the attack and its settings
    "OnePixelAttack": "one_pixel", "EVALUATORS": "one_pixel", "SUCCESS_MODES": "one_pixel",
    "DEFAULT_THRESHOLD": "one_pixel", "DEFAULT_TARGET_THRESHOLD": "one_pixel",
    # summaries of attacks
    "describe": "summary", "ratio": "summary", "distance_summary": "summary",
    "distance_ratios": "summary", "summarize": "summary",
    # attacks on a dataset: tfgal-attack and the study
    "AttackRun": "driver", "attack_galaxies": "driver", "attack_rows": "driver",
    "table": "driver", "attack_dataset": "driver",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    # PEP 562: names (and submodules, e.g. `attack.driver`) load on first use, so that
    # a command's --help never waits for TensorFlow.
    target = _EXPORTS.get(name)
    if target is None:
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    module, attr = target if isinstance(target, tuple) else (target, name)
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
