"""Benchmark: tfgal's batched one-pixel attack against ART's PixelAttack and SciPy DE.

The same images of the same model are attacked with the same budget (population 400,
``--iters`` generations, one pixel, values bounded by the data's range, untargeted,
success when the predicted class changes: ART's criterion) by

* tfgal: `tfgal.attack.OnePixelAttack`, populations of several images batched, the
  generation loop compiled, its default "bounds" initialisation; once with each
  ``--evaluators`` entry: "incremental" (the default's choice on this model: only the
  window a pixel changes is recomputed, exactly, `tfgal.attack.incremental`) and "full" (the
  model on every candidate image, as the peers do). ``--inits`` adds rows with other
  initialisations (Su et al.'s "gaussian", "uniform"), incremental;
* ART: ``PixelAttack(classifier, th=1, es=1, max_iter=iters)``, one image at a time;
* SciPy: ``scipy.optimize.differential_evolution`` per image, the population of an image
  evaluated in one model call (as one-pixel-attack-keras does), DE/rand/1, F = 0.5, its
  convergence test off (``atol=-1``, as ART and one-pixel-attack-keras set it). With it
  on, SciPy stops once all fitness values are equal, which a saturated model (true class
  at 1.0 in float32 for every candidate) reaches early: a stopping rule outside Su et al.
  that ends hopeless attacks under the budget the others spend.

Model queries are counted where the model is called (for tfgal: candidates evaluated);
a success is re-checked with the model on the returned image; tfgal's time includes
tracing its compiled loop and checking the incremental evaluator against the model.
By default the study's ConvNet is trained briefly on synthetic galaxies
(exponential disk, compact bulge, two-blob merger) at the study's stamp size, 100 x 100
pixels (``--size``), so no data or SavedModel is needed. Run it with the interpreter tfgal
is installed in (timings of past runs: docs/benchmarks.md)::

    python tools/bench_attack.py

That toy model is confident enough that one pixel rarely flips it within 30 generations,
so its success rates are equal but uninformative. On the study's ConvNet trained by
tfgal on its mock galaxies the attacks succeed often::

    tfgal-train --config pipelines/quick.toml
    python tools/bench_attack.py --model saved_models/quick --data data/mock

The table gives, per attacker, wall and CPU seconds, microseconds per query and the
speed-up of the reference row (the first: tfgal, incremental) over each row. Below it,
the bare model's cost (us per image, compiled batches, the best of several measurements)
and the ceiling it puts on any attacker that evaluates whole candidate images, as ART,
SciPy and tfgal's full evaluator do: a peer's time / (its queries x that cost). Whole-image
evaluation cannot beat the per-image attackers by more than that; the incremental
evaluator computes less than the model per candidate, which is where the rest comes from.
The load average is printed: the cores may be shared, which slows every row.

Needs the ``bench`` extra (``pip install -e .[bench]``: adversarial-robustness-toolbox).
"""

from __future__ import annotations

import argparse
import functools
import os
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.filterwarnings("ignore", category=UserWarning)  # ART without PyTorch, SciPy's notes

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

CLASSES = 3
LOW, HIGH = 0.45, 0.89  # a narrow band like the study's stretched pixels (benchmarks.md)


# --------------------------------------------------------------------------- model and data


def synthetic_galaxies(n, size, rng):
    """Noisy toy galaxies of three classes in [LOW, HIGH]: disk, bulge, two-blob merger."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32) - (size - 1) / 2
    labels = rng.integers(0, CLASSES, n)
    images = np.empty((n, size, size, 3), np.float32)
    colours = np.array([[0.8, 1.0, 1.1], [0.6, 1.0, 1.4], [0.7, 1.0, 1.2]], np.float32)
    for i, c in enumerate(labels):
        images[i] = _profile(c, xx, yy, size, rng)[..., None] * colours[c]
    images += rng.normal(0, 0.03, images.shape).astype(np.float32)
    v = np.arcsinh(3 * np.clip(images, 0, None)) / np.arcsinh(3 * 1.4)
    return (LOW + (HIGH - LOW) * np.clip(v, 0, 1)).astype(np.float32), labels.astype(np.int32)


def _profile(c, xx, yy, size, rng):
    s = size / 10
    if c == 0:  # inclined exponential disk
        q, a = rng.uniform(0.3, 1.0), rng.uniform(0, np.pi)
        u, v = xx * np.cos(a) + yy * np.sin(a), (-xx * np.sin(a) + yy * np.cos(a)) / q
        return np.exp(-np.hypot(u, v) / (s * rng.uniform(0.8, 1.4)))
    if c == 1:  # compact, round bulge
        return np.exp(-(np.hypot(xx, yy) / (s * rng.uniform(0.4, 0.7))) ** 0.5 * 2.5) * 2
    d, a = rng.uniform(1.2, 2.5) * s, rng.uniform(0, 2 * np.pi)  # two blobs
    dx, dy = d * np.cos(a), d * np.sin(a)
    blob = lambda x0, y0, r: np.exp(-np.hypot(xx - x0, yy - y0) / r)  # noqa: E731
    return blob(dx, dy, 0.7 * s) + rng.uniform(0.4, 1.0) * blob(-dx, -dy, 0.6 * s)


def train_model(size, seed, epochs):
    """A study ConvNet (plus softmax) trained for `epochs` on synthetic galaxies."""
    import keras
    from tfgal.model import architectures as models
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    x, y = synthetic_galaxies(3000, size, rng)
    encoder, head = models.build("convnet", image_shape=(size, size, 3), seed=seed)
    inputs = keras.Input((size, size, 3))
    model = keras.Model(inputs, keras.layers.Softmax()(head(encoder(inputs))))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    start = time.perf_counter()
    model.fit(x, y, batch_size=64, epochs=epochs, verbose=0)
    test_x, test_y = synthetic_galaxies(500, size, rng)
    acc = float(np.mean(model.predict(test_x, verbose=0).argmax(1) == test_y))
    print(f"model: ConvNet on synthetic {size}x{size}x3 galaxies, trained "
          f"{time.perf_counter() - start:.0f} s, test accuracy {acc:.3f}")
    return model, test_x, test_y


def load_model_and_data(args):
    from tfgal.model import export
    from tfgal.data import pipeline
    model = export.load(args.model)
    arrays = pipeline.load_arrays(args.data, args.split, "Y10", n=max(4 * args.n, 100),
                                  seed=args.seed, stretch=model.assets.get("stretch"))
    keras_like = _ServingModel(model)
    return keras_like, arrays["images"], arrays["labels"]


class _ServingModel:
    """A SavedModel's serving signature seen as a Keras-style callable (for ART)."""

    def __init__(self, exported):
        self.exported = exported
        self.inputs = None

    def __call__(self, x, training=False):
        return self.exported.serving(images=tf.convert_to_tensor(x, tf.float32))["probabilities"]


def pick_images(model, images, labels, n):
    """The first `n` images the model classifies correctly (attacking errors is moot)."""
    pred = np.concatenate([np.asarray(model(images[i:i + 256], training=False)).argmax(1)
                           for i in range(0, len(images), 256)])
    keep = np.flatnonzero(pred == labels)[:n]
    return images[keep], labels[keep]


# --------------------------------------------------------------------------- attackers


def run_tfgal(model, images, labels, args, bounds, init="bounds", evaluator="incremental"):
    from tfgal.attack import OnePixelAttack
    target = getattr(model, "exported", model)  # a SavedModel: attack it, not the wrapper
    attack = OnePixelAttack(target, popsize=args.popsize, iters=args.iters, f=0.5,
                            success="class", value_range=bounds, seed=args.seed,
                            init=init, evaluator=evaluator)
    result = attack.attack(images, labels)
    return result.images, int(result.queries.sum())


def run_art(model, images, labels, args, bounds):
    from art.attacks.evasion import PixelAttack
    from art.estimators.classification import TensorFlowV2Classifier
    clf = TensorFlowV2Classifier(model=model, nb_classes=CLASSES, input_shape=images.shape[1:],
                                 clip_values=bounds)
    counter = _count_calls(clf)
    attack = PixelAttack(clf, th=1, es=1, max_iter=args.iters, targeted=False, verbose=False)
    np.random.seed(args.seed)  # ART's DE draws from NumPy's global generator
    adv = attack.generate(images, labels)
    return adv.astype(np.float32), counter["queries"]


def _count_calls(clf):
    counter = {"queries": 0}
    predict = clf.predict

    def counted(x, *a, **kw):
        counter["queries"] += len(x)
        return predict(x, *a, **kw)
    clf.predict = counted
    return counter


def run_scipy(model, images, labels, args, bounds):
    from scipy.optimize import differential_evolution
    h, w, c = images.shape[1:]
    spec = tf.TensorSpec((None, h, w, c), tf.float32)
    predict = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    total, out = 0, images.copy()
    for i, (image, label) in enumerate(zip(images, labels)):
        state = {"queries": 0, "found": None}

        def objective(xt):
            genes = xt.T
            probs = predict(_perturb(image, genes)).numpy()
            state["queries"] += len(genes)
            won = np.flatnonzero(probs.argmax(1) != label)
            if len(won) and state["found"] is None:
                state["found"] = genes[won[0]]
            return probs[:, label]

        def stop(intermediate_result):
            if state["found"] is not None:
                raise StopIteration

        n_genes = 2 + c
        res = differential_evolution(
            objective, [(0, w), (0, h)] + [bounds] * c, strategy="rand1bin", mutation=0.5,
            recombination=1.0, popsize=max(1, args.popsize // n_genes), maxiter=args.iters,
            tol=0, atol=-1, polish=False, init="random", vectorized=True,
            rng=args.seed + i, callback=stop)
        best = state["found"] if state["found"] is not None else res.x
        out[i] = _perturb(image, best[None])[0]
        total += state["queries"]
    return out, total


def _perturb(image, genes):
    h, w, _ = image.shape
    imgs = np.repeat(image[None], len(genes), axis=0)
    x = np.clip(genes[:, 0].astype(int), 0, w - 1)
    y = np.clip(genes[:, 1].astype(int), 0, h - 1)
    imgs[np.arange(len(genes)), y, x] = genes[:, 2:]
    return imgs


# --------------------------------------------------------------------------- main


def _parser():
    from tfgal.attack import INITS
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", help="SavedModel to attack (default: train a small ConvNet)")
    p.add_argument("--data", help="dataset directory (with --model)")
    p.add_argument("--split", default="test")
    p.add_argument("--n", type=int, default=16, help="images attacked")
    p.add_argument("--size", type=int, default=100, help="synthetic image size (pixels)")
    p.add_argument("--epochs", type=int, default=3, help="training epochs")
    p.add_argument("--popsize", type=int, default=400)
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--evaluators", nargs="+", default=("incremental", "full"),
                   choices=("incremental", "full"),
                   help="tfgal evaluators to run, initialisation bounds (the first is the "
                        "reference row)")
    p.add_argument("--inits", nargs="*", default=(), choices=tuple(INITS),
                   help="extra tfgal rows with these initialisations, incremental")
    p.add_argument("--skip", nargs="*", default=(), choices=("art", "scipy"))
    return p


def _runners(args):
    runners = {f"tfgal-{ev}": functools.partial(run_tfgal, evaluator=ev)
               for ev in args.evaluators}
    runners.update({f"tfgal-{init}": functools.partial(run_tfgal, init=init)
                    for init in args.inits})
    runners.update({"ART": run_art, "SciPy": run_scipy})
    return {k: v for k, v in runners.items() if k.lower() not in args.skip}


def main(argv=None):
    args = _parser().parse_args(argv)
    load = [os.getloadavg()[0]]
    if args.model:
        model, images, labels = load_model_and_data(args)
    else:
        model, images, labels = train_model(args.size, args.seed, args.epochs)
    images, labels = pick_images(model, images, labels, args.n)
    bounds = (float(images.min()), float(images.max()))
    print(f"attacking {len(images)} correctly classified images {images.shape[1:]}, "
          f"population {args.popsize}, {args.iters} generations, values in "
          f"[{bounds[0]:.3f}, {bounds[1]:.3f}], success = class change")
    floors = [model_floor_us(model, images, args.popsize)]
    rows = {}
    for name, run in _runners(args).items():
        success, queries, seconds, cpu = timed(run, model, images, labels, args, bounds)
        rows[name] = (float(success.mean()), queries, seconds, cpu)
        print(f"  {name:15s} done in {seconds:.1f} s")
    floors.append(model_floor_us(model, images, args.popsize))
    load.append(os.getloadavg()[0])
    _report(rows, min(floors), floors, load)


def timed(run, model, images, labels, args, bounds):
    """(success per image, queries, wall s, CPU s) of one attacker `run`; success is
    re-checked with the model on the images it returns."""
    start, cpu = time.perf_counter(), time.process_time()
    adv, queries = run(model, images, labels, args, bounds)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return np.asarray(model(adv, training=False)).argmax(1) != labels, queries, seconds, cpu


def model_floor_us(model, images, popsize, repeats=3, total=8000):
    """Microseconds per image of the bare compiled model: the best of `repeats` timings,
    each over `total` images in batches of `popsize` and of 10 x `popsize`."""
    spec = tf.TensorSpec((None, *images.shape[1:]), tf.float32)
    predict = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    best = np.inf
    for batch in (popsize, 10 * popsize):
        x = tf.constant(np.resize(images, (batch, *images.shape[1:])))
        np.asarray(predict(x))
        calls = max(1, total // batch)
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(calls):
                np.asarray(predict(x))
            best = min(best, 1e6 * (time.perf_counter() - start) / (calls * batch))
    return best


def _report(rows, floor_us, floors, load):
    ref = next(iter(rows))
    rate0, queries0, base, _ = rows[ref]
    print(f"\n{'attacker':17s} {'success':>8s} {'queries':>9s} {'wall s':>7s} {'CPU s':>7s} "
          f"{'us/query':>8s} {ref + ' speed-up':>26s}")
    for name, (rate, queries, seconds, cpu) in rows.items():
        print(f"{name:17s} {rate:8.1%} {queries:9d} {seconds:7.1f} {cpu:7.1f} "
              f"{1e6 * seconds / queries:8.1f} {seconds / base:25.2f}x")
    print(f"bare model: {floor_us:.0f} us per image (best of compiled batches; "
          f"{floors[0]:.0f} before, {floors[-1]:.0f} after the attacks); load average "
          f"{load[0]:.1f} -> {load[-1]:.1f} on {os.cpu_count()} cores")
    for name, (_, queries, seconds, _) in rows.items():
        if name != "tfgal-incremental":
            print(f"ceiling for whole-image evaluation over {name}: "
                  f"{seconds / (queries * floor_us * 1e-6):.1f}x ({name} time / its queries "
                  f"x bare model)")
    if "ART" in rows:
        ok = rows["ART"][2] / base >= 5 and rate0 >= rows["ART"][0]
        print(f"target (>= 5x faster than ART at an equal or higher success rate): "
              f"{'met' if ok else 'NOT met'}")
        if max(rate for rate, *_ in rows.values()) == 0:
            print("no attacker flipped any image: the times compare full budgets, the success "
                  "rates say nothing; attack a trained model (--model, --data) for that")


if __name__ == "__main__":
    main()
