"""Training throughput with and without the MMD loss, beside the pipeline's rate.

In one run, on the same model and data, rounds alternating between variants:

* ``CE only``: the baseline step (source batch only);
* ``CE, target forwarded``: source + target batch through the network, no MMD;
* ``CE + MMD``: the domain-adaptation step (source + target, MMD on the latents);
* ``pipeline``: paired batches per second from the tf.data pipeline alone.

Rates count every image that goes through the network (source + target). The MMD
overhead is ``CE, target forwarded`` over ``CE + MMD`` (target: at most 15%).

    python tools/bench_train.py                     # ConvNet, synthetic 100x100x3 galaxies
    python tools/bench_train.py --data data/mock --model resnet18 --batch-size 32
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf

sys.path.insert(0, os.path.dirname(__file__))
from bench_pipeline import synthetic_dataset  # noqa: E402

from tfgal import data  # noqa: E402
from tfgal.data import pipeline  # noqa: E402
from tfgal.model import adaptation, architectures  # noqa: E402


def make_model(name, manifest, mmd_weight, use_target, jit_compile="auto"):
    """A compiled MorphologyModel; the dtype policy in force (float32 or mixed_float16)
    sets its precision. `jit_compile`: False as tfgal-train under train.deterministic."""
    keras.utils.set_random_seed(0)
    encoder, head = architectures.build(name, image_shape=tuple(manifest.image_shape), seed=0)
    model = adaptation.MorphologyModel(encoder, head, mmd_weight=mmd_weight,
                                       use_target=use_target)
    model.compile(optimizer=keras.optimizers.AdamW(1e-5),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=jit_compile)
    return model


def train_rate(model, batches, steps, images_per_step):
    start = time.perf_counter()
    model.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps * images_per_step / (time.perf_counter() - start)


def prepare_steps(model):
    """Builds the optimizer and the compiled train function of a compiled model without a
    `fit`, whose symbolic build costs a trace more (half a minute for ResNet18 on a CPU)."""
    model.optimizer.build(model.trainable_variables)
    model.make_train_function()


def step_rate(model, iterator, steps, images_per_step):
    """Images/s over `steps` compiled train steps on one iterator, without a `fit` per
    round (each refills the pipeline's shuffle buffers); the loss is read at the end, so
    work queued on a GPU is finished inside the timing. Needs `prepare_steps` (or a fit)
    first; the first call traces the step."""
    start = time.perf_counter()
    for _ in range(steps):
        logs = model.train_function(iterator)
    float(logs["loss"])
    return steps * images_per_step / (time.perf_counter() - start)


def pipeline_rate(batches, steps, images_per_step):
    iterator = iter(batches)
    next(iterator)
    start = time.perf_counter()
    for _ in range(steps):
        next(iterator)
    return steps * images_per_step / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="dataset directory (default: synthetic)")
    parser.add_argument("--n", type=int, default=512, help="synthetic galaxies")
    parser.add_argument("--model", default="convnet")
    parser.add_argument("--batch-size", type=int, default=64, help="per domain")
    parser.add_argument("--steps", type=int, default=8, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        manifest = (data.Manifest.load(args.data) if args.data
                    else synthetic_dataset(os.path.join(tmp, "ds"), args.n))
        batches = pipeline.make_paired_dataset(manifest, "train", batch_size=args.batch_size,
                                               repeat=True, seed=0).prefetch(4)
        b = args.batch_size
        variants = {
            "CE only (source)": (make_model(args.model, manifest, 0.0, None), b),
            "CE, target forwarded": (make_model(args.model, manifest, 0.0, True), 2 * b),
            "CE + MMD": (make_model(args.model, manifest, 0.01, None), 2 * b),
        }
        for model, _ in variants.values():  # warm-up: tracing and compilation
            model.fit(batches, steps_per_epoch=2, epochs=1, verbose=0)
        rates = {name: [] for name in [*variants, "pipeline (paired batches)"]}
        for _ in range(args.rounds):
            for name, (model, per_step) in variants.items():
                rates[name].append(train_rate(model, batches, args.steps, per_step))
            rates["pipeline (paired batches)"].append(pipeline_rate(batches, args.steps, 2 * b))
    median = {name: statistics.median(v) for name, v in rates.items()}
    print(f"{args.model}, {tuple(manifest.image_shape)} images, batch {b} source + {b} target, "
          f"{os.cpu_count()} cores, {'GPU' if tf.config.list_physical_devices('GPU') else 'CPU'}, "
          f"median of {args.rounds} rounds x {args.steps} steps")
    for name, rate in median.items():
        print(f"{name:28s} {rate:9.1f} images/s")
    overhead = median["CE, target forwarded"] / median["CE + MMD"] - 1
    print(f"MMD overhead (target forwarded vs CE + MMD): {100 * overhead:+.1f}%  (target <= 15%)")
    keeps_up = median["pipeline (paired batches)"] / median["CE + MMD"]
    print(f"pipeline / DA training rate: x{keeps_up:.2f}  (> 1: the pipeline keeps up)")


if __name__ == "__main__":
    main()
