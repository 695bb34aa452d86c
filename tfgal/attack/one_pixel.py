"""One-pixel (and k-pixel) attacks by differential evolution, batched on the accelerator.

The attack follows Su, Vargas & Sakurai (2019): an individual is ``k`` pixels, each gene
``(x, y, value per band)``; DE/rand/1 mutation with scale ``F``, no crossover, greedy
one-to-one replacement. Unlike per-image tools (ART's ``PixelAttack``, SciPy's
``differential_evolution``) the populations of several images are evaluated in one model
call, and the whole generation loop runs compiled (`tfgal.attack.engine`); Python only
steps in when an image finishes (`tfgal.attack.host`). ``AttackResult.queries`` counts
every image the model saw.

Conventions:

* images are float32 NHWC, already stretched (what the model takes);
* ``x`` is the column (width axis) and ``y`` the row (height axis): an attack on pixel
  ``(x, y)`` sets ``image[y, x, :]``;
* inserted values are bounded per band by the range the stretched data take
  (`tfgal.attack.bounds`), not by [0, 1];
* queries per image: 1 for the clean image, ``popsize`` for the initial population and
  ``popsize`` per generation run, so a failure costs ``1 + popsize * (iters + 1)``;
* an image whose clean version already meets the criterion (misclassified, or already at
  the target) is not attacked: ``already`` is True, ``success`` False, and success rates
  count only the images attacked.

Initial population (``init``): positions are uniform over the image; values are drawn
``"bounds"`` (default: each band at its low or its high bound), ``"gaussian"`` (Su et al.)
or ``"uniform"``. "bounds" is the default because, on the benchmark's ConvNet, it needed
the fewest queries to success at the same success rate as the others (figures in
docs/benchmarks.md); images that resist take the full budget whatever the init.

Speed: the loop is traced once per configuration and image shape; after that a query
costs the evaluator's time plus a few microseconds of bookkeeping. Evaluating whole
candidate images, the model's arithmetic dominates and bounds any speed-up over a
per-image attacker that batches its population. The default evaluator ("auto") therefore
recomputes, for a one-pixel change of a chain conv net, only the window of each feature
map the pixel reaches (`tfgal.attack.incremental`, exact), which costs a small fraction
of the model per candidate. It is checked against the model before use, and everything
reported is re-measured with the model itself (`host.confirm`).

Reproducibility: randomness is counter-based per image (`tfgal.attack.engine`), so an
image's attack does not depend on which other images share its batch. What may still
differ between batch sizes or devices is the model's float rounding, which can flip a
near-tie in the greedy selection; on GPU call
``tf.config.experimental.enable_op_determinism()`` for bit-identical reruns.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import tensorflow as tf

from tfgal.attack import host
from tfgal.attack.bounds import resolve_value_range
from tfgal.attack.classifier import check_probabilities, check_shape, wrap_model
from tfgal.attack.engine import INITS, Engine
from tfgal.attack.results import Outcome
from tfgal.attack.settings import (DEFAULT_INIT, DEFAULT_TARGET_THRESHOLD, DEFAULT_THRESHOLD,
                                   MIN_POPSIZE, SUCCESS_MODES)
from tfgal.config import ATTACK_EVALUATORS as EVALUATORS
from tfgal.errors import ConfigError, DataError, ModelContractError

__all__ = ["OnePixelAttack", "EVALUATORS", "SUCCESS_MODES", "DEFAULT_INIT",
           "DEFAULT_THRESHOLD", "DEFAULT_TARGET_THRESHOLD", "MIN_POPSIZE",
           "MAX_EVALUATOR_DEVIATION"]

# The incremental evaluator is used only when it matches the model within this.
MAX_EVALUATOR_DEVIATION = 1e-4


class OnePixelAttack:
    """Batched differential-evolution pixel attack (see the module docstring).

    Args:
      model: SavedModel path, `ExportedClassifier`, Keras model or callable mapping
        float32 NHWC images to probabilities (traceable by `tf.function`).
      pixels: pixels changed per image (k).
      popsize: individuals per image (Su et al.: 400).
      iters: generations at most after the initial population (the study: 100).
      f: DE mutation scale F.
      threshold: untargeted: success when the true-class probability < threshold
        (default 0.05); targeted: when the target probability > threshold (default 0.5).
        Only used with ``success="probability"``.
      success: "probability" (thresholds above) or "class" (the argmax leaves the true
        class, or reaches the target).
      targeted: attack towards `targets` given to `attack`.
      value_range: (low, high), scalars or per band, bounding inserted values; default
        from the model's assets (see `resolve_value_range`).
      seed: int in [0, 2**31); the same seed gives the same result.
      max_batch: most candidate images per model call (bounds memory); images attacked
        at once = max(1, max_batch // popsize). Default: see `engine.default_max_batch`.
      init: initial values: "bounds" (default, each band at its low or high bound),
        "gaussian" (Su et al.) or "uniform"; positions are uniform. The default was chosen
        by measured queries to success (module docstring).
      evaluator: how candidates are evaluated (`EVALUATORS`): "full" (the model on every
        candidate image), "incremental" (`tfgal.attack.incremental`: only the window a
        pixel changes, exact; one pixel, chain conv nets, a Keras model or a SavedModel
        exported by tfgal) or "auto" (default: incremental where it applies and agrees
        with the model on test pixels, else full). Results found incrementally are re-measured with the model
        itself (its ``serving_default`` for a SavedModel) before they are reported.
    """

    def __init__(self, model, *, pixels=1, popsize=400, iters=100, f=0.5, threshold=None,
                 success="probability", targeted=False, value_range=None, seed=0,
                 max_batch=None, init=DEFAULT_INIT, evaluator="auto"):
        _check_settings(pixels, popsize, iters, max_batch, seed, success, init, f)
        if evaluator not in EVALUATORS:
            raise ConfigError(f"unknown evaluator {evaluator!r}", key="evaluator",
                              valid=EVALUATORS)
        if threshold is None:
            threshold = DEFAULT_TARGET_THRESHOLD if targeted else DEFAULT_THRESHOLD
        if not 0 < threshold < 1:
            raise ConfigError(f"threshold must lie in (0, 1); received threshold={threshold}",
                              key="threshold")
        self.model = wrap_model(model)
        self.pixels, self.popsize, self.iters, self.f = pixels, popsize, iters, float(f)
        self.threshold, self.success, self.targeted = float(threshold), success, bool(targeted)
        self.value_range, self.seed, self.max_batch = value_range, seed, max_batch
        self.init, self.evaluator = init, evaluator
        self._engines = {}

    @property
    def budget(self):
        """Queries an image costs when the attack fails."""
        return 1 + self.popsize * (self.iters + 1)

    def attack(self, images, labels, targets=None, *, callback=None):
        """Attacks `images` (N, H, W, C) of true `labels`; returns an `AttackResult`.

        `targets` (targeted mode only) are the classes to reach. `callback(indices,
        successes)` is called as images finish (for progress bars).
        """
        start = time.perf_counter()
        images, labels, targets = self._check_inputs(images, labels, targets)
        bounds, source = resolve_value_range(self.value_range, self.model.assets, images)
        engine = self._engine(images, bounds)
        base = tf.constant(images)
        cls = tf.constant(targets if self.targeted else labels)
        clean = host.clean(engine, base, cls)
        check_probabilities(clean.probs, self.model.name)
        _check_labels(labels, targets, clean.probs.shape[1], self.targeted)
        out = Outcome.start(len(images), self.pixels, images.shape[-1], clean)
        if callback and out.already.any():
            callback(np.flatnonzero(out.already), np.zeros(out.already.sum(), bool))
        host.run(engine, base, cls, np.flatnonzero(~out.already), out, callback)
        if engine.local is not None:
            host.confirm(engine, out, images, cls.numpy())
        return out.result(images, labels, targets, self._settings(engine, bounds, source),
                          time.perf_counter() - start)

    def _check_inputs(self, images, labels, targets):
        images = np.asarray(images, np.float32)
        labels = np.asarray(labels).astype(np.int32).reshape(-1)
        if images.ndim != 4 or len(images) != len(labels) or len(images) == 0:
            raise DataError(f"need images [N, H, W, C] and N labels; received images "
                            f"{images.shape} and {labels.shape[0]} labels")
        bad = ~np.isfinite(images).reshape(len(images), -1).all(axis=1)
        if bad.any():
            raise DataError("images hold NaN or infinite pixels", index=int(np.flatnonzero(bad)[0]))
        check_shape(self.model, images)
        if self.targeted != (targets is not None):
            raise ConfigError("targets are required in targeted mode and only there",
                              key="targets")
        targets = (np.full_like(labels, -1) if targets is None
                   else np.asarray(targets).astype(np.int32).reshape(-1))
        if len(targets) != len(labels):
            raise DataError(f"{len(targets)} targets for {len(labels)} images")
        return images, labels, targets

    def _engine(self, images, bounds):
        shape = tuple(images.shape[1:])
        key = (shape, tuple(bounds[0]), tuple(bounds[1]))
        if key not in self._engines:
            local, deviation = self._local_evaluator(images, bounds)
            self._engines[key] = Engine(self, shape, bounds, local, deviation)
        return self._engines[key]

    def _local_evaluator(self, images, bounds):
        """A checked `incremental.LocalEvaluator` and its deviation from the model,
        when the settings and the model allow one; else (None, None)."""
        from tfgal.attack import incremental
        if self.evaluator == "full":
            return None, None
        if self.pixels != 1:
            reason = f"it changes one pixel, not {self.pixels}"
        elif self.model.keras is None or (keras_model := self.model.keras()) is None:
            reason = (f"model {self.model.name} has no Keras layers to read (a SavedModel "
                      f"exported by tfgal has them)")
        else:
            try:
                local = incremental.LocalEvaluator(keras_model, images.shape[1:])
            except incremental.Unsupported as e:
                reason = f"model {self.model.name}: {e}"
            else:
                # Random pixels of a few of the images, in and beyond the bounds.
                low, high = float(np.min(bounds[0])), float(np.max(bounds[1]))
                deviation = incremental.max_deviation(
                    local, lambda x: tf.cast(self.model.probabilities(x), tf.float32),
                    images[:4], seed=self.seed, value_range=(low, high))
                if deviation <= MAX_EVALUATOR_DEVIATION:
                    return local, deviation
                reason = (f"it differs from model {self.model.name} by {deviation:.3g} "
                          f"(> {MAX_EVALUATOR_DEVIATION})")
                if self.evaluator == "auto":
                    warnings.warn(f"evaluating candidates in full: {reason}", stacklevel=4)
        if self.evaluator == "incremental":
            raise ModelContractError(f"cannot evaluate candidates incrementally: {reason}")
        return None, None

    def _settings(self, engine, bounds, source):
        return {"pixels": self.pixels, "popsize": self.popsize, "iters": self.iters,
                "f": self.f, "threshold": self.threshold, "success": self.success,
                "targeted": self.targeted, "value_range": [bounds[0].tolist(), bounds[1].tolist()],
                "value_range_source": source, "seed": self.seed, "max_batch": engine.max_batch,
                "budget_per_image": self.budget, "strategy": "DE/rand/1, no crossover",
                "init": self.init, "evaluator": engine.evaluator,
                "evaluator_deviation": engine.deviation}


def _check_settings(pixels, popsize, iters, max_batch, seed, success, init, f):
    _check_int("pixels", pixels, 1)
    _check_int("popsize", popsize, MIN_POPSIZE)
    _check_int("iters", iters, 0)
    if max_batch is not None:
        _check_int("max_batch", max_batch, 1)
    _check_int("seed", seed, 0, 2**31 - 1)
    if success not in SUCCESS_MODES:
        raise ConfigError(f"unknown success mode {success!r}", key="success", valid=SUCCESS_MODES)
    if init not in INITS:
        raise ConfigError(f"unknown init {init!r}", key="init", valid=tuple(INITS))
    if not 0 < f <= 2:
        raise ConfigError(f"f must lie in (0, 2]; received f={f}", key="f")


def _check_int(name, value, low, high=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low or (
            high is not None and value > high):
        allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ConfigError(f"{name} must be an integer {allowed}; received {name}={value!r}",
                          key=name)


def _check_labels(labels, targets, n_classes, targeted):
    bad = np.flatnonzero((labels < 0) | (labels >= n_classes))
    if targeted:
        bad = np.union1d(bad, np.flatnonzero((targets < 0) | (targets >= n_classes)
                                             | (targets == labels)))
    if len(bad):
        raise DataError(f"labels{' / targets' if targeted else ''} out of range for "
                        f"{n_classes} classes (or target == label)", index=int(bad[0]))

