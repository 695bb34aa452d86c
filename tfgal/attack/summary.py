"""What an attack run amounts to: the summary both `tfgal-attack` and `tfgal-study` report.

`summarize` turns an `AttackResult` and the latent distances of its galaxies into the
numbers reported (success among the galaxies attacked, queries, distances). Only galaxies
classified correctly at the base depth are attacked (`driver.attack_galaxies`); the
misclassified ones are counted apart and enter no rate or distance. `describe`
gives mean, standard deviation, standard error and count of a sample, ignoring NaN
(an unsuccessful attack has no attacked image, so no distance).

Two rules read the same attacks (`outcomes`, `rates`), each judged on the image the attack
returned (its first success, or the best candidate found within the budget):

* ``class_change``: the predicted class is no longer the true one (targeted: it is the
  target), the rule of Su et al., ART's PixelAttack and one-pixel-attack-keras. Those stop
  at the first candidate that changes the class; tfgal's attack, run under the paper's
  rule, keeps searching for a lower true-class probability and returns that image, so this
  rate is a lower bound of theirs at the same budget.
* ``paper``: the true-class probability fell below the threshold (targeted: the target's
  rose above it), the study's rule. A model that is never very sure of its classes can
  change class often and meet it rarely.

Each rate comes with its count and a 95% Clopper-Pearson interval (`binomial_interval`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["describe", "ratio", "distance_summary", "distance_ratios", "summarize",
           "binomial_interval", "outcomes", "rates", "rate_lines", "RULES"]

RULES = {
    "class_change": "the returned image is classified as another class (Su et al., ART)",
    "paper": "the true-class probability of the returned image is below the threshold",
}


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


def binomial_interval(k, n, level=0.95):
    """{"k", "n", "rate", "low", "high"}: `k` successes of `n` with the exact
    (Clopper-Pearson) interval; rate and bounds None when n is 0."""
    from scipy import stats
    k, n = int(k), int(n)
    if n == 0:
        return {"k": 0, "n": 0, "rate": None, "low": None, "high": None}
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
    return {"k": k, "n": n, "rate": k / n, "low": float(ci.low), "high": float(ci.high)}


def outcomes(labels, targets, final_class, final_score, already, threshold):
    """{rule: [N] bool} of `RULES` per attack, False where the image was not attacked.

    `targets` < 0 marks untargeted attacks (the true class is pushed down); `final_class`,
    `final_score` describe the returned image, `threshold` the paper's rule.
    """
    labels, targets = np.asarray(labels), np.asarray(targets)
    final_class, final_score = np.asarray(final_class), np.asarray(final_score)
    attacked = ~np.asarray(already, bool)
    targeted = targets >= 0
    changed = np.where(targeted, final_class == targets, final_class != labels)
    paper = np.where(targeted, final_score > threshold, final_score < threshold)
    return {"class_change": changed & attacked, "paper": paper & attacked}


def rates(masks, already):
    """{rule: `binomial_interval` of its successes among the attacked images, "rule": text}."""
    n = int(np.sum(~np.asarray(already, bool)))
    return {rule: {"rule": RULES[rule], **binomial_interval(int(np.sum(m)), n)}
            for rule, m in masks.items()}


def rate_lines(summary):
    """One line per rule of a `summarize` summary's ``rates`` (what ``tfgal-attack`` prints),
    whichever rule the attack stopped on (marked, from ``settings``); a rule with no attack
    run says so rather than vanish."""
    settings = summary["settings"]
    stopped = {"probability": "paper", "class": "class_change"}.get(
        settings.get("success", "probability"))
    lines = []
    for rule, r in summary["rates"].items():
        text = _rule_text(rule, r["rule"], settings)
        mark = " [the stopping rule, --success]" if rule == stopped else ""
        if r["n"]:
            lines.append(f"{rule.replace('_', ' ')}: {r['k']} of {r['n']} "
                         f"({100 * r['rate']:.1f}%, 95% interval {100 * r['low']:.1f}-"
                         f"{100 * r['high']:.1f}%): {text}{mark}")
        else:
            lines.append(f"{rule.replace('_', ' ')}: no rate, no galaxy was attacked: "
                         f"{text}{mark}")
    return lines


def _rule_text(rule, text, settings):
    """The rule as it was applied: its threshold, and the target when targeted."""
    if settings.get("targeted"):
        return {"class_change": "the returned image is classified as the target",
                "paper": f"the target's probability of the returned image is above "
                         f"{settings['threshold']:g}"}.get(rule, text)
    return f"{text} ({settings['threshold']:g})" if rule == "paper" else text


def distance_summary(d_attack, d_noisy, success, d_returned=None, class_change=None):
    """The paper's latent distances of one model: base -> attacked (successful attacks) and
    base -> noisy (every attacked galaxy, and the successful ones alone); with `d_returned`
    (base -> returned image of every attack), the same for the class-change successes
    (``attack_class_change``, ``noisy_class_change``) and over every attack (``returned``)."""
    success = np.asarray(success, bool)
    out = {"attack": describe(np.where(success, d_attack, np.nan)),
           "noisy": describe(d_noisy), "noisy_success": describe(np.asarray(d_noisy)[success])}
    if d_returned is not None and class_change is not None:
        changed = np.asarray(class_change, bool)
        out.update(attack_class_change=describe(np.asarray(d_returned)[changed]),
                   noisy_class_change=describe(np.asarray(d_noisy)[changed]),
                   returned=describe(d_returned))
    return out


def distance_ratios(adapted, baseline):
    """Domain-adapted over baseline, per distance kind of `distance_summary`."""
    return {kind: ratio(adapted[kind], baseline[kind]) for kind in adapted}


def summarize(result, d_attack, d_noisy, *, n_galaxies=None, n_correct=None, d_returned=None):
    """The numbers of an `attack.AttackResult` the study reports, latent distances included.

    `n_galaxies` galaxies were loaded, of which the `n_correct` classified correctly were
    attacked (the misclassified ones are only counted: ``n_misclassified``). Default: the
    result's images, and unknown correct counts (None). ``success_rate`` is
    ``n_success / n_attacked`` (attacks run, not already adversarial), None when none ran;
    ``settings`` are the attack's, ``init`` (its initial population) included. ``rates``
    reads the attacks under both `RULES` with counts and 95% intervals; `d_returned` (base
    -> returned image, every attack) adds the class-change distances.
    """
    won = result.success
    masks = outcomes(result.labels, result.targets, result.final_class, result.final_score,
                     result.already, result.settings.get("threshold", 0.05))
    n_galaxies = int(result.n if n_galaxies is None else n_galaxies)
    attacked = int(np.sum(~result.already))
    return {
        "n_galaxies": n_galaxies,
        "n_correct": None if n_correct is None else int(n_correct),
        "n_misclassified": None if n_correct is None else n_galaxies - int(n_correct),
        "n_attacks": int(result.n), "n_attacked": attacked,
        "n_already_adversarial": int(result.already.sum()), "n_success": int(won.sum()),
        "success_rate": float(won.sum() / attacked) if attacked else None,
        "rates": rates(masks, result.already),
        "settings": result.settings,
        "queries": {"total": int(result.queries.sum()),
                    "mean": float(result.queries.mean()) if result.n else None,
                    "mean_success": float(result.queries[won].mean()) if won.any() else None},
        "generations_mean_success": float(result.generations[won].mean()) if won.any() else None,
        "seconds": result.seconds,
        "latent_distance": distance_summary(d_attack, d_noisy, won, d_returned,
                                            masks["class_change"]),
    }
