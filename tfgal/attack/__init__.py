"""The attack wing: one-pixel attacks on a model, and on a dataset with latent distances.

Layers, each importing only those above it (and the leaves, data and model wings):
classifier and bounds (what is attacked, within which values) -> results (what an attack
returns) -> engine and host (the compiled DE loop and its host side, with the incremental
evaluator) -> one_pixel (`OnePixelAttack`) -> summary and figure (``tfgal-attack``'s
attack.png) -> driver (`tfgal-attack`, the study).

Names load on first use (PEP 562): ``import tfgal.attack`` does not import TensorFlow.
"""

from __future__ import annotations

from tfgal import lazy_exports

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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
