"""The record files of a mock dataset: which galaxies each holds, and rendering one.

Shared by the local build (`tfgal.data.mock.builder`) and the Beam build
(`tfgal.data.mock.beam`), and importing neither: a file's bytes depend only on its
`shards.FileSpec`, its (galaxy_id, label) pairs, the seed and the `MockParams`, so the two
builds write the same files. Each record holds the galaxy's noiseless flux and the r-band
PSF FWHM it was rendered with (`galaxies.render`'s ``psf_fwhm_arcsec``), both from one
design of the galaxy.
"""

from __future__ import annotations

from tfgal import survey
from tfgal.data import shards
from tfgal.data.manifest import CLASS_NAMES, FLUX, SPLITS
from tfgal.data.mock.galaxies import STAMP_PIXELS, render

__all__ = ["split_rows", "file_jobs", "render_record", "write_file", "render_file"]


def split_rows(rows):
    """Split -> [(galaxy_id, label)], for the splits that have galaxies."""
    by_split = {split: [] for split in SPLITS}
    for split, galaxy_id, label in rows:
        by_split[split].append((galaxy_id, label))
    return {split: items for split, items in by_split.items() if items}


def file_jobs(rows, settings, part=0, n_parts=1):
    """The record files of part `part` of `n_parts` with their galaxies:
    [(`shards.FileSpec`, [(galaxy_id, label), ...])], in layout order."""
    by_split = split_rows(rows)
    specs = shards.layout({s: len(v) for s, v in by_split.items()}, settings["shard_size"],
                          settings["compression"])
    return [(spec, by_split[spec.split][spec.start:spec.stop])
            for spec in shards.assigned(specs, part, n_parts)]


def render_record(galaxy_id, label, seed, params):
    """One galaxy as `write_file` takes it: ({FLUX: image}, label, galaxy_id, PSF FWHM)."""
    image, props = render(galaxy_id, label, seed, params)
    return {FLUX: image}, label, galaxy_id, props["psf_fwhm_arcsec"]


def write_file(out, spec, galaxies):
    """Writes one record file of `render_record`s; returns its entry."""
    return shards.write_file(out, spec, galaxies, noiseless=True,
                             image_shape=(STAMP_PIXELS, STAMP_PIXELS, len(survey.BANDS)),
                             n_classes=len(CLASS_NAMES))


def render_file(out, spec, items, seed, params):
    """Renders the galaxies `items` of one record file and writes it; returns its entry.

    The file's bytes depend only on (spec, items, seed, params) and it is written
    atomically, so running it twice (a retried task) writes the same file.
    """
    return write_file(out, spec, [render_record(g, label, seed, params) for g, label in items])
