"""The host side of an `Engine`: Python steps in only when an image finishes.

`clean` measures the unperturbed images; `run` feeds images into the engine's slots,
runs its compiled loop until one finishes, records it and hands its slot to a waiting
image; `confirm` re-measures answers the incremental evaluator found with the model
itself, so that everything reported is the model's own verdict.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfgal.attack.engine import Context, Slots
from tfgal.attack.results import FIT, SUCCESS, Clean, apply_pixels
from tfgal.errors import ModelContractError

__all__ = ["clean", "run", "confirm", "batched_probs", "CACHE_BUDGET_BYTES"]

# Cached feature maps of the images attacked at once by the incremental evaluator.
CACHE_BUDGET_BYTES = {"GPU": 2 * 2**30, "CPU": 1 * 2**30}
_SMALL = ("index", "gens", "queries", "won", "genes", "answer")  # read back after each call


def batched_probs(engine, images):
    """The model's probabilities of `images`, `max_batch` per call, as one array."""
    step = engine.max_batch
    return np.concatenate([engine.probs(tf.constant(images[i:i + step])).numpy()
                           for i in range(0, len(images), step)])


def clean(engine, base, cls):
    """The model's probabilities of the clean images `base`, and which already meet the
    criterion for classes `cls`; a model that fails on them is named."""
    n, name = int(base.shape[0]), engine.attack.model.name
    try:
        probs = batched_probs(engine, base.numpy())
    except (ValueError, TypeError, tf.errors.InvalidArgumentError) as e:
        first_line = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelContractError(f"model {name} failed on images of shape "
                                 f"{tuple(base.shape[1:])}: {first_line}") from e
    if probs.ndim != 2 or probs.shape[0] != n:
        raise ModelContractError(f"model {name} returned shape {probs.shape} for {n} images")
    c = cls.numpy()
    score, pred = probs[np.arange(n), np.clip(c, 0, probs.shape[1] - 1)], probs.argmax(axis=1)
    return Clean(probs.astype(np.float32), np.asarray(engine.succeeded(score, pred, c)))


def run(engine, base, cls, todo, out, callback):
    """Attacks images `todo`, refilling slots as images finish; with the incremental
    evaluator, in groups whose cached maps fit `CACHE_BUDGET_BYTES`."""
    todo = np.asarray(todo, np.int64)
    group = len(todo)
    if engine.local is not None:
        device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
        group = max(engine.capacity, CACHE_BUDGET_BYTES[device]
                    // engine.local.cache_bytes_per_image())
    for start in range(0, len(todo), max(group, 1)):
        members = todo[start:start + group]
        cache_row = np.full(len(base), -1, np.int32)
        cache_row[members] = np.arange(len(members))
        cache = (engine.prepare(tf.gather(base, members)) if engine.local is not None else [])
        ctx = Context(base, cls, tf.constant(cache_row), list(cache))
        slots, queue = _empty(engine), list(members)
        while True:
            slots = _refill(slots, queue)
            if not np.any(slots.index >= 0):
                break
            slots = engine.loop(ctx, slots)
            slots = slots._replace(**{f: getattr(slots, f).numpy() for f in _SMALL})
            slots = _retire(engine, slots, out, callback)


def confirm(engine, out, images, cls):
    """Re-measures the answers found incrementally with the model itself, so that the
    reported success, class and probabilities are the model's (its serving signature
    for a SavedModel), not the evaluator's."""
    done = np.flatnonzero(~out.already & np.isfinite(out.stats[:, FIT]))
    if not len(done):
        return
    perturbed = apply_pixels(images[done], out.pixels(images.shape)[done],
                             out.genes[done, :, 2:])
    stats = engine.statistics(batched_probs(engine, perturbed), cls[done]).numpy()
    out.stats[done] = stats
    out.success[done] = stats[:, SUCCESS] > 0.5


def _empty(engine):
    spec = engine.spec()
    small = {f: np.full(getattr(spec, f).shape, -1 if f == "index" else 0,
                        getattr(spec, f).dtype.as_numpy_dtype) for f in _SMALL}
    return Slots(pop=tf.zeros(spec.pop.shape), stats=tf.zeros(spec.stats.shape), **small)


def _refill(s, queue):
    free = np.flatnonzero(s.index < 0)[:len(queue)]
    if not len(free):
        return s
    index, gens, queries, won = (np.copy(v) for v in (s.index, s.gens, s.queries, s.won))
    index[free], gens[free], queries[free], won[free] = queue[:len(free)], -1, 0, False
    del queue[:len(free)]
    return s._replace(index=index, gens=gens, queries=queries, won=won)


def _retire(engine, s, out, callback):
    done = (s.index >= 0) & (s.won | (s.gens >= engine.attack.iters))
    if not done.any():
        return s
    images = s.index[done]
    out.finish(images, s.won[done], s.gens[done], s.genes[done], s.answer[done])
    out.queries[images] += s.queries[done]
    if callback:
        callback(images, s.won[done])
    return s._replace(index=np.where(done, -1, s.index))
