"""Mock rendering speed of two source trees, side by side in one run.

    git worktree add /tmp/before 083355d
    python tools/bench_mock_trees.py --before /tmp/before --galaxies 300 --repeats 3

Renders the same galaxies (ids 0..N-1, the classes in turn, seed 0) with each tree's
`render_galaxy`, in one process per tree and round, alternating the trees, after a warm-up
that fills GalSim's per-index tables (a long build has them filled). Prints each round's
CPU seconds per galaxy per tree (per core: one process), each tree's median, their ratio
this tree / before, and the load average beside them. Galaxies differ between trees when
their generators do: it is the cost of a galaxy of each generator that is compared.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TIMER = """
import sys, time
from tfgal.data.mock import galaxies
n, warm = int(sys.argv[1]), int(sys.argv[2])
for g in range(n, n + warm):
    galaxies.render_galaxy(g, g % 3, 0)
start = time.process_time()
for g in range(n):
    galaxies.render_galaxy(g, g % 3, 0)
print((time.process_time() - start) / n)
"""


def _cpu_per_galaxy(tree, args):
    env = dict(os.environ, PYTHONPATH=tree, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", _TIMER, str(args.galaxies), str(args.warmup)],
                         check=True, env=env, cwd=tree, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the other source tree")
    parser.add_argument("--galaxies", type=int, default=300, help="galaxies timed per round")
    parser.add_argument("--warmup", type=int, default=60, help="galaxies rendered first")
    parser.add_argument("--repeats", type=int, default=3, help="rounds per tree")
    args = parser.parse_args()
    trees = {"before": os.path.abspath(args.before), "this": HERE}
    rounds = {name: [] for name in trees}
    load = [os.getloadavg()[0]]
    for _ in range(args.repeats):
        for name, tree in trees.items():
            rounds[name].append(_cpu_per_galaxy(tree, args))
        load.append(os.getloadavg()[0])
    median = {name: statistics.median(v) for name, v in rounds.items()}
    print(json.dumps({
        "galaxies": args.galaxies, "repeats": args.repeats,
        "cpu_s_per_galaxy": {k: [round(x, 4) for x in v] for k, v in rounds.items()},
        "median_cpu_s_per_galaxy": {k: round(v, 4) for k, v in median.items()},
        "galaxies_per_s_per_core": {k: round(1 / v, 1) for k, v in median.items()},
        "ratio_this_over_before_speed": round(median["before"] / median["this"], 3),
        "load_average_1min": [round(x, 2) for x in load],
    }, indent=2))


if __name__ == "__main__":
    main()
