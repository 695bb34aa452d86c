"""Does the training pipeline keep up with training when it corrupts images? One run.

Side by side on one dataset (default ``data/mock``; nothing is built): the training
pipeline's rate in images/s (`pipeline.make_dataset(..., training=True, repeat=True)`,
shuffled, flipped and rotated, fresh Y10 noise, batch 32) without corruption, with each
corruption alone (`corruptions.Plan.augment([name], prob=1.0)`: every image corrupted at a
random severity 1-5) and with all of them (`Plan.augment(NAMES, 0.5)`, the defence's
default share); beside the training rate of the quick config's model
(`pipelines/quick.toml`, built by `tfgal.model.training.build_model` as ``tfgal-train``
builds it: ConvNet, CE + MMD, 32 labelled + 32 target images per step, op determinism as
configured) on batches held in memory, in labelled images/s. Each pipeline's ratio to
the training rate: >= 1 means it keeps up. "pair" counts the clean target stream the
quick config's step also reads: 1 / (1/r + 1/r_clean), the rate of the two streams
sharing the same cores one after the other.

Each pipeline is warmed up (tracing, XLA compilation, the shuffle buffer filled), then
timed for `--repeats` rounds back to back, one pipeline after the other (a live iterator
left idle between rounds would fill its prefetch buffer and inflate its next round); the
train step is timed before and after them all. The best round of each is reported. The
pipelines run alone, without the model: during training both compete for the same cores,
so these rates are upper bounds.

    python tools/bench_corruptions.py                       # data/mock, about 4 minutes
    python tools/bench_corruptions.py --batches 40 --repeats 5
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfgal import config, seeds  # noqa: E402
from tfgal.data import corruptions, pipeline  # noqa: E402
from tfgal.data.manifest import Manifest  # noqa: E402
from tfgal.errors import ConfigError  # noqa: E402
from tfgal.model import training  # noqa: E402

CONFIG = "pipelines/quick.toml"
BATCH = 32
WARMUP_BATCHES = 3


def pipeline_variants(manifest):
    """{label: Plan or None}: no corruption, each accepted one alone, all of them."""
    accepted, refused = [], []
    for name in corruptions.NAMES:
        try:
            corruptions.check([name], manifest)
            accepted.append(name)
        except ConfigError:
            refused.append(name)
    variants = {"no corruption": None}
    variants.update({name: corruptions.Plan.augment([name], prob=1.0) for name in accepted})
    variants[f"all {len(accepted)}, prob 0.5"] = corruptions.Plan.augment(accepted, 0.5)
    return variants, refused


def pipeline_rate(iterator, batches):
    start = time.perf_counter()
    n = 0
    for _ in range(batches):
        x, _ = next(iterator)
        n += int(x.shape[0])
    return n / (time.perf_counter() - start)


def memory_batches(cfg, manifest, n_batches):
    """Paired training batches ((x_s, x_t), y) of the quick config, held in memory."""
    paired = pipeline.make_paired_dataset(
        manifest, "train", cfg.data.source_depth, cfg.data.target_depth,
        batch_size=BATCH, training=True, repeat=True, seed=cfg.seed,
        noise_mode=cfg.data.noise_mode)
    held = list(paired.take(n_batches))
    xs = tf.concat([b[0][0] for b in held], 0)
    xt = tf.concat([b[0][1] for b in held], 0)
    y = tf.concat([b[1] for b in held], 0)
    return tf.data.Dataset.from_tensor_slices(((xs, xt), y)).batch(BATCH).cache().repeat()


def train_rate(model, batches, steps):
    """Labelled images per second of `steps` train steps (each also takes BATCH target
    images through the network for the MMD term)."""
    start = time.perf_counter()
    model.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    return steps * BATCH / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/mock", help="dataset directory (not built here)")
    parser.add_argument("--batches", type=int, default=16,
                        help="batches of 32 per pipeline per timed round")
    parser.add_argument("--steps", type=int, default=4, help="train steps per timed round")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds; the best is kept")
    args = parser.parse_args()
    if not os.path.exists(os.path.join(args.data, "manifest.json")):
        sys.exit(f"no dataset at {args.data}; build it first: tfgal-data mock --out {args.data} "
                 "(or tfgal-train --config pipelines/quick.toml, which builds data/mock)")
    command = "python tools/bench_corruptions.py " + " ".join(sys.argv[1:])

    cfg = config.load(CONFIG, [f"data.dir={json.dumps(args.data)}", f"train.batch_size={BATCH}"])
    keras.utils.set_random_seed(seeds.derive(cfg.seed, "init"))
    if cfg.train.deterministic:  # as tfgal-train: it holds for the pipeline too
        tf.config.experimental.enable_op_determinism()
    manifest = Manifest.load(args.data)
    variants, refused = pipeline_variants(manifest)

    # The model's train step on batches in memory.
    model = training.build_model(cfg, manifest, training.class_weights(manifest),
                                 cfg.train.steps_per_epoch)
    held = memory_batches(cfg, manifest, 4)
    model.fit(held, steps_per_epoch=2, epochs=1, verbose=0, shuffle=False)  # warm-up: tracing

    # One pipeline at a time, its rounds back to back: a live iterator idle between rounds
    # would fill its prefetch buffers and inflate the next round (and hold ~300 MB of
    # shuffle buffer). The training rate is timed before and after, to bracket load drift.
    trains = [train_rate(model, held, args.steps) for _ in range(args.repeats)]
    rates = {}
    for label, plan in variants.items():
        ds = pipeline.make_dataset(manifest, "train", cfg.data.source_depth, batch_size=BATCH,
                                   training=True, repeat=True, seed=cfg.seed,
                                   noise_mode=cfg.data.noise_mode, corruption=plan)
        iterator = iter(ds)
        pipeline_rate(iterator, WARMUP_BATCHES)  # tracing, XLA, shuffle buffer filled
        rates[label] = [pipeline_rate(iterator, args.batches) for _ in range(args.repeats)]
        del iterator, ds
    trains += [train_rate(model, held, args.steps) for _ in range(args.repeats)]
    train = max(trains)
    best = {label: max(v) for label, v in rates.items()}
    clean = best["no corruption"]

    device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    print(f"command: `{command.strip()}`")
    print()
    print(f"{manifest.count('train')} training galaxies {tuple(manifest.image_shape)} of "
          f"{args.data} at {cfg.data.source_depth}, batch {BATCH}, {os.cpu_count()} cores, "
          f"{device}, TensorFlow {tf.__version__}, op determinism "
          f"{'on' if cfg.train.deterministic else 'off'}; best of {args.repeats} rounds "
          f"({args.batches} batches per pipeline, {args.steps} train steps; training timed "
          f"{2 * args.repeats} times, {min(trains):.1f}-{train:.1f} labelled images/s)")
    if refused:
        print(f"refused on this dataset (corruptions.check): {', '.join(refused)}")
    print()
    print(f"training: {cfg.model.name} of {CONFIG}, CE + MMD (weight {cfg.loss.mmd_weight}), "
          f"{BATCH} labelled + {BATCH} target images per step: **{train:.1f} labelled "
          "images/s**")
    print()
    print("| training pipeline | images/s | x training | pair x training |")
    print("| --- | ---: | ---: | ---: |")
    for label, rate in best.items():
        pair = 1.0 / (1.0 / rate + 1.0 / clean)
        print(f"| {label} | {rate:.0f} | {rate / train:.2f} | {pair / train:.2f} |")


if __name__ == "__main__":
    main()
