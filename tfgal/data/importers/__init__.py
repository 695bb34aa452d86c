"""Importers: survey images from outside tfgal -> tfgal datasets.

    npy   the study's published .npy files (Zenodo 10.5281/zenodo.5514180), the Y10/Y1
          pairing kept (``tfgal-data import-npy``)
    fits  a table of FITS cutouts with labels (``tfgal-data import-fits``); its cutout
          reader also serves ``tfgal-predict --fits``

Both validate every file before writing and write through `tfgal.data.writer`, so an
import that fails leaves nothing behind. Names load on first use.
"""

from __future__ import annotations

from tfgal import lazy_exports

_EXPORTS = {
    "import_npy": "npy", "open_npy": "npy", "iter_npy": "npy", "npy_paths": "npy",
    "NPY_SPLITS": "npy", "NPY_DEPTHS": "npy", "SPLIT_ID_OFFSETS": "npy",
    "STRETCH_CHOICES": "npy",
    "import_fits": "fits", "read_table": "fits", "read_cutout": "fits",
    "stratified_split": "fits", "SPLIT_ALIASES": "fits",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
