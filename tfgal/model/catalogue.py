"""Catalogues of predictions: the table, its formats, its scores (no TensorFlow).

`catalogue` turns the parts `predict.predict_batches` yields into an ``astropy.table``;
`write_catalogue` writes it in the format its extension names (`FORMATS`); `scores` gives
the accuracy and the confusion matrix of a labelled catalogue (scikit-learn's), which
``tfgal-predict`` puts in its summary; `describe` says it in a few lines for stderr.

Formats: FITS, Parquet and ECSV (astropy's text format: comma-separated columns under a
YAML header) keep a latent vector column and the metadata. Plain CSV has neither: the
latent becomes columns ``latent_0 .. latent_{D-1}`` and the metadata are not written (a
``# KEY = value`` comment makes astropy's and pandas' default CSV readers take it for the
header). Parquet is read back by astropy through pandas, so it needs both pyarrow and
pandas (the ``parquet`` extra), checked before any work.
"""

from __future__ import annotations

import os

import numpy as np

from tfgal import io
from tfgal.errors import ConfigError

__all__ = ["FORMATS", "DEFAULT_BATCH_SIZE", "DEFAULT_SPLIT", "catalogue", "output_format",
           "write_catalogue", "scores", "describe"]

FORMATS = {".fits": "fits", ".parquet": "parquet", ".ecsv": "ascii.ecsv",  # extension ->
           ".csv": "ascii.csv"}  # astropy format
DEFAULT_BATCH_SIZE = 256
DEFAULT_SPLIT = "test"


def _concatenate(parts, key, width):
    if not parts:
        return np.zeros((0, width) if width else (0,), np.float32)
    return np.concatenate([p[key] for p in parts])


def catalogue(parts, names, *, label_names=None, meta=None):
    """The catalogue (an `astropy.table.Table`) of `predict_batches`' parts.

    Columns: galaxy_id, true_class (when the parts have labels and `label_names` are
    given), p_<class> per class of `names`, predicted_class, latent (when predicted).
    `meta` goes into ``table.meta`` with NGAL and CLASSES added.
    """
    from astropy.table import Table
    parts = list(parts)
    probabilities = _concatenate(parts, "probabilities", len(names))
    table = Table()
    table["galaxy_id"] = _concatenate(parts, "galaxy_id", 0).astype(np.int64)
    if label_names is not None and parts and "labels" in parts[0]:
        labels = _concatenate(parts, "labels", 0).astype(np.int64)
        table["true_class"] = np.asarray(label_names, dtype=str)[labels]
    for k, name in enumerate(names):
        table[f"p_{name}"] = probabilities[:, k].astype(np.float32)
    table["predicted_class"] = np.asarray(names, dtype=str)[np.argmax(probabilities, axis=1)]
    if parts and "latent" in parts[0]:
        table["latent"] = np.concatenate([p["latent"] for p in parts]).astype(np.float32)
    table.meta.update(meta or {})
    table.meta.update(NGAL=len(table), CLASSES=",".join(names))
    return table


def output_format(path):
    """The astropy format of an output path, from its extension (see `FORMATS`)."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in FORMATS:
        raise ConfigError(f"cannot write a catalogue to {path}: unknown extension {ext!r}",
                          key="out", valid=list(FORMATS))
    if FORMATS[ext] == "parquet":
        missing = [m for m in ("pyarrow", "pandas") if not _importable(m)]
        if missing:
            raise ConfigError(
                f"cannot write {path}: Parquet needs pyarrow to write and pandas to read "
                f"back with astropy's Table.read, and {' and '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not installed (pip install -e "
                "'.[parquet]'); or write .fits or .ecsv", key="out",
                valid=[e for e in FORMATS if e != ".parquet"])
    return FORMATS[ext]


def _importable(module):
    import importlib.util
    return importlib.util.find_spec(module) is not None


def _csv_table(table):
    """Plain CSV has no metadata nor vector cells (see the module docstring): metadata
    are dropped, vector columns become one column per element."""
    flat = table.copy(copy_data=False)
    for name in [n for n in flat.colnames if flat[n].ndim > 1]:
        position = flat.colnames.index(name)
        column = flat[name]
        flat.remove_column(name)
        for k in range(column.shape[1]):
            flat.add_column(np.asarray(column[:, k]), name=f"{name}_{k}", index=position + k)
    flat.meta = {}
    return flat


def write_catalogue(table, path):
    """Writes `table` to `path` atomically, in the format its extension names."""
    fmt, options = output_format(path), {}
    if fmt == "ascii.csv":
        table = _csv_table(table)
    elif fmt == "ascii.ecsv":
        options["delimiter"] = ","
    with io.atomic_path(path) as tmp:
        table.write(tmp, format=fmt, overwrite=True, **options)
    return os.path.abspath(path)


def scores(table, names):
    """Accuracy and confusion matrix of a catalogue with a ``true_class`` column, else None.

    Returns {"accuracy", "n_labelled", "confusion": {"classes", "rows": true class,
    "columns": predicted class, "counts"}, "recall": per class}.
    """
    if "true_class" not in table.colnames or len(table) == 0:
        return None
    from sklearn.metrics import accuracy_score, confusion_matrix
    true = np.asarray(table["true_class"], dtype=str)
    predicted = np.asarray(table["predicted_class"], dtype=str)
    labels = list(names)
    counts = confusion_matrix(true, predicted, labels=labels)
    support = counts.sum(axis=1)
    return {
        "accuracy": float(accuracy_score(true, predicted)),
        "n_labelled": int(len(true)),
        "confusion": {"classes": labels, "rows": "true class", "columns": "predicted class",
                      "counts": counts.astype(int).tolist()},
        "recall": {n: (float(counts[k, k] / support[k]) if support[k] else None)
                   for k, n in enumerate(labels)},
    }


def describe(summary):
    """A catalogue summary's lines for a person: what was written, and its scores."""
    lines = [f"wrote {summary['out']}: {summary['n_galaxies']} galaxies, {summary['split']} "
             f"split at {summary['depth']}, model {summary['model']}"]
    found = summary.get("scores")
    if found:
        names = found["confusion"]["classes"]
        first = max(len(n) for n in names + ["true \\ predicted"]) + 2
        width = max(len(n) for n in names) + 2
        lines.append(f"accuracy {100 * found['accuracy']:.1f}% of {found['n_labelled']} "
                     "labelled galaxies; confusion matrix (rows: true class, columns: "
                     "predicted):")
        lines.append("true \\ predicted".ljust(first) + "".join(n.rjust(width) for n in names))
        for name, row in zip(names, found["confusion"]["counts"]):
            lines.append(name.ljust(first) + "".join(str(c).rjust(width) for c in row))
    else:
        counts = ", ".join(f"{n} {c}" for n, c in summary.get("class_counts", {}).items())
        lines.append(f"predicted classes: {counts} (no labels: no accuracy)")
    return lines
