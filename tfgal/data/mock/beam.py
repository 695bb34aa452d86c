"""Mock datasets rendered on Apache Beam (``tfgal-data mock --beam``).

The pipeline has one element per record file of the dataset's layout, each carrying its
galaxies' (id, label); a worker renders a file's galaxies with `files.render_file`
and writes it atomically under ``OUT/.parts/``, exactly as the local build does, and the
last step writes the part record that `builder.merge` reads. The driver then merges
(checks every file's size and checksum, fits the stretch, writes the manifest) and
publishes the dataset. A galaxy's pixels depend only on (seed, galaxy id, label) and a
file's bytes only on its galaxies, so the Beam build is byte-identical to the local one
and a task the runner retries rewrites the same file.

A record file (256 galaxies by default) is the unit of work: big enough that a worker's
start-up and GalSim's imports are paid once per file, small enough that a large set
spreads over many workers. `beam.Reshuffle` spreads files across workers before
rendering, so a runner does not fuse all of them into the one worker that created them.
"""

from __future__ import annotations

import os
import threading

from tfgal import beam as beam_lib
from tfgal import progress as progress_lib
from tfgal.data import shards
from tfgal.data.mock import files

__all__ = ["COUNTER", "build_part"]

COUNTER = ("tfgal", "galaxies_rendered")  # a Beam metric: runners' UIs show progress


def _render(job, out, seed, params):
    from apache_beam.metrics import Metrics
    spec, items = job
    entry = files.render_file(out, spec, items, seed, params)
    Metrics.counter(*COUNTER).inc(len(items))
    return entry


def _record(entries, out, settings, order):
    entries = sorted(entries, key=lambda e: order[e["name"]])
    return shards.write_part_record(out, 0, 1, settings, entries)


def build_part(out, jobs, settings, params, *, options=True, workers=None, progress=True):
    """Renders the record files `jobs` (`files.file_jobs`) into ``out/.parts/`` on
    Beam, as part 0 of 1; `builder.merge(out)` finishes the dataset.

    Args:
      options: True for the local DirectRunner with `workers` processes (default: all
        cores), or Beam flags (a string or a list) that replace those defaults.
      progress: a bar of the galaxies in finished files, read from `out` (it moves only
        when the runner's workers write where the driver can see).
    """
    beam = beam_lib.require()
    defaults = beam_lib.direct_defaults(workers or beam_lib.cores())
    pipeline = beam_lib.new_pipeline(None if options is True else options, defaults)
    order = {spec.name: k for k, (spec, _) in enumerate(jobs)}
    with _watch(out, jobs, progress):
        _ = (pipeline
             | "files" >> beam.Create(jobs)
             | "spread" >> beam.Reshuffle()
             | "render" >> beam.Map(_render, out, settings["seed"], params)
             | "gather" >> beam.combiners.ToList()
             | "record" >> beam.Map(_record, out, settings, order))
        beam_lib.finish(pipeline, out)


class _watch:
    """A progress bar fed by the record files that appear under ``out/.parts/``."""

    def __init__(self, out, jobs, enabled):
        self.paths = [(os.path.join(out, shards.PARTS, spec.name), len(items))
                      for spec, items in jobs]
        self.enabled = progress_lib.wanted(enabled)
        self.stop = threading.Event()

    def __enter__(self):
        total = sum(n for _, n in self.paths)
        self.bar_cm = progress_lib.bar(total, "rendering (beam)", enabled=bool(self.enabled))
        bar = self.bar_cm.__enter__()
        self.thread = threading.Thread(target=self._poll, args=(bar,), daemon=True)
        self.thread.start()
        return self

    def _poll(self, bar):
        pending = list(self.paths)
        while pending:
            stopping = self.stop.wait(0.5)
            for path in [p for p in pending if os.path.exists(p[0])]:
                pending.remove(path)
                bar.update(path[1])
            if stopping:
                return

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        return self.bar_cm.__exit__(*exc)

