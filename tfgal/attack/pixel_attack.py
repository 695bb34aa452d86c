"""One-pixel (and k-pixel) attacks by differential evolution, batched on the accelerator.

The attack follows Su, Vargas & Sakurai (2019): an individual is ``k`` pixels, each gene
``(x, y, value per band)``; DE/rand/1 mutation with scale ``F``, no crossover, greedy
one-to-one replacement. Unlike per-image tools (ART's ``PixelAttack``, SciPy's
``differential_evolution``) the populations of several images are evaluated in one model
call, and the whole generation loop (initial population, mutation, candidate images,
model, selection, success test, compaction) runs in one compiled ``tf.while_loop``.
Images occupy a fixed number of slots (``max_batch // popsize``); Python only steps in
when an image finishes, to record it and hand its slot to a waiting image. Each
generation gathers the live slots into a dense batch, so an empty or finished slot is
neither computed nor counted: ``AttackResult.queries`` counts every image the model saw.

Conventions:

* images are float32 NHWC, already stretched (what the model takes);
* ``x`` is the column (width axis) and ``y`` the row (height axis): an attack on pixel
  ``(x, y)`` sets ``image[y, x, :]``;
* inserted values are bounded per band by the range the stretched data take (the model's
  ``value_range`` asset, or an explicit ``value_range``), not by [0, 1]: the study's values
  lived in about [0.45, 0.89] and [0, 1] pixels would be trivially out of distribution;
* queries per image: 1 for the clean image, ``popsize`` for the initial population and
  ``popsize`` per generation run, so a failure costs ``1 + popsize * (iters + 1)``;
* an image whose clean version already meets the criterion (misclassified, or already at
  the target) is not attacked: ``already`` is True, ``success`` False, and success rates
  count only the images attacked.

Initial population (``init``): positions are uniform over the image; values are drawn
``"bounds"`` (default: each band at its low or its high bound), ``"gaussian"`` (Su et al.:
N(mid-range, half the range), clipped) or ``"uniform"`` (the previous default). The
strongest single pixels sit at the extremes of the allowed range, and starting there finds
them soonest. Measured on the benchmark's ConvNet (32x32 synthetic galaxies; population
400, 30 generations, class-change success) on the 7 of 64 images that an exhaustive search
(every pixel at the 8 extreme colours) can flip, 6 seeds each: success 36/42 with every
init (the same six images; the seventh is a near-tie), median generations to success
bounds 2 (31% in the initial population), gaussian 10, uniform 11, queries 136k, 212k and
262k. Images that resist take the full budget whatever the init. With F = 0.5 and
clipping, values started at the bounds stay on {low, mid, high} per band; use
``"gaussian"`` or ``"uniform"`` where intermediate values matter.

Speed: one loop is traced once (fixed slot shapes, autograph off), so the first call
costs about 1 s of tracing; each query then costs the evaluator's time plus about 3 us on
a 2-core CPU (draws, selection, bookkeeping). Evaluating whole candidate images, the
model's arithmetic dominates and bounds any speed-up over a per-image attacker that
batches its population. The default evaluator ("auto") therefore recomputes, for a
one-pixel change of a chain conv net, only the window of each feature map the pixel
reaches (`tfgal.incremental`, exact): on the study's ConvNet at 100x100 pixels a candidate
costs about 15 us instead of the model's 330 us. It is checked against the model before
use, and everything reported is re-measured with the model itself (`_Engine.confirm`).

Randomness is counter-based: the draws for image ``i`` at generation ``g`` come from the
seed ``(seed, i)`` folded with ``g`` (Philox, identical on CPU and GPU), so an image's
attack does not depend on which other images share its batch. What may still differ between
batch sizes or devices is the model's float rounding, which can flip a near-tie in the
greedy selection; on GPU call ``tf.config.experimental.enable_op_determinism()`` for
bit-identical reruns.
"""

from __future__ import annotations

import dataclasses
import os
import time
import typing
import warnings

import numpy as np
import tensorflow as tf

from tfgal.model import export
from tfgal.errors import ConfigError, DataError, ModelContractError

SUCCESS_MODES = ("probability", "class")
DEFAULT_THRESHOLD = 0.05  # untargeted: true-class probability below this (the study)
DEFAULT_TARGET_THRESHOLD = 0.5  # targeted: target probability above this (the study)
MIN_POPSIZE = 4  # DE/rand/1 draws three partners distinct from the parent
DEFAULT_INIT = "bounds"  # initial values at the bounds: fewest queries measured (docstring)
# Default bound on candidate images per model call: their pixels may take this many bytes
# (activations take several times more), and there are never more than MAX_BATCH_CAP.
INPUT_BUDGET_BYTES = {"GPU": 512 * 2**20, "CPU": 128 * 2**20}
MAX_BATCH_CAP = 4096
# Cached feature maps of the images attacked at once by the incremental evaluator.
CACHE_BUDGET_BYTES = {"GPU": 2 * 2**30, "CPU": 1 * 2**30}
# The incremental evaluator is used only when it matches the model within this.
MAX_EVALUATOR_DEVIATION = 1e-4
EVALUATORS = ("auto", "incremental", "full")
PROB_TOLERANCE = 1e-3  # rows of a probability output must sum to 1 within this
# Columns of the per-candidate statistics kept beside each population.
FIT, SUCCESS, CLASS, PROB, SCORE = range(5)
N_STATS = 5


# --------------------------------------------------------------------------- results


@dataclasses.dataclass
class AttackResult:
    """Outcome of attacking N images (arrays indexed like the input images).

    Attributes:
      success: [N] bool, the criterion was met by a perturbed image.
      already: [N] bool, the clean image already met the criterion; it was not attacked
        (1 query, success False, pixels -1).
      generations: [N] int, the generation that succeeded (0: the initial population), or
        the generations run on a failure.
      queries: [N] int, model evaluations spent on the image.
      labels, targets: [N] int (targets -1 when untargeted).
      original_class, original_prob: argmax and its probability on the clean image.
      original_score: probability the attack acts on (true class, or target) before.
      final_class, final_prob, final_score: the same for the returned image: the first
        successful candidate, or on failure the best one found.
      pixels: [N, k, 2] int (x, y) of the changed pixels; values: [N, k, C].
      images: [N, H, W, C] float32, the returned (adversarial) images.
      settings: the attack's configuration, bounds included.
      seconds: wall time of the attack.
    """

    success: np.ndarray
    already: np.ndarray
    generations: np.ndarray
    queries: np.ndarray
    labels: np.ndarray
    targets: np.ndarray
    original_class: np.ndarray
    original_prob: np.ndarray
    original_score: np.ndarray
    final_class: np.ndarray
    final_prob: np.ndarray
    final_score: np.ndarray
    pixels: np.ndarray
    values: np.ndarray
    images: np.ndarray
    settings: dict
    seconds: float

    @property
    def n(self):
        return len(self.success)

    @property
    def success_rate(self):
        """Successes over the images that were attacked (not already adversarial)."""
        attacked = int(np.sum(~self.already))
        return float(np.sum(self.success) / attacked) if attacked else float("nan")


# --------------------------------------------------------------------------- models


@dataclasses.dataclass
class _Model:
    probabilities: object  # images tensor -> probabilities tensor, traceable
    image_shape: tuple | None
    assets: dict
    name: str
    keras: object = None  # () -> a Keras model of the same probabilities, or None


def wrap_model(model):
    """Accepts a SavedModel path, an `ExportedClassifier`, a loaded SavedModel, a Keras
    model or a callable images -> probabilities; returns the attack's view of it."""
    if isinstance(model, (str, os.PathLike)):
        model = export.load(model)
    if isinstance(model, export.ExportedClassifier):
        return _Model(lambda x: model.serving(images=x)["probabilities"],
                      model.image_shape, model.assets, model.path, model.keras_replica)
    if hasattr(model, "signatures") and not hasattr(model, "layers"):
        return _from_signatures(model)
    if not callable(model):
        raise ModelContractError(f"cannot attack a {type(model).__name__}: not callable")
    shape = None
    if getattr(model, "inputs", None):
        shape = tuple(model.inputs[0].shape[1:])
    is_keras = hasattr(model, "layers")
    call = (lambda x: model(x, training=False)) if is_keras else model
    return _Model(lambda x: _probabilities_of(call(x)), shape, {}, type(model).__name__,
                  (lambda: model) if is_keras else None)


def _from_signatures(loaded):
    if export.SERVING not in loaded.signatures:
        raise ModelContractError(
            f"SavedModel has no {export.SERVING!r} signature; it has {sorted(loaded.signatures)}")
    serving = loaded.signatures[export.SERVING]
    _, kwargs = serving.structured_input_signature
    if "images" not in kwargs or "probabilities" not in serving.structured_outputs:
        raise ModelContractError(
            f"{export.SERVING} must map 'images' to 'probabilities'; it takes {sorted(kwargs)} "
            f"and returns {sorted(serving.structured_outputs)}")
    return _Model(lambda x: serving(images=x)["probabilities"],
                  tuple(kwargs["images"].shape[1:]), {}, "SavedModel")


def _probabilities_of(out):
    if isinstance(out, dict):
        if "probabilities" not in out:
            raise ModelContractError(f"model returns {sorted(out)}, not 'probabilities'")
        return out["probabilities"]
    return out


def _check_shape(model, images):
    declared = model.image_shape
    shape = tuple(images.shape[1:])
    if declared is None:
        return
    if len(declared) != len(shape) or any(d not in (None, s) for d, s in zip(declared, shape)):
        raise ModelContractError(
            f"model {model.name} takes images of shape {declared}; received {shape}")


def _check_probabilities(probs, name):
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise ModelContractError(f"model {name} returned shape {probs.shape}, not [N, classes]")
    sums = probs.sum(axis=1)
    if np.any(probs < -PROB_TOLERANCE) or np.any(np.abs(sums - 1) > PROB_TOLERANCE):
        raise ModelContractError(
            f"model {name} does not return probabilities (row sums {sums.min():.3g} .. "
            f"{sums.max():.3g}); pass a model ending in softmax")


# --------------------------------------------------------------------------- bounds


def resolve_value_range(value_range, assets, images):
    """Per-band (low, high) of inserted values and where they came from.

    Order: an explicit `value_range`; the model's ``value_range`` asset; the value range of
    its ``stretch`` asset; else the per-band min / max of the images attacked.
    """
    n_bands = images.shape[-1]
    if value_range is not None:
        return _parse_range(value_range, n_bands, "value_range"), "explicit"
    if assets.get("value_range") is not None:
        return _parse_range(assets["value_range"], n_bands, "assets.value_range"), "model assets"
    if assets.get("stretch"):
        from tfgal.data import stretch
        vr = stretch.value_range(assets["stretch"])
        if vr is not None:
            return _parse_range(vr, n_bands, "assets.stretch"), "model stretch"
    axes = tuple(range(images.ndim - 1))
    return (images.min(axis=axes).astype(np.float32),
            images.max(axis=axes).astype(np.float32)), "data"


def _parse_range(value, n_bands, key):
    if isinstance(value, dict):
        value = (value.get("low", value.get("lo")), value.get("high", value.get("hi")))
    try:
        low, high = (np.broadcast_to(np.asarray(v, np.float32), (n_bands,)).copy() for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be (low, high), scalars or one per band "
                          f"({n_bands}); received {value!r}", key=key) from None
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(low <= high)):
        raise ConfigError(f"{key} needs finite low <= high; received {value!r}", key=key)
    return low, high


# --------------------------------------------------------------------------- the attack


class OnePixelAttack:
    """Batched differential-evolution pixel attack (see the module docstring).

    Args:
      model: SavedModel path, `tfgal.export.ExportedClassifier`, Keras model or callable
        mapping float32 NHWC images to probabilities (traceable by `tf.function`).
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
        at once = max(1, max_batch // popsize). Default: see `default_max_batch`.
      init: initial values: "bounds" (default, each band at its low or high bound),
        "gaussian" (Su et al.) or "uniform"; positions are uniform. The default was chosen
        by measured queries to success (module docstring).
      evaluator: how candidates are evaluated: "full" (the model on every candidate
        image), "incremental" (`tfgal.incremental`: only the window a pixel changes, exact;
        one pixel, chain conv nets, a Keras model or a SavedModel exported by tfgal) or
        "auto" (default: incremental where it applies and agrees with the model on test
        pixels, else full). Results found incrementally are re-measured with the model
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
        clean = engine.clean(base, cls)
        _check_probabilities(clean.probs, self.model.name)
        _check_labels(labels, targets, clean.probs.shape[1], self.targeted)
        out = _Outcome.start(len(images), self.pixels, images.shape[-1], clean)
        if callback and out.already.any():
            callback(np.flatnonzero(out.already), np.zeros(out.already.sum(), bool))
        engine.run(base, cls, np.flatnonzero(~out.already), out, callback)
        if engine.local is not None:
            engine.confirm(out, images, cls.numpy())
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
        _check_shape(self.model, images)
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
            self._engines[key] = _Engine(self, shape, bounds, local, deviation)
        return self._engines[key]

    def _local_evaluator(self, images, bounds):
        """A checked `tfgal.incremental.LocalEvaluator` and its deviation from the model,
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


def default_max_batch(image_shape):
    """Candidate images per model call whose pixels fit `INPUT_BUDGET_BYTES` (at most
    `MAX_BATCH_CAP`): 4096 at 100x100x3 on a GPU, 1118 on a CPU."""
    device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    per_image = 4 * int(np.prod(image_shape))
    return int(max(1, min(MAX_BATCH_CAP, INPUT_BUDGET_BYTES[device] // per_image)))


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


# --------------------------------------------------------------------------- bookkeeping


@dataclasses.dataclass
class _Clean:
    probs: np.ndarray  # [N, K]
    already: np.ndarray  # [N] bool


class _Outcome:
    """Host-side per-image records, filled as images finish."""

    @classmethod
    def start(cls, n, k, n_bands, clean):
        self = cls()
        self.already = clean.already
        self.probs = clean.probs
        self.success = np.zeros(n, bool)
        self.generations = np.zeros(n, np.int64)
        self.queries = np.ones(n, np.int64)  # the clean image
        self.genes = np.full((n, k, 2 + n_bands), -1.0, np.float32)
        self.stats = np.full((n, N_STATS), np.nan, np.float32)
        return self

    def finish(self, index, success, generations, genes, stats):
        self.success[index] = success
        self.generations[index] = generations
        self.genes[index] = genes
        self.stats[index] = stats

    def pixels(self, image_shape):
        """[N, k, 2] integer (x, y) of the answers for images of `image_shape` (N, H, W,
        C); -1 for the images not attacked."""
        size = np.array([image_shape[2], image_shape[1]]) - 1  # (x, y) limits
        xy = np.clip(np.floor(np.nan_to_num(self.genes[:, :, :2])), 0, size).astype(np.int64)
        return np.where(~self.already[:, None, None], xy, -1)

    def result(self, images, labels, targets, settings, seconds):
        n = len(images)
        cls = np.where(targets >= 0, targets, labels)
        orig_class = self.probs.argmax(axis=1).astype(np.int32)
        orig_score = self.probs[np.arange(n), cls]
        attacked = ~self.already
        pixels = self.pixels(images.shape)
        final_class = np.where(attacked, self.stats[:, CLASS], orig_class).astype(np.int32)
        return AttackResult(
            success=self.success, already=self.already, generations=self.generations,
            queries=self.queries, labels=labels, targets=targets,
            original_class=orig_class, original_prob=self.probs.max(axis=1),
            original_score=orig_score, final_class=final_class,
            final_prob=np.where(attacked, self.stats[:, PROB], self.probs.max(axis=1)),
            final_score=np.where(attacked, self.stats[:, SCORE], orig_score),
            pixels=pixels, values=np.where(attacked[:, None, None], self.genes[:, :, 2:], np.nan),
            images=apply_pixels(images, pixels, self.genes[:, :, 2:]),
            settings=settings, seconds=seconds)


def apply_pixels(images, pixels, values):
    """Returns copies of `images` with pixels (x, y) set to `values` (-1 pixels skipped)."""
    out = np.array(images, np.float32, copy=True)
    for j in range(pixels.shape[1]):
        rows = np.flatnonzero(pixels[:, j, 0] >= 0)
        out[rows, pixels[rows, j, 1], pixels[rows, j, 0]] = values[rows, j]
    return out


class _Context(typing.NamedTuple):
    """What a generation reads besides the slots."""

    base: object  # [N, H, W, C] the clean images
    cls: object  # [N] int32 the class each attack acts on (label or target)
    cache_row: object  # [N] int32 row of each image in `cache` (incremental evaluator)
    cache: object  # list: the incremental evaluator's maps of the images being attacked


class _Slots(typing.NamedTuple):
    """The attack's state: `capacity` slots, each empty or attacking one image.

    Shapes never change (A = capacity), so the generation loop is traced once; an empty
    slot (index -1) or a finished one is neither computed nor counted.
    """

    index: object  # [A] int32 image attacked, -1 when empty
    gens: object  # [A] int32 generations run; -1: initial population not evaluated yet
    queries: object  # [A] int32 candidates evaluated
    won: object  # [A] bool a candidate met the criterion
    pop: object  # [A, P, k, G] genes
    stats: object  # [A, P, N_STATS] of pop
    genes: object  # [A, k, G] the answer: the best winning candidate, else the best of pop
    answer: object  # [A, N_STATS] its statistics


# --------------------------------------------------------------------------- engine


class _Engine:
    """Compiled functions of one attack configuration and image shape."""

    def __init__(self, attack, image_shape, bounds, local=None, deviation=None):
        self.attack = attack
        self.h, self.w, self.c = image_shape
        self.gene_shape = (attack.pixels, 2 + self.c)
        self.low = tf.constant(np.concatenate([[0.0, 0.0], bounds[0]]), tf.float32)
        self.high = tf.constant(np.concatenate([[self.w, self.h], bounds[1]]), tf.float32)
        self.is_coord = tf.constant([True, True] + [False] * self.c)
        self.local, self.deviation = local, deviation
        self.evaluator = "incremental" if local is not None else "full"
        self.max_batch = attack.max_batch or (
            MAX_BATCH_CAP if self.local is not None else default_max_batch(image_shape))
        self.capacity = max(1, self.max_batch // attack.popsize)
        images = tf.TensorSpec((None, self.h, self.w, self.c), tf.float32)
        ints = tf.TensorSpec((None,), tf.int32)
        cache = self.local.cache_spec() if self.local is not None else []
        self._probs = tf.function(self._probs_fn, input_signature=[images])
        self._prepare = (tf.function(local.prepare, input_signature=[images])
                         if local is not None else None)
        # The loop spells its control flow out (tf.while_loop, tf.cond): autograph would
        # only add tracing time (~1 s). The model keeps it, inside `_probs`.
        self._loop = tf.function(self._loop_fn, input_signature=[
            _Context(images, ints, ints, cache), self._spec()], autograph=False)

    def _spec(self):
        a, p, k = self.capacity, self.attack.popsize, self.gene_shape
        return _Slots(*(tf.TensorSpec(shape, dtype) for shape, dtype in (
            ((a,), tf.int32), ((a,), tf.int32), ((a,), tf.int32), ((a,), tf.bool),
            ((a, p, *k), tf.float32), ((a, p, N_STATS), tf.float32),
            ((a, *k), tf.float32), ((a, N_STATS), tf.float32))))

    # ---- the compiled generation loop

    def _probs_fn(self, images):
        return tf.cast(self.attack.model.probabilities(images), tf.float32)

    def _live(self, s):
        return (s.index >= 0) & ~s.won & (s.gens < self.attack.iters)

    def _loop_fn(self, ctx, slots):
        """Runs generations of the live slots until one of them finishes."""
        def more(s):
            finished = (s.index >= 0) & ~self._live(s)
            return tf.reduce_any(self._live(s)) & ~tf.reduce_any(finished)
        return tf.while_loop(more, lambda s: [self._generation(ctx, s)], [slots])[0]

    def _generation(self, ctx, s):
        """One generation of the live slots, gathered into a dense batch and scattered back."""
        rows = tf.cast(tf.where(self._live(s))[:, 0], tf.int32)
        new = self._step(ctx, _Slots(*(tf.gather(t, rows) for t in s)))
        return _Slots(*(tf.tensor_scatter_nd_update(t, rows[:, None], u) for t, u in zip(s, new)))

    def _step(self, ctx, s):
        """Evaluates the initial population (fresh slots) or DE trials, then selects."""
        fresh = s.gens < 0
        init = tf.cond(tf.reduce_any(fresh), lambda: self._initial(s.index), lambda: s.pop)
        trial = tf.cond(tf.reduce_all(fresh), lambda: s.pop, lambda: self._trials(s))
        cand = tf.where(fresh[:, None, None, None], init, trial)
        stats = self._evaluate(ctx, s.index, cand)
        take = fresh[:, None] | (stats[..., FIT] < s.stats[..., FIT])  # greedy, one-to-one
        pop = tf.where(take[..., None, None], cand, s.pop)
        pop_stats = tf.where(take[..., None], stats, s.stats)
        won, genes, answer = _answer(cand, stats, pop, pop_stats)
        return _Slots(s.index, s.gens + 1, s.queries + self.attack.popsize, won, pop,
                      pop_stats, genes, answer)

    def _uniform(self, index, step, width):
        seed = tf.random.experimental.stateless_fold_in(
            tf.stack([tf.constant(self.attack.seed, tf.int32), index]), step, alg="philox")
        return tf.random.stateless_uniform((self.attack.popsize, width), seed, alg="philox")

    def _draws(self, index, step, width):
        """[n, P, width] uniforms, one counter-based stream per image and step."""
        return tf.map_fn(lambda t: self._uniform(t[0], t[1], width), (index, step),
                         fn_output_signature=tf.float32)

    def _initial(self, index):
        u = self._draws(index, tf.zeros_like(index), np.prod(self.gene_shape))
        u = tf.reshape(u, (-1, self.attack.popsize, *self.gene_shape))
        span = self.high - self.low
        values = INITS[self.attack.init](u, self.low, span)
        return tf.where(self.is_coord, self.low + u * span, values)

    def _trials(self, s):
        """DE/rand/1 trials: a + F (b - c), with a, b, c distinct and not the parent."""
        p, n_genes = self.attack.popsize, int(np.prod(self.gene_shape))
        u = self._draws(s.index, s.gens + 1, 3 + n_genes)
        partners = _partners(u[..., :3], p)
        a, b, c = (tf.gather(s.pop, partners[..., j], axis=1, batch_dims=1) for j in range(3))
        trial = a + self.attack.f * (b - c)
        return self._repair(trial, tf.reshape(u[..., 3:], tf.shape(s.pop)))

    def _repair(self, trial, resample):
        # Coordinates out of the image are redrawn (clipping would pile them on the edge);
        # values are clipped, since the extremes of the range are the strongest pixels.
        outside = (trial < self.low) | (trial >= self.high)
        redrawn = tf.where(outside, self.low + resample * (self.high - self.low), trial)
        clipped = tf.clip_by_value(trial, self.low, self.high)
        return tf.where(self.is_coord, redrawn, clipped)

    def _evaluate(self, ctx, index, cand):
        """Statistics [n, P, N_STATS] of candidates [n, P, k, G], max_batch per model call."""
        genes = tf.reshape(cand, (-1, *self.gene_shape))
        rows = tf.repeat(index, self.attack.popsize)
        m, step = tf.shape(rows)[0], self.max_batch

        def chunk(i, acc):
            part = self._chunk_stats(ctx, genes[i:i + step], rows[i:i + step])
            return i + step, acc.write(i // step, part)
        acc = tf.TensorArray(tf.float32, size=(m + step - 1) // step, infer_shape=False,
                             element_shape=(None, N_STATS))
        _, acc = tf.while_loop(lambda i, _: i < m, chunk, (tf.constant(0), acc))
        return tf.reshape(acc.concat(), (-1, self.attack.popsize, N_STATS))

    def _chunk_stats(self, ctx, genes, rows):
        """Statistics [R, N_STATS] of candidates `genes` [R, k, G] on images `rows`."""
        if self.local is not None:
            x, y = self._xy(genes[:, 0])
            probs = self.local.probabilities(ctx.cache, tf.gather(ctx.cache_row, rows), x, y,
                                             genes[:, 0, 2:])
            probs = tf.cast(probs, tf.float32)
        else:
            probs = self._probs(self._perturb(tf.gather(ctx.base, rows), genes))
        return self._stats(probs, tf.gather(ctx.cls, rows))

    def _stats(self, probs, target):
        """Statistics [R, N_STATS] of probabilities [R, K] for classes `target` [R]."""
        score = tf.gather(probs, target, axis=1, batch_dims=1)
        pred = tf.argmax(probs, axis=1, output_type=tf.int32)
        fitness = 1.0 - score if self.attack.targeted else score
        won = self._succeeded(score, pred, target)
        return tf.stack([fitness, tf.cast(won, tf.float32), tf.cast(pred, tf.float32),
                         tf.reduce_max(probs, axis=1), score], axis=1)

    def _succeeded(self, score, pred, target):
        """The success criterion, on tensors or arrays."""
        a = self.attack
        if a.success == "class":
            return pred == target if a.targeted else pred != target
        return score > a.threshold if a.targeted else score < a.threshold

    def _xy(self, genes):
        """Integer pixel (x, y) of genes [..., G]."""
        x = tf.clip_by_value(tf.cast(tf.floor(genes[..., 0]), tf.int32), 0, self.w - 1)
        y = tf.clip_by_value(tf.cast(tf.floor(genes[..., 1]), tf.int32), 0, self.h - 1)
        return x, y

    def _perturb(self, images, genes):
        n = tf.shape(images)[0]
        x, y = self._xy(genes)
        for j in range(self.gene_shape[0]):  # in order: a later pixel overwrites an earlier
            where = tf.stack([tf.range(n), y[:, j], x[:, j]], axis=1)
            images = tf.tensor_scatter_nd_update(images, where, genes[:, j, 2:])
        return images

    # ---- host loop: only when an image finishes

    def _batched_probs(self, images):
        """The model's probabilities of `images`, `max_batch` per call, as one array."""
        step = self.max_batch
        return np.concatenate([self._probs(tf.constant(images[i:i + step])).numpy()
                               for i in range(0, len(images), step)])

    def clean(self, base, cls):
        n = int(base.shape[0])
        try:
            probs = self._batched_probs(base.numpy())
        except (ValueError, TypeError, tf.errors.InvalidArgumentError) as e:
            first_line = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ModelContractError(f"model {self.attack.model.name} failed on images of shape "
                                     f"{tuple(base.shape[1:])}: {first_line}") from e
        if probs.ndim != 2 or probs.shape[0] != n:
            raise ModelContractError(f"model {self.attack.model.name} returned shape {probs.shape} "
                                     f"for {n} images")
        c = cls.numpy()
        score, pred = probs[np.arange(n), np.clip(c, 0, probs.shape[1] - 1)], probs.argmax(axis=1)
        return _Clean(probs.astype(np.float32), np.asarray(self._succeeded(score, pred, c)))

    def run(self, base, cls, todo, out, callback):
        """Attacks images `todo`, refilling slots as images finish; with the incremental
        evaluator, in groups whose cached maps fit `CACHE_BUDGET_BYTES`."""
        todo = np.asarray(todo, np.int64)
        group = len(todo)
        if self.local is not None:
            device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
            group = max(self.capacity, CACHE_BUDGET_BYTES[device]
                        // self.local.cache_bytes_per_image())
        for start in range(0, len(todo), max(group, 1)):
            members = todo[start:start + group]
            cache_row = np.full(len(base), -1, np.int32)
            cache_row[members] = np.arange(len(members))
            cache = (self._prepare(tf.gather(base, members)) if self.local is not None else [])
            ctx = _Context(base, cls, tf.constant(cache_row), list(cache))
            slots, queue = self._empty(), list(members)
            while True:
                slots = self._refill(slots, queue)
                if not np.any(slots.index >= 0):
                    break
                slots = self._loop(ctx, slots)
                slots = slots._replace(**{f: getattr(slots, f).numpy() for f in _SMALL})
                slots = self._retire(slots, out, callback)

    def confirm(self, out, images, cls):
        """Re-measures the answers found incrementally with the model itself, so that the
        reported success, class and probabilities are the model's (its serving signature
        for a SavedModel), not the evaluator's."""
        done = np.flatnonzero(~out.already & np.isfinite(out.stats[:, FIT]))
        if not len(done):
            return
        perturbed = apply_pixels(images[done], out.pixels(images.shape)[done],
                                 out.genes[done, :, 2:])
        stats = self._stats(self._batched_probs(perturbed), cls[done]).numpy()
        out.stats[done] = stats
        out.success[done] = stats[:, SUCCESS] > 0.5

    def _empty(self):
        spec = self._spec()
        small = {f: np.full(getattr(spec, f).shape, -1 if f == "index" else 0,
                            getattr(spec, f).dtype.as_numpy_dtype) for f in _SMALL}
        return _Slots(pop=tf.zeros(spec.pop.shape), stats=tf.zeros(spec.stats.shape), **small)

    def _refill(self, s, queue):
        free = np.flatnonzero(s.index < 0)[:len(queue)]
        if not len(free):
            return s
        index, gens, queries, won = (np.copy(v) for v in (s.index, s.gens, s.queries, s.won))
        index[free], gens[free], queries[free], won[free] = queue[:len(free)], -1, 0, False
        del queue[:len(free)]
        return s._replace(index=index, gens=gens, queries=queries, won=won)

    def _retire(self, s, out, callback):
        done = (s.index >= 0) & (s.won | (s.gens >= self.attack.iters))
        if not done.any():
            return s
        images = s.index[done]
        out.finish(images, s.won[done], s.gens[done], s.genes[done], s.answer[done])
        out.queries[images] += s.queries[done]
        if callback:
            callback(images, s.won[done])
        return s._replace(index=np.where(done, -1, s.index))


_SMALL = ("index", "gens", "queries", "won", "genes", "answer")  # read back after each call


def _answer(cand, stats, pop, pop_stats):
    """Per slot: any success, and the best winning candidate (else the best of pop)."""
    hit = stats[..., SUCCESS] > 0.5
    won = tf.reduce_any(hit, axis=1)
    winner = tf.argmin(tf.where(hit, stats[..., FIT], np.inf), axis=1, output_type=tf.int32)
    best = tf.argmin(pop_stats[..., FIT], axis=1, output_type=tf.int32)

    def pick(t, i):
        return tf.gather(t, i, axis=1, batch_dims=1)
    genes = tf.where(won[:, None, None], pick(cand, winner), pick(pop, best))
    return won, genes, tf.where(won[:, None], pick(stats, winner), pick(pop_stats, best))


def _init_bounds(u, low, span):
    """Every value at the low or the high bound of its band: 2**C colours per pixel."""
    return low + span * tf.cast(u >= 0.5, tf.float32)


def _init_gaussian(u, low, span):
    """Su et al.: N(mid-range, half the range), clipped (their N(128, 127) on [0, 255])."""
    return tf.clip_by_value(low + span * (0.5 + 0.5 * tf.math.ndtri(u)), low, low + span)


def _init_uniform(u, low, span):
    return low + u * span


# Initial values from one uniform draw per gene (positions are always uniform).
INITS = {"bounds": _init_bounds, "gaussian": _init_gaussian, "uniform": _init_uniform}


def _partners(u, p):
    """Three distinct indices per individual, none equal to it, from uniforms [..., 3]."""
    def draw(v, n):
        return 1 + tf.minimum(tf.cast(tf.floor(v * n), tf.int32), n - 1)
    d1 = draw(u[..., 0], p - 1)
    d2 = draw(u[..., 1], p - 2)
    d2 += tf.cast(d2 >= d1, tf.int32)
    lo, hi = tf.minimum(d1, d2), tf.maximum(d1, d2)
    d3 = draw(u[..., 2], p - 3)
    d3 += tf.cast(d3 >= lo, tf.int32)
    d3 += tf.cast(d3 >= hi, tf.int32)
    own = tf.range(p)[None, :]
    return tf.stack([(own + d) % p for d in (d1, d2, d3)], axis=-1)
