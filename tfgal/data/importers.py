"""Importers: the study's published ``.npy`` files and tables of FITS cutouts.

Both write a tfgal dataset through `records.DatasetWriter`, so an import that fails
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

FITS tables: see `import_fits`.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from tfgal import survey
from tfgal.data import records
from tfgal.data import stretch as stretch_lib
from tfgal.errors import ConfigError, DataError

NPY_SPLITS = {"train": "train", "val": "valid", "test": "test"}  # tfgal name -> study name
NPY_DEPTHS = ("Y10", "Y1")
ID_STRIDE = 10_000_000  # far above the study's largest split (23,487 galaxies)
SPLIT_ID_OFFSETS = {"train": 0, "val": ID_STRIDE, "test": 2 * ID_STRIDE}
STRETCH_SAMPLE = 512  # train images the stretch is fitted on (or auto-detected from)
CHUNK_ROWS = 64  # rows read at once: ~15 MB of float64 per depth
STRETCH_CHOICES = ("auto", "fit", "identity")
SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test"}


# --------------------------------------------------------------------------- npy files


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
    for split in records.SPLITS:
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
    for split in records.SPLITS:
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
    n_classes = len(records.CLASS_NAMES)
    if raw.ndim == 2 and raw.shape[1] == n_classes:
        ok = np.all((raw == 0) | (raw == 1), axis=1) & (raw.sum(axis=1) == 1)
        if not ok.all():
            row = int(np.argmin(ok))
            raise DataError(f"label row {raw[row].tolist()} is not one-hot over classes "
                            f"{records.CLASS_NAMES}", path=path, index=row)
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


def import_npy(source, out, *, stretch="auto", shard_size=records.DEFAULT_SHARD_SIZE,
               compression="GZIP", overwrite=False):
    """Imports the study's published files in directory `source` into dataset `out`.

    Args:
      source: directory holding ``images_Y10_train.npy`` ... (see the module docstring).
      out: the dataset directory to create.
      stretch: "fit" fits the arcsinh stretch on up to 512 train Y10 images; "identity"
        keeps values as they are (files stretched before publication); "auto" picks
        identity when every sampled train value (Y10 and Y1) lies in [0, 1], else fit.
      shard_size, compression, overwrite: as in `records.DatasetWriter`.

    Returns the `records.Manifest` of the new dataset.
    """
    if stretch not in STRETCH_CHOICES:
        raise ConfigError(f"unknown stretch {stretch!r}", key="stretch", valid=STRETCH_CHOICES)
    from tqdm import tqdm
    files = open_npy(source)
    desc = {"Y10": survey.Y10, "Y1": survey.Y1}
    images = {name: {"noise": True, "depth": depth.to_json(), "units": "as published"}
              for name, depth in desc.items()}
    sample_rows = _sample_rows(files.splits["train"].count)
    sample = {"Y10": [], "Y1": []}
    ranges = {}
    with records.DatasetWriter(out, images=images, image_shape=files.image_shape,
                               shard_size=shard_size, compression=compression,
                               overwrite=overwrite, source=files.source) as writer:
        bar = tqdm(total=files.count, desc="import-npy", unit="galaxy", disable=None)
        with bar:
            for split, galaxy_id, y10, y1, label in iter_npy(files):
                row = galaxy_id - SPLIT_ID_OFFSETS[split]
                writer.add(split, {"Y10": y10, "Y1": y1}, label, galaxy_id, index=row)
                if split == "train" and row in sample_rows:
                    # Copies: a view would keep its whole chunk of rows alive.
                    sample["Y10"].append(y10.copy())
                    sample["Y1"].append(y1.copy())
                _track_range(ranges, split, {"Y10": y10, "Y1": y1})
                bar.update(1)
        params, choice = _npy_stretch(stretch, sample)
        generator = {
            "name": "tfgal.importers.npy", "source": files.source,
            "files": {split: {k: os.path.basename(p) for k, p in entry.paths.items()}
                      for split, entry in files.splits.items()},
            "study_split_names": {s: NPY_SPLITS[s] for s in files.splits},
            "galaxy_id": "SPLIT_ID_OFFSETS[split] + row in the study's file",
            "id_offsets": {s: SPLIT_ID_OFFSETS[s] for s in files.splits},
        }
        extra = {"stretch_choice": choice, "value_range": ranges}
        return writer.finish(stretch=params, generator=generator, extra=extra)


def _sample_rows(n, k=STRETCH_SAMPLE):
    """Up to `k` evenly spaced rows of `n`: deterministic and spread over the file."""
    return set(np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(int)).tolist())


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


# --------------------------------------------------------------------------- FITS cutouts


def import_fits(table, out, *, depth=None, seed=0, split_fractions=(0.7, 0.1, 0.2),
                shard_size=records.DEFAULT_SHARD_SIZE, compression="GZIP", overwrite=False):
    """Imports FITS cutouts listed in a table into dataset `out`.

    The table (CSV or FITS, anything `astropy.table.Table.read` reads) has columns
    ``file`` (cutout path, relative to the table's directory), ``label`` (a class name
    from `records.CLASS_NAMES` or its index), optionally ``split`` (train / val / test;
    "valid" and "validation" mean val) and ``galaxy_id`` (default: the row number).

    A cutout holds bands g, r, i either as one 3-D image HDU (3 x H x W, in that order)
    or as three 2-D image HDUs named g, r, i by EXTNAME, or by header BAND or FILTER.
    FITS array rows become image rows (no flip). Every cutout must share one H x W.

    Args:
      depth: None for noiseless flux in e-/s (stored as "flux"; negative pixels are an
        error); else the depth of the noise already in the cutouts (`survey.Depth.parse`),
        stored under the depth's name.
      seed, split_fractions: without a split column, rows are split train/val/test by
        these fractions, per class (stratified), by a permutation drawn from `seed`.
      shard_size, compression, overwrite: as in `records.DatasetWriter`.

    The stretch is fitted on up to 512 train cutouts (noise at Y10 added first when
    noiseless). Returns the `records.Manifest` of the new dataset.
    """
    from tqdm import tqdm
    table = os.path.abspath(os.fspath(table))
    depth = None if depth is None else survey.Depth.parse(depth)
    rows = read_table(table)
    if "split" in rows:
        splits, split_from = rows["split"], "table column 'split'"
    else:
        splits = stratified_split(rows["label"], split_fractions, seed)
        split_from = f"per-class permutation, seed {seed}, fractions {list(split_fractions)}"
    train_rows = np.flatnonzero(splits == "train")
    if len(train_rows) == 0:
        raise DataError("no row falls in the train split; the stretch is fitted on it",
                        path=table, index="split")
    sample_rows = {int(train_rows[i]) for i in _sample_rows(len(train_rows))}
    name = records.FLUX if depth is None else depth.name
    desc = ({"noise": False, "depth": None, "units": "e-/s"} if depth is None else
            {"noise": True, "depth": depth.to_json(), "units": "as in the cutouts"})
    base = os.path.dirname(table)
    first = read_cutout(os.path.join(base, rows["file"][0]), 0)
    shape, sample = first.shape, []
    with records.DatasetWriter(out, images={name: desc}, image_shape=shape,
                               shard_size=shard_size, compression=compression,
                               overwrite=overwrite, source=table) as writer:
        for row in tqdm(range(len(splits)), desc="import-fits", unit="galaxy", disable=None):
            path = os.path.join(base, rows["file"][row])
            image = first if row == 0 else read_cutout(path, row)
            image = records.check_image(image, noiseless=depth is None, shape=shape,
                                        where=(path, row))
            writer.add(str(splits[row]), {name: image}, rows["label"][row],
                       int(rows["galaxy_id"][row]), index=row)
            if row in sample_rows:
                sample.append(image)
        params = stretch_lib.fit(np.stack(sample), noiseless=depth is None,
                                 depth=depth or survey.Y10)
        generator = {"name": "tfgal.importers.fits", "source": table,
                     "depth": None if depth is None else depth.to_json(),
                     "split_from": split_from, "seed": int(seed),
                     "split_fractions": [float(f) for f in split_fractions]}
        return writer.finish(stretch=params, generator=generator)


def read_table(path):
    """Reads the label table: {"file", "label", "split"?, "galaxy_id"} as NumPy arrays.

    Labels become class indices, splits tfgal split names; errors name the row.
    """
    from astropy.table import Table
    if not os.path.exists(path):
        raise DataError("label table does not exist", path=path)
    fmt = "ascii.csv" if path.lower().endswith(".csv") else None
    try:
        table = Table.read(path, format=fmt) if fmt else Table.read(path)
    except Exception as e:  # astropy raises many types for unreadable tables
        raise DataError(f"cannot read the label table: {e}", path=path) from None
    for column in ("file", "label"):
        if column not in table.colnames:
            raise DataError(f"label table lacks required column {column!r}; it has "
                            f"{table.colnames}", path=path, index=column)
    if len(table) == 0:
        raise DataError("label table has no rows", path=path)
    rows = {"file": [_cell_text(table, "file", i, path) for i in range(len(table))],
            "label": np.array([_parse_label(table["label"][i], path, i)
                               for i in range(len(table))], dtype=np.int64)}
    if "split" in table.colnames:
        rows["split"] = np.array([_parse_split(_cell_text(table, "split", i, path), path, i)
                                  for i in range(len(table))])
    rows["galaxy_id"] = _galaxy_ids(table, path)
    return rows


def _cell(table, column, row, path):
    value = table[column][row]
    if value is np.ma.masked:
        raise DataError(f"column {column!r} is empty in this row", path=path, index=row)
    return value


def _cell_text(table, column, row, path):
    value = _cell(table, column, row, path)
    if isinstance(value, bytes):
        value = value.decode()
    return str(value).strip()


def _parse_label(value, path, row):
    if value is np.ma.masked:
        raise DataError("label is empty", path=path, index=row)
    if isinstance(value, bytes):
        value = value.decode()
    names = records.CLASS_NAMES
    if isinstance(value, str):  # np.str_ too
        value = str(value)
        text = value.strip().lower()
        if text in names:
            return names.index(text)
        if not text.lstrip("-").isdigit():
            raise DataError(f"unknown class {value!r}; valid: {', '.join(names)} "
                            f"(or 0..{len(names) - 1})", path=path, index=row)
        value = int(text)
    if not float(value).is_integer() or not 0 <= int(value) < len(names):
        raise DataError(f"label {value!r} is not a class index 0..{len(names) - 1} "
                        f"({', '.join(names)})", path=path, index=row)
    return int(value)


def _parse_split(text, path, row):
    split = SPLIT_ALIASES.get(text.lower())
    if split is None:
        raise DataError(f"unknown split {text!r}; valid: {', '.join(records.SPLITS)}",
                        path=path, index=row)
    return split


def _galaxy_ids(table, path):
    if "galaxy_id" not in table.colnames:
        return np.arange(len(table), dtype=np.int64)
    ids = []
    for row in range(len(table)):
        value = _cell(table, "galaxy_id", row, path)
        try:
            ids.append(int(value))
        except (TypeError, ValueError):
            raise DataError(f"galaxy_id {value!r} is not an integer", path=path,
                            index=row) from None
    ids = np.array(ids, dtype=np.int64)
    _, first, counts = np.unique(ids, return_index=True, return_counts=True)
    if np.any(counts > 1):
        dup = ids[first[counts > 1][0]]
        row = int(np.flatnonzero(ids == dup)[1])
        raise DataError(f"duplicate galaxy_id {dup}", path=path, index=row)
    return ids


def stratified_split(labels, fractions, seed):
    """Split names per row: within each class, a seeded permutation cut by `fractions`."""
    fractions = np.asarray(fractions, dtype=np.float64)
    if (fractions.shape != (len(records.SPLITS),) or np.any(fractions < 0)
            or not np.isclose(fractions.sum(), 1.0) or fractions[0] <= 0):
        raise ConfigError(f"split_fractions must be three non-negative train,val,test "
                          f"fractions summing to 1 with train > 0; received "
                          f"{fractions.tolist()}", key="split_fractions")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    out = np.empty(len(labels), dtype=object)
    for c in range(len(records.CLASS_NAMES)):
        members = rng.permutation(np.flatnonzero(labels == c))
        bounds = np.round(np.cumsum(fractions) * len(members)).astype(int)
        for split, part in zip(records.SPLITS, np.split(members, bounds[:-1])):
            out[part] = split
    return out.astype(str)


def read_cutout(path, row):
    """One FITS cutout as an H x W x 3 float32 array (bands g, r, i)."""
    from astropy.io import fits
    if not os.path.exists(path):
        raise DataError("cutout file does not exist", path=path, index=row)
    try:
        with fits.open(path, memmap=False) as hdus:
            planes = [(hdu, np.asarray(hdu.data)) for hdu in hdus
                      if hdu.is_image and hdu.data is not None]
            bands = [_hdu_band(hdu) for hdu, _ in planes]
    except OSError as e:
        raise DataError(f"unreadable FITS file: {e}", path=path, index=row) from None
    if len(planes) == 1 and planes[0][1].ndim == 3:
        cube = planes[0][1]
        if cube.shape[0] != len(survey.BANDS):
            raise DataError(f"3-D image has shape {cube.shape}, expected "
                            f"{len(survey.BANDS)} x H x W (bands {survey.BANDS})",
                            path=path, index=row)
        return np.moveaxis(cube, 0, -1).astype(np.float32)
    if any(data.ndim != 2 for _, data in planes) or sorted(map(str, bands)) != sorted(survey.BANDS):
        found = [(b, data.shape) for b, (_, data) in zip(bands, planes)]
        raise DataError(f"expected one 3 x H x W image or three 2-D images named "
                        f"{survey.BANDS} (EXTNAME, BAND or FILTER); found (band, shape) "
                        f"{found}", path=path, index=row)
    by_band = {b: data for b, (_, data) in zip(bands, planes)}
    shapes = {data.shape for data in by_band.values()}
    if len(shapes) > 1:
        raise DataError(f"band images differ in shape: {sorted(shapes)}", path=path, index=row)
    return np.stack([by_band[b] for b in survey.BANDS], axis=-1).astype(np.float32)


def _hdu_band(hdu):
    for value in (hdu.name, hdu.header.get("BAND"), hdu.header.get("FILTER")):
        if isinstance(value, str) and value.strip().lower() in survey.BANDS:
            return value.strip().lower()
    return None
