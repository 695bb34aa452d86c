"""Attacks on a dataset: the one driver behind `tfgal-attack` and the study's attack stages.

`attack_galaxies` loads the first galaxies of a split at a base depth and the same galaxies
at a noisier depth, and predicts the base images once. Only the galaxies the model
classifies correctly at the base depth are attacked (as Su et al. and the study do):
pushing a misclassified galaxy's true-class probability down is no adversarial success.
The misclassified ones are counted apart, never attacked, never in success rates or
distances. It attacks the correct ones with `OnePixelAttack`, computes each image set's
latents once, and from them the latent distances (the only place they are computed):
base -> attacked image and base -> the same galaxy at the noisy depth. It returns an
`AttackRun` whose ``summary`` is `summary.summarize`. `table` gives its per-attack rows;
`attack_dataset` (``tfgal-attack``) writes them as ``attack.csv`` (classes by name) and the
summary, with the run's context, as ``attack.json``, and with ``figure=True`` a figure of the
attacked galaxies (`tfgal.attack.figure`), each atomically.
"""

from __future__ import annotations

import dataclasses
import os
import time
import types

import numpy as np
import tensorflow as tf

from tfgal import io, locks
from tfgal.attack import figure as figure_lib
from tfgal.attack.bounds import resolve_value_range
from tfgal.attack.one_pixel import OnePixelAttack
from tfgal.attack.results import AttackResult
from tfgal.attack.summary import describe, outcomes, summarize
from tfgal.data.manifest import Manifest
from tfgal.errors import ConfigError, DataError
from tfgal.model import export
from tfgal.progress import bar as progress_bar

__all__ = ["AttackRun", "attack_galaxies", "attack_rows", "table", "attack_dataset",
           "check_n", "class_names", "TABLE_NAME", "SUMMARY_NAME", "FIGURE_NAME",
           "OUTPUT_NAMES"]

TABLE_NAME = "attack.csv"
SUMMARY_NAME = "attack.json"
FIGURE_NAME = figure_lib.FIGURE_NAME
# what makes `out` an existing output; refused, and replaced, together
OUTPUT_NAMES = (SUMMARY_NAME, TABLE_NAME, FIGURE_NAME)
CLASS_COLUMNS = ("label", "target", "original_class", "final_class")  # named in the table
LATENT_BATCH = 256  # images per model call when computing latents


@dataclasses.dataclass
class AttackRun:
    """Attacks on the correctly classified galaxies among the first ones of a split, with
    their latents and distances.

    G galaxies are loaded; N attacks are run on the correct ones (untargeted, one per
    correct galaxy; targeted, one per correct galaxy and target class). Latents and
    distances are indexed like the attacks.
    """

    galaxy_id: np.ndarray  # [G] ids of the galaxies loaded (the first n of the split)
    labels: np.ndarray  # [G]
    images: np.ndarray  # [G, H, W, C] base-depth images, stretched (what the model takes)
    rows: np.ndarray  # [N] galaxy of each attack (== flatnonzero(correct) untargeted)
    result: AttackResult  # the N attacks
    latents: dict  # "base", "attacked", "noisy" -> [N, D]
    d_attack: np.ndarray  # [N] |latent attacked - latent base|, NaN where the attack failed
    d_noisy: np.ndarray  # [N] |latent noisy - latent base|
    summary: dict  # summary.summarize(result, d_attack, d_noisy, n_galaxies=, n_correct=)
    seconds: float  # the whole run: loading, attack, latents
    # [G] |latent noisy - latent base| of every galaxy loaded, attacked or not (a targeted
    # run towards one class skips the galaxies of that class; misclassified ones are kept
    # here, `correct` selects the others).
    d_noisy_galaxies: np.ndarray = None
    predicted: np.ndarray = None  # [G] the model's class of each base-depth image
    correct: np.ndarray = None  # [G] bool, predicted == label: the galaxies attacked
    # [N] |latent returned - latent base| of every attack, failed ones included: the image
    # each returned (its best candidate on a failure), whatever rule reads the outcome
    d_returned: np.ndarray = None
    class_names: tuple = None  # the model's (else the dataset's) names of the classes
    # "base", "returned": [N, n_classes] probabilities of each attack's image before and of
    # the image it returned (what the figure draws)
    probabilities: dict = None

    @property
    def misclassified_ids(self):
        """Ids of the galaxies loaded but not attacked: misclassified at the base depth."""
        return self.galaxy_id[~self.correct]


def attack_galaxies(model, data, *, split="test", n=150, base_depth="Y10", noisy_depth="Y1",
                    data_seed=0, noise_mode="fast", target="all", progress=True, desc="attack",
                    **settings):
    """Attacks the galaxies among the first `n` of a split that the model classifies
    correctly at `base_depth`; returns an `AttackRun`.

    A galaxy is correct when the argmax of its base-depth prediction is its label; the
    others are only counted (``AttackRun.correct``, the summary's ``n_misclassified``).
    With no correct galaxy the result is empty and the success rate None.

    Args:
      model: path of an exported SavedModel, or an `ExportedClassifier`.
      data: dataset directory or `Manifest`; images are stretched with the model's own
        stretch when its assets hold one.
      noisy_depth: depth of the same galaxies for the base -> noisy latent distance.
      data_seed, noise_mode: the images' noise (`pipeline.load_arrays`).
      target: targeted mode only ("targeted" in `settings`): "all" (every other class, one
        attack each), "next" (label + 1) or a class index.
      progress, desc: a progress bar of attacks done, successes as its postfix.
      settings: `OnePixelAttack` keyword arguments (``init``, ``evaluator``, ...).
    """
    from tfgal.data import pipeline
    start = time.perf_counter()
    manifest = _manifest(data)
    exported = model if isinstance(model, export.ExportedClassifier) else export.load(model)
    kw = dict(n=n, seed=data_seed, noise_mode=noise_mode, stretch=exported.assets.get("stretch"))
    base = pipeline.load_arrays(manifest, split, base_depth, **kw)  # the manifest read once
    noisy = pipeline.load_arrays(manifest, split, noisy_depth, **kw)
    if not np.array_equal(base["galaxy_id"], noisy["galaxy_id"]):
        raise DataError(f"{base_depth} and {noisy_depth} images of split {split} are not the "
                        f"same galaxies in the same order", path=_data_path(data))
    # One pass over the base images: who is attacked, and their latents.
    clean = _predict(exported, base["images"])
    predicted = clean["probabilities"].argmax(axis=1).astype(np.int32)
    correct = predicted == base["labels"]
    rows, targets = attack_rows(base["labels"], exported.n_classes, target,
                                settings.get("targeted", False), correct=correct)
    attack = OnePixelAttack(exported, **settings)
    if len(rows):
        with progress_bar(len(rows), desc, unit="image", enabled=progress) as bar:
            won = [0]

            def callback(indices, successes):
                won[0] += int(np.sum(successes))
                bar.update(len(indices), successes=won[0])
            result = attack.attack(base["images"][rows], base["labels"][rows], targets,
                                   callback=callback)
    else:  # the attack refuses zero images
        result = _empty_result(attack, base["images"])
    galaxy = {"base": clean["latent"], "noisy": _predict(exported, noisy["images"])["latent"]}
    returned = _predict(exported, result.images)
    latents = {"base": galaxy["base"][rows], "attacked": returned["latent"],
               "noisy": galaxy["noisy"][rows]}
    d_galaxies = np.linalg.norm(galaxy["noisy"] - galaxy["base"], axis=1)
    d_returned = np.linalg.norm(latents["attacked"] - latents["base"], axis=1)
    d_attack = np.where(result.success, d_returned, np.nan)
    d_noisy = d_galaxies[rows]
    summary = summarize(result, d_attack, d_noisy, n_galaxies=len(correct),
                        n_correct=int(correct.sum()), d_returned=d_returned)
    return AttackRun(galaxy_id=base["galaxy_id"], labels=base["labels"], images=base["images"],
                     rows=rows, result=result, latents=latents, d_attack=d_attack,
                     d_noisy=d_noisy, summary=summary, seconds=time.perf_counter() - start,
                     d_noisy_galaxies=d_galaxies, predicted=predicted, correct=correct,
                     d_returned=d_returned, class_names=class_names(exported, manifest),
                     probabilities={"base": clean["probabilities"][rows],
                                    "returned": returned["probabilities"]})


def class_names(exported, manifest):
    """The classes' names: the model's (its assets), else the dataset's, else class_0 ...;
    a list whose length differs from the model's outputs is passed over."""
    for names in (exported.assets.get("class_names"), manifest.class_names):
        if names is not None and len(names) == exported.n_classes:
            return tuple(str(name) for name in names)
    return tuple(f"class_{k}" for k in range(exported.n_classes))


def check_n(data, split, n, option="n"):
    """Raises `ConfigError` (naming `option`, the split and its size) unless `n` galaxies
    can be loaded from `split` of `data` (None: the whole split). Reads the manifest only,
    so a command can refuse before any model loads."""
    if n is None:
        return
    if int(n) < 1:
        raise ConfigError(f"{option} {n}: at least 1 galaxy must be loaded", key=option)
    count = _manifest(data).count(split)
    if int(n) > count:
        raise ConfigError(f"{option} {n}: split {split} of {_data_path(data)} holds {count} "
                          f"galaxies", key=option)


def _manifest(data):
    return data if isinstance(data, Manifest) else Manifest.load(data)


def _predict(exported, images):
    """`exported.predict`, with outputs shaped [0, ...] for zero images."""
    if len(images):
        return exported.predict(images, LATENT_BATCH)
    return {"probabilities": np.zeros((0, exported.n_classes), np.float32),
            "logits": np.zeros((0, exported.n_classes), np.float32),
            "latent": np.zeros((0, exported.latent_dim), np.float32)}


def _empty_result(attack, images):
    """An empty `AttackResult` whose settings are those `attack` reports, with the value
    range resolved on the galaxies loaded and nothing about an evaluator that never ran."""
    bounds, source = resolve_value_range(attack.value_range, attack.model.assets, images)
    engine = types.SimpleNamespace(max_batch=attack.max_batch, evaluator=attack.evaluator,
                                   deviation=None)
    return AttackResult.empty(images.shape[1:], attack.pixels,
                              attack._settings(engine, bounds, source))


def attack_rows(labels, n_classes, target, targeted, correct=None):
    """Which galaxies to attack and towards what: (row indices, targets or None).

    `correct` ([G] bool, default all True) keeps only the rows of the galaxies the model
    classifies correctly, in both modes.
    """
    rows, targets = _rows(np.asarray(labels), n_classes, target, targeted)
    if correct is None:
        return rows, targets
    keep = np.asarray(correct, bool)[rows]
    return rows[keep], (None if targets is None else targets[keep])


def _rows(labels, n_classes, target, targeted):
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


# --------------------------------------------------------------------------- tables


def table(run, bands=None, class_names=None):
    """Per-attack rows (dicts) of an `AttackRun`: outcome, pixels (values named by
    `bands`, default b0, b1, ...) and the two latent distances.

    The classes (``label``: the true one, ``target``, ``original_class``, ``final_class``)
    are named by `class_names` (default: the run's), so the table reads without the model;
    integers only when neither is known. The run's arrays keep the indices.
    """
    result = run.result
    names = class_names or run.class_names
    bands = bands or [f"b{c}" for c in range(result.values.shape[2])]
    galaxy_id = run.galaxy_id[run.rows]
    changed = outcomes(result.labels, result.targets, result.final_class, result.final_score,
                       result.already, result.settings.get("threshold", 0.05))["class_change"]
    distances = {"latent_distance_attack": run.d_attack, "latent_distance_noisy": run.d_noisy}
    if run.d_returned is not None:
        distances["latent_distance_returned"] = run.d_returned
    rows = []
    for i in range(result.n):
        row = {"index": i, "galaxy_id": int(galaxy_id[i]), "label": int(result.labels[i]),
               "target": int(result.targets[i]) if result.targets[i] >= 0 else "",
               "success": bool(result.success[i]),
               "class_changed": bool(changed[i]),
               "already_adversarial": bool(result.already[i]),
               "generations": int(result.generations[i]), "queries": int(result.queries[i])}
        for name in ("original_class", "original_prob", "original_score",
                     "final_class", "final_prob", "final_score"):
            value = getattr(result, name)[i]
            row[name] = int(value) if name.endswith("class") else float(value)
        row.update(_pixel_columns(result, i, bands))
        for name, values in distances.items():
            row[name] = "" if not np.isfinite(values[i]) else float(values[i])
        if names:
            row.update({k: names[row[k]] for k in CLASS_COLUMNS if row[k] != ""})
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


# --------------------------------------------------------------------------- tfgal-attack


def attack_dataset(model, data, out, *, split="test", n=150, base_depth="Y10",
                   noisy_depth="Y1", target="all", data_seed=0, progress=True,
                   overwrite=False, figure=False, **settings):
    """`attack_galaxies`, then its table (``attack.csv``, classes by name) and summary
    (``attack.json``) in `out`, and with `figure` the figure of the attacked galaxies
    (``attack.png``, `tfgal.attack.figure`), each written atomically; returns the summary:
    `summarize`'s keys (``n_galaxies`` loaded, ``n_correct`` attacked, ``n_misclassified``
    skipped, ``settings.init``, ...) with the run's context (model, data, split, depths,
    target, speed, device, files, versions). Misclassified galaxies have no row in
    ``attack.csv``.

    `out` is locked for the run (`tfgal.locks`); one that already holds any of
    `OUTPUT_NAMES` is refused with `OutputExists` before the model loads, unless
    `overwrite`; so is an `n` the split cannot give (`check_n`)."""
    with locks.hold(out):
        io.refuse_existing(out, overwrite, names=OUTPUT_NAMES)
        check_n(data, split, n)
        return _attack_dataset(model, data, out, split=split, n=n, base_depth=base_depth,
                               noisy_depth=noisy_depth, target=target, data_seed=data_seed,
                               progress=progress, figure=figure, **settings)


def _attack_dataset(model, data, out, *, split, n, base_depth, noisy_depth, target,
                    data_seed, progress, figure, **settings):
    exported = model if isinstance(model, export.ExportedClassifier) else export.load(model)
    run = attack_galaxies(exported, data, split=split, n=n, base_depth=base_depth,
                          noisy_depth=noisy_depth, target=target, data_seed=data_seed,
                          progress=progress, **settings)
    result = run.result
    summary = {
        "model": os.path.abspath(exported.path), "data": os.path.abspath(_data_path(data)),
        "split": split, "depths": {"base": base_depth, "noisy": noisy_depth},
        "n_attacks": result.n, "target": target if result.settings["targeted"] else None,
        **run.summary,
        "attacks_per_second": result.n / max(result.seconds, 1e-9) if result.n else None,
        "device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU",
        # once per galaxy attacked (targeted attacks repeat galaxies): no misclassified one
        "latent_distance": {**run.summary["latent_distance"],
                            "noisy": describe(run.d_noisy_galaxies[np.unique(run.rows)])},
        "files": {"table": TABLE_NAME, **({"figure": FIGURE_NAME} if figure else {})},
        "class_names": list(run.class_names),
        "versions": export.library_versions(),
        "seconds_total": run.seconds,
    }
    os.makedirs(out, exist_ok=True)
    io.write_csv(os.path.join(out, TABLE_NAME),
                 table(run, bands=exported.assets.get("bands")))
    drawn = os.path.join(out, FIGURE_NAME)
    if figure:
        name = (exported.assets.get("config") or {}).get("name") or \
            os.path.basename(os.path.normpath(exported.path))
        figure_lib.draw(run, run.class_names, drawn,
                        title=f"model {name}: first {run.summary['n_galaxies']} galaxies of "
                              f"{os.path.basename(os.path.normpath(_data_path(data)))} "
                              f"{split} at {base_depth}")
    elif os.path.exists(drawn):  # an overwritten run's figure would not be this run's
        os.remove(drawn)
    io.write_json(os.path.join(out, SUMMARY_NAME), summary)
    return summary


def _data_path(data):
    """The directory of `data`: a path, or a `Manifest`'s root."""
    return os.fspath(getattr(data, "root", data))
