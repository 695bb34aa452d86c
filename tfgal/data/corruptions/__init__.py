"""Physical corruptions of survey images at five severities, in physical units.

    physics   the batched TensorFlow ops (seeing, sky, trails, cosmic rays, neighbours,
              misregistration, bad pixels, calibration, quantisation, JPEG), their
              per-galaxy seeds and the `Context` they read
    registry  each corruption's stage, parameter table and severities (`CORRUPTIONS`),
              checks against a dataset, and the `Plan` that says which galaxy gets which

The input pipeline (`tfgal.data.observation`) applies a `Plan` at the corruptions'
stages; the gallery, the study and the classical baseline read the registry. Names load on
first use: importing the room loads no TensorFlow.
"""

from __future__ import annotations

from tfgal import lazy_exports

_EXPORTS = {name: "registry" for name in (
    "NAMES", "STAGES", "SEVERITIES", "CORRUPTIONS", "Corruption", "Context", "Plan",
    "check", "table_rows", "per_galaxy_seeds", "corrupt", "calibration_factors",
    "SATURATION_E_PER_S", "TRAIL_FWHM_ARCSEC")}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
