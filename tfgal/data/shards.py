"""Building one dataset in parts: each job writes some record files, a merge writes the rest.

A dataset of given split sizes and shard size has a fixed file layout (file k of a split
holds that split's galaxies k * shard_size ... (k + 1) * shard_size - 1). Part I of N
writes the files whose global index (train files, then val, then test) is I modulo N,
each file's bytes depending only on its galaxies, plus ``.parts/part-I-of-N.json``
listing what it wrote. `merge` checks that all N parts are present, agree on the
build, and hold every file with its recorded size and checksum; then it fits the
stretch, writes the manifest and moves the files into place. The unsharded build is
part 0 of 1 plus the merge, so sharded and unsharded builds are byte-identical.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import shutil

import numpy as np

from tfgal import io, survey
from tfgal.data.codec import check_image, check_psf_fwhm, read_examples, serialize_example
from tfgal.data.manifest import Manifest, split_table
from tfgal.data.writer import shard_name, write_records_file
from tfgal.errors import DataError

__all__ = ["PARTS", "FileSpec", "layout", "parse_part", "assigned", "write_file",
           "write_part_record", "collect", "merge", "first_images"]

PARTS = ".parts"


@dataclasses.dataclass(frozen=True)
class FileSpec:
    """One record file of the layout: `split` galaxies [start, stop)."""

    split: str
    index: int
    n_files: int
    start: int
    stop: int
    compression: str

    @property
    def name(self):
        return shard_name(self.split, self.index, self.n_files, self.compression)


def layout(split_counts, shard_size, compression="GZIP"):
    """Every file of a dataset, in global order (splits in `split_counts` order)."""
    specs = []
    for split, n in split_counts.items():
        n_files = -(-n // shard_size)
        specs += [FileSpec(split, k, n_files, k * shard_size, min(n, (k + 1) * shard_size),
                           compression) for k in range(n_files)]
    return specs


def parse_part(text):
    """"I/N" -> (I, N), with 0 <= I < N."""
    try:
        index, total = (int(v) for v in text.split("/"))
    except ValueError:
        raise DataError(f"--shard takes I/N (e.g. 0/4); received {text!r}") from None
    if not 0 <= index < total:
        raise DataError(f"--shard {text}: need 0 <= I < N")
    return index, total


def assigned(specs, part, n_parts):
    return [spec for i, spec in enumerate(specs) if i % n_parts == part]


def _parts_dir(out):
    return os.path.join(os.fspath(out), PARTS)


def write_file(out, spec, galaxies, *, noiseless, image_shape, n_classes):
    """Writes one record file atomically; returns its entry.

    `galaxies`: `(images, label, galaxy_id, psf_fwhm_arcsec)` each, the last the galaxy's
    own r-band PSF FWHM or None to store none (`codec.serialize_example`).
    """
    folder = _parts_dir(out)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, spec.name)
    counts = np.zeros(n_classes, np.int64)
    rows = []
    for images, label, galaxy_id, psf_fwhm in galaxies:
        checked = {name: check_image(image, noiseless=noiseless, shape=image_shape,
                                     where=(path, galaxy_id))
                   for name, image in images.items()}
        if psf_fwhm is not None:
            psf_fwhm = check_psf_fwhm(psf_fwhm, where=(path, galaxy_id))
        rows.append(serialize_example(checked, label, galaxy_id, psf_fwhm))
        counts[label] += 1
    entry = write_records_file(path, rows, spec.compression)
    return {**entry, "split": spec.split, "class_counts": counts.tolist()}


def write_part_record(out, part, n_parts, build, entries):
    """Records what part `part` of `n_parts` wrote (`build`: the parameters all share)."""
    path = os.path.join(_parts_dir(out), f"part-{part:05d}-of-{n_parts:05d}.json")
    io.write_json(path, {"part": part, "n_parts": n_parts, "build": build, "files": entries})
    return path


def collect(out):
    """Checks and gathers the parts under `out`; returns (build, file entries in order)."""
    folder = _parts_dir(out)
    paths = sorted(glob.glob(os.path.join(folder, "part-*-of-*.json")))
    if not paths:
        raise DataError("no parts to merge (run tfgal-data mock --shard I/N first)", path=folder)
    parts = []
    for path in paths:
        with open(path) as f:
            parts.append((path, json.load(f)))
    n_parts = parts[0][1]["n_parts"]
    build = parts[0][1]["build"]
    for path, part in parts:
        if part["n_parts"] != n_parts or part["build"] != build:
            raise DataError("part was built with other settings than part 0", path=path)
    missing = sorted(set(range(n_parts)) - {p["part"] for _, p in parts})
    if missing:
        raise DataError(f"parts {missing} of {n_parts} are missing", path=folder)
    entries = {e["name"]: e for _, p in parts for e in p["files"]}
    for name, entry in entries.items():
        path = os.path.join(folder, name)
        if not os.path.exists(path) or os.path.getsize(path) != entry["bytes"]:
            raise DataError("record file is missing or has another size than its part "
                            "recorded", path=path)
        if io.sha256_file(path) != entry["sha256"]:
            raise DataError("record file checksum differs from its part's record", path=path)
    return build, entries


def merge(out, *, images, image_shape, class_names, split_counts, shard_size, compression,
          fit_stretch, generator, psf_fwhm=None):
    """Writes the manifest of a dataset whose parts are complete; returns the Manifest.

    `fit_stretch(manifest)` returns the stretch params (it may read the records);
    `psf_fwhm`: the manifest's (`manifest.PSF_FWHM_R` when every record holds its PSF).
    """
    out = os.fspath(out)
    build, entries = collect(out)
    specs = layout(split_counts, shard_size, compression)
    expected = [s.name for s in specs]
    absent = [name for name in expected if name not in entries]
    if absent:
        raise DataError(f"{len(absent)} record files are missing, first {absent[0]}",
                        path=_parts_dir(out))
    splits = {}
    for split in split_counts:
        files = [entries[s.name] for s in specs if s.split == split]
        counts = (np.sum([e["class_counts"] for e in files], axis=0) if files
                  else [0] * len(class_names))
        splits[split] = split_table(files, counts)
    for name in expected:
        os.replace(os.path.join(_parts_dir(out), name), os.path.join(out, name))
    manifest = Manifest(
        root=out, image_shape=tuple(image_shape), class_names=tuple(class_names),
        bands=survey.BANDS, pixel_scale_arcsec=survey.PIXEL_SCALE_ARCSEC,
        images=images, splits=splits, compression=compression, generator=generator,
        psf_fwhm=psf_fwhm)
    manifest.stretch = fit_stretch(manifest)
    manifest.save()
    shutil.rmtree(_parts_dir(out), ignore_errors=True)
    return manifest


def first_images(manifest, split, name, n):
    """The first `n` images `name` of `split`, read back from the records."""
    out = []
    for path in manifest.files(split):
        for example in read_examples(path, manifest.compression):
            out.append(example[name])
            if len(out) == n:
                return np.stack(out)
    return np.stack(out) if out else np.zeros((0, *manifest.image_shape), np.float32)
