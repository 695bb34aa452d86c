"""Mock sets built by one or two source trees, every way, compared byte by byte.

    python tools/compare_mock_builds.py --tree /tmp/old-tfgal --tree . --out /tmp/builds

Each tree runs ``tfgal-data mock`` three ways with the same arguments (default 300 / 60 /
100 galaxies, seed 3, 64 per shard): a local process pool, Beam's DirectRunner (the beam
extra) and two ``--shard`` parts then ``merge``. Prints each build's SHA-256 per file
and exits 1 unless every build of every tree holds the same files with the same bytes,
manifest included. A refactoring of the mock room or the storage core must leave this at 0.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tfgal import io  # noqa: E402  (only its leaf: the trees compared run in subprocesses)

MODES = ("local", "beam", "parts")


def _cli(tree, args):
    code = ("import sys; sys.path.insert(0, '.'); from tfgal.cli import data_main; "
            f"sys.exit(data_main({args!r}))")
    run = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True)
    if run.returncode:
        sys.exit(f"{tree}: tfgal-data {' '.join(args)} failed:\n{run.stderr[-2000:]}")


def build(tree, out, mode, sizes):
    common = [*sizes, "--no-progress"]
    if mode == "local":
        _cli(tree, ["mock", "--out", out, *common])
    elif mode == "beam":
        _cli(tree, ["mock", "--out", out, *common, "--beam"])
    else:
        for part in ("0/2", "1/2"):
            _cli(tree, ["mock", "--out", out, *common, "--workers", "1", "--shard", part])
        _cli(tree, ["merge", "--out", out])


def digests(root):
    """{relative path: SHA-256} of every file a build left (its lock aside)."""
    root = pathlib.Path(root)
    return {str(p.relative_to(root)): io.sha256_file(p)
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", required=True,
                        help="a tfgal source tree (repeat to compare two)")
    parser.add_argument("--out", required=True, help="an empty folder for the builds")
    parser.add_argument("--train", type=int, default=300)
    parser.add_argument("--val", type=int, default=60)
    parser.add_argument("--test", type=int, default=100)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--shard-size", type=int, default=64)
    parser.add_argument("--modes", default=",".join(MODES),
                        help=f"ways of building, comma-separated (default: {','.join(MODES)})")
    args = parser.parse_args(argv)
    sizes = ["--train", str(args.train), "--val", str(args.val), "--test", str(args.test),
             "--seed", str(args.seed), "--shard-size", str(args.shard_size)]
    modes = args.modes.split(",")
    if not modes or set(modes) - set(MODES):
        sys.exit(f"--modes {args.modes}: choose among {', '.join(MODES)}")
    os.makedirs(args.out, exist_ok=True)
    if os.listdir(args.out):
        sys.exit(f"--out {args.out} is not empty")
    builds = {}
    for k, tree in enumerate(os.path.abspath(t) for t in args.tree):
        for mode in modes:
            out = os.path.join(os.path.abspath(args.out), f"tree{k}-{mode}")
            started = time.perf_counter()
            build(tree, out, mode, sizes)
            builds[f"tree{k}-{mode}"] = digests(out)
            print(f"tree{k} ({tree}) {mode}: {len(builds[f'tree{k}-{mode}'])} files in "
                  f"{time.perf_counter() - started:.0f} s", file=sys.stderr)
    first_name, first = next(iter(builds.items()))
    for name in first:
        print(f"{first[name]}  {name}")
    differ = [n for n, d in builds.items() if d != first]
    for name in differ:
        changed = sorted(set(first.items()) ^ set(builds[name].items()))
        print(f"{name} differs from {first_name}: {sorted({p for p, _ in changed})}")
    print(f"{len(builds)} builds ({', '.join(builds)}): "
          + ("identical, file by file" if not differ else f"{len(differ)} differ"))
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
