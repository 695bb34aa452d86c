"""The attack wing: one-pixel attacks on a model, and on a dataset with latent distances.

Layers, each importing only those above it (and the leaves, data and model wings):
classifier and bounds (what is attacked, within which values) -> results (what an attack
returns) -> engine and host (the compiled DE loop and its host side, with the incremental
evaluator) -> one_pixel (`OnePixelAttack`) -> summary and driver (`tfgal-attack`, the study).
"""

# What is attacked: any model as a probabilities function, the values a pixel may take.
from tfgal.attack.classifier import wrap_model
from tfgal.attack.bounds import resolve_value_range

# What an attack returns.
from tfgal.attack.results import AttackResult, apply_pixels

# How candidates are searched and evaluated.
from tfgal.attack.engine import INITS, default_max_batch
from tfgal.attack.incremental import LocalEvaluator, Unsupported

# The attack and its settings.
from tfgal.attack.one_pixel import (DEFAULT_TARGET_THRESHOLD, DEFAULT_THRESHOLD, EVALUATORS,
                                     SUCCESS_MODES, OnePixelAttack)

# Summaries of attacks.
from tfgal.attack.summary import describe, distance_ratios, distance_summary, ratio, summarize

# Attacks on a dataset: tfgal-attack and the study.
from tfgal.attack.driver import AttackRun, attack_dataset, attack_galaxies, attack_rows, table

__all__ = [
    "wrap_model", "resolve_value_range",
    "AttackResult", "apply_pixels",
    "INITS", "default_max_batch", "LocalEvaluator", "Unsupported",
    "OnePixelAttack", "EVALUATORS", "SUCCESS_MODES", "DEFAULT_THRESHOLD", "DEFAULT_TARGET_THRESHOLD",
    "describe", "ratio", "distance_summary", "distance_ratios", "summarize",
    "AttackRun", "attack_galaxies", "attack_rows", "table", "attack_dataset",
]
