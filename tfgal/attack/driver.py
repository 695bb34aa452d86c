"""Attacks on a dataset, and their tables and summaries: `tfgal-attack`'s work.

`attack_dataset` attacks the first galaxies of a split at the base depth with
`tfgal.attack.OnePixelAttack` and writes, atomically, a per-attack table (``attack.csv``)
and a summary (``attack.json``) with the latent distances from each base image to its
attacked version and to the same galaxy at a noisier depth.
"""

from __future__ import annotations

import os
import time

import numpy as np
import tensorflow as tf

from tfgal.model import export
from tfgal import io
from tfgal.attack.summary import describe
from tfgal.attack import OnePixelAttack
from tfgal.errors import ConfigError, DataError


# --------------------------------------------------------------------------- reports


def latent_distances(model, base, other, batch_size=256):
    """Euclidean distances between the latents of `base` and `other` (an `ExportedClassifier`)."""
    a = model.predict(base, batch_size)["latent"]
    b = model.predict(other, batch_size)["latent"]
    return np.linalg.norm(b - a, axis=1)


def table(result, *, galaxy_id=None, bands=None, extra=None):
    """Per-image rows (dicts) of `result`; `extra` maps column -> [N] values."""
    bands = bands or [f"b{c}" for c in range(result.values.shape[2])]
    rows = []
    for i in range(result.n):
        row = {"index": i, "galaxy_id": "" if galaxy_id is None else int(galaxy_id[i]),
               "label": int(result.labels[i]),
               "target": int(result.targets[i]) if result.targets[i] >= 0 else "",
               "success": bool(result.success[i]), "already_adversarial": bool(result.already[i]),
               "generations": int(result.generations[i]), "queries": int(result.queries[i])}
        for name in ("original_class", "original_prob", "original_score",
                     "final_class", "final_prob", "final_score"):
            value = getattr(result, name)[i]
            row[name] = int(value) if name.endswith("class") else float(value)
        row.update(_pixel_columns(result, i, bands))
        for name, values in (extra or {}).items():
            row[name] = "" if not np.isfinite(values[i]) else float(values[i])
        rows.append(row)
    return rows


def _pixel_columns(result, i, bands):
    row = {}
    for j in range(result.pixels.shape[1]):
        row[f"pixel{j}_x"], row[f"pixel{j}_y"] = (int(v) for v in result.pixels[i, j])
        for b, band in enumerate(bands):
            v = result.values[i, j, b]
            row[f"pixel{j}_{band}"] = "" if np.isnan(v) else float(v)
    return row


# --------------------------------------------------------------------------- datasets

TABLE_NAME = "attack.csv"
SUMMARY_NAME = "attack.json"


def attack_dataset(model, data, out, *, split="test", n=150, base_depth="Y10",
                   noisy_depth="Y1", target="all", data_seed=0, progress=True, **settings):
    """Attacks the first `n` galaxies of a split at `base_depth`; writes a table and a summary.

    Args:
      model: path of an exported SavedModel (or an `ExportedClassifier`).
      data: dataset directory; images are stretched with the model's own stretch when its
        assets hold one.
      out: directory receiving ``attack.csv`` (one row per attack) and ``attack.json``,
        each written atomically.
      target: targeted mode only ("targeted" in `settings`): "all" (every other class, one
        row each), "next" (label + 1) or a class index.
      settings: `OnePixelAttack` keyword arguments.
    Returns:
      the summary dict.
    """
    from tfgal.data import pipeline
    start = time.perf_counter()
    exported = model if isinstance(model, export.ExportedClassifier) else export.load(model)
    stretch = exported.assets.get("stretch")
    base = pipeline.load_arrays(data, split, base_depth, n=n, seed=data_seed, stretch=stretch)
    noisy = pipeline.load_arrays(data, split, noisy_depth, n=n, seed=data_seed, stretch=stretch)
    if not np.array_equal(base["galaxy_id"], noisy["galaxy_id"]):
        raise DataError(f"{base_depth} and {noisy_depth} images of split {split} are not the "
                        f"same galaxies in the same order", path=str(data))
    rows, targets = attack_rows(base["labels"], exported.n_classes, target,
                                settings.get("targeted", False))
    attack = OnePixelAttack(exported, **settings)
    images = base["images"][rows]
    with _Progress(len(rows), progress) as callback:
        result = attack.attack(images, base["labels"][rows], targets, callback=callback)
    d_attack = np.where(result.success, latent_distances(exported, images, result.images), np.nan)
    d_galaxy = latent_distances(exported, base["images"], noisy["images"])
    d_noisy = d_galaxy[rows]
    bands = exported.assets.get("bands")
    table_rows = table(result, galaxy_id=base["galaxy_id"][rows], bands=bands, extra={
        "latent_distance_attack": d_attack, "latent_distance_noisy": d_noisy})
    summary = _summary(result, exported, data, split, base_depth, noisy_depth, target,
                       d_attack, d_galaxy, n_galaxies=len(base["labels"]))
    summary["seconds_total"] = time.perf_counter() - start
    os.makedirs(out, exist_ok=True)
    io.write_csv(os.path.join(out, TABLE_NAME), table_rows)
    io.write_json(os.path.join(out, SUMMARY_NAME), summary)
    return summary


def attack_rows(labels, n_classes, target, targeted):
    """Which images to attack and towards what: (row indices, targets or None)."""
    labels = np.asarray(labels)
    rows = np.arange(len(labels))
    if not targeted:
        return rows, None
    if target == "all":
        pairs = [(i, t) for i in rows for t in range(n_classes) if t != labels[i]]
        return np.array([p[0] for p in pairs], int), np.array([p[1] for p in pairs], np.int32)
    if target == "next":
        return rows, ((labels + 1) % n_classes).astype(np.int32)
    try:
        cls = int(target)
    except (TypeError, ValueError):
        raise ConfigError(f"unknown target {target!r}", key="target",
                          valid=("all", "next", *range(n_classes))) from None
    if not 0 <= cls < n_classes:
        raise ConfigError(f"target class {cls} out of range", key="target", valid=range(n_classes))
    rows = rows[labels != cls]
    return rows, np.full(len(rows), cls, np.int32)


class _Progress:
    """A tqdm bar of images done and successes; yields the attack's callback."""

    def __init__(self, total, enabled):
        self.total, self.enabled, self.bar, self.successes = total, enabled, None, 0

    def __enter__(self):
        if not self.enabled:
            return None
        from tqdm import tqdm
        self.bar = tqdm(total=self.total, unit="image", desc="attack")
        return self.update

    def update(self, indices, successes):
        self.successes += int(np.sum(successes))
        self.bar.update(len(indices))
        self.bar.set_postfix(successes=self.successes)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
        return False


def _summary(result, exported, data, split, base_depth, noisy_depth, target, d_attack,
             d_noisy, *, n_galaxies):
    won = result.success
    return {
        "model": os.path.abspath(exported.path), "data": os.path.abspath(os.fspath(data)),
        "split": split, "depths": {"base": base_depth, "noisy": noisy_depth},
        "n_galaxies": n_galaxies, "n_attacks": result.n,
        "target": target if result.settings["targeted"] else None,
        "settings": result.settings,
        "success_rate": result.success_rate, "n_success": int(won.sum()),
        "n_already_adversarial": int(result.already.sum()),
        "queries": {"total": int(result.queries.sum()), "mean": float(result.queries.mean()),
                    "mean_success": float(result.queries[won].mean()) if won.any() else None},
        "generations_mean_success": float(result.generations[won].mean()) if won.any() else None,
        "seconds": result.seconds, "attacks_per_second": result.n / max(result.seconds, 1e-9),
        "device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU",
        "latent_distance": {"attack": describe(d_attack), "noisy": describe(d_noisy)},
        "files": {"table": TABLE_NAME},
        "versions": export.library_versions(),
    }
