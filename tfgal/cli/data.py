"""``tfgal-data``: build mock datasets, import survey data, check, describe and draw them."""

from __future__ import annotations


from tfgal import config
from tfgal.cli import common

__all__ = ["parser", "main", "summary"]

EXAMPLES = [
    "tfgal-data mock --out data/mock --train 3000 --val 500 --test 1000 --seed 0",
    "tfgal-data verify data/mock",
    "tfgal-data info data/mock",
    "tfgal-data gallery --data data/mock --out gallery.png",
]


def parser():
    from tfgal.data import importers, manifest  # TensorFlow-free modules
    from tfgal.data import gallery
    p0 = common.new_parser("tfgal-data", "Build, import and check tfgal datasets.", EXAMPLES)
    sub = p0.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, help_text, description=None):
        return sub.add_parser(name, help=help_text, description=description or help_text,
                              formatter_class=common.HelpFormatter)

    def storage_args(p):
        p.add_argument("--out", required=True, help="dataset directory to create")
        p.add_argument("--shard-size", type=int, default=manifest.DEFAULT_SHARD_SIZE,
                       help="galaxies per shard")
        p.add_argument("--no-gzip", action="store_true", help="write uncompressed shards")
        p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")

    p = command("mock", "render mock LSST galaxies with GalSim")
    storage_args(p)
    p.add_argument("--train", type=int, default=config.default("data.mock_train"),
                   help="galaxies in the training split")
    p.add_argument("--val", type=int, default=config.default("data.mock_val"),
                   help="galaxies in the validation split")
    p.add_argument("--test", type=int, default=config.default("data.mock_test"),
                   help="galaxies in the test split")
    p.add_argument("--seed", type=int, default=config.default("seed"),
                   help="seed of every galaxy's parameters and rendering (the same seed "
                        "gives the same bytes)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--class-fractions", default=None,
                   help="spiral,elliptical,merger fractions (default: balanced), e.g. "
                        "0.43,0.24,0.33")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="render only part I of N (job arrays, several machines); then "
                        "run 'tfgal-data merge --out DIR' once all parts are done")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (default: one on a terminal)")
    common.beam_args(p, "render on Apache Beam (default: the local DirectRunner with "
                        "--workers processes); the same bytes as the local build")

    p = command("merge", "check the parts of a sharded mock build, write its manifest")
    p.add_argument("--out", required=True, help="dataset directory the parts were written to")

    p = command("import-npy", "import the study's published .npy files")
    storage_args(p)
    p.add_argument("--source", required=True, help="directory with images_Y10_train.npy ...")
    p.add_argument("--stretch", choices=importers.STRETCH_CHOICES,
                   default=importers.STRETCH_CHOICES[0],
                   help="fit a stretch on train Y10, or keep values (already stretched); "
                        "auto: identity when every value lies in [0, 1]")

    p = command("import-fits", "import FITS cutouts listed in a label table")
    storage_args(p)
    p.add_argument("--table", required=True,
                   help="CSV or FITS table with columns file, label[, split][, galaxy_id]")
    p.add_argument("--depth", default=None, type=common.depth_type(noiseless=False),
                   help="depth of the noise baked into the cutouts (e.g. Y10); omit for "
                        "noiseless flux")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/val/test split")
    p.add_argument("--split-fractions", default="0.7,0.1,0.2",
                   help="train,val,test fractions when the table has no split column")

    p = command("verify", "read every record of a dataset and check it")
    p.add_argument("data", help="dataset directory")

    p = command("info", "print a dataset's manifest summary")
    p.add_argument("data", help="dataset directory")

    p = command("gallery", "draw one galaxy per class under every corruption and severity",
                "One image: rows are corruptions, columns class x severity 0 (clean) to 5, "
                "the first galaxy of each class in the split, through the real pipeline "
                "(same noise in every panel), gri as RGB with shared display limits.")
    p.add_argument("--data", required=True, help="dataset directory")
    p.add_argument("--out", required=True,
                   help="image to write; the format follows the extension (.png, .pdf, "
                        ".svg, .jpg)")
    p.add_argument("--depth", default=gallery.DEFAULT_DEPTH, type=common.depth_type(),
                   help="depth the galaxies are observed at (noiseless: mock data's flux)")
    p.add_argument("--corruptions", default=None, metavar="A,B,...",
                   help="comma-separated corruptions (default: every one the dataset accepts)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise and the corruptions")
    p.add_argument("--split", default=gallery.DEFAULT_SPLIT,
                   help="split whose first galaxy of each class is shown")
    p.add_argument("--overwrite", action="store_true", help="replace an existing image")
    for p in sub.choices.values():
        p.add_argument("--verbose", action="store_true", help=common.VERBOSE_HELP)
    return p0


def main(args, parser):
    from tfgal import data
    compression = "" if getattr(args, "no_gzip", False) else "GZIP"
    if args.command == "mock":
        from tfgal.data import shards
        fractions = None
        if args.class_fractions:
            fractions = [float(v) for v in args.class_fractions.split(",")]
        shard = shards.parse_part(args.shard) if args.shard else None
        beam = common.beam_choice(args, parser)
        with common.quiet_beam(beam):
            manifest = data.build_mocks(
                args.out, n_train=args.train, n_val=args.val, n_test=args.test,
                seed=args.seed, workers=args.workers, class_fractions=fractions,
                shard_size=args.shard_size, compression=compression,
                overwrite=args.overwrite, shard=shard, beam=beam,
                progress=False if args.no_progress else None)
        if manifest is None:
            common.say(f"part {args.shard} written under {args.out}; merge once all parts "
                       "are done")
            common.result({"part": args.shard, "out": args.out})
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
        counts = ", ".join(f"{s} {v['count']}" for s, v in manifest.splits.items())
        total = sum(v["count"] for v in manifest.splits.values())
        files = sum(len(v["files"]) for v in manifest.splits.values())
        common.say(f"ok: {args.data}: {total} records ({counts}) in {files} files, every "
                   "checksum, shape and label checked")
    else:
        manifest = data.Manifest.load(args.data)
    common.result(summary(manifest))


def _gallery(args):
    from tfgal.data import gallery
    names = None
    if args.corruptions is not None:
        names = [n.strip() for n in args.corruptions.split(",") if n.strip()]
    result = gallery.gallery(args.data, args.out, depth=args.depth, corruptions=names,
                             seed=args.seed, split=args.split, overwrite=args.overwrite)
    common.say(f"wrote {result['out']}: {len(result['corruptions'])} corruptions (rows) x "
               f"severity {result['severities'][0]}-{result['severities'][-1]} of "
               f"{len(result['classes'])} galaxies, one per class "
               f"({', '.join(result['classes'])}; ids {result['galaxy_ids']}), {args.split} "
               f"split at {args.depth}, seed {args.seed}")
    common.result(result)


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
