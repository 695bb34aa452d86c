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
from tfgal.study.metrics import accuracy_sem
from tfgal.study.models import trained
from tfgal.study.stage import Stage
from tfgal.study.store import array_field

__all__ = ["Corruptions", "CorruptionsOutput", "corruption_depths", "severity_table",
           "summary", "conventions", "SEVERITIES", "ACTS_ON"]

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


def _vs_attack(displacement, attack, noisy=None):
    """Displacements per severity beside the one-pixel attack's base -> attacked distance
    and the source -> target depth distance of the same attacked galaxies (all over the
    model's latent scale); the first severity that moves latents further than the attack."""
    est = attack.get("estimate") if attack else None
    out = {"attack": attack, "noisy": noisy, "corruptions": {}}
    for c, cis in displacement.items():
        d = [ci["estimate"] for ci in cis]
        beyond = [s for s, v in zip(SEVERITIES[1:], d[1:]) if est is not None and v >= est]
        out["corruptions"][c] = {
            "displacement": d, "low": [ci["low"] for ci in cis],
            "high": [ci["high"] for ci in cis],
            "over_attack": [v / est if est else None for v in d],
            "first_severity_beyond_attack": beyond[0] if beyond else None}
    return out


def summary(ctx, output, distances):
    """The ``corruptions`` block of ``results.json``: the severity table, the stage's
    per-severity accuracies and displacements, each model's measures per depth, held-in
    (``study.corruption_train``) against held-out corruptions, gains over the same seed's
    baseline, and the displacements beside the one-pixel attack's."""
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
    measures, gains = {}, {}
    for k in labels:
        measures[k] = {d: _measures(correct[k][d], names, groups, boot) for d in t["depths"]}
        ref = ctx.label_of("baseline", ctx.member(k).seed)
        if ref is not None and ref != k and ref in correct:
            gains[k] = {d: _gain(correct[k][d], correct[ref][d], {"all": names, **groups}, boot)
                        for d in t["depths"]}
    src, severities = ctx.source, severity_table(ctx.manifest.noiseless)
    return {**{key: t[key] for key in ("corruptions", "n", "depths", "severities", "stages",
                                       "scale", "accuracy", "displacement")},
            "held_in": groups.get("held_in"), "held_out": groups.get("held_out"),
            "severity_table": {c: severities[c] for c in names},
            "measures": measures, "gain_over_baseline": gains,
            "vs_attack": {k: _vs_attack(t["displacement"][k][src],
                                        distances.measures[k]["attack"],
                                        distances.measures[k].get("noisy")) for k in labels},
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
