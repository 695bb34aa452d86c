"""How long each command's ``--help`` (and a usage error) takes, under one or two source
trees side by side, next to a bare Python start.

    python tools/bench_help.py --tree . --tree /tmp/old-tfgal --repeats 5

Each case runs ``python -c "from tfgal.cli import X_main; X_main([...])"`` with the tree
first on ``sys.path`` (run from inside it), alternating trees per repeat so that load on
the machine falls on both alike; prints the median seconds per tree and the first tree's
time over the second's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

CASES = [
    ("tfgal-attack --help", "attack", ["--help"]),
    ("tfgal-predict --help", "predict", ["--help"]),
    ("tfgal-train --help", "train", ["--help"]),
    ("tfgal-study --help", "study", ["--help"]),
    ("tfgal-data mock --help", "data", ["mock", "--help"]),
    ("tfgal-attack (no --out)", "attack", ["--model", "m", "--data", "d"]),
]


def _time(tree, code):
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, timeout=120)
    return time.perf_counter() - started


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", required=True,
                        help="a tfgal source tree (repeat for a side-by-side comparison)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    trees = [os.path.abspath(t) for t in args.tree]
    print(f"load average {os.getloadavg()[0]:.2f}; median of {args.repeats} runs, seconds")
    bare = statistics.median(_time(trees[0], "pass") for _ in range(args.repeats))
    print(f"{'python -c pass':28s} {bare:8.2f}")
    header = "".join(f"{os.path.basename(t) or t:>12.12s}" for t in trees)
    print(f"{'case':28s}{header}" + ("   1st / 2nd" if len(trees) == 2 else ""))
    for name, command, arguments in CASES:
        code = f"import sys; sys.path.insert(0, '.'); from tfgal.cli import {command}_main; " \
               f"{command}_main({arguments!r})"
        times = {t: [] for t in trees}
        for _ in range(args.repeats):
            for tree in trees:
                times[tree].append(_time(tree, code))
        medians = [statistics.median(times[t]) for t in trees]
        line = f"{name:28s}" + "".join(f"{m:12.2f}" for m in medians)
        if len(trees) == 2:
            line += f"{medians[0] / medians[1]:11.1f}x"
        print(line)


if __name__ == "__main__":
    main()
