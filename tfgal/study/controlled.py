"""The controlled table: every model kind's numbers over seeds, and its gains over controls.

Each number is measured once per member (a model kind at a training seed) and reported as
`over_seeds` gives it: mean, standard deviation (None with one seed) and the values. A gain
is taken seed by seed against the same seed's reference model on the same galaxies, then
aggregated the same way. Its 95% interval (`gain_interval`) is a paired bootstrap: with one
seed over galaxies; with several, over seeds and galaxies (each replicate redraws the seeds,
then the galaxies, one draw for every seed since every seed is measured on the same
galaxies), so it covers both the seed-to-seed spread and the finite sample of galaxies.
A gain with no galaxy on which the two models differ is reported as such (``identical``),
with each model's most frequent prediction, rather than as an interval of zero width.
"""

from __future__ import annotations

import numpy as np

from tfgal import seeds as seeds_lib

__all__ = ["REFERENCES", "over_seeds", "controlled_table", "gain_interval", "latent_table",
           "attack_rates", "majority", "COLLAPSE"]

COLLAPSE = 0.9  # a model that gives one class to this share of galaxies is flagged

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
        rates = attack[m.label]["rates"]
        out[m.label] = {
            "accuracy_source": met[ctx.source]["accuracy"],
            "accuracy_target": met[ctx.target]["accuracy"],
            "curve_mean_accuracy": _curve_mean(curve, m.label),
            "attack_class_change": rates["class_change"]["rate"],
            "attack_paper": rates["paper"]["rate"],
            "ece_source": met[ctx.source].get("ece"),
            "ece_target": met[ctx.target].get("ece"),
        }
    return out


def majority(ev, label, depth, class_names):
    """{"class", "share"}: the class model `label` gives most often at `depth`."""
    counts = np.bincount(ev.probabilities[label][depth].argmax(1), minlength=len(class_names))
    top = int(counts.argmax())
    return {"class": class_names[top], "share": float(counts[top] / counts.sum())}


def attack_rates(ctx, attack, labels):
    """{rule: {"per_seed": [`binomial_interval` of each member], "pooled": the counts of
    every seed together}} of the attack rates of members `labels`."""
    from tfgal.attack import summary as attack_summary
    out = {}
    for rule in attack_summary.RULES:
        per = [{k: attack[label]["rates"][rule][k] for k in ("k", "n", "rate", "low", "high")}
               for label in labels]
        pooled = attack_summary.binomial_interval(sum(p["k"] for p in per),
                                                  sum(p["n"] for p in per))
        out[rule] = {"rule": attack_summary.RULES[rule], "per_seed": per, "pooled": pooled}
    return out


def _correct(ev, label, depth):
    return (ev.probabilities[label][depth].argmax(1) == ev.labels).astype(np.float64)


def gain_interval(ev, pairs, depth, *, n_resamples=2000, seed=0, level=0.95):
    """Paired bootstrap interval of an accuracy gain at `depth`, averaged over seeds.

    `pairs`: (label, reference label) per seed. One pair: galaxies are resampled, the same
    ones for both models. Several: each replicate draws the pairs (seeds) with replacement,
    then the galaxies, one draw shared by every seed (they are all measured on the same
    galaxies), so the interval widens with the seed-to-seed spread. Returns {"low",
    "high", "n_galaxies", "n_seeds", "covers", "n_differ" (galaxies on which some pair's
    models differ), "identical" (n_differ == 0: no interval to give)}.
    """
    if not pairs:
        return None
    diff = np.stack([_correct(ev, a, depth) - _correct(ev, b, depth) for a, b in pairs])
    s, n = diff.shape
    out = {"low": None, "high": None, "n_galaxies": int(n), "n_seeds": int(s),
           "covers": "galaxies" if s == 1 else "seeds, then galaxies",
           "n_differ": int(np.any(diff != 0, axis=0).sum())}
    out["identical"] = out["n_differ"] == 0
    if out["identical"] or n < 2:
        return out
    rng = np.random.default_rng(seed)
    reps = np.empty(n_resamples)
    step = max(1, (1 << 22) // n)
    for start in range(0, n_resamples, step):
        r = min(step, n_resamples - start)
        seed_w = (rng.multinomial(s, np.full(s, 1.0 / s), size=r) if s > 1
                  else np.ones((r, 1)))
        per_galaxy = seed_w @ diff / s                      # [r, n]: seeds drawn
        galaxy_w = rng.multinomial(n, np.full(n, 1.0 / n), size=r)
        reps[start:start + r] = np.sum(per_galaxy * galaxy_w, axis=1) / n
    tail = (1 - level) / 2
    out["low"], out["high"] = (float(v) for v in np.quantile(reps, [tail, 1 - tail]))
    return out


def controlled_table(ctx, ev, curve, attack):
    """{kind: {quantity: over_seeds, "gain_over_<ref>": {...}}} in ``study.models`` order."""
    per = _per_member(ctx, ev, curve, attack)
    boot = dict(n_resamples=ctx.study.bootstrap, seed=seeds_lib.derive(ctx.cfg.seed, "bootstrap"))
    names = list(ctx.manifest.class_names)
    table = {}
    for kind in ctx.kinds:
        mine = [m for m in ctx.members if m.kind == kind]
        row = {q: over_seeds([per[m.label][q] for m in mine]) for q in per[mine[0].label]}
        row["attack_rates"] = attack_rates(ctx, attack, [m.label for m in mine])
        row["majority"] = {side: [majority(ev, m.label, depth, names) for m in mine]
                           for side, depth in (("source", ctx.source), ("target", ctx.target))}
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


def _first_ci(measure):
    return {k: measure[k] for k in ("low", "high", "n")}


def latent_table(ctx, distances):
    """{kind: scale-free measures over seeds (the first seed's 95% interval beside each,
    with its galaxy count), and the paired comparisons with the baseline}.

    ``noisy`` is on the common galaxies (`Distances`), ``returned`` on every galaxy the
    model attacked, ``<rule>_attack`` / ``<rule>_noisy`` / ``<rule>_attack_over_noisy`` on
    the attacks that succeeded under the rule (both distances on those same galaxies).
    """
    out = {}
    for kind in ctx.kinds:
        mine = [m.label for m in ctx.members if m.kind == kind]
        meas = [distances.measures[label] for label in mine]
        row = {"scale": over_seeds([x["scale"] for x in meas])}
        for q in ("noisy", "returned"):
            row[q] = {**over_seeds([x[q]["estimate"] for x in meas]),
                      "ci95_first_seed": _first_ci(meas[0][q])}
        for rule in ("class_change", "paper"):
            for q in ("attack", "noisy", "attack_over_noisy"):
                row[f"{rule}_{q}"] = {**over_seeds([x[rule][q]["estimate"] for x in meas]),
                                      "ci95_first_seed": _first_ci(meas[0][rule][q])}
        paired = [distances.paired[label] for label in mine if label in distances.paired]
        if paired:
            row["vs_baseline"] = {
                f"{where}_{s}": {**over_seeds([p[where][s]["estimate"] for p in paired]),
                                 "ci95_first_seed": _first_ci(paired[0][where][s])}
                for where in ("attacked", "noisy") for s in ("raw", "scaled")}
        out[kind] = row
    return out
