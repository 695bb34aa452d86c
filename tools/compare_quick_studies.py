"""The quick study's headline numbers from two runs side by side (e.g. old and new mocks).

    python tools/compare_quick_studies.py OLD.json NEW.json --names "mock v1" "mock v2"

Each file is a quick-study digest (`docs/quick_study.json`, written by
`tools/quick_study_readme.py`) or a run's `results.json`. Prints a markdown table per model:
accuracy at the source and target depths, their drop with a 95% interval, the gain at the
target depth over the baseline (the study's paired bootstrap over galaxies), and the
classical classifier's accuracies with Clopper-Pearson intervals. The drop's interval
treats the two depths as independent samples (the runs keep no paired predictions in
their digests): wider than a paired one, so a conservative reading.
"""

from __future__ import annotations

import argparse
import json
import math

from tfgal.attack.summary import binomial_interval


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs=2, help="two digests or results.json files")
    parser.add_argument("--names", nargs=2, default=("first", "second"),
                        help="a column label per run")
    return parser.parse_args()


def _drop(source, target, n):
    """(drop, low, high) in points: source - target, normal approximation, independent."""
    d = source - target
    se = math.sqrt(source * (1 - source) / n + target * (1 - target) / n)
    return 100 * d, 100 * (d - 1.96 * se), 100 * (d + 1.96 * se)


def rows(run):
    out, n = {}, int(run["evaluation_n"])
    for kind in run["kinds"]:
        c = run["controlled"][kind]
        src, tgt = c["accuracy_source"]["mean"], c["accuracy_target"]["mean"]
        gain = (c.get("gain_over_baseline") or {}).get("target", {})
        ci = gain.get("ci95") or {}
        out[kind] = {"source": 100 * src, "target": 100 * tgt, "drop": _drop(src, tgt, n),
                     "gain": (100 * gain["mean"], 100 * ci["low"], 100 * ci["high"])
                     if ci else None}
    classical = run.get("classical") or {}
    if classical.get("row"):
        m = int(classical["n_galaxies"])
        out["classical"] = {}
        for key in ("source", "target"):
            acc = classical["row"][f"accuracy_{key}"]
            k = round(acc * m)
            ci = binomial_interval(k, m)
            out["classical"][key] = (100 * acc, 100 * ci["low"], 100 * ci["high"], k, m)
    return out, n


def _fmt(t):
    return f"{t[0]:+.1f} [{t[1]:+.1f}, {t[2]:+.1f}]"


def main():
    args = parse_args()
    runs = []
    for path in args.runs:
        with open(path) as f:
            runs.append(rows(json.load(f)))
    (a, n_a), (b, n_b) = runs
    depths = "Y10 / Y1"
    print(f"| model | {args.names[0]}: {depths} | drop | {args.names[1]}: {depths} | drop | "
          f"drop's change | gain at Y1 over baseline: {args.names[0]} | {args.names[1]} |")
    print("|" + " --- |" * 8)
    for kind in [k for k in a if k != "classical" and k in b]:
        x, y = a[kind], b[kind]
        change = y["drop"][0] - x["drop"][0]
        se = math.hypot((x["drop"][2] - x["drop"][1]) / 3.92,
                        (y["drop"][2] - y["drop"][1]) / 3.92)
        gains = [_fmt(r["gain"]) if r["gain"] and kind != "baseline" else "—" for r in (x, y)]
        print(f"| `{kind}` | {x['source']:.1f} / {x['target']:.1f} | {_fmt(x['drop'])} | "
              f"{y['source']:.1f} / {y['target']:.1f} | {_fmt(y['drop'])} | "
              f"{_fmt((change, change - 1.96 * se, change + 1.96 * se))} | {gains[0]} | "
              f"{gains[1]} |")
    if "classical" in a and "classical" in b:
        cells = []
        for r in (a["classical"], b["classical"]):
            s, t = r["source"], r["target"]
            cells.append(f"{s[0]:.1f} [{s[1]:.1f}, {s[2]:.1f}] / {t[0]:.1f} [{t[1]:.1f}, "
                         f"{t[2]:.1f}] ({s[4]} galaxies)")
        print(f"\nclassical (statmorph + random forest), Y10 / Y1, 95% Clopper-Pearson: "
              f"{args.names[0]} {cells[0]}; {args.names[1]} {cells[1]}")
    print(f"\n(networks: {n_a} and {n_b} test galaxies; drop intervals unpaired, see --help)")


if __name__ == "__main__":
    main()
