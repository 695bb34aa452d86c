"""A figure of what every corruption does: one galaxy per class, every severity, one image.

Rows are corruptions, columns are class x severity 0..5 (0 = the clean image). The images
come through the real pipeline (`pipeline.load_arrays` with `corruptions.Plan.sweep`), at
one depth and seed, so each row shows the same galaxies with the same noise as the
network would see them; only the corruption differs. gri are shown as an RGB composite
(i red, r green, g blue) of the stretched image, with display limits shared by every
panel (percentiles of the clean panels), so severities and rows compare. Each panel's
title gives its severity's physical values (`corruptions.CORRUPTIONS[name].rows`).

Drawn on a bare matplotlib `Figure` with the Agg canvas (no pyplot: the caller's backend
is left alone) and written atomically (`tfgal.io.write_figure`): an error leaves no file.

    tfgal-data gallery --data data/mock --out gallery.png
"""

from __future__ import annotations

import os
import re

import numpy as np

from tfgal import io, locks
from tfgal.data.display import DISPLAY_PERCENTILES, display_limits, to_rgb
from tfgal.data.manifest import Manifest
from tfgal.errors import ConfigError, DataError, ManifestError

__all__ = ["gallery", "accepted", "first_of_each_class", "figure_size", "panel_title",
           "DEFAULT_DEPTH", "DEFAULT_SPLIT", "DPI"]

DEFAULT_DEPTH = "Y10"
DEFAULT_SPLIT = "test"
DPI = 110
LEVELS = tuple(range(6))  # severity 0 (clean) to corruptions.SEVERITIES
# Layout, inches: panel side, gaps, room for titles and labels (the size is exact, so a
# figure's pixels follow from its rows and classes: `figure_size`).
PANEL, HGAP, BLOCK_GAP, TITLE_H = 1.0, 0.04, 0.2, 0.30
LEFT, RIGHT, TOP, BOTTOM = 1.35, 0.1, 0.6, 0.1
UNITS = {"sigma_Y10": "σ_Y10", "arcsec^2": "arcsec²"}


def _lib():
    """`tfgal.data.corruptions`, imported on use: it loads TensorFlow, and this module's
    constants serve the command line's parser (``tfgal-data mock`` must not load it)."""
    from tfgal.data import corruptions
    assert corruptions.SEVERITIES + 1 == len(LEVELS)
    return corruptions


def accepted(manifest):
    """The corruptions `corruptions.check` accepts for this dataset, in registry order."""
    corruptions_lib, out = _lib(), []
    for name in corruptions_lib.NAMES:
        try:
            corruptions_lib.check([name], manifest)
        except ConfigError:
            continue
        out.append(name)
    return out


def first_of_each_class(manifest, split):
    """{class index: (position in the split, galaxy id)} of each class's first galaxy in
    file order; reads labels only, and stops once every class is found."""
    import tensorflow as tf

    from tfgal.data import pipeline
    spec = {"label": tf.io.FixedLenFeature([], tf.int64),
            "galaxy_id": tf.io.FixedLenFeature([], tf.int64)}
    ds = pipeline.serialized_dataset(manifest, split).batch(64).map(
        lambda s: tf.io.parse_example(s, spec))
    found, position, n_classes = {}, 0, len(manifest.class_names)
    with pipeline.naming_corrupt_records(manifest, [split]):
        for batch in ds:
            for label, galaxy_id in zip(batch["label"].numpy(), batch["galaxy_id"].numpy()):
                found.setdefault(int(label), (position, int(galaxy_id)))
                position += 1
            if len(found) == n_classes:
                break
    return dict(sorted(found.items()))


def figure_size(rows, blocks):
    """(width, height) in inches of a gallery of `rows` corruptions and `blocks` classes."""
    block = len(LEVELS) * PANEL + (len(LEVELS) - 1) * HGAP
    width = LEFT + blocks * block + (blocks - 1) * BLOCK_GAP + RIGHT
    return width, TOP + rows * (TITLE_H + PANEL) + BOTTOM


def _value(column, value):
    match = re.match(r"(.*?)\s*\[(.*)\]$", column)
    unit = match.group(2) if match else ""
    for old, new in UNITS.items():
        unit = unit.replace(old, new)
    return f"{value:g} {unit}".strip()


def panel_title(name, severity):
    """'s2' and the severity's physical values with units, e.g. 's2\\n1.2 arcsec'."""
    if severity == 0:
        return "s0\nclean"
    c = _lib().CORRUPTIONS[name]
    values = c.rows[severity - 1]
    return f"s{severity}\n" + ", ".join(_value(col, v) for col, v in zip(c.columns, values))


def _parameters(name, noiseless):
    """The row label's small print: the stage it acts at on this dataset, the parameters'
    names (their units are in the panels' titles)."""
    c = _lib().CORRUPTIONS[name]
    names = (re.sub(r"\s*\[.*\]$", "", col) for col in c.columns)
    return f"({c.stage_on(noiseless)})\n" + "\n".join(names)


def _names(manifest, corruptions):
    if corruptions is None:
        names = accepted(manifest)
        if not names:
            raise ConfigError(f"no corruption can act on dataset {manifest.root}",
                              key="corruptions")
        return names
    names = [corruptions] if isinstance(corruptions, str) else list(corruptions)
    if not names:
        raise ConfigError("corruptions: an empty list; omit it for every corruption the "
                          "dataset accepts", key="corruptions")
    try:
        return _lib().check(names, manifest)
    except ConfigError as e:  # name the option: the library's message names the corruption
        raise ConfigError(f"corruptions: {e}", key="corruptions") from None


def _load(data):
    try:
        return data if isinstance(data, Manifest) else Manifest.load(data)
    except ManifestError as e:
        raise ManifestError(f"data {os.fspath(data)!r}: {e}") from None


def _collect(manifest, names, picks, depth, seed, split):
    """Images [corruptions, classes, severities, H, W, C] of the picked galaxies."""
    from tfgal.data import pipeline
    corruptions_lib = _lib()
    limit = max(position for position, _ in picks.values()) + 1
    out = np.empty((len(names), len(picks), len(LEVELS), *manifest.image_shape), np.float32)
    for i, name in enumerate(names):
        arrays = pipeline.load_arrays(manifest, split, depth, n=limit, seed=seed,
                                      corruption=corruptions_lib.Plan.sweep(name, LEVELS))
        for j, (_, galaxy_id) in enumerate(picks.values()):
            for k, level in enumerate(LEVELS):
                hit = np.flatnonzero((arrays["galaxy_id"] == galaxy_id)
                                     & (arrays["severity"] == level))
                if len(hit) != 1:
                    raise DataError(f"galaxy {galaxy_id} appears {len(hit)} times at severity "
                                    f"{level} in the first {limit} of split {split!r}",
                                    path=manifest.root, index=galaxy_id)
                out[i, j, k] = arrays["images"][hit[0]]
    return out


def _mosaic(tiles, gap):
    """Tiles [K, H, W, 3] side by side with `gap` white columns between them."""
    k, h = tiles.shape[0], tiles.shape[1]
    white = np.ones((h, gap, 3), tiles.dtype)
    parts = [p for tile in tiles for p in (tile, white)][:-1] if gap else list(tiles)
    return np.concatenate(parts, axis=1) if k > 1 else tiles[0]


def _draw(images, names, classes, ids, low, high, title, noiseless=True):
    """The figure: one axes per corruption and class, its severities as one mosaic (a
    few dozen axes draw in a fraction of the time of one per panel)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle
    rows, blocks = len(names), len(classes)
    size_h, size_w = images.shape[3], images.shape[4]
    width, height = figure_size(rows, blocks)
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    n = len(LEVELS)
    block_w = n * PANEL + (n - 1) * HGAP
    gap = max(1, round(size_w * HGAP / PANEL))
    mosaic_w = n * size_w + (n - 1) * gap
    fig.text(0.5, 1 - 0.12 / height, title, ha="center", va="top", fontsize=9)
    for j, (cls, galaxy_id) in enumerate(zip(classes, ids)):
        x0 = LEFT + j * (block_w + BLOCK_GAP)
        fig.text((x0 + block_w / 2) / width, 1 - (TOP - 0.08) / height,
                 f"{cls} (galaxy {galaxy_id})", ha="center", va="bottom", fontsize=9,
                 fontweight="bold")
    for i, name in enumerate(names):
        top = TOP + i * (TITLE_H + PANEL) + TITLE_H  # the panels' upper edge, from the top
        fig.text((LEFT - 0.1) / width, 1 - (top + PANEL / 2) / height, name, ha="right",
                 va="bottom", fontsize=9, fontweight="bold")
        fig.text((LEFT - 0.1) / width, 1 - (top + PANEL / 2 + 0.03) / height,
                 _parameters(name, noiseless), ha="right", va="top", fontsize=5.5, color="0.3")
        for j in range(blocks):
            x0 = LEFT + j * (block_w + BLOCK_GAP)
            ax = fig.add_axes((x0 / width, 1 - (top + PANEL) / height, block_w / width,
                               PANEL / height))
            ax.imshow(_mosaic(to_rgb(images[i, j], low, high), gap), aspect="auto",
                      interpolation="nearest")
            ax.set_axis_off()
            # The clean reference of each block, framed.
            ax.add_patch(Rectangle((-0.5, -0.5), size_w, size_h, fill=False, clip_on=False,
                                   edgecolor="#1b9e77", linewidth=1.5))
            for k, level in enumerate(LEVELS):
                centre = x0 + (k * (size_w + gap) + size_w / 2) / mosaic_w * block_w
                fig.text(centre / width, 1 - (top - 0.03) / height, panel_title(name, level),
                         ha="center", va="bottom", fontsize=5.5, linespacing=1.1)
    return fig


def gallery(data, out, *, depth=DEFAULT_DEPTH, corruptions=None, seed=0, split=DEFAULT_SPLIT,
            return_images=False, overwrite=False):
    """Draws the corruption gallery of dataset `data` into image `out`; returns a summary.

    Args:
      data: dataset directory or `Manifest`.
      out: the image to write (atomically; its directory is created), in the format its
        extension names (`tfgal.io.FIGURE_FORMATS`: .png, .jpg, .jpeg, .pdf, .svg).
      depth: the depth the galaxies are observed at ("noiseless" for mock data's flux).
      corruptions: names to show (checked with `corruptions.check`); None: every
        corruption the dataset accepts.
      seed: root seed of the noise and of the corruptions' random draws.
      split: the split whose first galaxy of each class (file order) is shown.
      return_images: add "images" [corruptions, classes, severities, H, W, C] (stretched,
        as drawn before the display limits) to the summary.
      overwrite: replace an existing `out` (else it is refused with `OutputExists` before
        any work). `out` is locked while it is drawn (`tfgal.locks`).

    Returns dict(out, data, split, depth, seed, classes, galaxy_ids, corruptions,
    severities, image_size [H, W, C], display_range (low [C], high [C]), figure_px
    [width, height] of the image, `figure_size` times `DPI`).
    """
    io.figure_format(out)  # an extension that names no format fails before any work
    with locks.hold(out):
        io.refuse_existing(out, overwrite)
        return _gallery(data, out, depth, corruptions, seed, split, return_images)


def _gallery(data, out, depth, corruptions, seed, split, return_images):
    from tfgal.data import pipeline
    manifest = _load(data)
    names = _names(manifest, corruptions)
    manifest.files(split)  # an unknown split or a missing shard fails before any work
    pipeline.resolve_depth(manifest, depth)  # and so does a depth the data cannot give
    picks = first_of_each_class(manifest, split)
    if not picks:
        raise DataError(f"split {split!r} holds no galaxies", path=manifest.root, index=split)
    classes = [manifest.class_names[c] for c in picks]
    ids = [galaxy_id for _, galaxy_id in picks.values()]
    images = _collect(manifest, names, picks, depth, seed, split)
    low, high = display_limits(images[:, :, 0], DISPLAY_PERCENTILES)
    depth_name = getattr(depth, "name", depth)
    title = (f"{os.path.basename(os.path.normpath(manifest.root))} {split}, {depth_name}, "
             f"seed {seed}: corruption (rows) x severity 0 (clean) to "
             f"{LEVELS[-1]} (columns); same galaxies and noise in every row")
    fig = _draw(images, names, classes, ids, low, high, title, manifest.noiseless)
    io.write_figure(out, fig, dpi=DPI)
    summary = {"out": os.fspath(out), "data": manifest.root, "split": split,
               "depth": str(depth_name), "seed": int(seed), "classes": classes,
               "galaxy_ids": ids, "corruptions": names, "severities": list(LEVELS),
               "image_size": list(manifest.image_shape),
               "display_range": [low.tolist(), high.tolist()],
               "figure_px": list(fig.canvas.get_width_height())}
    if return_images:
        summary["images"] = images
    return summary
