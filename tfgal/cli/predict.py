"""``tfgal-predict``: an exported model over a dataset split or FITS cutouts, into a
catalogue."""

from __future__ import annotations

from tfgal.cli import common

__all__ = ["parser", "main"]

EXAMPLES = [
    "tfgal-predict --model saved_models/quick --data data/mock --split test --out "
    "quick-test.fits --latent",
    "tfgal-predict --model saved_models/quick --fits-table cutouts.csv --out cutouts.ecsv",
]


def parser():
    from tfgal.model import catalogue  # TensorFlow-free
    p = common.new_parser(
        "tfgal-predict",
        "Classify a dataset split, or FITS cutouts listed in a table, with an exported "
        "model and write a catalogue (galaxy id, class probabilities, predicted class, "
        "optionally the latent; model name and version in the metadata). Format from the "
        f"extension: {', '.join(catalogue.FORMATS)}. With labels, the JSON summary on "
        "stdout gives the accuracy and the confusion matrix.", EXAMPLES)
    p.add_argument("--model", required=True,
                   help="exported SavedModel directory, or a TF Serving base directory "
                        "(NAME/<version>/: the highest version is used)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="dataset directory")
    source.add_argument("--fits-table",
                        help="CSV or FITS table of cutouts: file[, label][, split][, "
                             "galaxy_id], as tfgal-data import-fits reads it")
    p.add_argument("--split", default=catalogue.DEFAULT_SPLIT,
                   help="split to classify (a FITS table without a split column: all rows)")
    p.add_argument("--out", required=True,
                   help="catalogue to write: .fits, .parquet, .ecsv (these keep the "
                        "metadata and a latent vector column) or .csv (plain: no metadata)")
    p.add_argument("--depth", default=None, type=common.depth_type(),
                   help="depth of the noise added to noiseless data (default: the "
                        "model's training source depth)")
    p.add_argument("--seed", type=int, default=0, help="seed of the images' noise")
    p.add_argument("--batch-size", type=int, default=catalogue.DEFAULT_BATCH_SIZE,
                   help="galaxies per model call")
    p.add_argument("--latent", action="store_true", help="add each galaxy's latent vector")
    p.add_argument("--overwrite", action="store_true", help="replace an existing catalogue")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (default: one on a terminal)")
    common.beam_args(p, "run on Apache Beam with RunInference (default: the local "
                        "DirectRunner); datasets only, the same catalogue as without --beam")
    p.add_argument("--verbose", action="store_true", help=common.VERBOSE_HELP)
    return p


def main(args, parser):
    beam = common.beam_choice(args, parser)
    kw = dict(split=args.split, depth=args.depth, seed=args.seed, batch_size=args.batch_size,
              latent=args.latent, overwrite=args.overwrite)
    if beam is not None:
        if args.fits_table is not None:
            parser.error("--beam reads datasets (--data); import FITS cutouts with "
                         "tfgal-data import-fits first")
        from tfgal.model import beam_predict
        with common.quiet_beam(beam):
            summary = beam_predict.predict(args.model, args.out, data=args.data, options=beam,
                                           **kw)
    else:
        from tfgal.model import predict
        summary = predict.predict(args.model, args.out, data=args.data,
                                  fits_table=args.fits_table,
                                  progress=False if args.no_progress else None, **kw)
    from tfgal.model import catalogue
    for line in catalogue.describe(summary):
        common.say(line)
    common.result(summary)
