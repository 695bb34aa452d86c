"""Attack stages: one-pixel attacks on each model, scale-free latent distances, the isomap of
latents, church windows."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from tfgal import io, seeds
from tfgal.attack import driver
from tfgal.attack import summary as attack_summary
from tfgal.study import latent as latent_lib
from tfgal.study.models import Train
from tfgal.study.stage import Stage
from tfgal.study.store import array_field

__all__ = ["Attack", "Distances", "Latent", "Church", "AttackOutput", "DistancesOutput",
           "LatentOutput", "ChurchOutput", "attacked", "figure_labels", "model_measures",
           "paired_measures"]


# --------------------------------------------------------------------------- attacks


@dataclasses.dataclass
class AttackOutput:
    """One model's attacks: the summary reported, and per attacked galaxy its outcome.

    Only galaxies the model classifies correctly at the source depth are attacked; the
    misclassified ones are counted in the summary (``n_misclassified``), never attacked.
    """

    summary: dict  # `tfgal.attack.summary.summarize`
    galaxy_id: np.ndarray = array_field(default=None)
    labels: np.ndarray = array_field(default=None)
    success: np.ndarray = array_field(default=None)
    already: np.ndarray = array_field(default=None)
    queries: np.ndarray = array_field(default=None)
    generations: np.ndarray = array_field(default=None)
    pixels: np.ndarray = array_field(default=None)
    values: np.ndarray = array_field(default=None)
    original_class: np.ndarray = array_field(default=None)
    final_class: np.ndarray = array_field(default=None)
    final_score: np.ndarray = array_field(default=None)
    d_attack: np.ndarray = array_field(default=None)   # NaN where the attack failed
    d_noisy: np.ndarray = array_field(default=None)
    d_returned: np.ndarray = array_field(default=None)  # base -> returned image, every attack
    latents: dict = array_field()  # {"base", "attacked", "noisy"}: [N, D]
    example: np.ndarray = array_field(default=None)    # base image of the first success,
    #                                                   [1, H, W, C] ([0, ...] if none)

    def outcomes(self):
        """{rule: [N] bool} of `tfgal.attack.summary.RULES`, read on the returned images."""
        return attack_summary.outcomes(
            self.labels, np.full(len(self.labels), -1), self.final_class, self.final_score,
            self.already, self.summary["settings"]["threshold"])

    def changed(self):
        """[N] bool: the attack changed the predicted class (the class-change rule)."""
        return self.outcomes()["class_change"]

    def first_success(self):
        hit = np.flatnonzero(self.changed())
        return int(hit[0]) if len(hit) else None


class Attack(Stage):
    """One-pixel attacks on the correctly classified ones among the first galaxies of the
    study split, with member `kind`'s model (a label), through `tfgal.attack.driver` (also
    ``OUT/attacks_<label>.csv``, one row per attack). The differential evolution is seeded
    by the member's training seed; the images' noise by the config's seed, as everywhere."""

    Output, version = AttackOutput, 1

    def __init__(self, kind):
        self.kind, self.name = kind, self.name_of(kind)
        self.deps = (Train.name_of(kind),)

    @staticmethod
    def name_of(kind):
        return f"attack_{kind}"

    def settings(self, ctx):
        a = ctx.study.attack
        return {**ctx.data_settings(), "n": a.n, "depths": list(ctx.depths),
                "attack_seed": self.seed(ctx), "population": "correctly classified",
                **{k: getattr(a, k) for k in ("pixels", "popsize", "iters", "f", "threshold",
                                              "max_batch", "init")}}

    def seed(self, ctx):
        return seeds.derive(ctx.member(self.kind).seed, "attack")

    def run(self, ctx, inputs):
        a = ctx.study.attack
        run = driver.attack_galaxies(
            ctx.model(self.kind), ctx.manifest, split=ctx.study.split, n=a.n,
            base_depth=ctx.source, noisy_depth=ctx.target, data_seed=ctx.cfg.seed,
            noise_mode=ctx.cfg.data.noise_mode, progress=ctx.progress,
            desc=f"attack {self.kind}", pixels=a.pixels, popsize=a.popsize, iters=a.iters,
            f=a.f, threshold=a.threshold, seed=self.seed(ctx), init=a.init,
            max_batch=a.max_batch or None, evaluator=a.evaluator)
        io.write_csv(os.path.join(ctx.out, f"attacks_{self.kind}.csv"),
                     driver.table(run, list(ctx.manifest.bands)))
        r, rows = run.result, np.asarray(run.rows)
        hit = np.flatnonzero(attack_summary.outcomes(
            r.labels, r.targets, r.final_class, r.final_score, r.already,
            a.threshold)["class_change"])[:1]
        return AttackOutput(
            summary=run.summary, galaxy_id=run.galaxy_id[rows], labels=run.labels[rows],
            success=r.success, already=r.already, queries=r.queries,
            generations=r.generations, pixels=r.pixels, values=r.values,
            original_class=r.original_class, final_class=r.final_class,
            final_score=r.final_score, d_attack=run.d_attack, d_noisy=run.d_noisy,
            d_returned=run.d_returned, latents=dict(run.latents), example=run.images[rows[hit]])


def attacked(labels):
    """The names of the attack stages of members `labels`."""
    return tuple(Attack.name_of(label) for label in labels)


def figure_labels(ctx):
    """The members drawn in per-galaxy figures (isomap, church windows): the first seed's."""
    return [m.label for m in ctx.members if m.seed == ctx.seeds[0]]


# --------------------------------------------------------------------------- distances


@dataclasses.dataclass
class DistancesOutput:
    """Scale-free latent distances, each labelled with the galaxies it is measured on.

    ``measures`` {label: `model_measures`}; ``paired`` {label: `paired_measures` against
    the same seed's baseline}; ``galaxies``: what the common set is; ``attacked`` {label:
    {"galaxy_id", "returned", "noisy", "class_change", "paper"}}: per attacked galaxy, its
    distances over the model's scale and the outcome under each rule (what the corruption
    comparison reads by galaxy id).
    """

    measures: dict
    paired: dict
    galaxies: dict
    attacked: dict = array_field()


def _common_set(ctx, ev):
    m = len(next(iter(ev.latents.values()))[ctx.source])
    return {"n": int(m), "what": f"the first {m} {ctx.study.split} galaxies (study.isomap_n), "
                                 "the same for every model"}


def model_measures(boot, ev, att, label, ctx):
    """One model's scale-free distances: {"scale", "noisy" (source -> target depth on the
    common galaxies), "returned" (base -> returned image of every attack),
    "class_change" / "paper" ({"attack", "noisy", "attack_over_noisy", "n"} on the attacks
    that succeeded under that rule: the paper's measure, selected on the outcome)}."""
    src, tgt = ctx.source, ctx.target
    common = ev.galaxy_id[:len(ev.latents[label][src])]
    scale = latent_lib.latent_scale(ev.latents[label][src])
    reps = boot.scale(label, ev.latents[label][src], common)
    d_common = np.linalg.norm(ev.latents[label][tgt] - ev.latents[label][src], axis=1)
    ids = att.galaxy_id
    out = {"scale": scale, "noisy": latent_lib.scaled_mean(boot, d_common, common, scale, reps),
           "returned": latent_lib.scaled_mean(boot, att.d_returned, ids, scale, reps)}
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = att.d_returned / att.d_noisy
    for rule, hit in att.outcomes().items():
        out[rule] = {
            "n": int(hit.sum()),
            "attack": latent_lib.scaled_mean(boot, att.d_returned[hit], ids[hit], scale, reps),
            "noisy": latent_lib.scaled_mean(boot, att.d_noisy[hit], ids[hit], scale, reps),
            "attack_over_noisy": latent_lib.galaxy_mean(boot, ratio[hit], ids[hit])}
    return out


def paired_measures(boot, ev, a, r, label, ref, ctx, scales):
    """Model `label` against `ref` on galaxies chosen before any outcome: ``attacked``, the
    galaxies both attacked (both classified them correctly), base -> returned image;
    ``noisy``, the common galaxies, source -> target depth. Each {"n", "galaxy_id", "raw",
    "scaled"} (`latent.paired_scaled`); `scales`: the two models' `model_measures` scales."""
    src, tgt = ctx.source, ctx.target
    common = ev.galaxy_id[:len(ev.latents[label][src])]
    reps = [boot.scale(k, ev.latents[k][src], common) for k in (label, ref)]
    both, ia, ib = np.intersect1d(a.galaxy_id, r.galaxy_id, return_indices=True)
    out = {"attacked": {"galaxy_id": both.tolist(), **latent_lib.paired_scaled(
        boot, a.d_returned[ia], r.d_returned[ib], both, scales, reps)}}
    d = [np.linalg.norm(ev.latents[k][tgt] - ev.latents[k][src], axis=1) for k in (label, ref)]
    out["noisy"] = {"galaxy_id": common.tolist(),
                    **latent_lib.paired_scaled(boot, d[0], d[1], common, scales, reps)}
    return out


class Distances(Stage):
    """Scale-free latent distances per model, and each model against the baseline of its
    seed on the same galaxies, chosen before any outcome.

    A model's scale is the median latent distance between different galaxies (the first
    ``isomap_n`` of the split, at the source depth), so a larger latent space does not pass
    for a more robust one. Every interval comes from one `latent.GalaxyBootstrap` over the
    study's galaxies, which redraws the galaxies behind each scale with the others."""

    name, Output, version = "distances", DistancesOutput, 1

    def __init__(self, labels):
        self.labels = list(labels)
        self.deps = ("evaluate", *attacked(labels))

    def settings(self, ctx):
        return {"bootstrap": ctx.study.bootstrap, "seed": ctx.cfg.seed}

    def run(self, ctx, inputs):
        ev = inputs["evaluate"]
        atts = {k: inputs[Attack.name_of(k)] for k in self.labels}
        m = len(ev.latents[self.labels[0]][ctx.source])
        boot = latent_lib.GalaxyBootstrap(
            np.concatenate([ev.galaxy_id[:m], *(a.galaxy_id for a in atts.values())]),
            n_resamples=ctx.study.bootstrap, seed=seeds.derive(ctx.cfg.seed, "bootstrap"))
        out = DistancesOutput(measures={}, paired={}, galaxies={"common": _common_set(ctx, ev)})
        for label, att in atts.items():
            out.measures[label] = model_measures(boot, ev, att, label, ctx)
            scale = out.measures[label]["scale"]
            out.attacked[label] = {"galaxy_id": att.galaxy_id,
                                   "returned": att.d_returned / scale,
                                   "noisy": att.d_noisy / scale, **att.outcomes()}
        for label in self.labels:
            ref = ctx.label_of("baseline", ctx.member(label).seed)
            if ref is not None and ref != label:
                scales = [out.measures[k]["scale"] for k in (label, ref)]
                out.paired[label] = paired_measures(boot, ev, atts[label], atts[ref], label,
                                                    ref, ctx, scales)
        return out


# --------------------------------------------------------------------------- isomap


@dataclasses.dataclass
class LatentOutput:
    counts: dict                      # {kind: {"points", "attacked"}}
    embedding: dict = array_field()   # {kind: [P, 2]}
    group: dict = array_field()       # {kind: [P]}: 0 source, 1 target, 2 attacked
    label: dict = array_field()       # {kind: [P]}


class Latent(Stage):
    """Isomap of each model's latents (the first seed's): the evaluated galaxies at both
    depths and the attacked images whose class changed (the class-change rule)."""

    name, Output, version = "latent", LatentOutput, 1

    def __init__(self, labels):
        self.deps = ("evaluate", *attacked(labels))

    def settings(self, ctx):
        return {"isomap_n": ctx.study.isomap_n, "neighbors": ctx.study.isomap_neighbors,
                "solver": "dense"}

    def run(self, ctx, inputs):
        ev, out = inputs["evaluate"], LatentOutput(counts={})
        for kind in figure_labels(ctx):
            att = inputs[Attack.name_of(kind)]
            hit = att.changed()
            at_depth = [ev.latents[kind][d] for d in ctx.depths]
            m = len(at_depth[0])
            latents = np.concatenate([*at_depth, att.latents["attacked"][hit]])
            out.embedding[kind] = latent_lib.isomap(latents,
                                                    n_neighbors=ctx.study.isomap_neighbors)
            out.group[kind] = np.repeat([0, 1, 2], [m, m, int(hit.sum())])
            out.label[kind] = np.concatenate([ev.labels[:m], ev.labels[:m], att.labels[hit]])
            out.counts[kind] = {"points": int(len(latents)), "attacked": int(hit.sum())}
        return out


# --------------------------------------------------------------------------- church windows


@dataclasses.dataclass
class ChurchOutput:
    windows: dict                      # {kind: [window_summary]}
    classes: dict = array_field()      # {kind: [W, grid, grid]}
    coords: np.ndarray = array_field(default=None)

    def panels(self):
        """{kind: [window summary + its coords and classes]}: what the figure draws."""
        return {k: [{"coords": self.coords, "classes": grid, **w}
                    for grid, w in zip(self.classes[k], self.windows[k])] for k in self.windows}


class Church(Stage):
    """Church windows: classes on the latent plane through a galaxy, its attacked image
    and its noisier image, for the first galaxies of each model whose class the attack
    changed."""

    name, Output, version = "church", ChurchOutput, 1

    def __init__(self, labels):
        self.deps = attacked(labels)

    def settings(self, ctx):
        s = ctx.study
        return {"church_windows": s.church_windows, "church_grid": s.church_grid,
                "church_span": s.church_span}

    def run(self, ctx, inputs):
        s, g = ctx.study, ctx.study.church_grid
        out = ChurchOutput(windows={}, coords=np.linspace(-s.church_span, s.church_span, g))
        for kind in figure_labels(ctx):
            att, model = inputs[Attack.name_of(kind)], ctx.model(kind)
            grids, windows = [], []
            for i in np.flatnonzero(att.changed())[:s.church_windows]:
                coords, classes = latent_lib.church_window(
                    model, att.latents["base"][i], att.latents["attacked"][i],
                    att.latents["noisy"][i], grid=g, span=s.church_span)
                grids.append(classes)
                windows.append(latent_lib.window_summary(att, i, coords, classes,
                                                         len(ctx.manifest.class_names)))
            out.classes[kind] = np.asarray(grids, np.int16).reshape(-1, g, g)
            out.windows[kind] = windows
        return out
