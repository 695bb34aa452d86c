"""Every figure of the robustness study, drawn with matplotlib's Agg backend.

Functions take plain arrays and dicts (what `tfgal.study` stores per stage) and write one
PNG each, atomically (temp file + rename), so an interrupted run never leaves a half-drawn
figure that a resumed run would take for finished. Model colours and class colours are
fixed across figures so they can be read side by side.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: no display on clusters or CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from tfgal import io  # noqa: E402
from tfgal.data.display import display_limits, mark_pixels, to_rgb  # noqa: E402

__all__ = ["save", "robustness_curve", "confusion_matrices", "isomap", "church_windows",
           "latent_distances", "to_rgb", "example_galaxies", "reliability_diagram",
           "corruption_accuracy", "corruption_displacement", "morphology_classes", "MODEL_STYLE",
           "CLASS_COLORS"]

DPI = 110
MODEL_STYLE = {"baseline": {"color": "#d95f02", "label": "baseline (no DA)"},
               "target-bn": {"color": "#7570b3", "label": "target-bn (Y1 through BN)"},
               "mmd": {"color": "#1b9e77", "label": "domain-adapted (MMD)"},
               "depth-aug": {"color": "#e7298a", "label": "depth augmentation"},
               "depth-aug+mmd": {"color": "#66a61e", "label": "depth aug. + MMD"},
               "corrupt-aug": {"color": "#a6761d", "label": "corruption augmentation"},
               "classical": {"color": "0.1", "label": "classical (statmorph + random forest)",
                             "fmt": "s--"}}
CLASS_COLORS = ("#377eb8", "#e41a1c", "#4daf4a", "#984ea3", "#ff7f00")
DEPTH_MARKERS = ("o", "^")


def save(fig, path):
    """Writes `fig` to `path` as PNG atomically (`tfgal.io.write_figure`); closes it."""
    try:
        io.write_figure(path, fig, dpi=DPI, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def _kind(label):
    """A member label ("mmd", "mmd_s1") -> its kind ("mmd")."""
    kind, sep, seed = label.rpartition("_s")
    return kind if sep and seed.isdigit() else label


def _label(kind):
    style = MODEL_STYLE.get(_kind(kind))
    if style is None:
        return kind
    if _kind(kind) == kind:
        return style["label"]
    return f"{style['label']}, seed {kind.rpartition('_s')[2]}"


def _color(kind):
    return MODEL_STYLE.get(_kind(kind), {"color": None})["color"]


# --------------------------------------------------------------------------- robustness curve


def robustness_curve(curve, path, *, marks=(), chance=None,
                     band="band: ±1 binomial standard error"):
    """Accuracy against survey years (log axis), one line per model, with a band.

    `marks`: (years, label) pairs drawn as vertical lines (the training depths).
    `chance`: accuracy of always predicting the most common class, drawn dotted.
    `band`: what the band is, written on the figure.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    years = np.asarray(curve["years"])
    for kind, values in curve["models"].items():
        acc = np.asarray(values["accuracy"])
        sem = np.asarray([s or 0.0 for s in values["accuracy_sem"]])
        fmt = MODEL_STYLE.get(_kind(kind), {}).get("fmt", "o-")
        label = _label(kind) + (f", {values['n'][0]} galaxies" if kind == "classical" else "")
        ax.plot(years, acc, fmt, color=_color(kind), label=label)
        ax.fill_between(years, acc - sem, acc + sem, color=_color(kind), alpha=0.2, lw=0)
    for x, text in marks:
        ax.axvline(x, color="0.4", ls="--", lw=1)
        ax.text(x, 0.98, f"{text} ", color="0.3", rotation=90, va="top", ha="right",
                transform=ax.get_xaxis_transform())
    if chance is not None:
        ax.axhline(chance, color="0.5", ls=":", lw=1, label="most common class")
    ax.set_xscale("log")
    ax.set_xlabel("survey depth (years of LSST; exposure grows linearly)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.03)  # markers at 100% stay whole
    if band:
        ax.text(0.99, 0.01, band, transform=ax.transAxes, ha="right", va="bottom",
                fontsize=7, color="0.3")
    ax.set_title(f"Robustness to depth ({curve['models'][next(iter(curve['models']))]['n'][0]}"
                 " test galaxies per depth)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)  # off the lines
    return save(fig, path)


# --------------------------------------------------------------------------- confusion


def confusion_matrices(matrices, class_names, path):
    """Row-normalised confusion matrices with counts; `matrices`: {(model, depth): counts}."""
    kinds = list(dict.fromkeys(k for k, _ in matrices))
    depths = list(dict.fromkeys(d for _, d in matrices))
    fig, axes = plt.subplots(len(kinds), len(depths), figsize=(3.6 * len(depths), 3.4 * len(kinds)),
                             squeeze=False)
    for i, kind in enumerate(kinds):
        for j, depth in enumerate(depths):
            _confusion_panel(axes[i, j], np.asarray(matrices[(kind, depth)]), class_names)
            axes[i, j].set_title(f"{_label(kind)}\ntested at {depth}", fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def _confusion_panel(ax, counts, class_names):
    rows = counts.sum(axis=1, keepdims=True)
    norm = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for (r, c), v in np.ndenumerate(counts):
        ax.text(c, r, f"{norm[r, c]:.2f}\n({v})", ha="center", va="center", fontsize=8,
                color="white" if norm[r, c] > 0.6 else "black")
    ticks = range(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=30)
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")


# --------------------------------------------------------------------------- latent space


def isomap(panels, class_names, path, depth_names):
    """Isomap of latents per model: colour = true class, marker = depth, attacked = black x.

    `panels`: {model: {"embedding" [N, 2], "group" [N] (0, 1: depth index, 2: attacked),
    "label" [N]}}.
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 4.8), squeeze=False)
    for ax, (kind, p) in zip(axes[0], panels.items()):
        emb, group, label = (np.asarray(p[k]) for k in ("embedding", "group", "label"))
        for g, marker in enumerate(DEPTH_MARKERS):
            for c in range(len(class_names)):
                sel = (group == g) & (label == c)
                ax.scatter(emb[sel, 0], emb[sel, 1], s=12, marker=marker, alpha=0.6,
                           color=CLASS_COLORS[c], edgecolors="none")
        hit = group == 2
        ax.scatter(emb[hit, 0], emb[hit, 1], s=40, marker="x", color="black", linewidths=1.2)
        ax.set_title(f"{_label(kind)}: isomap of the latent space", fontsize=10)
        ax.set_xlabel("isomap 1")
        ax.set_ylabel("isomap 2")
    fig.legend(handles=_isomap_legend(class_names, depth_names), loc="lower center",
               ncol=len(class_names) + 3, frameon=False, bbox_to_anchor=(0.5, -0.06))
    fig.tight_layout()
    return save(fig, path)


def _isomap_legend(class_names, depth_names):
    handles = [Patch(color=CLASS_COLORS[c], label=name) for c, name in enumerate(class_names)]
    for marker, depth in zip(DEPTH_MARKERS, depth_names):
        handles.append(plt.Line2D([], [], ls="", marker=marker, color="0.3", label=depth))
    handles.append(plt.Line2D([], [], ls="", marker="x", color="black",
                              label="one-pixel attacked"))
    return handles


def church_windows(panels, class_names, path):
    """Class maps on the plane spanned by (attacked - base) and (noisy - base).

    `panels`: {model: [{"coords" [G], "classes" [G, G], "galaxy_id", "label"}, ...]};
    the base image sits at (0, 0), the attacked one at (1, 0), the noisy one at (0, 1).
    """
    cols = max(1, max(len(w) for w in panels.values()))
    fig, axes = plt.subplots(len(panels), cols, figsize=(3.3 * cols, 3.3 * len(panels)),
                             squeeze=False)
    cmap = ListedColormap(CLASS_COLORS[:len(class_names)])
    for i, (kind, windows) in enumerate(panels.items()):
        for j in range(cols):
            ax = axes[i, j]
            if j >= len(windows):
                ax.axis("off")
                ax.text(0.5, 0.5, "no successful\nattack", ha="center", va="center",
                        transform=ax.transAxes)
                continue
            _church_panel(ax, windows[j], cmap, len(class_names), class_names)
            if j == 0:
                ax.set_ylabel(f"{_label(kind)}\nalong noisy - base")
    handles = [Patch(color=CLASS_COLORS[c], label=n) for c, n in enumerate(class_names)]
    fig.legend(handles=handles, loc="lower center", ncol=len(class_names), frameon=False,
               bbox_to_anchor=(0.5, -0.04))
    fig.tight_layout()
    return save(fig, path)


def _church_panel(ax, window, cmap, n_classes, class_names):
    coords = np.asarray(window["coords"])
    extent = (coords[0], coords[-1], coords[0], coords[-1])
    ax.imshow(np.asarray(window["classes"]), origin="lower", extent=extent, cmap=cmap,
              vmin=-0.5, vmax=n_classes - 0.5, interpolation="nearest")
    for (x, y), marker, text in (((0, 0), "o", "base"), ((1, 0), "X", "attacked"),
                                 ((0, 1), "s", "noisy")):
        ax.plot(x, y, marker, color="white", mec="black", ms=7)
        ax.annotate(text, (x, y), xytext=(4, 4), textcoords="offset points", fontsize=8)
    ax.set_title(f"galaxy {window['galaxy_id']} ({class_names[window['label']]})", fontsize=9)
    ax.set_xlabel("along attacked - base")


def latent_distances(panels, path, *, xlabel="Euclidean distance in latent space"):
    """Histograms of latent distances per model, one panel per measure.

    `panels`: {title: {model: [values]}} (NaN entries are skipped); a panel with no value
    says so instead of drawing empty axes.
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.4), squeeze=False)
    for ax, (title, distances) in zip(axes[0], panels.items()):
        values = {k: np.asarray(v, float) for k, v in distances.items()}
        values = {k: v[np.isfinite(v)] for k, v in values.items()}
        finite = [v for v in values.values() if len(v)]
        ax.set_title(title, fontsize=9)
        if not finite:
            ax.text(0.5, 0.5, "no galaxy", ha="center", va="center", transform=ax.transAxes,
                    color="0.3")
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        bins = np.histogram_bin_edges(np.concatenate(finite), 20)
        for kind, v in values.items():
            mean = f"{v.mean():.2f}" if len(v) else "n/a"
            ax.hist(v, bins=bins, alpha=0.55, color=_color(kind),
                    label=f"{_label(kind)}: mean {mean}, n={len(v)}")
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel("galaxies")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1,
                  frameon=False)
    fig.tight_layout()
    return save(fig, path)


# --------------------------------------------------------------------------- corruptions


def corruption_accuracy(panels, severities, path):
    """Accuracy heat maps, one per (model, depth): rows corruptions, columns severities,
    the accuracy written in each cell. `panels`: {(model, depth): {corruption:
    {"accuracy": [per severity]}}}; models across, depths down."""
    kinds = list(dict.fromkeys(k for k, _ in panels))
    depths = list(dict.fromkeys(d for _, d in panels))
    names = list(next(iter(panels.values())))
    fig, axes = plt.subplots(len(depths), len(kinds), squeeze=False, layout="constrained",
                             figsize=(0.75 * len(severities) * len(kinds) + 1.6 * len(kinds),
                                      0.42 * len(names) * len(depths) + 1.3 * len(depths)))
    for i, depth in enumerate(depths):
        for j, kind in enumerate(kinds):
            ax = axes[i, j]
            acc = np.asarray([panels[(kind, depth)][c]["accuracy"] for c in names], float)
            image = ax.imshow(acc, cmap="viridis", vmin=0, vmax=1, aspect="auto")
            for (r, c), v in np.ndenumerate(acc):
                ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=8,
                        color="black" if v > 0.6 else "white")
            ax.set_xticks(range(len(severities)), [str(s) for s in severities])
            ax.set_yticks(range(len(names)), names if j == 0 else [""] * len(names))
            ax.set_xlabel("severity (0: clean)")
            ax.set_title(f"{_label(kind)}\nat {depth}", fontsize=10)
    fig.colorbar(image, ax=axes, shrink=0.8, label="accuracy")
    return save(fig, path)


def corruption_displacement(panels, severities, path, *, depth=""):
    """Latent displacement from the clean image against severity, one line per corruption
    (95% bootstrap intervals), beside the one-pixel attack's base -> attacked distance
    (its interval as a band) and the source -> target depth shift of the same galaxies
    (dotted). `panels`: {model: {"corruptions": {corruption: [per severity {"estimate",
    "low", "high"}]}, "attack": {...}, "noisy": {...} or None, "n": galaxies}}, all divided
    by the model's latent scale and measured on the same galaxies."""
    names = list(next(iter(panels.values()))["corruptions"])
    colors = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.0), squeeze=False,
                             sharey=True)
    for ax, (kind, p) in zip(axes[0], panels.items()):
        attack = p["attack"] or {}
        if attack.get("estimate") is not None:
            if attack.get("low") is not None:
                ax.axhspan(attack["low"], attack["high"], color="0.5", alpha=0.25, lw=0)
            ax.axhline(attack["estimate"], color="0.3", ls="--", lw=1.2,
                       label="one-pixel attack, every attack")
        else:
            ax.set_title("no galaxy attacked", fontsize=8, loc="right", color="0.3")
        noisy = p.get("noisy") or {}
        if noisy.get("estimate") is not None:
            ax.axhline(noisy["estimate"], color="0.2", ls=":", lw=1.5,
                       label="source -> target depth")
        for i, name in enumerate(names):
            cis = p["corruptions"][name]
            est = np.asarray([np.nan if c["estimate"] is None else c["estimate"] for c in cis],
                             float)
            low = np.asarray([c["low"] if c["low"] is not None else np.nan for c in cis], float)
            high = np.asarray([c["high"] if c["high"] is not None else np.nan for c in cis],
                              float)
            low, high = np.where(np.isnan(low), est, low), np.where(np.isnan(high), est, high)
            ax.errorbar(severities, est, yerr=[est - low, high - est], fmt="o-", ms=4,
                        capsize=2, color=colors(i % 10), label=name)
        ax.set_xticks(severities)
        ax.set_xlabel("severity (0: clean)")
        ax.set_title(f"{_label(kind)}" + (f", at {depth}" if depth else "")
                     + (f", {p['n']} galaxies" if p.get("n") is not None else ""), fontsize=10)
        ax.grid(alpha=0.3)
    axes[0, -1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    axes[0, 0].set_ylabel("latent displacement / latent scale")
    fig.tight_layout()
    return save(fig, path)


# --------------------------------------------------------------------------- galaxies


def example_galaxies(examples, attacked, class_names, path):
    """One column per class at both depths, and an attacked galaxy with its pixel ringed.

    `examples`: {depth name: (images [K, H, W, C], labels [K])} with matching galaxies;
    `attacked`: None or a dict with "base", "image" [H, W, C], "pixels" [k, 2] (x, y),
    "label", "final_class", "final_score" (true-class probability after), "model".
    """
    depths = list(examples)
    k = len(examples[depths[0]][1])
    cols = k + (attacked is not None)
    fig, axes = plt.subplots(len(depths), cols, figsize=(2.4 * cols, 2.5 * len(depths)),
                             squeeze=False)
    low, high = display_limits(np.concatenate([examples[d][0] for d in depths]))
    for i, depth in enumerate(depths):
        images, labels = examples[depth]
        for j in range(k):
            axes[i, j].imshow(to_rgb(images[j], low, high))
            axes[i, j].set_title(f"{class_names[labels[j]]} at {depth}", fontsize=9)
    if attacked is not None:
        _attacked_column(axes[:, -1], attacked, class_names, low, high)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return save(fig, path)


def _attacked_column(axes, attacked, class_names, low, high):
    shown = (("base", f"{class_names[attacked['label']]}: clean"),
             ("image", f"attacked ({attacked['model']}): classified\n"
                       f"{class_names[attacked['final_class']]}, "
                       f"p({class_names[attacked['label']]}) = {attacked['final_score']:.2f}"))
    for ax, (key, title) in zip(axes, shown):
        ax.imshow(to_rgb(attacked[key], low, high))
        ax.set_title(title, fontsize=9)
        mark_pixels(ax, attacked["pixels"], attacked["image"].shape[0])
    for ax in axes[len(shown):]:
        ax.axis("off")


# --------------------------------------------------------------------------- calibration


def reliability_diagram(panels, path):
    """Accuracy against confidence per confidence bin, one column per depth.

    `panels`: {model: {depth: `tfgal.study.metrics.reliability` dict}}. Points sit at a
    bin's mean confidence, their area grows with its galaxy count; empty bins are skipped.
    The diagonal is perfect calibration; the legend gives each model's ECE.
    """
    depths = list(dict.fromkeys(d for per_depth in panels.values() for d in per_depth))
    fig, axes = plt.subplots(1, max(1, len(depths)), figsize=(4.4 * max(1, len(depths)), 4.4),
                             squeeze=False)
    for ax, depth in zip(axes[0], depths):
        ax.plot([0, 1], [0, 1], color="0.5", ls="--", lw=1, label="perfectly calibrated")
        for kind, per_depth in panels.items():
            if depth in per_depth:
                _reliability_line(ax, kind, per_depth[depth])
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.03)
        ax.set_aspect("equal")
        ax.set_title(f"tested at {depth}", fontsize=10)
        ax.set_xlabel("confidence (largest probability)")
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle("Reliability (marker area grows with galaxies per bin)", fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def _reliability_line(ax, kind, table):
    count = np.asarray(table["count"], float)
    shown = [i for i, c in enumerate(count) if c > 0 and table["accuracy"][i] is not None]
    x = np.asarray([table["confidence"][i] for i in shown], float)
    y = np.asarray([table["accuracy"][i] for i in shown], float)
    # plot first: it takes the next colour of the cycle when the model has none of its own
    (line,) = ax.plot(x, y, "-", color=_color(kind), lw=1.3,
                      label=f"{_label(kind)}: ECE {table['ece']:.3f}")
    size = 12 + 150 * count[shown] / max(count.max(), 1)
    ax.scatter(x, y, s=size, color=line.get_color(), edgecolors="white", linewidths=0.5,
               zorder=3)


# --------------------------------------------------------------------------- morphology


def morphology_classes(values, labels, class_names, literature, path, *, depth="Y10",
                       merger_line=(-0.14, 0.33), bulge_line=(0.14, 0.80)):
    """The mocks' classical morphology per class beside the literature's ranges.

    `values`: {statistic: [N]} of statmorph measurements (NaN where unmeasured or, for
    "sersic_n", where the fit failed; "ok" selects the measured galaxies); `literature`: {class: {statistic: range with .low,
    .high}} (`tfgal.data.morphology.literature.LITERATURE`), drawn as bars above the histograms.
    Panels: Sersic n, concentration, asymmetry, and the Gini-M20 plane with the merger and
    E/S0/Sa lines of Lotz et al. (2008).
    """
    labels = np.asarray(labels)
    ok = np.asarray(values["ok"], bool)
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.6))
    for ax, stat, label, bins in (
            (axes[0, 0], "sersic_n", "Sersic index n", np.linspace(0, 8, 33)),
            (axes[0, 1], "concentration", "concentration C", np.linspace(1.5, 5.5, 33)),
            (axes[1, 0], "asymmetry", "asymmetry A", np.linspace(-0.4, 0.8, 37))):
        top = 0
        for c, name in enumerate(class_names):
            v = np.asarray(values[stat], float)[ok & (labels == c)]
            v = v[np.isfinite(v)]
            counts, _, _ = ax.hist(np.clip(v, bins[0], bins[-1]), bins=bins, histtype="step",
                                   lw=1.6, color=CLASS_COLORS[c],
                                   label=f"{name} (median {np.median(v):.2f})" if v.size
                                   else f"{name} (none measured)")
            top = max(top, counts.max() if len(counts) else 0)
        for c, name in enumerate(class_names):  # literature bars above the histograms
            lit = literature.get(name, {}).get(stat)
            if lit is not None:
                y = top * (1.12 + 0.09 * c)
                lo, hi = max(lit.low, bins[0]), min(lit.high, bins[-1])
                ax.plot([lo, hi], [y, y], color=CLASS_COLORS[c], lw=5, alpha=0.45,
                        solid_capstyle="butt")
        ax.set_ylim(0, max(top, 1) * (1.2 + 0.09 * len(class_names)))
        ax.set_xlabel(label)
        ax.set_ylabel("galaxies")
        ax.legend(fontsize=8, loc="center right")
        ax.grid(alpha=0.3)
    ax = axes[1, 1]
    for c, name in enumerate(class_names):
        mine = ok & (labels == c)
        ax.scatter(np.asarray(values["m20"])[mine], np.asarray(values["gini"])[mine], s=10,
                   color=CLASS_COLORS[c], alpha=0.7, label=name, edgecolors="none")
    m20 = np.linspace(-3.0, -0.5, 50)
    ax.plot(m20, merger_line[0] * m20 + merger_line[1], "k--", lw=1,
            label="Lotz+08 merger line")
    ax.plot(m20, bulge_line[0] * m20 + bulge_line[1], "k:", lw=1, label="Lotz+08 E/S0/Sa line")
    ax.set_xlim(-0.5, -3.0)  # the convention: M20 falls to the right
    ax.set_xlabel("M20")
    ax.set_ylabel("Gini")
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(alpha=0.3)
    fig.suptitle(f"Mock galaxies at {depth}, statmorph (r band): histograms per class; bars: "
                 "the literature's ranges per class (colours as the classes)", fontsize=10)
    fig.tight_layout()
    return save(fig, path)
