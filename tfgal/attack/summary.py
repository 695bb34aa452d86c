"""What an attack run amounts to: the summary both `tfgal-attack` and `tfgal-study` report.

`summarize` turns an `AttackResult` and the latent distances of its galaxies into the
numbers reported (success among the galaxies attacked, queries, distances). Only galaxies
classified correctly at the base depth are attacked (`driver.attack_galaxies`); the
misclassified ones are counted apart and enter no rate or distance. `describe`
gives mean, standard deviation, standard error and count of a sample, ignoring NaN
(an unsuccessful attack has no attacked image, so no distance).
"""

from __future__ import annotations

import numpy as np

__all__ = ["describe", "ratio", "distance_summary", "distance_ratios", "summarize"]


def describe(values):
    """mean, std, sem and n of a sample (NaN when empty)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return {"mean": None, "std": None, "sem": None, "n": 0}
    std = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    return {"mean": float(v.mean()), "std": std, "sem": std / np.sqrt(len(v)), "n": int(len(v))}


def ratio(numerator, denominator):
    """Ratio of two `describe` means with its propagated standard error."""
    a, b = numerator.get("mean"), denominator.get("mean")
    if a is None or b is None or b == 0:
        return {"ratio": None, "sem": None}
    r = a / b
    rel = [s / m for s, m in ((numerator["sem"], a), (denominator["sem"], b)) if m]
    return {"ratio": float(r), "sem": float(abs(r) * np.sqrt(sum(x * x for x in rel)))}


def distance_summary(d_attack, d_noisy, success):
    """The paper's latent distances of one model: base -> attacked (successful attacks) and
    base -> noisy (every attacked galaxy, and the successful ones alone)."""
    success = np.asarray(success, bool)
    return {"attack": describe(np.where(success, d_attack, np.nan)),
            "noisy": describe(d_noisy), "noisy_success": describe(np.asarray(d_noisy)[success])}


def distance_ratios(adapted, baseline):
    """Domain-adapted over baseline, per distance kind of `distance_summary`."""
    return {kind: ratio(adapted[kind], baseline[kind]) for kind in adapted}


def summarize(result, d_attack, d_noisy, *, n_galaxies=None, n_correct=None):
    """The numbers of an `attack.AttackResult` the study reports, latent distances included.

    `n_galaxies` galaxies were loaded, of which the `n_correct` classified correctly were
    attacked (the misclassified ones are only counted: ``n_misclassified``). Default: the
    result's images, and unknown correct counts (None). ``success_rate`` is
    ``n_success / n_attacked`` (attacks run, not already adversarial), None when none ran;
    ``settings`` are the attack's, ``init`` (its initial population) included.
    """
    won = result.success
    n_galaxies = int(result.n if n_galaxies is None else n_galaxies)
    attacked = int(np.sum(~result.already))
    return {
        "n_galaxies": n_galaxies,
        "n_correct": None if n_correct is None else int(n_correct),
        "n_misclassified": None if n_correct is None else n_galaxies - int(n_correct),
        "n_attacks": int(result.n), "n_attacked": attacked,
        "n_already_adversarial": int(result.already.sum()), "n_success": int(won.sum()),
        "success_rate": float(won.sum() / attacked) if attacked else None,
        "settings": result.settings,
        "queries": {"total": int(result.queries.sum()),
                    "mean": float(result.queries.mean()) if result.n else None,
                    "mean_success": float(result.queries[won].mean()) if won.any() else None},
        "generations_mean_success": float(result.generations[won].mean()) if won.any() else None,
        "seconds": result.seconds,
        "latent_distance": distance_summary(d_attack, d_noisy, won),
    }
