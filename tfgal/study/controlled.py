"""The controlled table: every model kind's numbers over seeds, and its gains over controls.

Each number is measured once per member (a model kind at a training seed) and reported as
`over_seeds` gives it: mean, standard deviation (None with one seed) and the values. A gain
is taken seed by seed against the same seed's reference model on the same galaxies, then
aggregated the same way; its 95% interval is a paired bootstrap over the evaluated galaxies
(resampling galaxies, the same ones for both models), pooled over seeds.
"""

from __future__ import annotations

import numpy as np

from tfgal import seeds as seeds_lib
from tfgal.study import latent as latent_lib

__all__ = ["REFERENCES", "over_seeds", "controlled_table", "gain_interval", "latent_table"]

REFERENCES = ("baseline", "target-bn")  # the controls every gain is measured against


def over_seeds(values):
    """{"mean", "std", "n", "values"} of per-seed values (None ones dropped)."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return {"mean": None, "std": None, "n": 0, "values": []}
    std = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return {"mean": float(np.mean(values)), "std": std, "n": len(values), "values": values}


def _curve_mean(curve, label):
    if curve.get("skipped") or label not in curve.get("models", {}):
        return None
    return float(np.mean(curve["models"][label]["accuracy"]))


def _per_member(ctx, ev, curve, attack):
    """{label: {quantity: value}} measured on one member."""
    out = {}
    for m in ctx.members:
        met = ev.metrics[m.label]
        out[m.label] = {
            "accuracy_source": met[ctx.source]["accuracy"],
            "accuracy_target": met[ctx.target]["accuracy"],
            "curve_mean_accuracy": _curve_mean(curve, m.label),
            "attack_success": attack[m.label]["success_rate"],
            "ece_source": met[ctx.source].get("ece"),
            "ece_target": met[ctx.target].get("ece"),
        }
    return out


def gain_interval(ev, pairs, depth, *, n_resamples=2000, seed=0):
    """95% paired bootstrap interval of an accuracy gain at `depth`, pooled over seeds.

    `pairs`: (label, reference label) per seed; galaxies are resampled, the same ones for
    both models of a pair, and the gain is averaged over pairs.
    """
    if not pairs:
        return None
    labels = ev.labels
    diff = np.mean([(ev.probabilities[a][depth].argmax(1) == labels).astype(np.float64)
                    - (ev.probabilities[b][depth].argmax(1) == labels)
                    for a, b in pairs], axis=0)
    ci = latent_lib.bootstrap_ci(diff, n_resamples=n_resamples, seed=seed)
    return {"low": ci["low"], "high": ci["high"], "n_galaxies": ci["n"]}


def controlled_table(ctx, ev, curve, attack):
    """{kind: {quantity: over_seeds, "gain_over_<ref>": {...}}} in ``study.models`` order."""
    per = _per_member(ctx, ev, curve, attack)
    boot = dict(n_resamples=ctx.study.bootstrap, seed=seeds_lib.derive(ctx.cfg.seed, "bootstrap"))
    table = {}
    for kind in ctx.kinds:
        mine = [m for m in ctx.members if m.kind == kind]
        row = {q: over_seeds([per[m.label][q] for m in mine]) for q in per[mine[0].label]}
        for ref in REFERENCES:
            pairs = [(m.label, ctx.label_of(ref, m.seed)) for m in mine]
            pairs = [(a, b) for a, b in pairs if b is not None and b != a]
            if not pairs:
                continue
            gains = {}
            for side, depth in (("source", ctx.source), ("target", ctx.target)):
                q = f"accuracy_{side}"
                gains[side] = {**over_seeds([per[a][q] - per[b][q] for a, b in pairs]),
                               "ci95": gain_interval(ev, pairs, depth, **boot)}
            q = "curve_mean_accuracy"
            if all(per[a][q] is not None for a, _ in pairs):
                gains["curve_mean"] = over_seeds([per[a][q] - per[b][q] for a, b in pairs])
            row[f"gain_over_{ref}"] = gains
        table[kind] = row
    return table


def latent_table(ctx, distances):
    """{kind: scale-free measures over seeds, and the paired comparison with the baseline}."""
    out = {}
    for kind in ctx.kinds:
        mine = [m.label for m in ctx.members if m.kind == kind]
        meas = [distances.measures[label] for label in mine]
        row = {"scale": over_seeds([x["scale"] for x in meas])}
        for q in ("attack", "noisy", "attack_over_noisy"):
            row[q] = over_seeds([x[q]["estimate"] for x in meas])
            row[f"{q}_ci95_first_seed"] = {k: meas[0][q][k] for k in ("low", "high", "n")}
        paired = [distances.paired[label] for label in mine if label in distances.paired]
        if paired:
            row["vs_baseline"] = {
                s: {**over_seeds([p[s]["ratio"] for p in paired]),
                    "ci95_first_seed": {k: paired[0][s][k] for k in ("low", "high")},
                    "n_pairs": [p["n"] for p in paired]}
                for s in ("raw", "scaled")}
        out[kind] = row
    return out
