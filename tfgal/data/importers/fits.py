"""Importer of tables of FITS cutouts (see `import_fits`).

It writes a tfgal dataset through `writer.DatasetWriter`, so an import that fails
part-way leaves nothing behind. The manifest's generator entry is named
``"tfgal.importers.fits"``: it identifies the importer in existing datasets, whatever
module holds the code.
"""

from __future__ import annotations

import os

import numpy as np

from tfgal import io, locks, progress, survey
from tfgal.data import stretch as stretch_lib
from tfgal.data.codec import check_image
from tfgal.data.manifest import CLASS_NAMES, DEFAULT_SHARD_SIZE, FLUX, SPLITS
from tfgal.data.writer import DatasetWriter
from tfgal.errors import ConfigError, DataError

__all__ = ["GENERATOR_NAME", "SPLIT_ALIASES", "import_fits", "read_table", "stratified_split",
           "read_cutout"]

GENERATOR_NAME = "tfgal.importers.fits"  # stored in manifests: keep it
SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test"}


def import_fits(table, out, *, depth=None, seed=0, split_fractions=(0.7, 0.1, 0.2),
                shard_size=DEFAULT_SHARD_SIZE, compression="GZIP", overwrite=False):
    """Imports FITS cutouts listed in a table into dataset `out`.

    The table (CSV or FITS, anything `astropy.table.Table.read` reads) has columns
    ``file`` (cutout path, relative to the table's directory), ``label`` (a class name
    from `manifest.CLASS_NAMES` or its index), optionally ``split`` (train / val / test;
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
      shard_size, compression, overwrite: as in `writer.DatasetWriter`.

    The stretch is fitted on up to `stretch.STRETCH_SAMPLE` train cutouts (noise at Y10
    added first when noiseless). Returns the `manifest.Manifest` of the new dataset.
    """
    table = os.path.abspath(os.fspath(table))
    depth = None if depth is None else survey.Depth.parse(depth)
    # Locked and checked before reading the table: a busy or existing `out` is refused at once.
    with locks.hold(out):
        io.refuse_existing(out, overwrite)
        return _import_fits(table, out, depth, seed, split_fractions, shard_size,
                            compression, overwrite)


def _import_fits(table, out, depth, seed, split_fractions, shard_size, compression,
                 overwrite):
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
    sample_rows = {int(train_rows[i]) for i in stretch_lib.sample_rows(len(train_rows))}
    name = FLUX if depth is None else depth.name
    desc = ({"noise": False, "depth": None, "units": "e-/s"} if depth is None else
            {"noise": True, "depth": depth.to_json(), "units": "as in the cutouts"})
    base = os.path.dirname(table)
    first = read_cutout(os.path.join(base, rows["file"][0]), 0)
    shape, sample = first.shape, []
    with DatasetWriter(out, images={name: desc}, image_shape=shape,
                       shard_size=shard_size, compression=compression,
                       overwrite=overwrite, source=table, lock=False) as writer:
        with progress.bar(len(splits), "import-fits", enabled=None) as bar:
            for row in range(len(splits)):
                path = os.path.join(base, rows["file"][row])
                image = first if row == 0 else read_cutout(path, row)
                image = check_image(image, noiseless=depth is None, shape=shape,
                                    where=(path, row))
                writer.add(str(splits[row]), {name: image}, rows["label"][row],
                           int(rows["galaxy_id"][row]), index=row)
                if row in sample_rows:
                    sample.append(image)
                bar.update()
        params = stretch_lib.fit(np.stack(sample), noiseless=depth is None,
                                 depth=depth or survey.Y10)
        generator = {"name": GENERATOR_NAME, "source": table,
                     "depth": None if depth is None else depth.to_json(),
                     "split_from": split_from, "seed": int(seed),
                     "split_fractions": [float(f) for f in split_fractions]}
        return writer.finish(stretch=params, generator=generator)


def read_table(path, require_label=True):
    """Reads the label table: {"file", "label", "split"?, "galaxy_id"} as NumPy arrays.

    Labels become class indices, splits tfgal split names; errors name the row. With
    `require_label` False (tables of galaxies to classify) the label column is optional:
    without it the result has no "label" key.
    """
    from astropy.table import Table
    if not os.path.exists(path):
        raise DataError("label table does not exist", path=path)
    fmt = "ascii.csv" if path.lower().endswith(".csv") else None
    try:
        table = Table.read(path, format=fmt) if fmt else Table.read(path)
    except Exception as e:  # astropy raises many types for unreadable tables
        raise DataError(f"cannot read the label table: {e}", path=path) from None
    for column in ("file", "label") if require_label else ("file",):
        if column not in table.colnames:
            raise DataError(f"label table lacks required column {column!r}; it has "
                            f"{table.colnames}", path=path, index=column)
    if len(table) == 0:
        raise DataError("label table has no rows", path=path)
    rows = {"file": [_cell_text(table, "file", i, path) for i in range(len(table))]}
    if "label" in table.colnames:
        rows["label"] = np.array([_parse_label(table["label"][i], path, i)
                                  for i in range(len(table))], dtype=np.int64)
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
    names = CLASS_NAMES
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
        raise DataError(f"unknown split {text!r}; valid: {', '.join(SPLITS)}",
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
    if (fractions.shape != (len(SPLITS),) or np.any(fractions < 0)
            or not np.isclose(fractions.sum(), 1.0) or fractions[0] <= 0):
        raise ConfigError(f"split_fractions must be three non-negative train,val,test "
                          f"fractions summing to 1 with train > 0; received "
                          f"{fractions.tolist()}", key="split_fractions")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    out = np.empty(len(labels), dtype=object)
    for c in range(len(CLASS_NAMES)):
        members = rng.permutation(np.flatnonzero(labels == c))
        bounds = np.round(np.cumsum(fractions) * len(members)).astype(int)
        for split, part in zip(SPLITS, np.split(members, bounds[:-1])):
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
