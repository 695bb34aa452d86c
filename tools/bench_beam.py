"""Beam next to the local paths: mock building and catalogues, side by side in one run.

* mock building: the same galaxies (seed, split sizes, shard size) built by the local
  process pool and by Beam's DirectRunner with as many worker processes (whole
  command: rendering, writing, the manifest's stretch fit), rounds alternating; the
  outputs are checked byte-identical;
* catalogues: `tfgal.model.predict.predict` and `tfgal.model.beam_predict.predict`
  (RunInference, in-process DirectRunner) on the same model, split and noise, rounds
  alternating, rows checked equal to 1e-5.

Rates are galaxies per wall-clock second, best of ``--rounds``; the load average at the
start is printed beside them (other jobs slow the runs)::

    python tools/bench_beam.py --galaxies 1000 --model saved_models/quick --data data/mock
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from tfgal.data import mock  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--galaxies", type=int, default=1000, help="mock galaxies per build")
    parser.add_argument("--shard-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=None, help="default: all cores")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", default=None, help="exported model for the catalogues")
    parser.add_argument("--data", default=None, help="dataset for the catalogues")
    parser.add_argument("--split", default="test")
    return parser.parse_args()


def _build(out, args, workers, beam):
    start = time.perf_counter()
    mock.build(out, n_train=args.galaxies, n_val=0, n_test=0, seed=0, workers=workers,
                     shard_size=args.shard_size, progress=False, beam=beam)
    return args.galaxies / (time.perf_counter() - start)


def _same_bytes(a, b):
    names = sorted(n for n in os.listdir(a) if n != "manifest.json")
    return names == sorted(n for n in os.listdir(b) if n != "manifest.json") and all(
        open(os.path.join(a, n), "rb").read() == open(os.path.join(b, n), "rb").read()
        for n in names)


def bench_mocks(args, scratch):
    workers = args.workers or os.cpu_count() or 1
    rates = {"local pool": [], "beam DirectRunner": []}
    for k in range(args.rounds):
        for name, beam in (("local pool", None), ("beam DirectRunner", True)):
            out = os.path.join(scratch, f"{name.split()[0]}-{k}")
            rates[name].append(_build(out, args, workers, beam))
    identical = _same_bytes(os.path.join(scratch, "local-0"), os.path.join(scratch, "beam-0"))
    best = {name: max(r) for name, r in rates.items()}
    return {"galaxies": args.galaxies, "workers": workers, "shard_size": args.shard_size,
            "galaxies_per_s": {n: round(v, 1) for n, v in best.items()},
            "all_rounds": {n: [round(v, 1) for v in r] for n, r in rates.items()},
            "beam_over_local": round(best["beam DirectRunner"] / best["local pool"], 3),
            "byte_identical": identical}


def bench_catalogues(args, scratch):
    from astropy.table import Table

    from tfgal.model import beam_predict, predict
    rates = {"local": [], "beam RunInference": []}
    for k in range(args.rounds):
        for name in rates:
            out = os.path.join(scratch, f"{name.split()[0]}-{k}.fits")
            run = predict.predict if name == "local" else beam_predict.predict
            kwargs = {"progress": False} if name == "local" else {}
            start = time.perf_counter()
            summary = run(args.model, out, data=args.data, split=args.split, **kwargs)
            rates[name].append(summary["n_galaxies"] / (time.perf_counter() - start))
    a = Table.read(os.path.join(scratch, "local-0.fits"))
    b = Table.read(os.path.join(scratch, "beam-0.fits"))
    probs = [c for c in a.colnames if c.startswith("p_")]
    diff = max(float(np.max(np.abs(np.asarray(a[c]) - np.asarray(b[c])))) for c in probs)
    best = {name: max(r) for name, r in rates.items()}
    return {"galaxies": len(a), "split": args.split,
            "galaxies_per_s (whole call, model load included)":
                {n: round(v, 1) for n, v in best.items()},
            "all_rounds": {n: [round(v, 1) for v in r] for n, r in rates.items()},
            "beam_over_local": round(best["beam RunInference"] / best["local"], 3),
            "same_rows": bool(np.all(a["galaxy_id"] == b["galaxy_id"])),
            "max_probability_difference": diff}


def main():
    args = parse_args()
    logging.getLogger().setLevel(logging.ERROR)  # Beam's import-time warnings
    report = {"cpu_count": os.cpu_count(), "load_average_1min_at_start": round(os.getloadavg()[0], 2)}
    scratch = tempfile.mkdtemp(prefix="tfgal-bench-beam-")
    try:
        report["mock build"] = bench_mocks(args, scratch)
        if args.model and args.data:
            report["catalogue"] = bench_catalogues(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
