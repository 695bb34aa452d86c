"""Compares two study ``results.json`` files, timings, paths and library versions aside.

    python tools/compare_results.py OLD.json NEW.json [--rtol 1e-6] [--ignore KEY_OR_PATH]

Prints every other difference as ``path: old != new`` and exits 1 when there is one
(0 when the numbers and the schema agree). Numbers compare exactly unless ``--rtol``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

__all__ = ["IGNORED_KEYS", "IGNORED_PATHS", "differences", "main"]

# Keys ignored wherever they occur: timings, the run's own directories, library versions,
# and the SavedModels' byte digests (two runs of the same code into two directories save
# byte-identical weights in another byte order, so these differ between any two runs).
IGNORED_KEYS = frozenset({
    "seconds", "seconds_total", "seconds_per_galaxy", "run_times", "wall_time_s", "wall_s",
    "created", "finished",
    "attacks_per_second", "export_dir", "run_dir", "command", "report", "versions",
    "fingerprint",
})
# Dot-joined paths ignored ("seeds.root" is a seed, so "root" is not ignored everywhere).
IGNORED_PATHS = frozenset({"dataset.root"})


def _ignored(path, key, extra):
    full = f"{path}.{key}" if path else str(key)
    return key in IGNORED_KEYS or full in IGNORED_PATHS or key in extra or full in extra, full


def _close(a, b, rtol):
    if rtol == 0:
        return a == b
    return math.isclose(a, b, rel_tol=rtol, abs_tol=0.0)


def differences(old, new, *, rtol=0.0, ignore=(), path=""):
    """Yields ``(path, old, new)`` for every difference outside the ignored keys (and the
    keys or dot-joined paths in `ignore`)."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            skip, full = _ignored(path, key, ignore)
            if skip:
                continue
            if key not in old or key not in new:
                yield full, old.get(key, "<missing>"), new.get(key, "<missing>")
            else:
                yield from differences(old[key], new[key], rtol=rtol, ignore=ignore, path=full)
    elif isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            yield f"{path} (length)", len(old), len(new)
        for i, (a, b) in enumerate(zip(old, new)):
            yield from differences(a, b, rtol=rtol, ignore=ignore, path=f"{path}[{i}]")
    elif (isinstance(old, (int, float)) and isinstance(new, (int, float))
          and not isinstance(old, bool) and not isinstance(new, bool)):
        if not _close(old, new, rtol):
            yield path, old, new
    elif old != new or type(old) is not type(new):
        yield path, old, new


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--rtol", type=float, default=0.0,
                        help="relative tolerance for numbers (default: exact)")
    parser.add_argument("--ignore", action="append", default=[], metavar="KEY_OR_PATH",
                        help="also ignore this key anywhere, or this dot-joined path "
                             "(e.g. config.data.dir); repeatable")
    args = parser.parse_args(argv)
    with open(args.old) as f:
        old = json.load(f)
    with open(args.new) as f:
        new = json.load(f)
    found = list(differences(old, new, rtol=args.rtol, ignore=frozenset(args.ignore)))
    for path, a, b in found:
        print(f"{path}: {json.dumps(a)[:200]} != {json.dumps(b)[:200]}")
    print(f"{len(found)} difference(s)" if found else "results agree (timings, paths and "
          "versions aside)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
