"""The figure ``tfgal-attack`` writes beside its table: what the attacks did, galaxy by galaxy.

One block per attack shown, at most `MAX_SHOWN`: successful attacks first (under the rule
the attack ran with), then those that changed the class without meeting it, then the
rest, each group in attack order, so a figure of a weak attack still shows its best
cases. A block holds the galaxy as the model saw it (gri as RGB: i red, r green, g blue),
the image the attack returned with the changed pixel ringed, both with the same display
limits, and the class probabilities before and after as bars; its title gives the galaxy
id, the true class, the class after and the outcome under both rules.

Drawn on a bare matplotlib `Figure` with the Agg canvas (no pyplot: the caller's backend is
left alone), at an exact size (`figure_size`), and written atomically (`io.write_figure`).
"""

from __future__ import annotations

import math
import textwrap

import numpy as np

from tfgal import io
from tfgal.attack.summary import outcomes
from tfgal.data.display import display_limits, mark_pixels, to_rgb

__all__ = ["draw", "order", "figure_size", "FIGURE_NAME", "MAX_SHOWN", "DPI"]

FIGURE_NAME = "attack.png"
MAX_SHOWN = 8  # blocks: enough to see what the attack does, small enough to read
DPI = 110
# Layout, inches: exact, so a figure's pixels follow from its blocks (`figure_size`).
PANEL, GAP, BAR_LEFT, BARS_W = 1.6, 0.12, 0.38, 2.0
ROW_TITLE, ROW_BOTTOM, BLOCK_GAP = 0.5, 0.38, 0.45
LINE, BOTTOM, LEFT, RIGHT = 0.17, 0.1, 0.15, 0.15  # LINE: one 9 pt heading line
LEGEND_W = 1.4  # the heading's right corner, kept for the legend
BLOCK_W = 2 * PANEL + GAP + BAR_LEFT + BARS_W + GAP
ROW_H = ROW_TITLE + PANEL + ROW_BOTTOM
COLORS = {"before": "0.65", "after": "#d95f02"}
OUTCOME_COLORS = {"success": "#1b7a5a", "class change": "#b35900", "failed": "0.15"}


def _grid(shown):
    """(rows, columns) of blocks, filled row by row: two columns from two blocks on."""
    cols = 1 if shown <= 1 else 2
    return max(1, math.ceil(shown / cols)), cols


def figure_size(shown, head_lines=2):
    """(width, height) in inches of a figure of `shown` blocks (0: a note only) under a
    heading of `head_lines` lines."""
    rows, cols = _grid(shown)
    width = LEFT + cols * BLOCK_W + (cols - 1) * BLOCK_GAP + RIGHT
    return width, _top(head_lines) + (rows * ROW_H if shown else 0.1) + BOTTOM


def _top(head_lines):
    """Inches above the first block: the heading's lines, at least the legend's height."""
    return 0.2 + LINE * max(head_lines, 3)


def order(success, changed, limit=MAX_SHOWN):
    """Indices of the attacks shown: successes, then class changes, then the rest, each in
    attack order; at most `limit`."""
    success, changed = np.asarray(success, bool), np.asarray(changed, bool)
    rank = np.where(success, 0, np.where(changed, 1, 2))
    return np.lexsort((np.arange(len(rank)), rank))[:limit]


def _stopping_rule(settings):
    """The rule the attack stopped on, in a few symbols."""
    targeted = settings.get("targeted", False)
    if settings.get("success", "probability") == "class":
        return "class = target" if targeted else "class change"
    threshold = settings.get("threshold", 0.05)
    return f"p(target) > {threshold:g}" if targeted else f"p(true) < {threshold:g}"


def _head(title, run, shown, width):
    """The figure's heading: context and both rules' counts, which attacks are shown."""
    r, rates = run.result, run.summary["rates"]
    names = {"class_change": "class change",
             "paper": f"{_stopping_rule({**r.settings, 'success': 'probability'})} (paper)"}
    counts = ", ".join(f"{names.get(rule, rule)} {v['k']} of {v['n']}"
                       for rule, v in rates.items())
    rule = _stopping_rule(r.settings)
    lines = [f"{title}{'; ' if title else ''}successes: {counts}"]
    if shown:
        lines.append(f"{shown} of {r.n} attacks shown: successes ({rule}, the rule the "
                     "attack stopped on) first, then class changes, then the rest, each "
                     "in attack order")
    else:
        lines.append("no galaxy was attacked: the model classified none of them correctly")
    chars = int((width - 2 * LEGEND_W) * 72 / (9 * 0.5))  # 9 pt characters that fit
    return "\n".join(textwrap.fill(line, chars) for line in lines)


def _outcome(success, changed):
    return "success" if success else ("class change" if changed else "failed")


def _block_title(run, i, names, threshold, changed):
    r = run.result
    label, final = int(r.labels[i]), int(r.final_class[i])
    galaxy = int(run.galaxy_id[run.rows[i]])
    target = int(r.targets[i])
    aim = f", target {names[target]}" if target >= 0 else ""
    first = f"galaxy {galaxy}: true {names[label]}{aim}, after {names[final]}"
    scored = names[target] if target >= 0 else names[label]
    if target >= 0:
        relation = ">" if r.final_score[i] > threshold else "≤"
    else:
        relation = "<" if r.final_score[i] < threshold else "≥"
    outcome = _outcome(bool(r.success[i]), bool(changed[i]))
    second = (f"{outcome}: p({scored}) {r.original_score[i]:.2f} → {r.final_score[i]:.2f} "
              f"{relation} {threshold:g}")
    return first, second, OUTCOME_COLORS[outcome]


def _images(ax_base, ax_attacked, base, attacked, pixels):
    low, high = display_limits(np.stack([base, attacked]))  # shared by the pair
    ax_base.imshow(to_rgb(base, low, high), interpolation="nearest")
    ax_attacked.imshow(to_rgb(attacked, low, high), interpolation="nearest")
    mark_pixels(ax_attacked, pixels, base.shape[1], color="cyan")
    where = ", ".join(f"({x}, {y})" for x, y in np.asarray(pixels).reshape(-1, 2) if x >= 0)
    ax_base.set_title("before", fontsize=7, pad=2)
    ax_attacked.set_title(f"after: pixel {where}" if where else "not attacked",
                          fontsize=7, pad=2)
    for ax in (ax_base, ax_attacked):
        ax.set_xticks([])
        ax.set_yticks([])


def _bars(ax, before, after, names, scored, threshold):
    x = np.arange(len(names))
    ax.bar(x - 0.2, before, 0.4, color=COLORS["before"], label="before")
    ax.bar(x + 0.2, after, 0.4, color=COLORS["after"], label="after")
    # the paper's rule, drawn at the class it reads
    ax.hlines(threshold, scored - 0.45, scored + 0.45, colors="k", linestyles=":",
              linewidth=1, label="paper's threshold")
    ax.set_ylim(0, 1)
    ax.set_yticks([0, 0.5, 1])
    ax.set_xticks(x)
    ax.set_xticklabels(names, fontsize=7)
    ax.tick_params(axis="y", labelsize=6)
    ax.set_title("class probabilities", fontsize=7, pad=2)


def draw(run, class_names, path, *, title="", limit=MAX_SHOWN):
    """Draws the attacks of `run` (a `driver.AttackRun` with ``probabilities``) into the PNG
    `path`; returns {"path", "shown" (attack indices, in figure order), "size_px"}.

    `class_names` label the classes; `title` (the run's context) heads the figure, with
    both rules' counts and which attacks are shown in what order.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    r = run.result
    threshold = float(r.settings.get("threshold", 0.05))
    changed = outcomes(r.labels, r.targets, r.final_class, r.final_score, r.already,
                       threshold)["class_change"]
    shown = order(r.success, changed, limit)
    head = _head(title, run, len(shown), figure_size(len(shown))[0])
    lines = head.count("\n") + 1
    width, height = figure_size(len(shown), lines)
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    fig.text(0.5, 1 - 0.1 / height, head, ha="center", va="top", fontsize=9)
    rows, cols = _grid(len(shown))
    for slot, i in enumerate(shown):
        row, col = divmod(slot, cols)
        x0 = LEFT + col * (BLOCK_W + BLOCK_GAP)
        top = _top(lines) + row * ROW_H  # the block's upper edge, from the figure's top
        first, second, color = _block_title(run, i, class_names, threshold, changed)
        for text, dy, style in ((first, 0.02, dict(fontsize=8, fontweight="bold")),
                                (second, 0.19, dict(fontsize=7.5, color=color))):
            fig.text((x0 + BLOCK_W / 2) / width, 1 - (top + dy) / height, text,
                     ha="center", va="top", **style)
        y = 1 - (top + ROW_TITLE + PANEL) / height

        def axes(left, w):
            return fig.add_axes((left / width, y, w / width, PANEL / height))
        ax_base, ax_attacked = axes(x0, PANEL), axes(x0 + PANEL + GAP, PANEL)
        _images(ax_base, ax_attacked, run.images[run.rows[i]], r.images[i], r.pixels[i])
        scored = int(r.targets[i]) if r.targets[i] >= 0 else int(r.labels[i])
        bars = axes(x0 + 2 * PANEL + GAP + BAR_LEFT, BARS_W)
        _bars(bars, run.probabilities["base"][i], run.probabilities["returned"][i],
              class_names, scored, threshold)
        if slot == 0:  # one legend for all, in the heading's band
            fig.legend(*bars.get_legend_handles_labels(), loc="upper right", fontsize=7,
                       frameon=False, handlelength=1.5,
                       bbox_to_anchor=(1 - RIGHT / width, 1 - 0.05 / height))
    io.write_figure(path, fig, dpi=DPI)
    return {"path": path, "shown": [int(i) for i in shown],
            "size_px": list(fig.canvas.get_width_height())}
