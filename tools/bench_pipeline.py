"""Pipeline throughput, measured side by side in one run.

Prints images/s for: reading and decoding only; a naive pipeline (sequential
``map(tf.random.poisson)``, no parallelism, no prefetch); tfgal's pipeline in exact and
fast noise modes; and each one's ratio to the naive pipeline. Rounds alternate between
the variants so that machine noise hits them alike; the median round is reported.

    python tools/bench_pipeline.py                      # synthetic 100x100x3 galaxies
    python tools/bench_pipeline.py --data data/mock     # an existing dataset
"""

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

from tfgal import survey
from tfgal.data import pipeline
from tfgal.data import DatasetWriter, make_parser, Manifest
from tfgal.data import stretch


def synthetic_dataset(root, n, size=100, seed=0):
    """Smooth random galaxies (e-/s per pixel), GZIP shards like a mock set."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - size / 2
    with DatasetWriter(root, images={"flux": {"noise": False}},
                       image_shape=(size, size, 3)) as writer:
        sample = []
        for i in range(n):
            r = np.hypot(xx * rng.uniform(0.5, 1), yy) / rng.uniform(3, 10)
            image = np.exp(-r)[..., None] * rng.uniform(0.2, 5, 3)
            writer.add("train", {"flux": image}, i % 3, i)
            if i < 256:
                sample.append(image)
        fitted = stretch.fit(np.stack(sample), noiseless=True, seed=seed)
        return writer.finish(stretch=fitted)


def naive_dataset(manifest, depth, batch_size):
    parse = make_parser(manifest)
    exposure = depth.exposure_vector()
    sky = survey.sky_vector()
    params = manifest.stretch

    def observe(element):
        counts = tf.random.poisson([], (element["flux"] + sky) * exposure)
        return stretch.apply_tf(counts / exposure - sky, params), element["label"]

    ds = tf.data.TFRecordDataset(manifest.files("train"), manifest.compression)
    return ds.map(parse).map(observe).batch(batch_size)


def read_only_dataset(manifest, batch_size):
    ds = pipeline.records_dataset(manifest, "train")
    return ds.map(lambda e: (e["flux"], e["label"])).batch(batch_size).prefetch(-1)


def images_per_second(ds):
    start = time.perf_counter()
    n = 0
    for x, _ in ds:
        n += int(x.shape[0])
    return n / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="dataset directory (default: synthetic)")
    parser.add_argument("--n", type=int, default=768, help="synthetic galaxies")
    parser.add_argument("--depth", default="Y1")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        manifest = (Manifest.load(args.data) if args.data
                    else synthetic_dataset(os.path.join(tmp, "ds"), args.n))
        depth = survey.Depth.parse(args.depth)
        variants = {
            "read only": lambda: read_only_dataset(manifest, args.batch_size),
            "naive map(tf.random.poisson)": lambda: naive_dataset(manifest, depth, args.batch_size),
            "tfgal exact": lambda: pipeline.make_dataset(
                manifest, "train", depth, batch_size=args.batch_size, noise_mode="exact"),
            "tfgal fast (default)": lambda: pipeline.make_dataset(
                manifest, "train", depth, batch_size=args.batch_size),
        }
        datasets = {name: make() for name, make in variants.items()}
        for ds in datasets.values():  # warm-up: tracing, file cache
            images_per_second(ds)
        rates = {name: [] for name in datasets}
        for _ in range(args.rounds):
            for name, ds in datasets.items():
                rates[name].append(images_per_second(ds))
    print(f"{manifest.count('train')} galaxies {tuple(manifest.image_shape)} at depth "
          f"{depth.name}, batch {args.batch_size}, {os.cpu_count()} cores, "
          f"median of {args.rounds} rounds")
    naive = statistics.median(rates["naive map(tf.random.poisson)"])
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"{name:32s} {rate:9.1f} images/s   x{rate / naive:5.2f} vs naive")


if __name__ == "__main__":
    main()
