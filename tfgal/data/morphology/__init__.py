"""Classical morphology: statmorph's statistics of observed galaxies, and real galaxies'.

    measurements  photutils segmentation + statmorph (Gini, M20, CAS, Sérsic n, ...) of
                  a batch in a process pool, the class table beside the literature
    realism       the same mock galaxies measured at high S/N, Y10 and Y1 beside the
                  literature (does the generator make real-looking classes?)
    literature    per-class ranges of those statistics from the literature, each with its
                  reference, and the dividing lines (Gini-M20, A > 0.35, n = 2.5)

statmorph and photutils are imported on use (`measurements.require` names the install if
either is missing). Names load on first use.
"""

from __future__ import annotations

from tfgal import lazy_exports

_EXPORTS = {
    **{name: "measurements" for name in (
        "EXTRA", "STATISTICS", "COLUMNS", "DETECT_NSIGMA", "DETECT_NPIXELS",
        "SMOOTH_FWHM_PIX", "SMOOTH_SIZE_PIX", "CENTRE_RADIUS_PIX", "PSF_STAMP_PIXELS",
        "FLAG_BAD", "require", "psf_image", "measure", "worker_pool", "versions", "observe",
        "TABLE_STATISTICS", "class_table", "clip_limits", "clip_like_stretch",
        "clip_shares")},
    **{name: "literature" for name in (
        "REFERENCES", "LiteratureRange", "LITERATURE", "MERGER_LINE", "BULGE_LINE",
        "ASYMMETRY_MERGER", "SERSIC_EARLY_LATE")},
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
