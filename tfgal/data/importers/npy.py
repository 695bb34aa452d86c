"""Importer of the study's published ``.npy`` files.

It writes a tfgal dataset through `writer.DatasetWriter`, so an import that fails
part-way leaves nothing behind.

The study's files (Zenodo 10.5281/zenodo.5514180) are nine arrays in one directory::

    images_Y10_{train,valid,test}.npy   N x 3 x H x W (channels first, bands g, r, i)
    images_Y1_{train,valid,test}.npy    the same galaxies, in the same order, at Y1 depth
    labels_{train,valid,test}.npy       one-hot N x 3 (spiral, elliptical, merger);
                                        integer class indices (N,) are accepted too

The study's split "valid" becomes tfgal's "val". A split is either complete (all three
files) or wholly absent, in which case it is skipped; "train" is required. Each galaxy
becomes one record holding both images, "Y10" and "Y1", transposed to HWC float32, with
noise as published. Galaxy ids are ``SPLIT_ID_OFFSETS[split] + row``, the row in the
study's file, so ids are unique across splits and the same on every import.

Arrays are opened memory-mapped without pickle and read in chunks of rows: the real
files are about 2.8 GB each.

The manifest's generator entry is named ``"tfgal.importers.npy"``: it identifies the
importer in existing datasets, whatever module holds the code.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from tfgal import io, locks, progress, survey
from tfgal.data import stretch as stretch_lib
from tfgal.data.manifest import CLASS_NAMES, DEFAULT_SHARD_SIZE, SPLITS
from tfgal.data.writer import DatasetWriter
from tfgal.errors import ConfigError, DataError

__all__ = ["GENERATOR_NAME", "NPY_SPLITS", "NPY_DEPTHS", "ID_STRIDE", "SPLIT_ID_OFFSETS",
           "CHUNK_ROWS", "STRETCH_CHOICES", "npy_paths", "NpySplit", "NpyFiles", "open_npy",
           "iter_npy", "import_npy"]

GENERATOR_NAME = "tfgal.importers.npy"  # stored in manifests: keep it
NPY_SPLITS = {"train": "train", "val": "valid", "test": "test"}  # tfgal name -> study name
NPY_DEPTHS = ("Y10", "Y1")
ID_STRIDE = 10_000_000  # far above the study's largest split (23,487 galaxies)
SPLIT_ID_OFFSETS = {"train": 0, "val": ID_STRIDE, "test": 2 * ID_STRIDE}
CHUNK_ROWS = 64  # rows read at once: ~15 MB of float64 per depth
STRETCH_CHOICES = ("auto", "fit", "identity")


def npy_paths(source, split):
    """The study's three file paths of tfgal split `split`: {"Y10", "Y1", "labels"}."""
    study = NPY_SPLITS[split]
    paths = {depth: os.path.join(source, f"images_{depth}_{study}.npy") for depth in NPY_DEPTHS}
    paths["labels"] = os.path.join(source, f"labels_{study}.npy")
    return paths


@dataclasses.dataclass
class NpySplit:
    """One split of the study's files, opened and checked (headers and labels)."""

    name: str  # tfgal split name
    paths: dict  # "Y10" / "Y1" / "labels" -> path
    images: dict  # "Y10" / "Y1" -> read-only memory map, N x 3 x H x W
    labels: np.ndarray  # int64 class indices, N

    @property
    def count(self):
        return len(self.labels)


@dataclasses.dataclass
class NpyFiles:
    """The study's files in `source`, opened by `open_npy`."""

    source: str
    splits: dict  # tfgal split -> NpySplit, in SPLITS order
    image_shape: tuple  # H, W, C

    @property
    def count(self):
        return sum(s.count for s in self.splits.values())


def open_npy(source):
    """Opens and checks the study's files in directory `source`.

    Checks that the files exist (train required, other splits all-or-nothing), are plain
    numeric arrays of shape N x 3 x H x W with one H x W throughout, that Y10, Y1 and
    labels agree in length and that labels are one-hot. Pixels are checked later, while
    streaming (`iter_npy`). Raises `DataError` naming the file and row.
    """
    source = os.path.abspath(os.fspath(source))
    if not os.path.isdir(source):
        raise DataError("source is not a directory of the study's .npy files", path=source)
    _check_npy_files_present(source)
    splits, hw = {}, None
    for split in SPLITS:
        paths = npy_paths(source, split)
        if not os.path.exists(paths["labels"]):
            continue
        images = {}
        for depth in NPY_DEPTHS:
            images[depth] = _load_images(paths[depth])
            hw = hw or images[depth].shape[2:]
            if images[depth].shape[2:] != hw:
                raise DataError(f"images are {images[depth].shape[2]} x {images[depth].shape[3]}"
                                f" pixels, other files hold {hw[0]} x {hw[1]}", path=paths[depth])
        labels = _load_labels(paths["labels"])
        _check_counts(paths, images, labels)
        splits[split] = NpySplit(split, paths, images, labels)
    return NpyFiles(source, splits, (int(hw[0]), int(hw[1]), len(survey.BANDS)))


def _check_npy_files_present(source):
    missing, incomplete = [], {}
    for split in SPLITS:
        paths = list(npy_paths(source, split).values())
        lacking = [p for p in paths if not os.path.exists(p)]
        missing += lacking
        # A split may be wholly absent (then skipped), except train.
        if lacking and (split == "train" or len(lacking) < len(paths)):
            incomplete[split] = lacking[0]
    if incomplete:
        names = ", ".join(os.path.basename(p) for p in missing)
        raise DataError(f"{len(missing)} of the study's 9 files missing: {names}; split(s) "
                        f"{list(incomplete)} incomplete (train is required; val or test may "
                        "be absent only with all three of their files)",
                        path=next(iter(incomplete.values())))


def _load_npy(path):
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError, EOFError) as e:
        # Object arrays and pickles land here: allow_pickle=False refuses them.
        raise DataError(f"not a plain .npy array (object/pickled data are refused): {e}",
                        path=path) from None
    if not isinstance(array, np.ndarray):  # an .npz archive under a .npy name
        raise DataError(f"holds a {type(array).__name__}, not one array", path=path)
    if array.dtype.hasobject or array.dtype.kind not in "fiub":
        raise DataError(f"array dtype {array.dtype} is not numeric", path=path)
    return array


def _load_images(path):
    array = _load_npy(path)
    if array.dtype.kind == "b":
        raise DataError(f"image dtype {array.dtype} is not numeric", path=path)
    n_bands = len(survey.BANDS)
    if array.ndim != 4 or array.shape[1] != n_bands:
        hint = ""
        if array.ndim == 4 and array.shape[3] == n_bands:
            hint = " (looks channels-last; the study's files are channels-first)"
        raise DataError(f"image array has shape {array.shape}, expected N x {n_bands} x H x W "
                        f"with bands {survey.BANDS}{hint}", path=path)
    if array.shape[0] == 0:
        raise DataError("image array holds no galaxies", path=path)
    return array


def _load_labels(path):
    """Class indices from one-hot rows (or integer indices); errors name the row."""
    raw = np.asarray(_load_npy(path))
    n_classes = len(CLASS_NAMES)
    if raw.ndim == 2 and raw.shape[1] == n_classes:
        ok = np.all((raw == 0) | (raw == 1), axis=1) & (raw.sum(axis=1) == 1)
        if not ok.all():
            row = int(np.argmin(ok))
            raise DataError(f"label row {raw[row].tolist()} is not one-hot over classes "
                            f"{CLASS_NAMES}", path=path, index=row)
        return np.argmax(raw, axis=1).astype(np.int64)
    if raw.ndim == 1:
        ok = (raw >= 0) & (raw < n_classes) & (raw == np.round(raw))
        if not ok.all():
            row = int(np.argmin(ok))
            raise DataError(f"label {raw[row].item()!r} is not a class index in "
                            f"0..{n_classes - 1}",
                            path=path, index=row)
        return raw.astype(np.int64)
    raise DataError(f"labels have shape {raw.shape}, expected one-hot N x {n_classes}",
                    path=path)


def _check_counts(paths, images, labels):
    counts = {"Y10": len(images["Y10"]), "Y1": len(images["Y1"]), "labels": len(labels)}
    if len(set(counts.values())) > 1:
        values = list(counts.values())
        odd = min(counts, key=lambda k: values.count(counts[k]))  # the file that disagrees
        n = min(values)
        raise DataError(f"Y10, Y1 and labels must hold the same galaxies in the same order; "
                        f"counts differ {counts}: rows from {n} on have no partner",
                        path=paths[odd], index=n)
    if counts["labels"] >= ID_STRIDE:
        raise DataError(f"split holds {counts['labels']} galaxies, at most {ID_STRIDE - 1} "
                        "fit the galaxy-id scheme", path=paths["labels"])


def iter_npy(source, splits=None, *, chunk_rows=CHUNK_ROWS):
    """Yields validated ``(split, galaxy_id, y10, y1, label)`` from the study's files.

    Args:
      source: the directory of the files, or an `NpyFiles` from `open_npy`.
      splits: tfgal split names to read (default: every split present), in that order.
      chunk_rows: rows read from disk at once.

    Images come out HWC float32 (bands g, r, i); `label` is the class index. NaN or inf
    pixels raise `DataError` naming the file and row.
    """
    files = source if isinstance(source, NpyFiles) else open_npy(source)
    for split in splits or list(files.splits):
        if split not in files.splits:
            raise DataError(f"split {split!r} is absent; present: {list(files.splits)}",
                            path=files.source)
        entry = files.splits[split]
        for start in range(0, entry.count, chunk_rows):
            stop = min(start + chunk_rows, entry.count)
            y10 = _read_rows(entry, "Y10", start, stop)
            y1 = _read_rows(entry, "Y1", start, stop)
            for i in range(stop - start):
                row = start + i
                yield (split, SPLIT_ID_OFFSETS[split] + row, y10[i], y1[i],
                       int(entry.labels[row]))


def _read_rows(entry, depth, start, stop):
    chunk = np.asarray(entry.images[depth][start:stop], dtype=np.float32)
    finite = np.isfinite(chunk).reshape(len(chunk), -1).all(axis=1)
    if not finite.all():
        i = int(np.argmin(finite))
        band, y, x = np.argwhere(~np.isfinite(chunk[i]))[0].tolist()
        raise DataError(f"image has NaN or inf pixels (first: band {survey.BANDS[band]}, "
                        f"y {y}, x {x})", path=entry.paths[depth], index=start + i)
    return np.ascontiguousarray(chunk.transpose(0, 2, 3, 1))


def import_npy(source, out, *, stretch="auto", shard_size=DEFAULT_SHARD_SIZE,
               compression="GZIP", overwrite=False):
    """Imports the study's published files in directory `source` into dataset `out`.

    Args:
      source: directory holding ``images_Y10_train.npy`` ... (see the module docstring).
      out: the dataset directory to create.
      stretch: "fit" fits the arcsinh stretch on up to `stretch.STRETCH_SAMPLE` train Y10
        images; "identity" keeps values as they are (files stretched before
        publication); "auto" picks identity when every sampled train value (Y10 and Y1)
        lies in [0, 1], else fit.
      shard_size, compression, overwrite: as in `writer.DatasetWriter`.

    Returns the `manifest.Manifest` of the new dataset.
    """
    if stretch not in STRETCH_CHOICES:
        raise ConfigError(f"unknown stretch {stretch!r}", key="stretch", valid=STRETCH_CHOICES)
    # Locked and checked before reading the files: a busy or existing `out` is refused at once.
    with locks.hold(out):
        io.refuse_existing(out, overwrite)
        return _import_npy(source, out, stretch, shard_size, compression, overwrite)


def _import_npy(source, out, stretch, shard_size, compression, overwrite):
    files = open_npy(source)
    desc = {"Y10": survey.Y10, "Y1": survey.Y1}
    images = {name: {"noise": True, "depth": depth.to_json(), "units": "as published"}
              for name, depth in desc.items()}
    sample_rows = stretch_lib.sample_rows(files.splits["train"].count)
    sample = {"Y10": [], "Y1": []}
    ranges = {}
    with DatasetWriter(out, images=images, image_shape=files.image_shape,
                       shard_size=shard_size, compression=compression,
                       overwrite=overwrite, source=files.source, lock=False) as writer:
        with progress.bar(files.count, "import-npy", enabled=None) as bar:
            for split, galaxy_id, y10, y1, label in iter_npy(files):
                row = galaxy_id - SPLIT_ID_OFFSETS[split]
                writer.add(split, {"Y10": y10, "Y1": y1}, label, galaxy_id, index=row)
                if split == "train" and row in sample_rows:
                    # Copies: a view would keep its whole chunk of rows alive.
                    sample["Y10"].append(y10.copy())
                    sample["Y1"].append(y1.copy())
                _track_range(ranges, split, {"Y10": y10, "Y1": y1})
                bar.update()
        params, choice = _npy_stretch(stretch, sample)
        generator = {
            "name": GENERATOR_NAME, "source": files.source,
            "files": {split: {k: os.path.basename(p) for k, p in entry.paths.items()}
                      for split, entry in files.splits.items()},
            "study_split_names": {s: NPY_SPLITS[s] for s in files.splits},
            "galaxy_id": "SPLIT_ID_OFFSETS[split] + row in the study's file",
            "id_offsets": {s: SPLIT_ID_OFFSETS[s] for s in files.splits},
        }
        extra = {"stretch_choice": choice, "value_range": ranges}
        return writer.finish(stretch=params, generator=generator, extra=extra)


def _track_range(ranges, split, images):
    for name, image in images.items():
        lo, hi = float(image.min()), float(image.max())
        entry = ranges.setdefault(split, {}).setdefault(name, [lo, hi])
        entry[0], entry[1] = min(entry[0], lo), max(entry[1], hi)


def _npy_stretch(mode, sample):
    y10 = np.stack(sample["Y10"])
    lo = float(min(y10.min(), min(im.min() for im in sample["Y1"])))
    hi = float(max(y10.max(), max(im.max() for im in sample["Y1"])))
    chosen = mode
    if mode == "auto":
        chosen = "identity" if 0.0 <= lo and hi <= 1.0 else "fit"
    choice = {"requested": mode, "chosen": chosen, "n_sample": int(len(y10)),
              "sample_min": lo, "sample_max": hi}
    if chosen == "identity":
        return dict(stretch_lib.IDENTITY), choice
    return stretch_lib.fit(y10, noiseless=False, depth="Y10"), choice
