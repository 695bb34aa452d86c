"""The attack's choices and defaults, without TensorFlow, so that ``tfgal-attack --help``
answers at once; `one_pixel` holds what they mean."""

from __future__ import annotations

__all__ = ["SUCCESS_MODES", "DEFAULT_THRESHOLD", "DEFAULT_TARGET_THRESHOLD", "DEFAULT_INIT",
           "MIN_POPSIZE"]

SUCCESS_MODES = ("probability", "class")
DEFAULT_THRESHOLD = 0.05  # untargeted: true-class probability below this (the study)
DEFAULT_TARGET_THRESHOLD = 0.5  # targeted: target probability above this (the study)
MIN_POPSIZE = 4  # DE/rand/1 draws three partners distinct from the parent
DEFAULT_INIT = "bounds"  # fewest queries to success measured (one_pixel's docstring)
