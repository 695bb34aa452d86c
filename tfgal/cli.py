"""Command-line entry points: ``tfgal-data`` (and later ``tfgal-train`` ...).

Each entry point parses its arguments, turns tfgal's errors into one readable line and
exit status 2, and calls into the library; no science happens here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from tfgal.errors import TfgalError


def _quiet_tensorflow():
    # TensorFlow's C++ start-up chatter hides the messages users need.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _run(main, argv):
    try:
        return main(argv) or 0
    except TfgalError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing half-written was kept", file=sys.stderr)
        return 130


# --------------------------------------------------------------------------- tfgal-data


def _data_parser():
    parser = argparse.ArgumentParser(
        prog="tfgal-data", description="Build, import and check tfgal datasets.")
    sub = parser.add_subparsers(dest="command", required=True)

    def storage_args(p):
        p.add_argument("--out", required=True, help="dataset directory to create")
        p.add_argument("--shard-size", type=int, default=256, help="galaxies per shard")
        p.add_argument("--no-gzip", action="store_true", help="write uncompressed shards")
        p.add_argument("--overwrite", action="store_true", help="replace an existing dataset")

    p = sub.add_parser("mock", help="render mock LSST galaxies with GalSim")
    storage_args(p)
    p.add_argument("--train", type=int, default=3000)
    p.add_argument("--val", type=int, default=500)
    p.add_argument("--test", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--class-fractions", default=None,
                   help="spiral,elliptical,merger fractions (default balanced), e.g. 0.43,0.24,0.33")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="render only part I of N (job arrays, several machines); then "
                        "run 'tfgal-data merge --out DIR' once all parts are done")

    p = sub.add_parser("merge", help="check the parts of a sharded mock build, write its manifest")
    p.add_argument("--out", required=True, help="dataset directory the parts were written to")

    p = sub.add_parser("import-npy", help="import the study's published .npy files")
    storage_args(p)
    p.add_argument("--source", required=True, help="directory with images_Y10_train.npy ...")
    p.add_argument("--stretch", choices=("auto", "fit", "identity"), default="auto",
                   help="fit a stretch on train Y10, or keep values (already stretched); "
                        "auto: identity when every value lies in [0, 1]")

    p = sub.add_parser("import-fits", help="import FITS cutouts listed in a label table")
    storage_args(p)
    p.add_argument("--table", required=True,
                   help="CSV or FITS table with columns file, label[, split][, galaxy_id]")
    p.add_argument("--depth", default=None,
                   help="depth of the noise baked into the cutouts (e.g. Y10); omit for noiseless flux")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/val/test split")
    p.add_argument("--split-fractions", default="0.7,0.1,0.2",
                   help="train,val,test fractions when the table has no split column")

    p = sub.add_parser("verify", help="read every record of a dataset and check it")
    p.add_argument("data", help="dataset directory")

    p = sub.add_parser("info", help="print a dataset's manifest summary")
    p.add_argument("data", help="dataset directory")
    return parser


def _data(argv):
    args = _data_parser().parse_args(argv)
    _quiet_tensorflow()
    compression = "" if getattr(args, "no_gzip", False) else "GZIP"
    if args.command == "mock":
        from tfgal.data import mocks
        from tfgal.data import shards
        fractions = None
        if args.class_fractions:
            fractions = [float(v) for v in args.class_fractions.split(",")]
        shard = shards.parse_part(args.shard) if args.shard else None
        manifest = mocks.build(
            args.out, n_train=args.train, n_val=args.val, n_test=args.test, seed=args.seed,
            workers=args.workers, class_fractions=fractions, shard_size=args.shard_size,
            compression=compression, overwrite=args.overwrite, shard=shard)
        if manifest is None:
            print(f"part {args.shard} written under {args.out}; merge once all parts are done")
            return
    elif args.command == "merge":
        from tfgal.data import mocks
        manifest = mocks.merge(args.out)
    elif args.command == "import-npy":
        from tfgal.data import importers
        manifest = importers.import_npy(
            args.source, args.out, stretch=args.stretch, shard_size=args.shard_size,
            compression=compression, overwrite=args.overwrite)
    elif args.command == "import-fits":
        from tfgal.data import importers
        manifest = importers.import_fits(
            args.table, args.out, depth=args.depth, seed=args.seed,
            split_fractions=[float(v) for v in args.split_fractions.split(",")],
            shard_size=args.shard_size, compression=compression, overwrite=args.overwrite)
    elif args.command == "verify":
        from tfgal.data import records
        manifest = records.verify(args.data)
        print(f"ok: {args.data}")
    else:
        from tfgal.data import records
        manifest = records.Manifest.load(args.data)
    print(json.dumps(summary(manifest), indent=2))


def summary(manifest):
    """A short, printable description of a dataset."""
    return {
        "root": manifest.root,
        "images": manifest.images,
        "classes": list(manifest.class_names),
        "splits": {s: {"count": v["count"], "class_counts": v["class_counts"],
                       "shards": len(v["files"])} for s, v in manifest.splits.items()},
        "stretch": manifest.stretch,
    }


def data_main(argv=None):
    return _run(_data, sys.argv[1:] if argv is None else argv)


# --------------------------------------------------------------------------- tfgal-attack


def _attack_parser():
    parser = argparse.ArgumentParser(
        prog="tfgal-attack",
        description="One-pixel attacks (batched differential evolution) on an exported model.")
    parser.add_argument("--model", required=True, help="exported SavedModel directory")
    parser.add_argument("--data", required=True, help="dataset directory")
    parser.add_argument("--split", default="test")
    parser.add_argument("--n", type=int, default=150,
                        help="galaxies attacked (the first n of the split)")
    parser.add_argument("--out", required=True, help="directory for attack.json and attack.csv")
    parser.add_argument("--pixels", type=int, default=1, help="pixels changed per image")
    parser.add_argument("--popsize", type=int, default=400)
    parser.add_argument("--iters", type=int, default=100, help="generations at most")
    parser.add_argument("--f", type=float, default=0.5, help="DE mutation scale")
    parser.add_argument("--targeted", action="store_true")
    parser.add_argument("--target", default="all",
                        help="with --targeted: all (every other class), next, or a class index")
    parser.add_argument("--success", choices=("probability", "class"), default="probability")
    parser.add_argument("--threshold", type=float, default=None,
                        help="true-class probability below (default 0.05), or target "
                             "probability above (default 0.5) which an attack succeeds")
    parser.add_argument("--seed", type=int, default=0, help="seed of the attack")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the images' noise")
    parser.add_argument("--base-depth", default="Y10")
    parser.add_argument("--noisy-depth", default="Y1",
                        help="depth of the noisy copies for the latent-distance comparison")
    parser.add_argument("--max-batch", type=int, default=None,
                        help="candidate images per model call (memory bound)")
    parser.add_argument("--evaluator", choices=("auto", "incremental", "full"), default="auto",
                        help="incremental: recompute only the window a pixel changes (exact; "
                             "one pixel, models exported by tfgal); auto: where it applies")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def _attack(argv):
    args = _attack_parser().parse_args(argv)
    _quiet_tensorflow()
    from tfgal.attack import driver as attack_report
    settings = dict(pixels=args.pixels, popsize=args.popsize, iters=args.iters, f=args.f,
                    targeted=args.targeted, success=args.success, threshold=args.threshold,
                    seed=args.seed, max_batch=args.max_batch, evaluator=args.evaluator)
    summary = attack_report.attack_dataset(
        args.model, args.data, args.out, split=args.split, n=args.n,
        base_depth=args.base_depth, noisy_depth=args.noisy_depth, target=args.target,
        data_seed=args.data_seed, progress=not args.no_progress, **settings)
    keys = ("n_attacks", "success_rate", "n_success", "queries", "seconds", "latent_distance")
    print(json.dumps({k: summary[k] for k in keys}, indent=2))


def attack_main(argv=None):
    return _run(_attack, sys.argv[1:] if argv is None else argv)


# --------------------------------------------------------------------------- tfgal-train


def _train_parser():
    parser = argparse.ArgumentParser(
        prog="tfgal-train",
        description="Train a morphology classifier (optionally with MMD domain adaptation) "
                    "and export it as a SavedModel. A killed run resumes when the same "
                    "command is run again.")
    _experiment_args(parser, "train.epochs=5")
    parser.add_argument("--out", help="export directory (config export.dir)")
    parser.add_argument("--logdir", help="run and TensorBoard directory (config log.dir)")
    return parser


def _experiment_args(parser, example):
    """--config, --set and --strategy: shared by the commands that train."""
    parser.add_argument("--config", required=True, help="experiment config, e.g. pipelines/quick.toml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a config key, e.g. --set {example} (repeatable)")
    parser.add_argument("--strategy", choices=("default", "mirrored", "multiworker"),
                        help="tf.distribute strategy for training (config train.strategy)")


def train_overrides(args):
    """--out/--logdir/--strategy as config overrides, after the --set ones."""
    overrides = list(args.set)
    if args.out:
        overrides.append(f"export.dir={json.dumps(args.out)}")
    if args.logdir:
        overrides.append(f"log.dir={json.dumps(args.logdir)}")
    if getattr(args, "strategy", None):
        overrides.append(f"train.strategy={json.dumps(args.strategy)}")
    return overrides


def _train(argv):
    args = _train_parser().parse_args(argv)
    _quiet_tensorflow()
    from tfgal import config
    from tfgal.model import training
    cfg = config.load(args.config, train_overrides(args))
    summary = training.train(cfg)
    if summary is not None:
        print(json.dumps(summary, indent=2))


def train_main(argv=None):
    return _run(_train, sys.argv[1:] if argv is None else argv)


# --------------------------------------------------------------------------- tfgal-study


def _study_parser():
    parser = argparse.ArgumentParser(
        prog="tfgal-study",
        description="The robustness study in one command: train (or reuse) a baseline and a "
                    "domain-adapted model, evaluate both at both depths, draw the robustness "
                    "curve, run one-pixel attacks, and write figures, report.md and "
                    "results.json. An interrupted study resumes where it stopped when the "
                    "same command is run again.")
    _experiment_args(parser, "study.attack_n=50")
    parser.add_argument("--out", help="study directory (default: studies/<config name>)")
    parser.add_argument("--redo", action="append", default=[], metavar="STAGE",
                        help="run a finished stage again, e.g. attack_adapted; a train stage "
                             "retrains (repeatable; 'all' for every stage)")
    parser.add_argument("--quiet", action="store_true", help="no progress messages")
    return parser


def _study(argv):
    args = _study_parser().parse_args(argv)
    _quiet_tensorflow()
    from tfgal.study import runner as study
    overrides = train_overrides(argparse.Namespace(set=args.set, out=None, logdir=None,
                                                   strategy=args.strategy))
    cfg = study.load_config(args.config, overrides)
    out = args.out or os.path.join("studies", cfg.name)
    results = study.run(cfg, out, redo=args.redo, progress=not args.quiet,
                        command=" ".join(["tfgal-study", *argv]))
    print(json.dumps({"report": os.path.join(out, "report.md"),
                      "results": os.path.join(out, "results.json"),
                      "accuracy": {k: {d: v["accuracy"] for d, v in m.items()}
                                   for k, m in results["evaluation"].items()},
                      "attack_success_rate": {k: v["success_rate"]
                                              for k, v in results["attack"].items()},
                      "latent_distance_ratio": results["latent_distance_ratio"]}, indent=2))


def study_main(argv=None):
    return _run(_study, sys.argv[1:] if argv is None else argv)
