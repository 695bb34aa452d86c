"""The mock generator: GalSim galaxies of three classes, rendered into tfgal datasets.

Modules, from one galaxy to a whole dataset::

    params    MockParams (every range, with why), the plan of (split, galaxy_id, label)
    galaxies  the GalSim physics of one galaxy: profiles, PSF, pixels
    files     one record file: its galaxies, rendered and written (shared by both builds)
    builder   a dataset in a local process pool, in parts (job arrays) and merged
    beam      the same dataset on Apache Beam (the beam extra), byte-identical

`builder` and `beam` both write through `files` and neither imports the other at import
time (`builder.build(beam=...)` imports `beam` when asked). A galaxy depends only on (seed,
galaxy_id, label), so every way of building writes the same bytes.

Names load on first use, as in `tfgal.data`: importing the room loads no GalSim.
"""

from __future__ import annotations

from tfgal import lazy_exports

_EXPORTS = {
    "MockParams": "params", "plan": "params", "check_class_fractions": "params",
    "STAMP_PIXELS": "galaxies", "render_galaxy": "galaxies", "render": "galaxies",
    "describe": "galaxies",
    "GENERATOR_NAME": "builder", "MOCK_VERSION": "builder", "render_many": "builder",
    "build": "builder",
    "merge": "builder",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
