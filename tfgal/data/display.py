"""How tfgal shows gri galaxies in its figures: one RGB composite, one pixel marker.

Every figure that draws galaxies (the corruption gallery here, the study's figures, the
attack figure) goes through these, so the same image looks the same everywhere: the
stretched bands (the manifest's order, bluest first: g, r, i) become i red, r green, g
blue, each scaled between per-band display limits that the caller shares between the
panels it wants compared. Other band counts are shown as grey (their mean).

NumPy only; the marker takes a matplotlib axes, so matplotlib loads with the figure.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DISPLAY_PERCENTILES", "display_limits", "to_rgb", "mark_pixels",
           "marker_radius"]

DISPLAY_PERCENTILES = (0.5, 99.5)  # per band: a few hot pixels do not set the scale


def display_limits(images, percentiles=DISPLAY_PERCENTILES):
    """(low [C], high [C]): per-band percentiles over every pixel of `images` [..., C]."""
    flat = np.asarray(images, np.float32).reshape(-1, np.shape(images)[-1])
    low, high = (np.percentile(flat, p, axis=0) for p in percentiles)
    return low, high


def to_rgb(images, low=None, high=None):
    """Stretched images [..., C] -> RGB in [0, 1]: 3 bands shown reddest as red (i red,
    r green, g blue), other band counts as grey (their mean).

    `low`, `high` ([C]): display limits; None takes `display_limits` of `images`, so
    shared limits must be passed in for panels that are compared.
    """
    images = np.asarray(images, np.float32)
    if low is None or high is None:
        auto_low, auto_high = display_limits(images)
        low = auto_low if low is None else low
        high = auto_high if high is None else high
    low, high = np.asarray(low), np.asarray(high)
    scaled = np.clip((images - low) / np.maximum(high - low, 1e-12), 0.0, 1.0)
    if scaled.shape[-1] == 3:
        return scaled[..., ::-1]
    return np.repeat(scaled.mean(axis=-1, keepdims=True), 3, axis=-1)


def marker_radius(side):
    """Radius in pixels of the ring around a changed pixel on an image `side` pixels
    wide: visible on a thumbnail, small enough not to hide the galaxy."""
    return max(2.0, side / 25)


def mark_pixels(ax, pixels, side, *, color="yellow", linewidth=1.5):
    """Rings each (x, y) of `pixels` on the image drawn in `ax` (negative: none, as for
    an image that was not attacked)."""
    from matplotlib.patches import Circle
    for x, y in np.asarray(pixels).reshape(-1, 2):
        if x >= 0 and y >= 0:
            ax.add_patch(Circle((x, y), radius=marker_radius(side), fill=False,
                                edgecolor=color, linewidth=linewidth))
