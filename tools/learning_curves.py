"""Learning curves: validation accuracy at Y10 against seconds of training, recipe beside recipe.

Each run is a real `tfgal-train` of the baseline ConvNet (``loss.mmd_weight = 0``) on
`pipelines/quick.toml`'s data, with one recipe's overrides, in a process of its own. Its
history.csv gives, per epoch, the seconds of training so far (``train_seconds``: every
step, the batch-norm recalibration and the validation, the first epoch's tracing and
caching included; not the process start or the final export) and the validation accuracy
at Y10; its summary.json the exported model's test accuracy at Y10 and Y1. Runs go
seed-major (every recipe at seed 0, then at seed 1, ...) so that load on the machine hits
the recipes alike; a run whose result exists is not repeated, so the tool can be rerun to
add seeds or recipes, and `--report` alone redraws from what is there.

    python tools/learning_curves.py --out docs/learning_curves --seeds 0 1 2
    python tools/learning_curves.py --out docs/learning_curves --recipes old --seeds 0 1
    python tools/learning_curves.py --out docs/learning_curves --report

Writes ``OUT/runs/<recipe>-seed<N>.json``, ``OUT/learning_curves.png`` and
``OUT/learning_curves.md`` (the table: time to the target accuracy, best and final
validation accuracy, test accuracy, per recipe over seeds).
"""

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

CONFIG = "pipelines/quick.toml"
TARGET = 0.85
# name: (label, overrides on CONFIG). Every recipe trains the baseline.
RECIPES = {
    "landed": ("quick as landed: 3 x 50 steps of 32, Adam 3e-4 cosine, streaming, fresh noise",
               ["train.epochs=3", "train.steps_per_epoch=50", "train.batch_size=32",
                "train.learning_rate=3e-4", "train.schedule=cosine",
                "data.fresh_noise=true", "data.cache=false"]),
    "old": ("old 15 epochs of 64, Adam 1e-3 cosine, streaming, fresh noise",
            ["train.epochs=15", "train.steps_per_epoch=0", "train.batch_size=64",
             "train.learning_rate=1e-3", "train.schedule=cosine",
             "data.fresh_noise=true", "data.cache=false"]),
    "new-stream": ("new recipe, streaming, fresh noise (no cache)",
                   ["data.fresh_noise=true", "data.cache=false"]),
    "new-fresh": ("new recipe, in memory, fresh noise", ["data.fresh_noise=true"]),
    "new": ("new recipe (quick.toml): 6 epochs of 32, warm-up + cosine to 4e-3, in memory, "
            "fixed noise", []),
}
COMMON = ["loss.mmd_weight=0", "log.projector=0", "log.images=0"]


def train_command():
    here = os.path.join(os.path.dirname(sys.executable), "tfgal-train")
    return [here] if os.path.exists(here) else [shutil.which("tfgal-train") or "tfgal-train"]


def run(recipe, seed, config):
    """Trains one recipe at one seed in a fresh process; returns its curve and accuracies."""
    label, overrides = RECIPES[recipe]
    with tempfile.TemporaryDirectory(prefix="tfgal-curves-") as tmp:
        sets = [*COMMON, *overrides, f"seed={seed}", f"name={recipe}-seed{seed}",
                f"log.dir={tmp}/run", f"export.dir={tmp}/export"]
        cmd = [*train_command(), "--config", config, *[a for s in sets for a in ("--set", s)]]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(tmp, "run", "history.csv"), newline="") as f:
            rows = list(csv.DictReader(f))
        with open(os.path.join(tmp, "run", "summary.json")) as f:
            summary = json.load(f)
    return {"recipe": recipe, "label": label, "seed": seed, "overrides": overrides,
            "seconds": [float(r["train_seconds"]) for r in rows],
            "val_accuracy": [float(r["val_source_accuracy"]) for r in rows],
            "test_accuracy": summary["test_accuracy"], "wall_time_s": summary["wall_time_s"],
            "load_average": os.getloadavg()[0]}


def time_to(result, target=TARGET):
    """Seconds of training at the end of the first epoch at or above `target`, or None."""
    for seconds, acc in zip(result["seconds"], result["val_accuracy"]):
        if acc >= target:
            return seconds
    return None


def load_results(out):
    folder = os.path.join(out, "runs")
    results = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        with open(os.path.join(folder, name)) as f:
            results.append(json.load(f))
    return [r for r in results if r["recipe"] in RECIPES]


def _fmt(values, digits=1, scale=1.0):
    values = [v * scale for v in values]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return (f"{statistics.mean(values):.{digits}f} ({min(values):.{digits}f}-"
            f"{max(values):.{digits}f})")


def table(results):
    lines = [f"| recipe | seeds | seconds to {100 * TARGET:.0f}% val (each seed) | best val % | "
             "final val % | test % Y10 | test % Y1 | seconds of training |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for recipe, (label, _) in RECIPES.items():
        runs = sorted((r for r in results if r["recipe"] == recipe), key=lambda r: r["seed"])
        if not runs:
            continue
        times = [time_to(r) for r in runs]
        each = ", ".join("never" if t is None else f"{t:.0f}" for t in times)
        lines.append(
            f"| {label} | {', '.join(str(r['seed']) for r in runs)} | {each} | "
            f"{_fmt([max(r['val_accuracy']) for r in runs], scale=100)} | "
            f"{_fmt([r['val_accuracy'][-1] for r in runs], scale=100)} | "
            f"{_fmt([r['test_accuracy']['Y10'] for r in runs], scale=100)} | "
            f"{_fmt([r['test_accuracy']['Y1'] for r in runs], scale=100)} | "
            f"{_fmt([r['seconds'][-1] for r in runs], digits=0)} |")
    return "\n".join(lines)


def figure(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.8))
    colours = dict(zip(RECIPES, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    shown = set()
    for r in sorted(results, key=lambda r: (list(RECIPES).index(r["recipe"]), r["seed"])):
        label = r["label"] if r["recipe"] not in shown else None
        shown.add(r["recipe"])
        ax.plot(r["seconds"], [100 * a for a in r["val_accuracy"]], marker="o", ms=3,
                color=colours[r["recipe"]], label=label, alpha=0.8)
    ax.axhline(100 * TARGET, color="grey", ls="--", lw=0.8)
    ax.axvline(45, color="grey", ls=":", lw=0.8)
    ax.set(xlabel="seconds of training (2 CPU cores)", ylabel="validation accuracy at Y10 (%)",
           ylim=(30, 95), title="Baseline ConvNet, quick data: one line per seed")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/learning_curves")
    parser.add_argument("--config", default=CONFIG)
    parser.add_argument("--recipes", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--report", action="store_true", help="only redraw from saved runs")
    args = parser.parse_args()
    os.makedirs(os.path.join(args.out, "runs"), exist_ok=True)
    if not args.report:
        for seed in args.seeds:
            for recipe in args.recipes:
                path = os.path.join(args.out, "runs", f"{recipe}-seed{seed}.json")
                if os.path.exists(path):
                    continue
                print(f"training {recipe} at seed {seed}", file=sys.stderr, flush=True)
                result = run(recipe, seed, args.config)
                with open(path + ".tmp", "w") as f:
                    json.dump(result, f, indent=1)
                os.replace(path + ".tmp", path)
    results = load_results(args.out)
    figure(results, os.path.join(args.out, "learning_curves.png"))
    text = table(results)
    with open(os.path.join(args.out, "learning_curves.md"), "w") as f:
        f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
