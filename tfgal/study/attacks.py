"""Attack stages: one-pixel attacks on each model, scale-free latent distances, the isomap of
latents, church windows."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from tfgal import io, seeds
from tfgal.attack import driver
from tfgal.study import latent as latent_lib
from tfgal.study.models import Train
from tfgal.study.stage import Stage
from tfgal.study.store import array_field

__all__ = ["Attack", "Distances", "Latent", "Church", "AttackOutput", "DistancesOutput",
           "LatentOutput", "ChurchOutput", "attacked", "figure_labels"]


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
    latents: dict = array_field()  # {"base", "attacked", "noisy"}: [N, D]
    example: np.ndarray = array_field(default=None)    # base image of the first success,
    #                                                   [1, H, W, C] ([0, ...] if none)

    def first_success(self):
        hit = np.flatnonzero(self.success)
        return int(hit[0]) if len(hit) else None


class Attack(Stage):
    """One-pixel attacks on the correctly classified ones among the first galaxies of the
    study split, with member `kind`'s model (a label), through `tfgal.attack.driver` (also
    ``OUT/attacks_<label>.csv``, one row per attack). The differential evolution is seeded
    by the member's training seed; the images' noise by the config's seed, as everywhere."""

    Output = AttackOutput

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
        hit = np.flatnonzero(r.success)[:1]
        return AttackOutput(
            summary=run.summary, galaxy_id=run.galaxy_id[rows], labels=run.labels[rows],
            success=r.success, already=r.already, queries=r.queries,
            generations=r.generations, pixels=r.pixels, values=r.values,
            original_class=r.original_class, final_class=r.final_class,
            final_score=r.final_score, d_attack=run.d_attack, d_noisy=run.d_noisy,
            latents=dict(run.latents), example=run.images[rows[hit]])


def attacked(labels):
    """The names of the attack stages of members `labels`."""
    return tuple(Attack.name_of(label) for label in labels)


def figure_labels(ctx):
    """The members drawn in per-galaxy figures (isomap, church windows): the first seed's."""
    return [m.label for m in ctx.members if m.seed == ctx.seeds[0]]


# --------------------------------------------------------------------------- distances


@dataclasses.dataclass
class DistancesOutput:
    measures: dict  # {label: `latent.scale_free`}
    paired: dict    # {label: `latent.paired_comparison` against the same seed's baseline}


class Distances(Stage):
    """Scale-free latent distances per model, and each model against the baseline of its
    seed on the galaxies attacked successfully under both.

    A model's scale is the median latent distance between different galaxies (the first
    ``isomap_n`` of the split, at the source depth), so a larger latent space does not pass
    for a more robust one."""

    name, Output = "distances", DistancesOutput

    def __init__(self, labels):
        self.labels = list(labels)
        self.deps = ("evaluate", *attacked(labels))

    def settings(self, ctx):
        return {"bootstrap": ctx.study.bootstrap, "seed": ctx.cfg.seed}

    def run(self, ctx, inputs):
        ev, b = inputs["evaluate"], ctx.study.bootstrap
        seed = seeds.derive(ctx.cfg.seed, "bootstrap")
        scales, measures, paired = {}, {}, {}
        for label in self.labels:
            att = inputs[Attack.name_of(label)]
            scales[label] = latent_lib.latent_scale(ev.latents[label][ctx.source])
            measures[label] = latent_lib.scale_free(att.d_attack, att.d_noisy, scales[label],
                                                    n_resamples=b, seed=seed)
        for label in self.labels:
            member = ctx.member(label)
            ref = ctx.label_of("baseline", member.seed)
            if ref is None or ref == label:
                continue
            a, r = inputs[Attack.name_of(label)], inputs[Attack.name_of(ref)]
            paired[label] = latent_lib.paired_comparison(
                a.d_attack, r.d_attack, scales[label], scales[ref], a.galaxy_id, r.galaxy_id,
                n_resamples=b, seed=seed)
        return DistancesOutput(measures=measures, paired=paired)


# --------------------------------------------------------------------------- isomap


@dataclasses.dataclass
class LatentOutput:
    counts: dict                      # {kind: {"points", "attacked"}}
    embedding: dict = array_field()   # {kind: [P, 2]}
    group: dict = array_field()       # {kind: [P]}: 0 source, 1 target, 2 attacked
    label: dict = array_field()       # {kind: [P]}


class Latent(Stage):
    """Isomap of each model's latents (the first seed's): the evaluated galaxies at both
    depths and the successfully attacked images."""

    name, Output = "latent", LatentOutput

    def __init__(self, labels):
        self.deps = ("evaluate", *attacked(labels))

    def settings(self, ctx):
        return {"isomap_n": ctx.study.isomap_n, "neighbors": ctx.study.isomap_neighbors,
                "solver": "dense"}

    def run(self, ctx, inputs):
        ev, out = inputs["evaluate"], LatentOutput(counts={})
        for kind in figure_labels(ctx):
            att = inputs[Attack.name_of(kind)]
            hit = att.success
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
    and its noisier image, for the first successfully attacked galaxies of each model."""

    name, Output = "church", ChurchOutput

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
            for i in np.flatnonzero(att.success)[:s.church_windows]:
                coords, classes = latent_lib.church_window(
                    model, att.latents["base"][i], att.latents["attacked"][i],
                    att.latents["noisy"][i], grid=g, span=s.church_span)
                grids.append(classes)
                windows.append(latent_lib.window_summary(att, i, coords, classes,
                                                         len(ctx.manifest.class_names)))
            out.classes[kind] = np.asarray(grids, np.int16).reshape(-1, g, g)
            out.windows[kind] = windows
        return out
