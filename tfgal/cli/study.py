"""``tfgal-study``: the controlled robustness study in one command."""

from __future__ import annotations

import argparse
import os

from tfgal import config, locks
from tfgal.cli import common

__all__ = ["parser", "main"]

EXAMPLES = [
    "tfgal-study --config pipelines/quick.toml --out studies/quick",
    "tfgal-study --config pipelines/quick.toml --set 'study.models=[\"baseline\",\"mmd\"]' "
    "--set 'study.seeds=[0,1,2]' --out studies/seeds",
    "tensorboard --logdir studies/quick    # every model's training side by side",
]


def parser():
    p = common.new_parser(
        "tfgal-study",
        "The controlled robustness study in one command: train (or reuse) the models of "
        f"study.models ({', '.join(config.STUDY_MODELS)}) at every seed of study.seeds, "
        "evaluate them at both depths, draw the robustness curve, attack the galaxies each "
        "classifies correctly, and write figures, report.md and results.json. An "
        "interrupted study resumes where it stopped when the same command is run again.",
        EXAMPLES)
    common.experiment_args(p, "study.attack_n=50")
    p.add_argument("--out", help="study directory (default: studies/<config name>)")
    p.add_argument("--redo", action="append", default=[], metavar="STAGE",
                   help="run a finished stage again, e.g. attack_mmd; a train stage "
                        "retrains (repeatable; 'all' for every stage)")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    return p


def main(args, parser):
    from tfgal import study
    overrides = common.train_overrides(argparse.Namespace(set=args.set,
                                                          strategy=args.strategy))
    cfg = study.load_config(args.config, overrides)
    for line in common.path_hints(args.config, cfg):
        common.say(line)
    if not args.quiet:
        common.say_device()
    out = args.out or os.path.join("studies", cfg.name)
    command = " ".join(["tfgal-study", *args.argv])
    with locks.hold(out, command=command):  # no --overwrite: a rerun resumes
        results = study.run(cfg, out, redo=args.redo, progress=not args.quiet, command=command)
    common.result({
        "report": os.path.join(out, "report.md"),
        "results": os.path.join(out, "results.json"),
        "accuracy": {k: {d: v["accuracy"] for d, v in m.items()}
                     for k, m in results["evaluation"].items()},
        "attack_success_rate": {k: v["success_rate"] for k, v in results["attack"].items()},
        "attack_class_change_rate": {k: v["rates"]["class_change"]["rate"]
                                     for k, v in results["attack"].items()},
        "latent_distance_ratio": results["latent_distance_ratio"]})

