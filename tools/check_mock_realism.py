"""Do the mock classes measure like real spirals, ellipticals and mergers? Like for like.

Renders the same galaxies (ids 0..3N-1, classes in turn, one seed) with the generator of
each source tree given, and measures them all with THIS tree's statmorph stage
(`tfgal.data.morphology.realism`) at high S/N (a noise floor a tenth of Y10's), at Y10 and
at Y1, each galaxy with its own PSF. Writes OUT/realism.md (the like-for-like tables),
OUT/realism.json and OUT/realism.png (medians and 16-84% ranges beside the literature's).

    python tools/check_mock_realism.py --per-class 40 --out /tmp/realism
    python tools/check_mock_realism.py --tree /tmp/old-tfgal --tree . --out /tmp/realism

A tree is rendered in a subprocess with PYTHONPATH set to it, so an older checkout (a `git
worktree`) renders its own generator; the measurement is the same for every tree.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

_RENDER = """
import sys, numpy as np
from tfgal.data import mock
print("rendering with", mock.__file__, file=sys.stderr)
n, seed, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
images, labels, fwhm = [], [], []
for i in range(3 * n):
    label = i % 3
    if hasattr(mock, "render"):
        image, props = mock.render(i, label, seed)
    else:  # trees older than mock.render: two designs of the same galaxy
        image, props = mock.render_galaxy(i, label, seed), mock.describe(i, label, seed)
    images.append(image); labels.append(label); fwhm.append(props["psf_fwhm_arcsec"])
np.savez(out, images=np.stack(images), labels=np.array(labels, np.int32),
         psf_fwhm=np.array(fwhm), galaxy_id=np.arange(3 * n))
"""


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=40, help="galaxies per class")
    parser.add_argument("--seed", type=int, default=0, help="the mock seed (and the noise's)")
    parser.add_argument("--tree", action="append", default=None,
                        help="source tree whose generator renders (repeatable; default .)")
    parser.add_argument("--workers", type=int, default=None, help="statmorph processes")
    parser.add_argument("--out", required=True, help="output directory")
    return parser.parse_args()


def render_tree(tree, n, seed, scratch):
    """The tree's stamps (npz arrays), rendered in a subprocess importing that tree."""
    path = os.path.join(scratch, f"{abs(hash(os.path.abspath(tree)))}.npz")
    env = {**os.environ, "PYTHONPATH": os.path.abspath(tree)}
    # Run inside the tree: `python -c` puts the working directory first on sys.path.
    subprocess.run([sys.executable, "-c", _RENDER, str(n), str(seed), path], env=env,
                   cwd=os.path.abspath(tree), check=True)
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tfgal.data.manifest import CLASS_NAMES
    from tfgal.data.morphology import LITERATURE, realism
    stats = ("sersic_n", "concentration", "asymmetry", "smoothness", "gini_m20_merger")
    fig, axes = plt.subplots(1, len(stats), figsize=(4 * len(stats), 4), squeeze=False)
    styles = {"high": ("o", "C0"), "Y10": ("s", "C1"), "Y1": ("^", "C3")}
    n_trees = len(results)
    for ax, stat in zip(axes[0], stats):
        for c, name in enumerate(CLASS_NAMES):
            lit = LITERATURE[name].get(stat)
            if lit is not None:
                lo = max(lit.low, -1.0) if np.isinf(lit.low) else lit.low
                hi = min(lit.high, 8.0) if np.isinf(lit.high) else lit.high
                ax.fill_between([c - 0.4, c + 0.4], lo, hi, color="0.85", zorder=0)
            for t, (tree, result) in enumerate(results.items()):
                for d, depth in enumerate(realism.DEPTHS):
                    r = result["summary"][depth][name][stat]
                    x = c - 0.3 + 0.6 * (t * len(realism.DEPTHS) + d + 0.5) / (
                        n_trees * len(realism.DEPTHS))
                    marker, colour = styles[depth]
                    ax.errorbar(x, r["median"], yerr=[[r["median"] - r["p16"]],
                                                      [r["p84"] - r["median"]]],
                                fmt=marker, color=colour, mfc="none" if t < n_trees - 1
                                else colour, ms=5, capsize=0,
                                label=f"{os.path.basename(tree) or tree} {depth}"
                                if c == 0 else None)
        ax.set_xticks(range(len(CLASS_NAMES)), CLASS_NAMES)
        ax.set_title(stat)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("statmorph medians [16%, 84%] per class; grey: literature ranges")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main():
    args = parse_args()
    trees = args.tree or ["."]
    os.makedirs(args.out, exist_ok=True)
    from tfgal.data.morphology import measurements, realism
    results, sections = {}, []
    with tempfile.TemporaryDirectory() as scratch, \
            measurements.worker_pool(args.workers) as pool:
        for tree in trees:
            start = time.perf_counter()
            stamps = render_tree(tree, args.per_class, args.seed, scratch)
            rendered = time.perf_counter() - start
            tables = realism.measure_depths(stamps["images"], stamps["psf_fwhm"],
                                            stamps["galaxy_id"], seed=args.seed, pool=pool)
            summary = realism.summarise(tables, stamps["labels"])
            failed = {d: int(t.meta["n_failed"]) for d, t in tables.items()}
            results[tree] = {"summary": summary, "failed": failed,
                             "inside": {d: realism.count_inside(summary, d)[0]
                                        for d in realism.DEPTHS},
                             "render_s": rendered, "wall_s": time.perf_counter() - start}
            title = (f"{tree}: {args.per_class} galaxies per class, seed {args.seed}; "
                     f"statmorph failures {failed}")
            sections.append(realism.markdown(summary, title))
            print(sections[-1], "\n", flush=True)
    with open(os.path.join(args.out, "realism.md"), "w") as f:
        f.write(f"Command: `python {' '.join(sys.argv)}`\n\n" + "\n\n".join(sections) + "\n")
    with open(os.path.join(args.out, "realism.json"), "w") as f:
        json.dump({"per_class": args.per_class, "seed": args.seed, "trees": results}, f,
                  indent=1, default=float)
    plot(results, os.path.join(args.out, "realism.png"))
    print(f"wrote {args.out}/realism.md, realism.json, realism.png")


if __name__ == "__main__":
    main()
