"""The corruption stage: every model on physically corrupted images, severity by severity.

A one-pixel attack moves a galaxy's latent by some distance; is that a realistic threat
next to what surveys do to images every night (worse seeing, satellite trails, cosmic
rays, calibration errors, JPEG cut-outs)? The stage answers it on the same models, in the
same scale-free unit as the attacks (`tfgal.study.latent.latent_scale`).

Each corruption of ``study.corruptions`` is swept over severities 0..5
(`tfgal.data.corruptions.Plan.sweep`) on the first ``study.corruption_n`` galaxies of the
study split, at the source depth (and at the target depth with ``corruption_target``).
A sweep draws the same noise at every severity, so severity 0 is the clean reference of
the very same images, and the latent displacement ||z(s) - z(0)|| is the corruption's
alone. The stage stores each galaxy's predicted class and displacement per severity
(`CorruptionsOutput`); `summary` turns them into the measures of ``results.json``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tfgal import seeds
from tfgal.data import corruptions as corruptions_lib
from tfgal.errors import DataError
from tfgal.study import curve as curve_lib
from tfgal.study import latent as latent_lib
from tfgal.study.markdown import (ci as _ci, figure as _figure, fmt as _fmt, get as _get,
                                   pct as _pct, pct_ci as _pct_ci, table as _table)
from tfgal.study.metrics import accuracy_sem
from tfgal.study.models import trained
from tfgal.study.stage import Stage
from tfgal.study.store import array_field

__all__ = ["Corruptions", "CorruptionsOutput", "corruption_depths", "severity_table",
           "summary", "vs_attack", "markdown", "conventions", "SEVERITIES", "ACTS_ON"]

SEVERITIES = list(range(corruptions_lib.SEVERITIES + 1))  # 0 (clean) .. 5


@dataclasses.dataclass
class CorruptionsOutput:
    """Per model, depth and corruption: arrays [severity 0..5, galaxy].

    ``table``: {"corruptions", "n", "depths", "stages" (where each acts on this dataset),
    "scale" {label}, "accuracy" {label: {depth: {corruption: {"accuracy", "sem"} [6]}}},
    "displacement" {label: {depth: {corruption: [6 `bootstrap_ci`]}}}}, or {"skipped": why}.
    """

    table: dict
    galaxies: dict = array_field()      # {"labels" [N], "galaxy_id" [N]}
    predicted: dict = array_field()     # {label: {depth: {corruption: [6, N] class}}}
    displacement: dict = array_field()  # {label: {depth: {corruption: [6, N]}}}: / scale

    @property
    def skipped(self):
        return self.table.get("skipped")

    def correct(self, label, depth, name):
        """Whether each galaxy is classified correctly, [6, N] bool."""
        return np.asarray(self.predicted[label][depth][name]) == self.galaxies["labels"]


def corruption_depths(ctx):
    return [ctx.source, *([ctx.target] if ctx.study.corruption_target else [])]


class Corruptions(Stage):
    """Every model on each corruption of ``study.corruptions`` at severities 0..5 (skipped,
    with the reason, when the list is empty: the rest of the study is unchanged)."""

    name, Output = "corruptions", CorruptionsOutput

    def __init__(self, labels):
        self.labels, self.deps = list(labels), (*trained(labels), "evaluate")

    def settings(self, ctx):
        s = ctx.study
        return {**ctx.data_settings(), "corruptions": list(s.corruptions),
                "n": s.corruption_n, "depths": corruption_depths(ctx), "bootstrap": s.bootstrap}

    def check(self, ctx):
        """Refuses corruptions that cannot act on the dataset, before any model trains."""
        if ctx.study.corruptions:
            corruptions_lib.check(ctx.study.corruptions, ctx.manifest, key="study.corruptions")

    def run(self, ctx, inputs):
        s = ctx.study
        if not s.corruptions:
            return CorruptionsOutput({"skipped": "study.corruptions is empty: no corruption "
                                                 "was swept"})
        self.check(ctx)
        ev, models = inputs["evaluate"], {k: ctx.model(k) for k in self.labels}
        scale = {k: latent_lib.latent_scale(ev.latents[k][ctx.source]) for k in self.labels}
        boot = dict(n_resamples=s.bootstrap, seed=seeds.derive(ctx.cfg.seed, "bootstrap"))
        out = CorruptionsOutput(table={})
        acc, disp = ({k: {} for k in self.labels} for _ in range(2))
        steps = [(c, d) for c in s.corruptions for d in corruption_depths(ctx)]
        for i, (name, depth) in enumerate(steps, 1):
            ctx.log(f"corruptions: {name} at {depth}, severities 0-{SEVERITIES[-1]} "
                    f"({i}/{len(steps)})")
            pred = curve_lib.predict_split(
                models, ctx.manifest, s.split, depth, n=s.corruption_n, seed=ctx.cfg.seed,
                noise_mode=ctx.cfg.data.noise_mode,
                corruption=corruptions_lib.Plan.sweep(name, SEVERITIES))
            galaxies = _sweep_galaxies(pred, ctx.manifest.root)
            if out.galaxies and not np.array_equal(out.galaxies["galaxy_id"],
                                                   galaxies["galaxy_id"]):
                raise DataError(f"the {name} sweep at {depth} saw other galaxies than the "
                                "first sweep", path=ctx.manifest.root)
            out.galaxies = galaxies
            for k in self.labels:
                classes, d = _per_severity(pred[k], scale[k])
                out.predicted.setdefault(k, {}).setdefault(depth, {})[name] = classes
                out.displacement.setdefault(k, {}).setdefault(depth, {})[name] = d
                correct = classes == galaxies["labels"]
                a = correct.mean(axis=1)
                acc[k].setdefault(depth, {})[name] = {
                    "accuracy": a.tolist(),
                    "sem": [accuracy_sem(v, correct.shape[1]) for v in a]}
                disp[k].setdefault(depth, {})[name] = [latent_lib.bootstrap_ci(row, **boot)
                                                       for row in d]
        noiseless = ctx.manifest.noiseless
        out.table = {"corruptions": list(s.corruptions), "n": int(len(out.galaxies["labels"])),
                     "depths": corruption_depths(ctx), "severities": SEVERITIES,
                     "stages": {c: corruptions_lib.CORRUPTIONS[c].stage_on(noiseless)
                                for c in s.corruptions},
                     "scale": scale, "accuracy": acc, "displacement": disp}
        return out


def _sweep_galaxies(pred, root):
    """{"labels", "galaxy_id"} [N] of a severity-major sweep, checked to repeat per severity."""
    levels = len(SEVERITIES)
    n = len(pred["labels"]) // levels
    expected = np.repeat(np.asarray(SEVERITIES), n)
    if n == 0 or not np.array_equal(pred["severity"], expected):
        raise DataError(f"a corruption sweep yielded severities {pred['severity'][:12]}..., "
                        f"not {levels} blocks of the same galaxies", path=root)
    ids, labels = (pred[k].reshape(levels, n) for k in ("galaxy_id", "labels"))
    if not (ids == ids[0]).all():
        raise DataError("a corruption sweep changed galaxies between severities", path=root)
    return {"labels": labels[0], "galaxy_id": ids[0]}


def _per_severity(out, scale):
    """(predicted classes [6, N], latent displacement from severity 0 / scale [6, N])."""
    levels = len(SEVERITIES)
    probs = out["probabilities"].reshape(levels, -1, out["probabilities"].shape[-1])
    z = out["latent"].reshape(levels, probs.shape[1], -1).astype(np.float64)
    return (probs.argmax(-1).astype(np.int16),
            np.linalg.norm(z - z[0], axis=-1) / scale)


# --------------------------------------------------------------------------- measures


def severity_table(noiseless=True):
    """{corruption: its cause, the stage it acts at, and each parameter's values at
    severities 1..5 with units}: `tfgal.data.corruptions.CORRUPTIONS` as JSON."""
    return {c.name: {"cause": c.cause, "stage": c.stage_on(noiseless),
                     "parameters": {col: [row[j] for row in c.rows]
                                    for j, col in enumerate(c.columns)}}
            for c in corruptions_lib.CORRUPTIONS.values()}


def _relative_drop(corrupted, clean, boot):
    """(clean - corrupted) / clean of per-galaxy accuracies, with a paired bootstrap."""
    r = latent_lib.paired_ratio(corrupted, clean, **boot)

    def drop(ratio):
        return None if ratio is None else 1.0 - ratio
    return {"estimate": drop(r["ratio"]), "low": drop(r["high"]), "high": drop(r["low"]),
            "n": r["n"]}


def _corrupted(correct, names):
    """Each galaxy's accuracy over corruptions `names` and severities 1..5, [N]."""
    return np.mean([correct[c][1:].mean(axis=0) for c in names], axis=0)


def _measures(correct, names, groups, boot):
    """One model at one depth: clean and mean corruption accuracy, drops, worst first."""
    clean = np.mean([correct[c][0] for c in names], axis=0)
    mean = _corrupted(correct, names)
    per = {}
    for c in names:
        a = correct[c].mean(axis=1)
        per[c] = {"clean": float(a[0]), "mean": float(a[1:].mean()),
                  "drop": float(a[0] - a[1:].mean()),
                  "relative_drop": float((a[0] - a[1:].mean()) / a[0]) if a[0] else None}
    out = {"clean_accuracy": latent_lib.bootstrap_ci(clean, **boot),
           "mean_accuracy": latent_lib.bootstrap_ci(mean, **boot),
           "relative_drop": _relative_drop(mean, clean, boot), "per_corruption": per,
           "worst": sorted(names, key=lambda c: -per[c]["drop"])}
    for group, members in groups.items():
        acc = _corrupted(correct, members) if members else None
        out[group] = {"corruptions": members,
                      "mean_accuracy": latent_lib.bootstrap_ci(acc, **boot),
                      "relative_drop": _relative_drop(acc, clean, boot)} if members else None
    return out


def _gain(correct, ref, groups, boot):
    """Per-galaxy accuracy gain over a reference model, over each group of corruptions."""
    return {g: (latent_lib.bootstrap_ci(_corrupted(correct, cs) - _corrupted(ref, cs), **boot)
                if cs else None) for g, cs in groups.items()}


def _drop_difference(a, b, boot):
    """Relative drop of model A minus model B's, paired: (clean, corrupted) per-galaxy
    accuracies of each, resampled on the same galaxies."""
    (clean_a, corr_a), (clean_b, corr_b) = a, b

    def drop(clean, corr, idx):
        with np.errstate(divide="ignore", invalid="ignore"):
            return 1.0 - corr[idx].mean(axis=-1) / clean[idx].mean(axis=-1)
    n = len(clean_a)
    every = np.arange(n)
    est = float(drop(clean_a, corr_a, every) - drop(clean_b, corr_b, every))
    reps = latent_lib._resample(  # the same draws as every other paired bootstrap here
        n, boot["n_resamples"], boot["seed"],
        lambda idx: drop(clean_a, corr_a, idx) - drop(clean_b, corr_b, idx))
    reps = reps[np.isfinite(reps)]
    low, high = np.quantile(reps, [0.025, 0.975]) if len(reps) > 1 else (None, None)
    return {"estimate": est, "low": None if low is None else float(low),
            "high": None if high is None else float(high), "n": n}


def _vs_attack(output, label, depth, attacked, boot, corruption_n):
    """On the galaxies model `label` attacked among the sweep's (the same galaxies for every
    number): each corruption's displacement per severity, the one-pixel attack's base ->
    returned image (every attack, and those that changed the class) and the source ->
    target depth shift, all over the model's latent scale; the first severity that moves
    latents further than the attack."""
    ids = output.galaxies["galaxy_id"]
    common, ic, ia = np.intersect1d(ids, attacked["galaxy_id"], return_indices=True)
    changed = np.asarray(attacked["class_change"], bool)[ia]
    attack = latent_lib.bootstrap_ci(attacked["returned"][ia], **boot)
    out = {"n": int(len(common)),
           "galaxies": f"the {len(common)} of the first {corruption_n} galaxies this model "
                       "attacked (classified correctly at the source depth)",
           "attack": attack,
           "attack_class_change": latent_lib.bootstrap_ci(attacked["returned"][ia][changed],
                                                          **boot),
           "noisy": latent_lib.bootstrap_ci(attacked["noisy"][ia], **boot), "corruptions": {}}
    est = attack.get("estimate")
    for c, rows in output.displacement[label][depth].items():
        cis = [latent_lib.bootstrap_ci(np.asarray(row)[ic], **boot) for row in rows]
        d = [ci["estimate"] for ci in cis]
        beyond = [s for s, v in zip(SEVERITIES[1:], d[1:])
                  if est is not None and v is not None and v >= est]
        out["corruptions"][c] = {
            "displacement": d, "low": [ci["low"] for ci in cis],
            "high": [ci["high"] for ci in cis],
            "over_attack": [v / est if est and v is not None else None for v in d],
            "first_severity_beyond_attack": beyond[0] if beyond else None}
    return out


def vs_attack(ctx, output, distances):
    """{label: `_vs_attack` at the source depth} for every model the study attacked."""
    boot = dict(n_resamples=ctx.study.bootstrap, seed=seeds.derive(ctx.cfg.seed, "bootstrap"))
    return {k: _vs_attack(output, k, ctx.source, distances.attacked[k], boot,
                          output.table["n"])
            for k in output.table["accuracy"] if k in distances.attacked}


def summary(ctx, output, distances):
    """The ``corruptions`` block of ``results.json``: the severity table, the stage's
    per-severity accuracies and displacements, each model's measures per depth, held-in
    (``study.corruption_train``) against held-out corruptions, gains and differences of
    relative drop (paired, same galaxies) over the same seed's baseline, and the
    displacements beside the one-pixel attack's on the galaxies the model attacked."""
    if output.skipped:
        return {"skipped": output.skipped}
    s, t = ctx.study, output.table
    names = t["corruptions"]
    boot = dict(n_resamples=s.bootstrap, seed=seeds.derive(ctx.cfg.seed, "bootstrap"))
    groups = {}
    if s.corruption_train:
        groups = {"held_in": [c for c in names if c in s.corruption_train],
                  "held_out": [c for c in names if c not in s.corruption_train]}
    labels = list(t["accuracy"])
    correct = {k: {d: {c: output.correct(k, d, c) for c in names} for d in t["depths"]}
               for k in labels}
    measures, gains, drops = {}, {}, {}

    def clean_and_corrupted(k, d):
        return np.mean([correct[k][d][c][0] for c in names], axis=0), _corrupted(correct[k][d],
                                                                                 names)
    for k in labels:
        measures[k] = {d: _measures(correct[k][d], names, groups, boot) for d in t["depths"]}
        ref = ctx.label_of("baseline", ctx.member(k).seed)
        if ref is not None and ref != k and ref in correct:
            gains[k] = {d: _gain(correct[k][d], correct[ref][d], {"all": names, **groups}, boot)
                        for d in t["depths"]}
            drops[k] = {d: _drop_difference(clean_and_corrupted(k, d),
                                            clean_and_corrupted(ref, d), boot)
                        for d in t["depths"]}
    severities = severity_table(ctx.manifest.noiseless)
    return {**{key: t[key] for key in ("corruptions", "n", "depths", "severities", "stages",
                                       "scale", "accuracy", "displacement")},
            "held_in": groups.get("held_in"), "held_out": groups.get("held_out"),
            "severity_table": {c: severities[c] for c in names},
            "measures": measures, "gain_over_baseline": gains,
            "relative_drop_vs_baseline": drops,
            "vs_attack": vs_attack(ctx, output, distances),
            "conventions": conventions(t, ctx.study.split)}


ACTS_ON = {"flux": "the noiseless flux, before the noise",
           "image": "the observed image, before the stretch",
           "display": "the stretched image the network sees"}


def conventions(table, split):
    """The sentence stating how the corruption numbers were measured."""
    where = "; ".join(f"{c} on {ACTS_ON[st]}" for c, st in table["stages"].items())
    return (f"The first {table['n']} {split} galaxies at {' and '.join(table['depths'])}, "
            f"each corruption at severities 1-{SEVERITIES[-1]} against severity 0, the same "
            "images uncorrupted: every severity draws the same noise and the same random "
            "positions, angles and signs per galaxy, so a difference is the corruption's "
            "alone. Mean corruption accuracy: over corruptions and severities 1-5; relative "
            "drop: (clean - mean) / clean. Displacement: ||z(s) - z(0)|| divided by the "
            "model's latent scale (the median distance between different galaxies at the "
            f"source depth, as for the attacks). Where each acts: {where}.")


# --------------------------------------------------------------------------- report


def markdown(results):
    """The report's corruption section (or the reason it was skipped)."""
    c = results.get("corruptions") or {"skipped": "no corruption stage in this study"}
    head = "## Corruptions: what surveys do to images"
    if c.get("skipped"):
        return f"{head}\n\nSkipped: {c['skipped']}"
    names, src, measures = c["corruptions"], results["depths"]["source"], c["measures"]
    drops = c.get("relative_drop_vs_baseline") or {}
    rows = [(f"`{k}`", d, _pct_ci(m["clean_accuracy"]), _pct_ci(m["mean_accuracy"]),
             _pct_ci(m["relative_drop"]), _pct_ci(_get(drops, k, d)) if _get(drops, k, d)
             else "—")
            for k, per in measures.items() for d, m in per.items()]
    severities = [(n, t["stage"], col, *(_fmt(v) for v in values))
                  for n, t in c["severity_table"].items()
                  for col, values in t["parameters"].items()]
    per_corruption = [(n, *(_pct(measures[k][src]["per_corruption"][n]["mean"])
                            for k in measures)) for n in names]
    worst = [(f"`{k}`", ", ".join(f"{n} ({_pct(per[src]['per_corruption'][n]['drop'])})"
                                  for n in per[src]["worst"][:3])) for k, per in measures.items()]
    parts = [
        head, "", c["conventions"], "",
        "Severities (0 is the clean image):", "",
        _table(("corruption", "acts on", "parameter", *(f"severity {s}" for s in
                                                       c["severities"][1:])), severities), "",
        "Accuracy in percent with 95% bootstrap intervals over galaxies; the relative drop is "
        "(clean - mean corruption accuracy) / clean; its difference from the same seed's "
        "baseline is paired (the same galaxies resampled for both), the comparison to read "
        "before calling one model more robust than another.", "",
        _table(("model", "depth", "clean accuracy", "mean corruption accuracy",
                "relative drop", "relative drop minus the baseline's"), rows), "",
        f"Mean accuracy over severities 1-5 per corruption, at {src} (percent):", "",
        _table(("corruption", *(f"`{k}`" for k in measures)), per_corruption), "",
        "The corruptions that hurt most (drop in accuracy points from clean, mean over "
        "severities):", "", _table(("model", "worst corruptions"), worst)]
    if c.get("held_in") is not None:
        parts += ["", _held_out_md(c, src)]
    parts += ["", _displacement_md(c), "",
              _figure(results, "corruption_accuracy", "accuracy per corruption and severity"),
              "", _figure(results, "corruption_displacement",
                          "latent displacement against severity, beside the one-pixel attack")]
    return "\n".join(parts)


def _held_out_md(c, src):
    gains = c.get("gain_over_baseline", {})
    rows = []
    for k, per in c["measures"].items():
        m, g = per[src], _get(gains, k, src) or {}
        rows.append((f"`{k}`", *(_pct_ci(_get(m, group, "mean_accuracy"))
                                 for group in ("held_in", "held_out")),
                     *(_pct_ci(g.get(group)) if g.get(group) else "—"
                       for group in ("held_in", "held_out"))))
    return "\n".join([
        f"Held in (`study.corruption_train`, what `corrupt-aug` trains on): "
        f"{', '.join(c['held_in']) or 'none'}; held out (never seen in training): "
        f"{', '.join(c['held_out']) or 'none'}. Mean accuracy over each group at {src} in "
        "percent; gains are percentage points over the same seed's baseline on the same "
        "galaxies (paired bootstrap).", "",
        _table(("model", "held-in accuracy", "held-out accuracy", "held-in gain over baseline",
                "held-out gain over baseline"), rows)])


def _displacement_md(c):
    rows = []
    for k, v in c["vs_attack"].items():
        attack, noisy = v["attack"] or {}, v.get("noisy") or {}
        changed = v.get("attack_class_change") or {}
        for n, d in v["corruptions"].items():
            cells = [_fmt(d["displacement"][s]) + _ci({"low": d["low"][s], "high": d["high"][s]})
                     for s in (3, 5)]
            rows.append((f"`{k}`", v.get("n", "n/a"), n, *cells,
                         _fmt(attack.get("estimate")) + _ci(attack),
                         _fmt(changed.get("estimate")) + _ci(changed)
                         + f" (n={changed.get('n', 0)})",
                         _fmt(noisy.get("estimate")) + _ci(noisy),
                         d["first_severity_beyond_attack"] or "—"))
    return "\n".join([
        "Is a one-pixel attack a realistic threat next to what surveys do? On the same "
        "galaxies for every column of a row (those the model attacked among the sweep's: "
        "the galaxies it classifies correctly, n), the latent displacement from the clean "
        "image, ||z(s) - z(0)|| over the model's latent scale, beside the one-pixel attack's "
        "base -> returned image (every attack, and those that changed the class) and the "
        "shift from the source to the target depth (the noise the study is about); 95% "
        "bootstrap intervals over those galaxies:", "",
        _table(("model", "galaxies", "corruption", "severity 3", "severity 5",
                "one-pixel attack (every attack)", "one-pixel attack (class changed)",
                "source -> target depth", "first severity beyond the attack"), rows)])
