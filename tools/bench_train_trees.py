"""Training time of one config under two source trees, side by side in one run.

    git worktree add /tmp/before af3a9f4
    python tools/bench_train_trees.py --before /tmp/before --config pipelines/quick.toml \
        --out /tmp/bench-trees

Runs ``tfgal-train`` on the same config (each tree's copy of `--config`) and dataset with
this tree and with `--before` (run inside that tree, its ``tfgal`` package first), alternating, `--repeats` times each, and
prints each run's wall time, the median epoch time from its history.csv, and the ratios
this tree / before. The dataset must exist already (``data.dir``), so that neither run
builds it (link the other tree's data directory to this one's).
"""

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(tree, args, tag):
    # Run inside the tree: `python -c` puts the working directory first on sys.path, and
    # the config's relative paths (data.dir) then resolve in that tree.
    out = os.path.abspath(os.path.join(args.out, tag))
    env = dict(os.environ, PYTHONPATH=tree)
    command = [sys.executable, "-c",
               "import sys; from tfgal.cli import train_main; sys.exit(train_main())",
               "--config", args.config, *[a for s in args.set for a in ("--set", s)],
               "--logdir", os.path.join(out, "run"), "--out", os.path.join(out, "model")]
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env, cwd=tree, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    with open(os.path.join(out, "run", "history.csv")) as f:
        epochs = [float(r["epoch_seconds"]) for r in csv.DictReader(f)]
    with open(os.path.join(out, "run", "summary.json")) as f:
        accuracy = json.load(f)["test_accuracy"]
    return wall, statistics.median(epochs), accuracy


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="the other source tree")
    parser.add_argument("--config", default="pipelines/quick.toml")
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    print(f"load average before: {os.getloadavg()}")
    results = {"this": [], "before": []}
    for i in range(args.repeats):
        for name, tree in (("before", os.path.abspath(args.before)), ("this", HERE)):
            wall, epoch, accuracy = _run(tree, args, f"{name}-{i}")
            results[name].append((wall, epoch))
            print(f"{name:6s} run {i}: {wall:.1f} s wall, median epoch {epoch:.1f} s, "
                  f"test accuracy {accuracy}")
    wall = {k: statistics.median(w for w, _ in v) for k, v in results.items()}
    epoch = {k: statistics.median(e for _, e in v) for k, v in results.items()}
    print(f"this / before: wall {wall['this'] / wall['before']:.3f}, "
          f"median epoch {epoch['this'] / epoch['before']:.3f}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
