"""tfgal-predict's throughput next to the model's bare batched forward rate, in one run.

Prints galaxies/s for: (a) the bare forward pass, ``serving_default`` on batches of
test images already stretched and held in memory (`pipeline.load_arrays`); (b) the
pipeline alone, reading TFRecords, adding noise and stretching, no model; (c) the whole
library path `tfgal.model.predict.predict` (reading, noise, stretch, forward, catalogue
written; model loading apart, and end to end with it); and (c)'s ratio to (a). One
warm-up round first (tracing, XLA compilation of the noise kernel, file cache), whose
predict() rate is printed as the first call of a process; then the best of `--repeat`
rounds, the variants alternating so that machine noise hits them alike.

    python tools/bench_predict.py                    # saved_models/quick on data/mock, test
    python tools/bench_predict.py --model M --data D --split test --batch-size 256
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf

from tfgal.data import pipeline
from tfgal.model import predict as predict_lib


def forward_rate(classifier, images, batch_size):
    start = time.perf_counter()
    for i in range(0, len(images), batch_size):
        classifier.serving(images=tf.constant(images[i:i + batch_size]))["probabilities"].numpy()
    return len(images) / (time.perf_counter() - start)


def pipeline_rate(classifier, data, split, batch_size):
    source = predict_lib.dataset_source(classifier, data, split, batch_size=batch_size)
    start, n = time.perf_counter(), 0
    for batch in source.batches:
        n += int(batch["images"].shape[0])
    return n / (time.perf_counter() - start)


def predict_rates(args, out):
    start = time.perf_counter()
    # every round rewrites the same catalogue
    summary = predict_lib.predict(args.model, out, data=args.data, split=args.split,
                                  batch_size=args.batch_size, progress=False, overwrite=True)
    total = time.perf_counter() - start
    return summary["galaxies_per_s"], summary["n_galaxies"] / total, summary


def _parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="saved_models/quick")
    parser.add_argument("--data", default="data/mock")
    parser.add_argument("--split", default="test")
    parser.add_argument("--batch-size", type=int, default=predict_lib.DEFAULT_BATCH_SIZE)
    parser.add_argument("--repeat", type=int, default=3)
    return parser


def measure(args):
    """The rates of the module docstring for `args` (model, data, split, batch_size,
    repeat): a dict of the best of each path, the first call's rate and the run's facts."""
    classifier, name, version = predict_lib.load_model(args.model)
    depth = predict_lib.dataset_source(classifier, args.data, args.split).meta["DEPTH"]
    images = pipeline.load_arrays(args.data, args.split, depth,
                                  stretch=classifier.assets.get("stretch"))["images"]
    rates = {"forward": [], "pipeline": [], "predict": [], "predict+load": []}
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "catalogue.fits")
        cold, _, summary = predict_rates(args, out)  # first call: XLA compilation included
        forward_rate(classifier, images, args.batch_size)
        for _ in range(args.repeat):
            rates["forward"].append(forward_rate(classifier, images, args.batch_size))
            rates["pipeline"].append(pipeline_rate(classifier, args.data, args.split,
                                                   args.batch_size))
            warm, end_to_end, _ = predict_rates(args, out)
            rates["predict"].append(warm)
            rates["predict+load"].append(end_to_end)
    return {"best": {k: max(v) for k, v in rates.items()}, "cold": cold, "summary": summary,
            "name": name, "version": version, "n_galaxies": len(images),
            "image_shape": tuple(images.shape[1:]), "depth": depth}


def main():
    args = _parser().parse_args()
    if not os.path.exists(args.model):
        sys.exit(f"no exported model at {args.model}; train it first: "
                 "tfgal-train --config pipelines/quick.toml (a few minutes on 2 cores)")
    m = measure(args)
    best, cold, summary = m["best"], m["cold"], m["summary"]
    print(f"model {m['name']} (version {m['version']}), {m['n_galaxies']} galaxies "
          f"{m['image_shape']} of {args.data} {args.split} at {m['depth']}, batch "
          f"{args.batch_size}, {os.cpu_count()} cores, TensorFlow {tf.__version__}, "
          f"best of {args.repeat} rounds")
    print(f"(a) bare forward, images in memory   {best['forward']:8.1f} galaxies/s")
    print(f"(b) pipeline alone, no model         {best['pipeline']:8.1f} galaxies/s")
    print(f"(c) predict(): data, model, catalogue {best['predict']:7.1f} galaxies/s   "
          f"x{best['predict'] / best['forward']:.2f} of (a)")
    print(f"    with model loading               {best['predict+load']:8.1f} galaxies/s")
    print(f"    first call of the process        {cold:8.1f} galaxies/s (XLA compilation)")
    print(f"predicted classes: {summary['class_counts']}")


if __name__ == "__main__":
    main()
