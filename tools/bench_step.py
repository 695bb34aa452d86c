"""tfgal's training step against a plain `keras.Model.fit`, side by side in one run.

The anchor is what Keras alone does with the same architecture: the study's ConvNet as a
plain functional model, compiled with Adam and sparse cross-entropy, fitted on one batch
of real observed galaxies held in memory (no input pipeline at all). Beside it, on the same
batch size and the same cores:

* ``tfgal, memory, fixed noise``: `tfgal.model.training`'s model and datasets as
  `tfgal-train` builds them from the config (the baseline: source batch only), with the
  training split held in memory and observed once (``data.cache``, ``data.fresh_noise =
  false``): per batch only the symmetries are drawn;
* ``tfgal, memory, fresh noise``: the same with a new noise draw every epoch;
* ``tfgal, streaming``: no cache: shards read, decompressed, parsed and observed per batch,
  as before ``data.cache``.

Rounds alternate between the variants so that load on the machine hits them alike; the
median round is reported, with each variant's ratio to the anchor.

    python tools/bench_step.py --config pipelines/quick.toml           # its batch size
    python tools/bench_step.py --config pipelines/quick.toml --batch-size 64
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfgal import config as config_lib  # noqa: E402
from tfgal.data import pipeline  # noqa: E402
from tfgal.model import architectures, training  # noqa: E402


def plain_model(manifest, seed):
    encoder, head = architectures.build_convnet(tuple(manifest.image_shape), seed=seed)
    images = keras.Input(tuple(manifest.image_shape))
    model = keras.Model(images, head(encoder(images)))
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=False)
    return model


def tfgal_variant(cfg, manifest, **data):
    cfg = config_lib.merge(cfg, {"data": data, "loss": {"mmd_weight": 0.0}})
    model = training.build_model(cfg, manifest, training.class_weights(manifest))
    train_ds, _ = training.datasets(cfg, manifest, tf.distribute.get_strategy())
    return model, train_ds


def rate(model, iterator, steps, batch):
    """Images/s over `steps` compiled train steps on one long-lived iterator, as inside a
    `fit` epoch (a new `fit` per round would refill the shuffle buffers each time)."""
    start = time.perf_counter()
    for _ in range(steps):
        logs = model.train_function(iterator)
    float(logs["loss"])  # work queued on a GPU is finished inside the timing
    return steps * batch / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="pipelines/quick.toml")
    parser.add_argument("--batch-size", type=int, help="default: the config's")
    parser.add_argument("--steps", type=int, default=40, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    overrides = ["train.steps_per_epoch=0"]
    if args.batch_size:
        overrides.append(f"train.batch_size={args.batch_size}")
    cfg = config_lib.load(args.config, overrides)
    if cfg.train.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(cfg.seed)
    manifest = training.ensure_dataset(cfg.data, cfg.seed)
    b = cfg.train.batch_size
    batch = pipeline.load_arrays(manifest, "train", cfg.data.source_depth, n=b, seed=cfg.seed)
    anchor = tf.data.Dataset.from_tensors((batch["images"], batch["labels"])).repeat()
    variants = {
        "plain keras fit, in-memory batch": (plain_model(manifest, cfg.seed), anchor),
        "tfgal, memory, fixed noise": tfgal_variant(cfg, manifest, cache=True,
                                                    fresh_noise=False),
        "tfgal, memory, fresh noise": tfgal_variant(cfg, manifest, cache=True,
                                                    fresh_noise=True),
        "tfgal, streaming": tfgal_variant(cfg, manifest, cache=False, fresh_noise=True),
    }
    iterators = {}
    for name, (model, ds) in variants.items():  # warm-up: tracing, and filling the caches
        model.make_train_function()
        iterators[name] = iter(ds)
        rate(model, iterators[name], 3, b)
    rates = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (model, _) in variants.items():
            rates[name].append(rate(model, iterators[name], args.steps, b))
    median = {name: statistics.median(v) for name, v in rates.items()}
    base = median["plain keras fit, in-memory batch"]
    print(f"{cfg.model.name}, {tuple(manifest.image_shape)} images, batch {b}, "
          f"{os.cpu_count()} cores, {'GPU' if tf.config.list_physical_devices('GPU') else 'CPU'}, "
          f"deterministic={cfg.train.deterministic}, median of {args.rounds} rounds x "
          f"{args.steps} steps, load average {os.getloadavg()[0]:.2f}")
    for name, value in median.items():
        print(f"{name:34s} {value:8.1f} images/s   x{value / base:.2f}")


if __name__ == "__main__":
    main()
