"""Benchmarks the mock generator: galaxies per second with 1 worker and with all cores.

Builds the same small dataset (rendering + TFRecord writing + stretch fit) twice into a
temporary directory, once in-process and once with a worker per core, and prints the
rates and their ratio. `--render-only` times `mock.render_many` without writing.

    python tools/bench_mock.py --galaxies 600
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfgal.data import mock  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--galaxies", type=int, default=600, help="galaxies per run")
    parser.add_argument("--workers", type=int, default=None,
                        help="workers of the parallel run (default: all cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--render-only", action="store_true",
                        help="time rendering alone, without writing a dataset")
    return parser.parse_args()


def rate(workers, args, scratch):
    """(galaxies per wall-clock second, CPU seconds per galaxy in this process)."""
    start, cpu = time.perf_counter(), time.process_time()
    if args.render_only:
        items = [(g, label) for _, g, label in mock.plan(args.galaxies, 0, 0, args.seed)]
        for _ in mock.render_many(items, args.seed, workers=workers):
            pass
    else:
        mock.build(os.path.join(scratch, f"w{workers}"), n_train=args.galaxies, n_val=0,
                         n_test=0, seed=args.seed, workers=workers, progress=False)
    return (args.galaxies / (time.perf_counter() - start),
            (time.process_time() - cpu) / args.galaxies)


def main():
    args = parse_args()
    parallel = args.workers or os.cpu_count() or 1
    # Other jobs on the machine slow the parallel run most: the load is printed with it.
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="tfgal-bench-") as scratch:
        single, cpu_per_galaxy = rate(1, args, scratch)
        many, _ = rate(parallel, args, scratch)
    print(json.dumps({
        "what": "render_many" if args.render_only else "build (render + write + stretch)",
        "galaxies": args.galaxies, "cpu_count": os.cpu_count(),
        "load_average_1min_at_start": round(load, 2),
        "cpu_s_per_galaxy_1_worker": round(cpu_per_galaxy, 4),
        "galaxies_per_s_1_worker": round(single, 1),
        f"galaxies_per_s_{parallel}_workers": round(many, 1),
        "speedup": round(many / single, 2),
    }, indent=2))


if __name__ == "__main__":
    main()
