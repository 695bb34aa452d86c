"""A trained model's final evaluation: predicted once, saved in its run, reused by the study.

`tfgal-train` ends by running the exported classifier over the val and test splits at the
source and target depths (`evaluate`), one pass per split and depth giving every galaxy's
probabilities and latent (`predict_split`). The summary's accuracies are computed from
those arrays (`accuracies`), and ``predictions.npz`` in the run directory keeps them, so
that the study's ``evaluate`` stage, which measures the same galaxies at the same depths,
reads them back (`lookup`) instead of predicting them again.

``predictions.npz`` (written atomically, `tfgal.io.write_npz`) holds, for each evaluated
split and depth, ``<split>/<depth>/galaxy_id`` [N] int64, ``.../labels`` [N] int32,
``.../probabilities`` [N, K] float32 and ``.../latent`` [N, D] float32: the split's
galaxies in file order. Its ``settings`` entry is a JSON string of what determines them:
``model`` (the export's `tfgal.model.export.fingerprint`: its graph and weights),
``data`` (dataset root, digest of its manifest, the stretch in use), ``seed`` and
``noise_mode`` (the per-galaxy noise), ``batch_size``, ``platform`` (library versions and
device kind) and ``entries`` ({"<split>/<depth>": {"split", "depth", "n"}}).

Staleness: `lookup` returns saved arrays only when every one of those settings equals what
the caller would compute with now, so a retrained model, a rebuilt dataset or another
seed never reuses them. The first `n` galaxies of a split are sliced from saved rows only
where the batches line up (n a multiple of the batch size, or all the rows): a model's
output for a galaxy can differ in the last bit with the size of the batch it ran in
(measured: a batch of one against a batch of 256, on CPU), and reuse must give exactly
the bits a fresh prediction would.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile

import numpy as np

from tfgal import io
from tfgal.data import manifest as manifest_lib
from tfgal.data import pipeline
from tfgal.errors import DataError
from tfgal.model import export

__all__ = ["PREDICTIONS", "BATCH_SIZE", "FORMAT", "FIELDS", "predict_split", "settings",
           "evaluate", "accuracies", "lookup"]

PREDICTIONS = "predictions.npz"
BATCH_SIZE = 256
FORMAT = 1
FIELDS = ("galaxy_id", "labels", "probabilities", "latent")


def predict_split(models, data, split, depth, *, n=None, seed=0, noise_mode="fast",
                  batch_size=BATCH_SIZE, latent=True, corruption=None):
    """Runs every model of `models` ({name: ExportedClassifier}) over a split at a depth.

    Images are streamed batch by batch (the paper's test split at 100 px is 0.8 GB per
    depth) and each batch is shared by all models, so the noise is drawn once. `n`: the
    split's first n galaxies only (only those are observed). `corruption`: a
    `tfgal.data.corruptions.Plan` (a sweep yields each galaxy once per severity).
    Returns {"labels", "galaxy_id" (and "severity" with a `corruption`), name:
    {"probabilities", "latent"}} of NumPy arrays.
    """
    ds = pipeline.make_dataset(data, split, depth, batch_size=batch_size, seed=seed,
                               noise_mode=noise_mode, with_ids=True, corruption=corruption,
                               limit=int(n) if n else None)
    keys = ("probabilities", "latent") if latent else ("probabilities",)
    meta = ("labels", "galaxy_id", *(("severity",) if corruption is not None else ()))
    parts = {**{k: [] for k in meta}, **{m: {k: [] for k in keys} for m in models}}
    for batch in ds:
        for k in meta:
            parts[k].append(batch[k].numpy())
        for name, model in models.items():
            out = model(batch["images"])
            for k in keys:
                parts[name][k].append(out[k].numpy())
    if not parts["labels"]:
        raise DataError(f"split {split!r} holds no galaxies", index=split)
    return {key: ({k: np.concatenate(v) for k, v in value.items()} if isinstance(value, dict)
                  else np.concatenate(value)) for key, value in parts.items()}


def _device():
    import tensorflow as tf
    return "GPU" if tf.config.list_logical_devices("GPU") else "CPU"


def settings(export_dir, manifest, *, seed, noise_mode, batch_size=BATCH_SIZE):
    """What predictions of the model at `export_dir` on `manifest` depend on, JSON-safe
    (the ``settings`` of ``predictions.npz`` less its ``entries``)."""
    with open(os.path.join(manifest.root, manifest_lib.MANIFEST_NAME), "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    out = {"format": FORMAT, "model": export.fingerprint(export_dir),
           "data": {"root": os.path.abspath(manifest.root), "manifest": digest,
                    "stretch": manifest.stretch},
           "seed": int(seed), "noise_mode": noise_mode, "batch_size": int(batch_size),
           "platform": {"versions": export.library_versions(), "device": _device()}}
    return json.loads(json.dumps(out))  # tuples as lists: equal to what is read back


def evaluate(classifier, export_dir, manifest, splits, depths, *, seed, noise_mode,
             path=None):
    """`classifier` (the model exported at `export_dir`) over each split of `splits` at each
    depth of `depths`: {split: {depth: {FIELDS: array}}}, written to `path` if given."""
    out, entries = {}, {}
    with pipeline.naming_corrupt_records(manifest, list(splits)):
        for split in splits:
            out[split] = {}
            for depth in map(str, depths):
                if manifest.count(split):
                    pred = predict_split({"model": classifier}, manifest, split, depth,
                                         seed=seed, noise_mode=noise_mode)
                    arrays = {"galaxy_id": pred["galaxy_id"], "labels": pred["labels"],
                              **pred["model"]}
                else:  # nothing to predict: empty arrays of the usual types
                    arrays = {"galaxy_id": np.zeros((0,), np.int64),
                              "labels": np.zeros((0,), np.int32),
                              "probabilities": np.zeros((0, classifier.n_classes), np.float32),
                              "latent": np.zeros((0, classifier.latent_dim), np.float32)}
                out[split][depth] = arrays
                entries[f"{split}/{depth}"] = {"split": split, "depth": depth,
                                               "n": int(len(arrays["labels"]))}
    if path is not None:
        saved = {**settings(export_dir, manifest, seed=seed, noise_mode=noise_mode),
                 "entries": entries}
        io.write_npz(path, {"settings": np.array(json.dumps(saved)),
                            **{f"{split}/{depth}/{k}": v
                               for split, by_depth in out.items()
                               for depth, arrays in by_depth.items()
                               for k, v in arrays.items()}})
    return out


def accuracies(by_depth):
    """{depth: accuracy} of `evaluate`'s arrays for one split (NaN for an empty split)."""
    return {depth: (float(np.mean(np.argmax(a["probabilities"], 1) == a["labels"]))
                    if len(a["labels"]) else float("nan"))
            for depth, a in by_depth.items()}


def lookup(path, export_dir, manifest, split, depths, *, n=None, seed, noise_mode,
           batch_size=BATCH_SIZE):
    """Saved predictions of the model at `export_dir` on the first `n` galaxies (None or 0:
    all) of `split` at each depth of `depths`, exactly as `predict_split` would give them
    now: {depth: {FIELDS: array}}; None when `path` is missing, unreadable or was computed
    with any other setting (see the module docstring)."""
    if not os.path.exists(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            saved = json.loads(str(f["settings"]))
            expected = settings(export_dir, manifest, seed=seed, noise_mode=noise_mode,
                                batch_size=batch_size)
            if {k: saved.get(k) for k in expected} != expected:
                return None
            count = manifest.count(split)
            want = count if not n else min(int(n), count)
            out = {}
            for depth in map(str, depths):
                key = f"{split}/{depth}"
                entry = saved.get("entries", {}).get(key)
                if not isinstance(entry, dict) or (entry.get("split"), entry.get("depth")) \
                        != (split, depth):
                    return None
                have = int(entry["n"])
                if want > have or (want != have and want % batch_size):
                    return None  # the batches would not line up
                arrays = {k: f[f"{key}/{k}"] for k in FIELDS}
                if any(len(v) != have for v in arrays.values()):
                    return None
                out[depth] = {k: v[:want] for k, v in arrays.items()}
            return out
    except (OSError, ValueError, KeyError, TypeError, AttributeError, zipfile.BadZipFile):
        return None
