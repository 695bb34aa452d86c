"""The range of values an attack may insert, per band.

Inserted values are bounded by the range the stretched data take, not by [0, 1]: the
study's stretched pixels occupy a narrow band inside [0, 1], and pixels outside it would
be trivially out of distribution. `resolve_value_range` finds that range and says where
it came from (recorded in the attack's settings).
"""

from __future__ import annotations

import numpy as np

from tfgal.errors import ConfigError

__all__ = ["resolve_value_range"]


def resolve_value_range(value_range, assets, images):
    """Per-band (low, high) of inserted values and where they came from.

    Order: an explicit `value_range`; the model's ``value_range`` asset; the value range of
    its ``stretch`` asset; else the per-band min / max of the images attacked.
    """
    n_bands = images.shape[-1]
    if value_range is not None:
        return _parse_range(value_range, n_bands, "value_range"), "explicit"
    if assets.get("value_range") is not None:
        return _parse_range(assets["value_range"], n_bands, "assets.value_range"), "model assets"
    if assets.get("stretch"):
        from tfgal.data import stretch
        vr = stretch.value_range(assets["stretch"])
        if vr is not None:
            return _parse_range(vr, n_bands, "assets.stretch"), "model stretch"
    axes = tuple(range(images.ndim - 1))
    return (images.min(axis=axes).astype(np.float32),
            images.max(axis=axes).astype(np.float32)), "data"


def _parse_range(value, n_bands, key):
    if isinstance(value, dict):
        value = (value.get("low", value.get("lo")), value.get("high", value.get("hi")))
    try:
        low, high = (np.broadcast_to(np.asarray(v, np.float32), (n_bands,)).copy() for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be (low, high), scalars or one per band "
                          f"({n_bands}); received {value!r}", key=key) from None
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(low <= high)):
        raise ConfigError(f"{key} needs finite low <= high; received {value!r}", key=key)
    return low, high

