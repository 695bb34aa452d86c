"""Building mock datasets: many galaxies rendered in a process pool, written in shards.

`build` renders the galaxies of `params.plan` (in plan order) and writes them as a tfgal
dataset, locally or on Apache Beam (`tfgal.data.mock.beam`); `merge` finishes a dataset
rendered in parts (`tfgal.data.shards`). A galaxy's pixels depend only on (seed,
galaxy_id, label) and every record file is written by `files.write_file`, so `build`
writes the same bytes whatever the number of workers, the process start method, the
sharding or the Beam runner.

The manifest's generator entry is named ``"tfgal.mocks"``: it identifies the generator
in existing datasets, whatever module holds the code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import multiprocessing
import os
import shutil

import galsim

import tfgal
from tfgal import io, locks, survey
from tfgal import progress as progress_lib
from tfgal.data import pools, shards
from tfgal.data import stretch
from tfgal.data.manifest import (CLASS_NAMES, DEFAULT_SHARD_SIZE, FLUX, MANIFEST_NAME,
                                 PSF_FWHM_R, Manifest)
from tfgal.data.mock.files import file_jobs, render_record, split_rows, write_file
from tfgal.data.mock.galaxies import STAMP_PIXELS, render_galaxy
from tfgal.data.mock.params import MockParams, check_class_fractions, plan
from tfgal.errors import ConfigError

__all__ = ["GENERATOR_NAME", "MOCK_VERSION", "render_many", "build", "merge"]

GENERATOR_NAME = "tfgal.mocks"  # stored in manifests: keep it, existing datasets carry it
# Stored in manifests; raised when the same seed renders different galaxies. Version 1
# (none stored) is the generator before per-galaxy PSFs and the realism check.
MOCK_VERSION = 2


def render_many(items, seed, params=MockParams(), *, workers=None, chunksize=None):
    """Renders (galaxy_id, label) pairs, yielding images in the order given.

    Args:
      items: sequence of (galaxy_id, label).
      workers: processes (None: all cores; 1: in this process).
      chunksize: galaxies per task sent to a worker (default: a few tasks per worker).
    """
    return _pooled(render_galaxy, items, seed, params, workers, chunksize)


def _pooled(render_one, items, seed, params, workers, chunksize):
    """`render_one(galaxy_id, label, seed, params)` of every item, in order, in a pool."""
    items = [(int(g), int(lab)) for g, lab in items]
    workers = pools.check_workers(workers)
    if workers == 1 or len(items) <= 1:
        for galaxy_id, label in items:
            yield render_one(galaxy_id, label, seed, params)
        return
    if chunksize is None:
        # Small enough to balance the load and keep the writer busy, large enough that
        # pickling overhead stays negligible.
        chunksize = max(1, min(16, len(items) // (8 * workers)))
    context = multiprocessing.get_context(pools.start_method())
    with context.Pool(workers, initializer=_init_worker, initargs=(seed, params)) as pool:
        yield from pool.imap(functools.partial(_render_item, render_one), items,
                             chunksize=chunksize)


_WORKER = {}


def _init_worker(seed, params):
    _WORKER.update(seed=seed, params=params)


def _render_item(render_one, item):
    return render_one(item[0], item[1], _WORKER["seed"], _WORKER["params"])


def build(out, *, n_train, n_val, n_test, seed, workers=None, class_fractions=None,
          shard_size=DEFAULT_SHARD_SIZE, compression="GZIP", overwrite=False,
          params=None, progress=True, shard=None, beam=None):
    """Renders a mock dataset into `out` and returns its manifest.

    Galaxies are written in `plan` order; the arcsinh stretch is fitted on the first
    (up to `stretch.STRETCH_SAMPLE`) training galaxies observed at Y10 with noise seeded
    by `seed`. With no training galaxies the manifest's stretch is None (fitting it on
    val or test would leak their statistics). The same arguments write the same bytes for
    any `workers`, any process, any sharding and on Beam.

    Args:
      out: dataset directory to create.
      n_train, n_val, n_test: galaxies per split (integers >= 0).
      seed: integer >= 0; sets the plan, every galaxy and the stretch's noise.
      workers: rendering processes (None: all cores; 1: in this process).
      class_fractions: spiral, elliptical, merger fractions summing to 1 (None: balanced).
      shard_size: galaxies per record file; compression: "GZIP" or "".
      overwrite: replace an existing dataset at `out` (else a non-empty `out` is
        refused with `OutputExists`).
      params: a `MockParams` (None: the defaults).
      progress: show a progress bar (galaxies done, rate) on stderr.
      shard: (I, N) to render only part I of N into `out` (for job arrays or several
        machines; `merge(out)` then writes the manifest); None for the whole dataset.
      beam: render on Apache Beam (`tfgal.data.mock.beam`): True for the local
        DirectRunner with `workers` processes, or a string (or list) of Beam flags, e.g.
        ``"--runner=FlinkRunner --flink_master=host:8081"``; None renders in a local
        process pool. Every runner writes the same bytes.
    Returns:
      the `Manifest`, or None for a part.
    """
    params = MockParams() if params is None else params
    if not isinstance(params, MockParams):
        raise ConfigError(f"params must be a MockParams; received {type(params).__name__}",
                          key="params")
    rows = plan(n_train, n_val, n_test, seed, class_fractions)
    workers = pools.check_workers(workers)
    if shard_size < 1:
        raise ConfigError(f"shard_size must be >= 1; received {shard_size}", key="shard_size")
    settings = {"n_train": n_train, "n_val": n_val, "n_test": n_test, "seed": seed,
                "class_fractions": class_fractions, "shard_size": shard_size,
                "compression": compression, "params": dataclasses.asdict(params)}
    if shard is not None and beam is not None:
        raise ConfigError("shard and beam exclude each other: a Beam runner schedules the "
                          "whole build itself", key="shard")
    if beam is not None:
        from tfgal import beam as beam_lib
        beam_lib.require()  # before any rendering, with the extra named
    if shard is not None:
        # No lock: the parts of one build run at once by design (job arrays), each
        # writing only its own record files and part record, atomically, and a part run
        # twice writes the same bytes. `merge`, which writes the rest, locks.
        # A finished dataset there is an existing output: merging would replace it.
        io.refuse_existing(out, overwrite, names=(MANIFEST_NAME,))
        _build_part(out, *shard, rows, settings, params, workers, progress)
        return None
    # The whole build holds the lock (Beam workers write into this driver's private
    # temporary directory); the emptiness check runs under it, so two builds cannot
    # both find `out` empty.
    with locks.hold(out):
        io.refuse_existing(out, overwrite)
        out = os.path.abspath(os.fspath(out))
        tmp = f"{out}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            if beam is None:
                _build_part(tmp, 0, 1, rows, settings, params, workers, progress)
            else:
                from tfgal.data.mock import beam as beam_build
                beam_build.build_part(tmp, file_jobs(rows, settings), settings, params,
                                      options=beam, workers=workers, progress=progress)
            _merge(tmp)
            io.publish_directory(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return Manifest.load(out)  # as every later reader sees it (JSON types)


def _build_part(out, part, n_parts, rows, settings, params, workers, progress):
    """Renders the record files of part `part` of `n_parts` (see `tfgal.shards`)."""
    jobs = file_jobs(rows, settings, part, n_parts)
    items = [item for _, file_items in jobs for item in file_items]
    entries = []
    desc = "rendering" if n_parts == 1 else f"rendering part {part}/{n_parts}"
    # closing(): an error while writing stops the worker pool at once, not at exit.
    with progress_lib.bar(len(items), desc, enabled=progress) as bar, \
            contextlib.closing(_pooled(render_record, items, settings["seed"], params,
                                       workers, None)) as rendered:
        for spec, file_items in jobs:
            galaxies = []
            for _ in file_items:  # the records of `render_record`, as the Beam build's
                galaxies.append(next(rendered))
                bar.update()
            entries.append(write_file(out, spec, galaxies))
    shards.write_part_record(out, part, n_parts, settings, entries)


def merge(out):
    """Writes the manifest of a mock dataset rendered in parts; returns it.

    Checks that every part is present and valid, then fits the stretch on the first
    (up to `stretch.STRETCH_SAMPLE`) training galaxies, exactly as an unsharded build does.
    Holds `out`'s lock (`tfgal.locks`) meanwhile.
    """
    with locks.hold(out):
        return _merge(out)


def _merge(out):
    settings, _ = shards.collect(out)
    params = MockParams.from_dict(settings["params"])
    rows = plan(settings["n_train"], settings["n_val"], settings["n_test"], settings["seed"],
                settings["class_fractions"])
    by_split = split_rows(rows)

    def fit_stretch(manifest):
        if "train" not in manifest.splits:
            return None
        sample = shards.first_images(manifest, "train", FLUX, stretch.STRETCH_SAMPLE)
        return stretch.fit(sample, noiseless=True, depth="Y10", seed=settings["seed"])

    return shards.merge(
        out, images={FLUX: {"noise": False, "units": "e-/s per pixel"}},
        image_shape=(STAMP_PIXELS, STAMP_PIXELS, len(survey.BANDS)),
        class_names=CLASS_NAMES, split_counts={s: len(v) for s, v in by_split.items()},
        shard_size=settings["shard_size"], compression=settings["compression"],
        fit_stretch=fit_stretch, psf_fwhm=dict(PSF_FWHM_R),
        generator=_generator_info(rows, settings["seed"], params, settings["class_fractions"]))


def _generator_info(rows, seed, params, class_fractions):
    counts = {}
    for split, _, label in rows:
        counts.setdefault(split, [0] * len(CLASS_NAMES))[label] += 1
    return {"name": GENERATOR_NAME, "mock_version": MOCK_VERSION,
            "tfgal_version": tfgal.__version__,
            "galsim_version": galsim.__version__, "seed": int(seed),
            "params": dataclasses.asdict(params),
            "class_fractions": list(check_class_fractions(class_fractions)),
            "counts": counts}
