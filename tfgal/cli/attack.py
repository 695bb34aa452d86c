"""``tfgal-attack``: one-pixel attacks on an exported model over a dataset split."""

from __future__ import annotations

import os

from tfgal import config
from tfgal.cli import common

__all__ = ["parser", "main"]

EXAMPLES = [
    "tfgal-attack --model saved_models/quick --data data/mock --n 150 --out results/quick",
    "tfgal-attack --model saved_models/quick --data data/mock --n 20 --popsize 80 --iters 14 "
    "--out results/small",
]


def parser():
    from tfgal.attack import settings  # TensorFlow-free
    p = common.new_parser(
        "tfgal-attack",
        "One-pixel attacks (batched differential evolution) on the galaxies an exported "
        "model classifies correctly; writes attack.json, attack.csv and a figure of the "
        "attacked galaxies to --out.", EXAMPLES)
    p.add_argument("--model", required=True,
                   help="exported SavedModel directory, or a TF Serving base directory "
                        "(NAME/<version>/: the highest version is used)")
    p.add_argument("--data", required=True, help="dataset directory")
    p.add_argument("--split", default=config.default("study.split"),
                   help="split whose first --n galaxies are attacked")
    p.add_argument("--n", type=int, default=config.default("study.attack_n"),
                   help="galaxies loaded (the first n of the split, at least 1, at most "
                        "its size); those the model misclassifies at --base-depth are "
                        "counted, not attacked")
    p.add_argument("--out", required=True,
                   help="directory for attack.json, attack.csv and attack.png")
    p.add_argument("--overwrite", action="store_true",
                   help="replace attack.json, attack.csv and attack.png")
    p.add_argument("--pixels", type=int, default=config.default("study.attack_pixels"),
                   help="pixels changed per image")
    p.add_argument("--popsize", type=int, default=config.default("study.attack_popsize"),
                   help="candidates per image and generation (differential evolution's "
                        "population)")
    p.add_argument("--iters", type=int, default=config.default("study.attack_iters"),
                   help="generations at most")
    p.add_argument("--f", type=float, default=config.default("study.attack_f"),
                   help="DE mutation scale")
    p.add_argument("--targeted", action="store_true",
                   help="aim at another class (--target) instead of away from the true one")
    p.add_argument("--target", default="all",
                   help="with --targeted: all (every other class), next, or a class index")
    p.add_argument("--success", choices=settings.SUCCESS_MODES,
                   default=settings.SUCCESS_MODES[0],
                   help="when an attack stops: 'probability' (the paper's rule, see "
                        "--threshold) or 'class' (the predicted class changes); both rules' "
                        "rates are reported either way")
    p.add_argument("--threshold", type=float, default=None,
                   help=f"true-class probability below (default {settings.DEFAULT_THRESHOLD}), "
                        f"or target probability above (default "
                        f"{settings.DEFAULT_TARGET_THRESHOLD}) which an attack succeeds")
    p.add_argument("--seed", type=int, default=config.default("seed"),
                   help="seed of the attack")
    p.add_argument("--data-seed", type=int, default=config.default("seed"),
                   help="seed of the images' noise")
    p.add_argument("--base-depth", default=config.default("data.source_depth"),
                   type=common.depth_type(),
                   help="depth the attacked images are observed at")
    p.add_argument("--noisy-depth", default=config.default("data.target_depth"),
                   type=common.depth_type(),
                   help="depth of the noisy copies for the latent-distance comparison")
    p.add_argument("--max-batch", type=int, default=None,
                   help="candidate images per model call (memory bound; default: from the "
                        "device's memory)")
    p.add_argument("--evaluator", choices=config.ATTACK_EVALUATORS,
                   default=config.default("study.attack_evaluator"),
                   help="incremental: recompute only the window a pixel changes (exact; "
                        "one pixel, models exported by tfgal); auto: where it applies")
    p.add_argument("--init", choices=config.choices("study.attack_init"),
                   default=config.default("study.attack_init"),
                   help="initial population: 'bounds' (tfgal's default: each band at its "
                        "low or high bound) or 'gaussian' (Su et al.: each band normal "
                        "around the middle of its bounds, std half their range, clipped) "
                        "or 'uniform' (uniform between the bounds); pixel positions are "
                        "uniform in every case")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (default: one on a terminal)")
    p.add_argument("--verbose", action="store_true", help=common.VERBOSE_HELP)
    return p


def main(args, parser):
    from tfgal import attack, io, locks
    from tfgal.model import export
    # before the device line and any model load: a refusal is the only output (output and
    # --n are checked again under the lock)
    locks.check(args.out)
    io.refuse_existing(args.out, args.overwrite, names=attack.driver.OUTPUT_NAMES)
    export.resolve(args.model)  # the message tfgal-predict gives for the same directory
    attack.driver.check_n(args.data, args.split, args.n, option="--n")
    common.say_device()
    settings = dict(pixels=args.pixels, popsize=args.popsize, iters=args.iters, f=args.f,
                    targeted=args.targeted, success=args.success, threshold=args.threshold,
                    seed=args.seed, max_batch=args.max_batch, evaluator=args.evaluator,
                    init=args.init)
    summary = attack.attack_dataset(
        args.model, args.data, args.out, split=args.split, n=args.n,
        base_depth=args.base_depth, noisy_depth=args.noisy_depth, target=args.target,
        data_seed=args.data_seed, progress=False if args.no_progress else None,
        overwrite=args.overwrite, figure=True, **settings)
    common.say(f"attacked the {summary['n_correct']} of {summary['n_galaxies']} galaxies "
               f"classified correctly at {args.base_depth}; {summary['n_misclassified']} "
               f"misclassified were skipped (init {summary['settings']['init']})")
    for line in attack.summary.rate_lines(summary):
        common.say(line)
    keys = ("n_galaxies", "n_correct", "n_misclassified", "n_attacks", "success_rate",
            "n_success", "rates", "queries", "seconds", "latent_distance")
    files = {"summary": attack.driver.SUMMARY_NAME, **summary["files"]}
    common.result({**{k: summary[k] for k in keys},
                   "files": {k: os.path.join(args.out, name) for k, name in files.items()}})
