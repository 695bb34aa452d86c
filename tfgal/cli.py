"""Command-line entry points, one per stage of the flow:

* ``tfgal-data``: build mock datasets, import survey data, check and describe datasets;
* ``tfgal-train``: train a morphology classifier from a config and export it;
* ``tfgal-attack``: one-pixel attacks on an exported model over a dataset split;
* ``tfgal-study``: the whole robustness study, resumable, with figures and a report;
* ``tfgal-predict``: an exported model over a dataset or FITS cutouts, into a catalogue.

Each entry point parses its arguments, turns tfgal's errors into one readable line and
exit status 2, and calls into the library; no science happens here. Choices and defaults
come from where they are defined (the config's fields, the data and attack wings), so the
commands cannot drift from the library. An existing output is refused without
``--overwrite`` (a study resumes instead), a busy one at once (`tfgal.locks`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from tfgal import config, locks
from tfgal.errors import TfgalError

__all__ = ["data_main", "train_main", "attack_main", "study_main", "predict_main",
           "train_overrides", "summary"]


VERBOSE_HELP = "keep TensorFlow's own C++ start-up log on stderr (hidden by default)"


def _quiet_tensorflow():
    # TensorFlow's C++ start-up chatter hides the messages users need.
    if not _verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


_verbose = False


def _say_device():
    """One stderr line on what TensorFlow computes on (commands that train or infer)."""
    from tfgal import console
    print(console.device_line(), file=sys.stderr)


def _run(main, argv):
    """Runs a command's `main` on `argv`; None means a console script's own arguments,
    and a console script (not a test calling in) also gets its stderr filtered of
    TensorFlow's C++ log unless ``--verbose`` is given."""
    global _verbose
    console_script = argv is None
    argv = sys.argv[1:] if console_script else argv
    _verbose = "--verbose" in argv
    if console_script and not _verbose:
        from tfgal import console
        console.hide_tensorflow_log()
    try:
        return main(argv) or 0
    except TfgalError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing half-written was kept", file=sys.stderr)
        return 130


# --------------------------------------------------------------------------- tfgal-data


def _beam_choice(args, parser):
    """None (local), True (DirectRunner defaults) or the user's Beam flags."""
    if args.beam_options is not None and not args.beam:
        parser.error("--beam-options needs --beam")
    return (True if args.beam_options is None else args.beam_options) if args.beam else None


def _quiet_beam(beam):
    from tfgal import beam as beam_lib
    return beam_lib.quiet_logging(beam is not None and not _verbose)


def _beam_args(parser, help_text):
    parser.add_argument("--beam", action="store_true", help=help_text)
    parser.add_argument("--beam-options", default=None, metavar="FLAGS",
                        help="Beam pipeline flags in one string (needs --beam), e.g. "
                             "--beam-options=\"--runner=FlinkRunner --flink_master=HOST:8081\"")


def _data_parser():
    from tfgal.data import DEFAULT_SHARD_SIZE
    from tfgal.data import STRETCH_CHOICES
    parser = argparse.ArgumentParser(
        prog="tfgal-data", description="Build, import and check tfgal datasets.")
    sub = parser.add_subparsers(dest="command", required=True)

    def storage_args(p):
        p.add_argument("--out", required=True, help="dataset directory to create")
        p.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE,
                       help="galaxies per shard")
        p.add_argument("--no-gzip", action="store_true", help="write uncompressed shards")
        p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")

    p = sub.add_parser("mock", help="render mock LSST galaxies with GalSim")
    storage_args(p)
    p.add_argument("--train", type=int, default=config.default("data.mock_train"))
    p.add_argument("--val", type=int, default=config.default("data.mock_val"))
    p.add_argument("--test", type=int, default=config.default("data.mock_test"))
    p.add_argument("--seed", type=int, default=config.default("seed"))
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--class-fractions", default=None,
                   help="spiral,elliptical,merger fractions (default balanced), e.g. 0.43,0.24,0.33")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="render only part I of N (job arrays, several machines); then "
                        "run 'tfgal-data merge --out DIR' once all parts are done")
    _beam_args(p, "render on Apache Beam (default: the local DirectRunner with --workers "
                 "processes); the same bytes as the local build")

    p = sub.add_parser("merge", help="check the parts of a sharded mock build, write its manifest")
    p.add_argument("--out", required=True, help="dataset directory the parts were written to")

    p = sub.add_parser("import-npy", help="import the study's published .npy files")
    storage_args(p)
    p.add_argument("--source", required=True, help="directory with images_Y10_train.npy ...")
    p.add_argument("--stretch", choices=STRETCH_CHOICES, default=STRETCH_CHOICES[0],
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

    from tfgal.data import gallery  # no TensorFlow at import: the parser stays light
    p = sub.add_parser(
        "gallery", help="draw one galaxy per class under every corruption and severity",
        description="One PNG: rows are corruptions, columns class x severity 0 (clean) to 5, "
                    "the first galaxy of each class in the split, through the real pipeline "
                    "(same noise in every panel), gri as RGB with shared display limits.")
    p.add_argument("--data", required=True, help="dataset directory")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--depth", default=gallery.DEFAULT_DEPTH,
                   help="depth the galaxies are observed at (noiseless: mock data's flux)")
    p.add_argument("--corruptions", default=None, metavar="A,B,...",
                   help="comma-separated corruptions (default: every one the dataset accepts)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise and the corruptions")
    p.add_argument("--split", default=gallery.DEFAULT_SPLIT,
                   help="split whose first galaxy of each class is shown")
    p.add_argument("--overwrite", action="store_true", help="replace an existing PNG")
    for p in sub.choices.values():
        p.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    return parser


def _data(argv):
    _quiet_tensorflow()
    parser = _data_parser()
    args = parser.parse_args(argv)
    from tfgal import data
    compression = "" if getattr(args, "no_gzip", False) else "GZIP"
    if args.command == "mock":
        from tfgal.data import shards
        fractions = None
        if args.class_fractions:
            fractions = [float(v) for v in args.class_fractions.split(",")]
        shard = shards.parse_part(args.shard) if args.shard else None
        beam = _beam_choice(args, parser)
        with _quiet_beam(beam):
            manifest = data.build_mocks(
                args.out, n_train=args.train, n_val=args.val, n_test=args.test,
                seed=args.seed, workers=args.workers, class_fractions=fractions,
                shard_size=args.shard_size, compression=compression,
                overwrite=args.overwrite, shard=shard, beam=beam)
        if manifest is None:
            print(f"part {args.shard} written under {args.out}; merge once all parts are done")
            return
    elif args.command == "merge":
        manifest = data.merge_mocks(args.out)
    elif args.command == "import-npy":
        manifest = data.import_npy(
            args.source, args.out, stretch=args.stretch, shard_size=args.shard_size,
            compression=compression, overwrite=args.overwrite)
    elif args.command == "import-fits":
        manifest = data.import_fits(
            args.table, args.out, depth=args.depth, seed=args.seed,
            split_fractions=[float(v) for v in args.split_fractions.split(",")],
            shard_size=args.shard_size, compression=compression, overwrite=args.overwrite)
    elif args.command == "gallery":
        return _gallery(args)
    elif args.command == "verify":
        manifest = data.verify(args.data)
        print(f"ok: {args.data}")
    else:
        manifest = data.Manifest.load(args.data)
    print(json.dumps(summary(manifest), indent=2))


def _gallery(args):
    from tfgal.data import gallery
    names = None
    if args.corruptions is not None:
        names = [n.strip() for n in args.corruptions.split(",") if n.strip()]
    result = gallery.gallery(args.data, args.out, depth=args.depth, corruptions=names,
                             seed=args.seed, split=args.split, overwrite=args.overwrite)
    print(f"wrote {result['out']}: {len(result['corruptions'])} corruptions (rows) x "
          f"severity {result['severities'][0]}-{result['severities'][-1]} of "
          f"{len(result['classes'])} galaxies, one per class ({', '.join(result['classes'])}; "
          f"ids {result['galaxy_ids']}), {args.split} split at {args.depth}, seed {args.seed}",
          file=sys.stderr)
    print(json.dumps(result, indent=2))


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
    return _run(_data, argv)


# --------------------------------------------------------------------------- tfgal-attack


def _attack_parser():
    from tfgal.attack import SUCCESS_MODES
    from tfgal.attack import DEFAULT_TARGET_THRESHOLD, DEFAULT_THRESHOLD
    parser = argparse.ArgumentParser(
        prog="tfgal-attack",
        description="One-pixel attacks (batched differential evolution) on an exported model.")
    parser.add_argument("--model", required=True, help="exported SavedModel directory")
    parser.add_argument("--data", required=True, help="dataset directory")
    parser.add_argument("--split", default=config.default("study.split"))
    parser.add_argument("--n", type=int, default=config.default("study.attack_n"),
                        help="galaxies loaded (the first n of the split); those the model "
                             "misclassifies at --base-depth are counted, not attacked")
    parser.add_argument("--out", required=True, help="directory for attack.json and attack.csv")
    parser.add_argument("--overwrite", action="store_true", help="replace attack.json, attack.csv")
    parser.add_argument("--pixels", type=int, default=config.default("study.attack_pixels"),
                        help="pixels changed per image")
    parser.add_argument("--popsize", type=int, default=config.default("study.attack_popsize"))
    parser.add_argument("--iters", type=int, default=config.default("study.attack_iters"),
                        help="generations at most")
    parser.add_argument("--f", type=float, default=config.default("study.attack_f"),
                        help="DE mutation scale")
    parser.add_argument("--targeted", action="store_true")
    parser.add_argument("--target", default="all",
                        help="with --targeted: all (every other class), next, or a class index")
    parser.add_argument("--success", choices=SUCCESS_MODES, default=SUCCESS_MODES[0])
    parser.add_argument("--threshold", type=float, default=None,
                        help=f"true-class probability below (default {DEFAULT_THRESHOLD}), or "
                             f"target probability above (default {DEFAULT_TARGET_THRESHOLD}) "
                             "which an attack succeeds")
    parser.add_argument("--seed", type=int, default=config.default("seed"),
                        help="seed of the attack")
    parser.add_argument("--data-seed", type=int, default=config.default("seed"),
                        help="seed of the images' noise")
    parser.add_argument("--base-depth", default=config.default("data.source_depth"))
    parser.add_argument("--noisy-depth", default=config.default("data.target_depth"),
                        help="depth of the noisy copies for the latent-distance comparison")
    parser.add_argument("--max-batch", type=int, default=None,
                        help="candidate images per model call (memory bound)")
    parser.add_argument("--evaluator", choices=config.ATTACK_EVALUATORS,
                        default=config.default("study.attack_evaluator"),
                        help="incremental: recompute only the window a pixel changes (exact; "
                             "one pixel, models exported by tfgal); auto: where it applies")
    parser.add_argument("--init", choices=config.choices("study.attack_init"),
                        default=config.default("study.attack_init"),
                        help="initial population: 'bounds' (tfgal's default: each band at its "
                             "low or high bound) or 'gaussian' (Su et al.: each band normal "
                             "around the middle of its bounds, std half their range, clipped) "
                             "or 'uniform' (uniform between the bounds); pixel positions are "
                             "uniform in every case")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    return parser


def _attack(argv):
    _quiet_tensorflow()
    args = _attack_parser().parse_args(argv)
    from tfgal import attack, io
    # before the device line: a refusal is the only output (checked again under the lock)
    io.refuse_existing(args.out, args.overwrite, names=attack.driver.OUTPUT_NAMES)
    _say_device()
    settings = dict(pixels=args.pixels, popsize=args.popsize, iters=args.iters, f=args.f,
                    targeted=args.targeted, success=args.success, threshold=args.threshold,
                    seed=args.seed, max_batch=args.max_batch, evaluator=args.evaluator,
                    init=args.init)
    summary = attack.attack_dataset(
        args.model, args.data, args.out, split=args.split, n=args.n,
        base_depth=args.base_depth, noisy_depth=args.noisy_depth, target=args.target,
        data_seed=args.data_seed, progress=not args.no_progress, overwrite=args.overwrite,
        **settings)
    # stdout stays one JSON document; the population goes to stderr as a sentence too
    print(f"attacked the {summary['n_correct']} of {summary['n_galaxies']} galaxies classified "
          f"correctly at {args.base_depth}; {summary['n_misclassified']} misclassified were "
          f"skipped (init {summary['settings']['init']})", file=sys.stderr)
    for rule, r in summary["rates"].items():
        if r["n"]:
            print(f"{rule.replace('_', ' ')}: {r['k']} of {r['n']} ({100 * r['rate']:.1f}%, 95% "
                  f"interval {100 * r['low']:.1f}-{100 * r['high']:.1f}%): {r['rule']}",
                  file=sys.stderr)
    keys = ("n_galaxies", "n_correct", "n_misclassified", "n_attacks", "success_rate",
            "n_success", "rates", "queries", "seconds", "latent_distance")
    print(json.dumps({k: summary[k] for k in keys}, indent=2))


def attack_main(argv=None):
    return _run(_attack, argv)


# --------------------------------------------------------------------------- tfgal-train


def _train_parser():
    parser = argparse.ArgumentParser(
        prog="tfgal-train",
        description="Train a morphology classifier (optionally with MMD domain adaptation) "
                    "and export it as a SavedModel. A killed run resumes, exactly where it "
                    "stopped, when the same command is run again; a finished one is not "
                    "trained again unless --overwrite is given.")
    _experiment_args(parser, "train.epochs=5")
    parser.add_argument("--out", help="export directory (config export.dir)")
    parser.add_argument("--logdir", help="run and TensorBoard directory (config log.dir)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start over: discard a finished or interrupted run in --logdir "
                             "and replace the export")
    return parser


def _experiment_args(parser, example):
    """--config, --set and --strategy: shared by the commands that train."""
    parser.add_argument("--config", required=True, help="experiment config, e.g. pipelines/quick.toml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a config key, e.g. --set {example} (repeatable)")
    parser.add_argument("--strategy", choices=config.choices("train.strategy"),
                        help="tf.distribute strategy for training (config train.strategy)")
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)


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
    cfg = config.load(args.config, train_overrides(args))
    _say_device()
    from tfgal import model
    summary = model.train(cfg, overwrite=args.overwrite)
    if summary is not None:
        print(json.dumps(summary, indent=2))


def train_main(argv=None):
    return _run(_train, argv)


# --------------------------------------------------------------------------- tfgal-study


def _study_parser():
    parser = argparse.ArgumentParser(
        prog="tfgal-study",
        description="The controlled robustness study in one command: train (or reuse) the "
                    "models of study.models (baseline, target-bn, mmd, depth-aug, "
                    "depth-aug+mmd) at every seed of study.seeds, evaluate them at both "
                    "depths, draw the robustness curve, attack the galaxies each classifies "
                    "correctly, and write figures, report.md and results.json. An "
                    "interrupted study resumes where it stopped when the same command is "
                    "run again.")
    _experiment_args(parser, "study.attack_n=50")
    parser.add_argument("--out", help="study directory (default: studies/<config name>)")
    parser.add_argument("--redo", action="append", default=[], metavar="STAGE",
                        help="run a finished stage again, e.g. attack_mmd; a train stage "
                             "retrains (repeatable; 'all' for every stage)")
    parser.add_argument("--quiet", action="store_true", help="no progress messages")
    return parser


def _study(argv):
    args = _study_parser().parse_args(argv)
    _quiet_tensorflow()
    from tfgal import study
    overrides = train_overrides(argparse.Namespace(set=args.set, out=None, logdir=None,
                                                   strategy=args.strategy))
    cfg = study.load_config(args.config, overrides)
    if not args.quiet:
        _say_device()
    out = args.out or os.path.join("studies", cfg.name)
    command = " ".join(["tfgal-study", *argv])
    with locks.hold(out, command=command):  # no --overwrite: a rerun resumes
        results = study.run(cfg, out, redo=args.redo, progress=not args.quiet, command=command)
    print(json.dumps({"report": os.path.join(out, "report.md"),
                      "results": os.path.join(out, "results.json"),
                      "accuracy": {k: {d: v["accuracy"] for d, v in m.items()}
                                   for k, m in results["evaluation"].items()},
                      "attack_success_rate": {k: v["success_rate"]
                                              for k, v in results["attack"].items()},
                      "attack_class_change_rate": {
                          k: v["rates"]["class_change"]["rate"]
                          for k, v in results["attack"].items()},
                      "latent_distance_ratio": results["latent_distance_ratio"]}, indent=2))


def study_main(argv=None):
    return _run(_study, argv)


# --------------------------------------------------------------------------- tfgal-predict


def _predict_parser():
    from tfgal.model import predict
    parser = argparse.ArgumentParser(
        prog="tfgal-predict",
        description="Classify a dataset split, or FITS cutouts listed in a table, with an "
                    "exported model and write a catalogue (galaxy id, class probabilities, "
                    "predicted class, optionally the latent; model name and version in the "
                    f"metadata). Format from the extension: {', '.join(predict.FORMATS)}.")
    parser.add_argument("--model", required=True,
                        help="exported SavedModel directory, or a TF Serving base directory "
                             "(NAME/<version>/: the highest version is used)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="dataset directory")
    source.add_argument("--fits-table",
                        help="CSV or FITS table of cutouts: file[, label][, split][, galaxy_id], "
                             "as tfgal-data import-fits reads it")
    parser.add_argument("--split", default=predict.DEFAULT_SPLIT,
                        help="split to classify (a FITS table without a split column: all rows)")
    parser.add_argument("--out", required=True,
                        help="catalogue to write: .fits, .parquet, .ecsv (these keep the "
                             "metadata and a latent vector column) or .csv (plain: no metadata)")
    parser.add_argument("--depth", default=None,
                        help="depth of the noise added to noiseless data (default: the "
                             "model's training source depth)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the images' noise")
    parser.add_argument("--batch-size", type=int, default=predict.DEFAULT_BATCH_SIZE)
    parser.add_argument("--latent", action="store_true", help="add each galaxy's latent vector")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing catalogue")
    parser.add_argument("--no-progress", action="store_true")
    _beam_args(parser, "run on Apache Beam with RunInference (default: the local "
                      "DirectRunner); datasets only, the same catalogue as without --beam")
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    return parser


def _predict(argv):
    _quiet_tensorflow()
    parser = _predict_parser()
    args = parser.parse_args(argv)
    beam = _beam_choice(args, parser)
    kw = dict(split=args.split, depth=args.depth, seed=args.seed, batch_size=args.batch_size,
              latent=args.latent, overwrite=args.overwrite)
    if beam is not None:
        if args.fits_table is not None:
            parser.error("--beam reads datasets (--data); import FITS cutouts with "
                         "tfgal-data import-fits first")
        from tfgal.model import beam_predict
        with _quiet_beam(beam):
            summary = beam_predict.predict(args.model, args.out, data=args.data, options=beam, **kw)
        print(json.dumps(summary, indent=2))
        return
    from tfgal.model import predict
    summary = predict.predict(args.model, args.out, data=args.data, fits_table=args.fits_table,
                              progress=False if args.no_progress else None, **kw)
    print(json.dumps(summary, indent=2))


def predict_main(argv=None):
    return _run(_predict, argv)
