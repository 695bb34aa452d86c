"""``tfgal-train``: train a morphology classifier from a config and export it."""

from __future__ import annotations

from tfgal import config
from tfgal.cli import common

__all__ = ["parser", "main"]

EXAMPLES = [
    "tfgal-train --config pipelines/quick.toml",
    "tfgal-train --config pipelines/quick.toml --set loss.mmd_weight=0 --out "
    "saved_models/baseline --logdir runs/baseline",
    "tensorboard --logdir runs/quick    # watch it",
]


def parser():
    p = common.new_parser(
        "tfgal-train",
        "Train a morphology classifier (optionally with MMD domain adaptation) and export "
        "it as a SavedModel. A killed run resumes, exactly where it stopped, when the same "
        "command is run again; a finished one is not trained again unless --overwrite is "
        "given. Relative paths (the config's data.dir, export.dir, log.dir) are relative "
        "to the current directory; the command names them at the start.", EXAMPLES)
    common.experiment_args(p, "train.epochs=5")
    p.add_argument("--out", help="export directory (default: the config's export.dir, "
                                 f"{config.default('export.dir')})")
    p.add_argument("--logdir", help="run and TensorBoard directory (default: the config's "
                                    f"log.dir, {config.default('log.dir')})")
    p.add_argument("--overwrite", action="store_true",
                   help="start over: discard a finished or interrupted run in --logdir "
                        "and replace the export")
    return p


def main(args, parser):
    cfg = config.load(args.config, common.train_overrides(args))
    for line in common.path_hints(args.config, cfg):
        common.say(line)
    common.say_device()
    from tfgal import model
    summary = model.train(cfg, overwrite=args.overwrite)
    if summary is not None:
        common.result(summary)
