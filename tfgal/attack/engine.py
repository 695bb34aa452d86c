"""The compiled differential-evolution loop of one attack configuration and image shape.

Images occupy a fixed number of slots (``max_batch // popsize``); the whole generation
loop (initial population, mutation, candidate images, model, selection, success test)
runs in one compiled ``tf.while_loop`` until an image finishes, and only then does the
host step in (`tfgal.attack.host`). Each generation gathers the live slots into a dense
batch, so an empty or finished slot is neither computed nor counted. Slot shapes never
change, so the loop is traced once.

DE/rand/1 with scale ``F``, no crossover, greedy one-to-one replacement (Su, Vargas &
Sakurai 2019). Randomness is counter-based: the draws for image ``i`` at generation ``g``
come from the seed ``(seed, i)`` folded with ``g`` (Philox, identical on CPU and GPU), so
an image's attack does not depend on which other images share its batch.

Initial values (`INITS`) come from one uniform draw per gene; positions are uniform.
"bounds" puts every value at its band's low or high bound: the strongest single pixels
sit at the extremes of the allowed range, and starting there finds them soonest. With
F = 0.5 and clipping such values stay on {low, mid, high} per band; "gaussian" (Su et al.)
or "uniform" explore intermediate values.
"""

from __future__ import annotations

import typing

import numpy as np
import tensorflow as tf

from tfgal.attack.results import FIT, N_STATS, SUCCESS

__all__ = ["Engine", "Context", "Slots", "INITS", "default_max_batch",
           "INPUT_BUDGET_BYTES", "MAX_BATCH_CAP"]

# Default bound on candidate images per model call: their pixels may take this many bytes
# (activations take several times more), and there are never more than MAX_BATCH_CAP.
INPUT_BUDGET_BYTES = {"GPU": 512 * 2**20, "CPU": 128 * 2**20}
MAX_BATCH_CAP = 4096


def default_max_batch(image_shape):
    """Candidate images per model call whose pixels fit `INPUT_BUDGET_BYTES` (at most
    `MAX_BATCH_CAP`): 4096 at 100x100x3 on a GPU, 1118 on a CPU."""
    device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    per_image = 4 * int(np.prod(image_shape))
    return int(max(1, min(MAX_BATCH_CAP, INPUT_BUDGET_BYTES[device] // per_image)))


class Context(typing.NamedTuple):
    """What a generation reads besides the slots."""

    base: object  # [N, H, W, C] the clean images
    cls: object  # [N] int32 the class each attack acts on (label or target)
    cache_row: object  # [N] int32 row of each image in `cache` (incremental evaluator)
    cache: object  # list: the incremental evaluator's maps of the images being attacked


class Slots(typing.NamedTuple):
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


class Engine:
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
        self.probs = tf.function(self._probs_fn, input_signature=[images])
        self.prepare = (tf.function(local.prepare, input_signature=[images])
                        if local is not None else None)
        # The loop spells its control flow out (tf.while_loop, tf.cond): autograph would
        # only add tracing time. The model keeps it, inside `probs`.
        self.loop = tf.function(self._loop_fn, input_signature=[
            Context(images, ints, ints, cache), self.spec()], autograph=False)

    def spec(self):
        """`Slots` of tensor specs: the loop's fixed shapes."""
        a, p, k = self.capacity, self.attack.popsize, self.gene_shape
        return Slots(*(tf.TensorSpec(shape, dtype) for shape, dtype in (
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
        new = self._step(ctx, Slots(*(tf.gather(t, rows) for t in s)))
        return Slots(*(tf.tensor_scatter_nd_update(t, rows[:, None], u) for t, u in zip(s, new)))

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
        return Slots(s.index, s.gens + 1, s.queries + self.attack.popsize, won, pop,
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
            probs = self.probs(self._perturb(tf.gather(ctx.base, rows), genes))
        return self.statistics(probs, tf.gather(ctx.cls, rows))

    def statistics(self, probs, target):
        """Statistics [R, N_STATS] of probabilities [R, K] for classes `target` [R]."""
        score = tf.gather(probs, target, axis=1, batch_dims=1)
        pred = tf.argmax(probs, axis=1, output_type=tf.int32)
        fitness = 1.0 - score if self.attack.targeted else score
        won = self.succeeded(score, pred, target)
        return tf.stack([fitness, tf.cast(won, tf.float32), tf.cast(pred, tf.float32),
                         tf.reduce_max(probs, axis=1), score], axis=1)

    def succeeded(self, score, pred, target):
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
