"""The classical baseline: statmorph morphology and a scikit-learn classifier, beside the networks.

The first question an astronomer asks of a CNN that loses half its accuracy between Y10 and
Y1 is how classical, non-parametric morphology does on the same images. The
``morphology`` stage answers it when ``study.morphology_n`` > 0 (statmorph, a core dependency):

1. The first ``study.morphology_train_n`` galaxies of the training split (galaxies the
   networks train on) are observed at the source depth through the pipeline and measured
   by statmorph (`tfgal.data.morphology.measure`). A random forest (`CLASSIFIER`) learns
   the class from `FEATURES` of the galaxies statmorph measured; the failures are counted
   in the table, not learned from.
2. The first ``study.morphology_n`` galaxies of the study split are measured and classified
   at every depth of the robustness curve: the networks' curve galaxies, with the very
   noise the networks saw (on imported data with noise baked in: the source and target
   images). A galaxy statmorph fails on keeps its row, with NaN features, and is
   classified all the same (the forest sends a missing value down the branch most
   training galaxies took), so failures cost accuracy rather than leaving the sample.
   statmorph measures e-/s, unclipped, unless ``study.morphology_clip`` is "clipped": then
   each band is clipped to the networks' stretch limits first (training galaxies too).
   Either way the share of r-band pixels (and sky pixels) the networks' lower clip takes
   is measured per depth (`tfgal.data.morphology.clip_shares`).
3. Per-galaxy tables ``OUT/morphology/<split>_<depth>.ecsv`` (the training sample's:
   ``training_<source>.ecsv``): statmorph's measurements,
   flags and reasons, the true and predicted classes and the probabilities.

`summary` sets the classifier beside every network on exactly those galaxies (from the
curve and evaluation stages' per-galaxy predictions), with paired bootstrap intervals, says
what statmorph saw against what the networks see (``information``), warns where the
classifier's ECE rests on too few galaxies per bin (``row["ece_note"]``), and
gives the check on the mocks: the per-class distributions of the training sample at the
source depth beside the literature's ranges (`tfgal.data.morphology.class_table`).
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

from tfgal import io, seeds, survey
from tfgal.data import morphology
from tfgal.errors import ConfigError, DataError
from tfgal.study import latent as latent_lib
from tfgal.study import markdown as md
from tfgal.study import metrics
from tfgal.study.models import curve_years
from tfgal.study.stage import Stage
from tfgal.study.store import array_field

__all__ = ["FEATURES", "CLASSIFIER", "LABEL", "DIRECTORY", "Morphology", "MorphologyOutput",
           "ECE_MIN_PER_BIN", "features", "fit", "predict_proba", "summary", "information",
           "ece_note", "markdown", "mock_check_markdown"]

LABEL = "classical"  # its name in tables and figures
DIRECTORY = "morphology"
# Structure only: statmorph's S/N per pixel is left out, since it tells depth, not class.
FEATURES = ("gini", "m20", "concentration", "asymmetry", "smoothness", "sersic_n", "r_half")
# A forest suits a few hundred galaxies and seven features: no scaling, no tuning, and it
# takes missing values (scikit-learn >= 1.4).
CLASSIFIER = {"name": "RandomForestClassifier", "n_estimators": 300, "min_samples_leaf": 2}


def features(table):
    """[N, len(FEATURES)] float64 of a `morphology.measure` table (NaN where unmeasured)."""
    return np.stack([np.asarray(table[f], np.float64) for f in FEATURES], axis=1)


def fit(table, labels, seed):
    """A random forest on the rows statmorph measured (``ok``) of `table`."""
    from sklearn.ensemble import RandomForestClassifier
    ok = np.asarray(table["ok"], bool)
    labels = np.asarray(labels)[ok]
    if len(np.unique(labels)) < 2:
        raise DataError(f"the classical baseline needs measured training galaxies of two "
                        f"classes at least; statmorph measured {int(ok.sum())} of {len(ok)} "
                        f"(classes {sorted(set(labels.tolist()))})",
                        index="study.morphology_train_n")
    forest = RandomForestClassifier(
        n_estimators=CLASSIFIER["n_estimators"], min_samples_leaf=CLASSIFIER["min_samples_leaf"],
        random_state=seed, n_jobs=1)
    return forest.fit(features(table)[ok], labels)


def predict_proba(forest, table, n_classes):
    """[N, n_classes] probabilities (zero for classes the forest never saw)."""
    out = np.zeros((len(table), n_classes))
    out[:, forest.classes_] = forest.predict_proba(features(table))
    return out


@dataclasses.dataclass
class MorphologyOutput:
    """``table``: what `summary` reports (or {"skipped": why}); arrays per test galaxy."""

    table: dict
    labels: np.ndarray = array_field(default=None)         # [N]
    galaxy_id: np.ndarray = array_field(default=None)      # [N]
    probabilities: np.ndarray = array_field(default=None)  # [depths, N, K]
    ok: np.ndarray = array_field(default=None)             # [depths, N] statmorph measured
    train: dict = array_field()  # {"labels", "ok", statistic: [n]} at the source depth

    @property
    def skipped(self):
        return self.table.get("skipped")


def _limits(ctx):
    """The networks' per-band clip in e-/s ({"lo", "hi"}), None for the identity stretch."""
    limits = morphology.clip_limits(ctx.manifest.stretch, ctx.manifest.bands)
    return None if limits is None else {k: v.tolist() for k, v in zip(("lo", "hi"), limits)}


def morphology_depths(ctx):
    """The curve's depths on noiseless data; the source and target otherwise."""
    if ctx.manifest.noiseless:
        return curve_years(ctx)
    return [survey.Depth.parse(d) for d in ctx.depths]


def _file(ctx, split, depth):
    # the classifier's sample is "training_<depth>": a split name cannot clash with it
    return os.path.join(ctx.out, DIRECTORY, f"{split}_{survey.Depth.parse(depth).name}.ecsv")


class Morphology(Stage):
    """The classical baseline (skipped, with the reason, when ``study.morphology_n`` is 0)."""

    name, Output = "morphology", MorphologyOutput

    def settings(self, ctx):
        s = ctx.study
        if not s.morphology_n:
            return {"n": 0}
        return {**ctx.data_settings(), "n": s.morphology_n, "train_n": s.morphology_train_n,
                "source": ctx.source, "years": [d.years for d in morphology_depths(ctx)],
                "features": FEATURES, "classifier": CLASSIFIER, "ece_bins": s.ece_bins,
                "versions": morphology.versions(), "clip": s.morphology_clip,
                "stretch_limits": _limits(ctx)}

    def check(self, ctx):
        if ctx.study.morphology_n:
            try:
                morphology.require()
            except ConfigError as err:
                raise ConfigError(f"{err} (or set study.morphology_n = 0 to leave the "
                                  "classical baseline out)", key="study.morphology_n") from None

    def outputs(self, ctx, inputs):
        if not ctx.study.morphology_n:
            return ()
        return [_file(ctx, "training", ctx.source),
                *(_file(ctx, ctx.study.split, d) for d in morphology_depths(ctx))]

    def run(self, ctx, inputs):
        s, m = ctx.study, ctx.manifest
        if not s.morphology_n:
            return MorphologyOutput({"skipped": "study.morphology_n is 0: no classical "
                                                "baseline was measured"})
        self.check(ctx)
        names, depths = list(m.class_names), morphology_depths(ctx)
        observe = dict(seed=ctx.cfg.seed, noise_mode=ctx.cfg.data.noise_mode)
        stretch, bands = m.stretch, m.bands
        clip = s.morphology_clip == "clipped"

        def shown(images):  # what statmorph measures: the networks' clip, or e-/s as observed
            return morphology.clip_like_stretch(images, stretch, bands) if clip else images
        start = time.perf_counter()
        with morphology.worker_pool() as pool:
            measure = dict(pool=pool, progress=ctx.progress)
            ctx.log(f"morphology: statmorph on {s.morphology_train_n} training galaxies at "
                    f"{ctx.source}")
            train = morphology.observe(m, "train", ctx.source, s.morphology_train_n, **observe)
            # Each galaxy's own seeing where the records hold it (mock version 2 on).
            train_table = morphology.measure(shown(train["images"]), depth=ctx.source,
                                             psf=train.get("psf_fwhm_arcsec"), **measure)
            forest = fit(train_table, train["labels"], seeds.derive(ctx.cfg.seed, "classical"))
            _write(_file(ctx, "training", ctx.source), train_table, train, names,
                   predict_proba(forest, train_table, len(names)), s.morphology_clip)
            probs, oks, per_depth, labels, ids = [], [], [], None, None
            for i, depth in enumerate(depths):
                ctx.log(f"morphology: {s.morphology_n} {s.split} galaxies at {depth.name} "
                        f"({i + 1}/{len(depths)})")
                obs = morphology.observe(m, s.split, depth, s.morphology_n, **observe)
                if ids is not None and not np.array_equal(ids, obs["galaxy_id"]):
                    raise DataError(f"the {depth.name} images are not the same galaxies",
                                    path=m.root)
                labels, ids = obs["labels"], obs["galaxy_id"]
                table = morphology.measure(shown(obs["images"]), depth=depth,
                                           psf=obs.get("psf_fwhm_arcsec"), **measure)
                p = predict_proba(forest, table, len(names))
                _write(_file(ctx, s.split, depth), table, obs, names, p, s.morphology_clip)
                probs.append(p)
                oks.append(np.asarray(table["ok"], bool))
                per_depth.append(_depth_row(labels, p, names, s.ece_bins, table))
                # on the unclipped images, whatever statmorph measured: what the clip takes
                per_depth[-1]["clip"] = morphology.clip_shares(
                    obs["images"], depth=depth, stretch=stretch, bands=bands, pool=pool)
        wall = time.perf_counter() - start
        train_meta = train_table.meta
        return MorphologyOutput(
            {"label": LABEL, "features": list(FEATURES), "classifier": CLASSIFIER,
             "split": s.split, "n": int(len(labels)),
             "depths": [d.name for d in depths], "years": [d.years for d in depths],
             "per_depth": per_depth,
             "train": {"split": "train", "depth": ctx.source, "n": int(len(train_table)),
                       "n_used": int(np.sum(train_table["ok"])),
                       "n_failed": train_meta["n_failed"], "failures": train_meta["failures"],
                       "seconds_per_galaxy": train_meta["seconds_per_galaxy"]},
             "importances": dict(zip(FEATURES, map(float, forest.feature_importances_))),
             "class_table": [{c: row[c] for c in row.colnames} for row in
                             morphology.class_table(train_table, train["labels"], names)],
             "settings": {k: train_meta[k] for k in ("band", "psf", "detect_nsigma",
                                                       "statmorph", "photutils")},
             "workers": train_meta["workers"], "wall_s": wall,
             "measured": s.morphology_clip, "stretch_clip": ctx.cfg.data.stretch_clip,
             "files": {"train": os.path.relpath(_file(ctx, "training", ctx.source), ctx.out),
                       **{d.name: os.path.relpath(_file(ctx, s.split, d), ctx.out)
                          for d in depths}}},
            labels=labels, galaxy_id=ids, probabilities=np.stack(probs), ok=np.stack(oks),
            train={"labels": train["labels"], "ok": np.asarray(train_table["ok"], bool),
                   "flag_sersic": np.asarray(train_table["flag_sersic"]),
                   **{k: np.asarray(train_table[k], np.float64)
                      for k in morphology.TABLE_STATISTICS}})


def _depth_row(labels, p, names, bins, table):
    met = metrics.collect(metrics.ClassificationEvaluator(labels, p, names, n_bins=bins))
    ok = np.asarray(table["ok"], bool)
    correct = p.argmax(1) == labels
    return {"accuracy": met["accuracy"], "accuracy_sem": metrics.accuracy_sem(met["accuracy"],
                                                                              met["n"]),
            "f1_weighted": met["f1/weighted"], "ece": met["ece"], "n": met["n"],
            "n_failed": int((~ok).sum()), "failures": table.meta["failures"],
            "accuracy_measured": float(correct[ok].mean()) if ok.any() else None,
            "seconds_per_galaxy": table.meta["seconds_per_galaxy"],
            "wall_s": table.meta["wall_s"]}


def _write(path, table, observed, names, probabilities, measured):
    """The measurements with galaxy id, classes and probabilities, as ECSV, atomically."""
    out = table.copy()
    out.add_column(np.asarray(observed["galaxy_id"], np.int64), name="galaxy_id", index=0)
    labels = np.asarray(observed["labels"])
    out.add_column(np.asarray(names)[labels], name="true_class", index=1)
    out.add_column(np.asarray(names)[probabilities.argmax(1)], name="predicted_class", index=2)
    for c, name in enumerate(names):
        out[f"p_{name}"] = probabilities[:, c]
    out.meta["classifier"] = f"{CLASSIFIER['name']} on {', '.join(FEATURES)}"
    out.meta["measured"] = measured  # study.morphology_clip
    with io.atomic_path(path) as tmp:
        out.write(tmp, format="ascii.ecsv", overwrite=True)


# --------------------------------------------------------------------------- results


def summary(ctx, out, curve, ev):
    """The ``classical`` section of ``results.json``: the classifier at every depth, every
    network on the same galaxies, paired differences, the cost and the mock check."""
    if out.skipped:
        return {"skipped": out.skipped}
    t, n = out.table, len(out.labels)
    boot = dict(n_resamples=ctx.study.bootstrap, seed=seeds.derive(ctx.cfg.seed, "bootstrap"))
    mine = np.asarray(out.probabilities).argmax(2) == out.labels  # [depths, N]
    networks = {}
    for label in ctx.labels:
        correct = _network_correct(ctx, label, t, out, curve, ev)
        networks[label] = {
            "accuracy": [float(c.mean()) for c in correct],
            "minus_classical": [latent_lib.bootstrap_ci(c.astype(float) - k, **boot)
                                for c, k in zip(correct, mine)]}
    src = _index(t, ctx.source)
    tgt = _index(t, ctx.target)
    rows = t["per_depth"]
    row = {"accuracy_source": rows[src]["accuracy"], "accuracy_target": rows[tgt]["accuracy"],
           "curve_mean_accuracy": float(np.mean([r["accuracy"] for r in rows])),
           "ece_source": rows[src]["ece"], "ece_target": rows[tgt]["ece"],
           "ece_n": n, "ece_bins": ctx.study.ece_bins}
    note = ece_note(n, ctx.study.ece_bins, None if ev is None else ev.n)
    if note:
        row["ece_note"] = note
    return {**t, "source_index": src, "target_index": tgt, "row": row,
            "information": information(t, src, tgt),
            "networks": networks, "n_galaxies": n,
            "seconds_per_galaxy": float(np.mean([t["train"]["seconds_per_galaxy"],
                                                 *(r["seconds_per_galaxy"] for r in rows)]))}


# Below this many galaxies per bin on average, an ECE is mostly bin noise (biased upwards).
ECE_MIN_PER_BIN = 10


def ece_note(n, bins, networks_n=None):
    """A warning when the ECE of `n` galaxies in `bins` bins is mostly bin noise, else None."""
    if n >= ECE_MIN_PER_BIN * bins:
        return None
    theirs = f" on {networks_n}" if networks_n else ""
    return (f"ECE on {n} galaxies in {bins} bins ({n / bins:.1f} per bin on average, "
            f"fewer than {ECE_MIN_PER_BIN}): dominated by bin noise, which biases it upwards; "
            f"not comparable with the networks' ECE{theirs}")


def information(table, src, tgt):
    """What statmorph measured against what the networks see (``measured``: "unclipped"
    or "clipped"), the networks' r-band clip and, per depth, the share of the test
    galaxies' r-band pixels (and sky pixels) it takes; ``text`` says it in a sentence."""
    rows, depths = table["per_depth"], table["depths"]
    shares = [r.get("clip") for r in rows]
    out = {"measured": table["measured"], "band": table["settings"]["band"],
           "stretch_clip": table["stretch_clip"],
           "per_depth": [{"depth": d, "years": y, **(c or {})}
                         for d, y, c in zip(depths, table["years"], shares)]}
    if shares[src] is None:
        out["text"] = (f"statmorph measures the {out['band']} band of the stored images, the "
                       "ones the networks see (stretched before import: no clip in e-/s); "
                       "the networks see every band.")
        return out
    lo, hi = shares[src]["lo"], shares[src]["hi"]
    out.update(lo=lo, hi=hi)
    band, shallow = out["band"], int(np.argmin(table["years"]))
    at = [f"{_pc(shares[i]['below_lo_sky'])} ({_pc(shares[i]['below_lo'])}) at {depths[i]}"
          for i in dict.fromkeys((src, tgt, shallow))]
    listed = f"{', '.join(at[:-1])}{' and ' if len(at) > 1 else ''}{at[-1]}"
    upper = _pc(max(c["above_hi"] or 0.0 for c in shares))

    def cuts(verb):
        return (f"Of these galaxies' {band}-band sky pixels (outside the segmentation; of all "
                f"their pixels in brackets) the lower clip {verb} {listed}; the upper clip at "
                f"most {upper} of their pixels.")
    clip = (f"clipped to the stretch's [lo, hi] ({band}: [{lo:.3g}, {hi:.3g}] e-/s, "
            f"data.stretch_clip = \"{out['stretch_clip']}\")")
    if out["measured"] == "clipped":
        out["text"] = (f"statmorph measures the {band} band {clip}, as the networks see it "
                       f"(study.morphology_clip = \"clipped\"). {cuts('took')} The networks "
                       "also see the other bands.")
    else:
        out["text"] = (f"statmorph measures the {band} band in e-/s, unclipped, while the "
                       f"networks see each band {clip}: statmorph sees what the networks "
                       f"never do. {cuts('takes')} study.morphology_clip = \"clipped\" gives "
                       "statmorph the clipped images; the networks also see the other bands.")
    return out


def _pc(share):
    return "—" if share is None else f"{100 * share:.2g}%"


def _index(table, depth):
    years = survey.Depth.parse(depth).years
    return int(np.argmin([abs(y - years) for y in table["years"]]))


def _network_correct(ctx, label, table, out, curve, ev):
    """[depths, N] whether network `label` classified each of the baseline's galaxies."""
    n = len(out.labels)
    if curve is not None and not curve.skipped:
        if list(curve.table["depths"]) != list(table["depths"]):
            raise DataError("the curve and the classical baseline were measured at different "
                            "depths", index="morphology")
        _same(curve.galaxy_id[:n], out.galaxy_id, "curve")
        return np.asarray(curve.predicted[label])[:, :n] == out.labels
    _same(ev.galaxy_id[:n], out.galaxy_id, "evaluate")
    return np.stack([ev.probabilities[label][d][:n].argmax(1) == out.labels for d in ctx.depths])


def _same(ids, mine, stage):
    if len(ids) < len(mine) or not np.array_equal(ids, mine):
        raise DataError(f"the {stage} stage's galaxies are not the classical baseline's "
                        "(study.morphology_n larger than that stage's sample?)",
                        index="study.morphology_n")


# --------------------------------------------------------------------------- report


def markdown(results):
    c = results.get("classical") or {"skipped": "no morphology stage in this study"}
    head = "## Classical morphology beside the networks (beyond the paper)"
    if c.get("skipped"):
        return f"{head}\n\nSkipped: {c['skipped']}"
    t, set_ = c["train"], c["settings"]
    failures = ", ".join(f"{k}: {v}" for k, v in t["failures"].items()) or "none"
    labels = list(c["networks"])
    info = c.get("information") or {}  # absent from results of older versions
    clipped = [r.get("clip") for r in c["per_depth"]]
    sky = any(clipped)  # a column of the sky the networks' lower clip takes
    rows = []
    for i, (d, y) in enumerate(zip(c["depths"], c["years"])):
        r = c["per_depth"][i]
        rows.append((d, md.fmt(y), f"{md.pct(r['accuracy'])} ± {md.pct(r['accuracy_sem'])}",
                     f"{r['n_failed']} / {r['n']}", md.pct(r["accuracy_measured"]),
                     *((_pc(clipped[i] and clipped[i]["below_lo_sky"]),) if sky else ()),
                     *(md.pct(c["networks"][k]["accuracy"][i]) for k in labels)))
    diffs = [(f"`{k}`", *(md.pct_ci(c["networks"][k]["minus_classical"][c[f"{side}_index"]])
                          for side in ("source", "target"))) for k in labels]
    src, tgt = results["depths"]["source"], results["depths"]["target"]
    importances = ", ".join(f"{k} {v:.2f}" for k, v in
                            sorted(c["importances"].items(), key=lambda kv: -kv[1]))
    return "\n".join([
        head, "",
        f"statmorph {set_['statmorph']} (photutils {set_['photutils']}) measures the "
        f"{set_['band']} band of each galaxy, segmented at {set_['detect_nsigma']:g} sigma of "
        f"the smoothed sky noise, with PSF {set_['psf']}. A random forest "
        f"({c['classifier']['n_estimators']} trees) learns the class from "
        f"{', '.join(c['features'])}, on the first {t['n']} training galaxies at {t['depth']} "
        f"(statmorph measured {t['n_used']}; failures: {failures}). It is tested on the first "
        f"{c['n_galaxies']} galaxies of the `{c['split']}` split at every depth: the galaxies, "
        "noise included, that the networks are tested on, "
        + ("clipped as the networks see them" if info.get("measured") == "clipped" else
           "though not the same information") + " (below the table). A galaxy statmorph "
        "fails on keeps its place and is classified from what was measured (NaN elsewhere), so "
        "failures lower the accuracy instead of leaving the sample; \"measured only\" "
        "leaves them out. Accuracy in percent (± binomial standard error); the networks' "
        "columns are on the same galaxies.", "",
        md.table(("depth", "years", "classical", "statmorph failed", "classical, measured only",
                  *(("sky under the networks' lower clip",) if sky else ()),
                  *(f"`{k}`" for k in labels)), rows), "",
        *(["**What statmorph sees.** " + info["text"], ""] if info.get("text") else []),
        *([f"Calibration: {c['row']['ece_note']}.", ""] if c["row"].get("ece_note") else []),
        "Network minus classical, accuracy points on the same galaxies with a 95% paired "
        "bootstrap interval:", "",
        md.table(("model", f"at {src}", f"at {tgt}"), diffs), "",
        f"Cost: {c['seconds_per_galaxy']:.2f} s per galaxy in one process (mean over all "
        f"depths), {c['wall_s']:.0f} s for the stage on {c['workers']} workers. Feature "
        f"importances (mean decrease in impurity): {importances}.", "",
        "Per-galaxy measurements, flags, reasons and predictions: "
        + ", ".join(f"`{p}`" for p in c["files"].values()) + " (ECSV, astropy-readable).",
        "", md.figure(results, "robustness_curve", "accuracy against depth, with the classical "
                    "baseline")])


def _interval(low, high):
    """A literature range; None is an open end (JSON has no infinity)."""
    if low is None and high is None:
        return "—"
    if low is None:
        return f"< {md.fmt(high)}"
    return f"> {md.fmt(low)}" if high is None else f"[{md.fmt(low)}, {md.fmt(high)}]"


def mock_check_markdown(results):
    c = results.get("classical") or {}
    if not c or c.get("skipped"):
        return ""
    rows, differ, refs = [], [], set()
    for r in c["class_table"]:
        lit = _interval(r["lit_low"], r["lit_high"])
        rows.append((r["class"], r["statistic"], f"{r['n_used']} / {r['n']}",
                     md.pct(r["frac_flagged"]),
                     f"{md.fmt(r['median'])} [{md.fmt(r['p16'])}, {md.fmt(r['p84'])}]", lit,
                     r["inside"] or "—", md.pct(r["frac_inside"]), r["refs"] or "—"))
        refs.update(x for x in (r["refs"] or "").split(", ") if x)
        if r["inside"] == "no":
            differ.append(f"- mock {r['class']}s: {r['statistic']} median {md.fmt(r['median'])}, "
                          f"where the literature has {lit} ({r['quoted']}); "
                          f"{md.pct(r['frac_inside'])}% of them lie in that range.")
    t = c["train"]
    return "\n".join([
        "## The mocks' morphology against real galaxies", "",
        f"statmorph on the {t['n']} training galaxies at {t['depth']} (the classifier's "
        "sample), per class: median and 16-84% range of the measured galaxies, beside the "
        "literature's range for real galaxies of that class. The literature measured nearby "
        "galaxies at far better resolution, HST fields or simulations, with their own "
        "segmentations: its ranges say where real galaxies sit, not where 0.7\"-seeing mocks "
        "must. `gini_m20_merger` and `gini_m20_bulge` are the distances from the Gini-M20 "
        "lines of Lotz et al. (2008) (positive: merger side, bulge side).", "",
        md.table(("class", "statistic", "measured", "flagged %", "median [16%, 84%]",
                "literature", "median inside", "share inside %", "references"), rows), "",
        "Where the mocks differ from real galaxies:", "",
        *(differ or ["- nowhere the literature gives a range."]), "",
        "Read asymmetry and smoothness with care: at these depths the galaxies' outskirts are "
        "noise-dominated, and statmorph's background correction, measured on an unrotated "
        "sky box while the galaxy is rotated with interpolation that smooths its noise, "
        "over-subtracts, so A and S fall below zero even for symmetric, smooth galaxies "
        "(`tests/test_morphology.py`). Their offsets from the nearby, resolved galaxies of "
        "the literature say as much about the measurement at this depth and 0.7\" seeing as "
        "about the mocks; seeing also lowers the concentration of galaxies only a few PSF "
        "widths across.", "",
        md.figure(results, "morphology", "per-class morphology of the mocks"), "",
        "References: " + "; ".join(f"{morphology.REFERENCES[k]}" for k in sorted(refs)) + "."])
