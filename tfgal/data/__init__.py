"""The data wing: dataset storage, mock galaxies, importers, corruptions, noise, pipelines.

The wing's map: top-level core modules and four rooms, in tiers. A module imports within
its own unit (its room, or its tier's core) and from lower tiers, never sideways or
upwards (tests/test_layout.py checks it)::

    tier 0, the storage core (a dataset on disk) and helpers every unit may use
      manifest       Manifest schema, load / save / update, constants, the split table
      codec          tf.train.Example encode / parse / read back, image checks, `verify`
      writer         atomic record files, shard names, DatasetWriter
      shards         a dataset built in parts (job arrays) and merged
      stretch        the arcsinh stretch, fitted once per dataset
      pools          process pools' worker count and start method (mocks, morphology)
      display        gri images as RGB (gallery, attack figure, study plots)
    tier 1, what makes datasets and what corrupts images
      mock/          the GalSim generator: params, galaxies, files, builder, beam
      importers/     the study's .npy files (npy) and FITS cutouts (fits)
      corruptions/   physical corruptions: physics (the ops), registry (tables, plans)
    tier 2, the pipeline core (observing stored galaxies)
      noise          Poisson noise on the fly (TensorFlow)
      observation    a batch of galaxies -> stretched images at a depth, corrupted by a plan
      pipeline       tf.data pipelines: shards (or memory) -> observed, stretched batches
    tier 3, what reads galaxies through the pipeline or the rooms
      gallery        one galaxy per class under every corruption and severity (a figure)
      morphology/    classical morphology: measurements (statmorph), literature ranges
      tfds_builders  the mock set and the study's files as TFDS datasets (on demand only)

Rooms hold what changes together: a new mock property touches mock/ only, a new corruption
corruptions/ only. The gallery draws corruptions through the pipeline, which applies them,
so it sits above both rather than in corruptions/ (there the room and the pipeline would
import each other).

Names are resolved on first use (PEP 562): ``import tfgal.data`` loads neither
TensorFlow nor GalSim, so the mock renderer can still fork its worker pool (forking
after TensorFlow has started its threads can deadlock the children).
"""

from __future__ import annotations

from tfgal import lazy_exports

_EXPORTS = {
    # storage: manifest, example codec, writer
    "Manifest": "manifest", "load_manifest": "manifest", "update_manifest": "manifest",
    "MANIFEST_NAME": "manifest", "CLASS_NAMES": "manifest", "SPLITS": "manifest",
    "FLUX": "manifest", "DEFAULT_SHARD_SIZE": "manifest",
    "serialize_example": "codec", "read_examples": "codec", "make_parser": "codec",
    "make_batch_parser": "codec", "verify": "codec",
    "DatasetWriter": "writer",
    # mock galaxies: parameters and plan, one galaxy, whole datasets
    "MockParams": "mock.params", "plan_mocks": ("mock.params", "plan"),
    "render_galaxy": "mock.galaxies",
    "build_mocks": ("mock.builder", "build"), "merge_mocks": ("mock.builder", "merge"),
    # importers of survey data
    "import_npy": "importers.npy", "import_fits": "importers.fits",
    "STRETCH_CHOICES": "importers.npy",
    # noise and tf.data pipelines (TensorFlow)
    "poisson_observe": "noise",
    "make_dataset": "pipeline", "make_paired_dataset": "pipeline", "load_arrays": "pipeline",
    "records_dataset": "pipeline", "resolve_depth": "observation",
    "augment_batch": "observation",
    "naming_corrupt_records": "pipeline",
    # classical morphology (statmorph)
    "measure_morphology": ("morphology.measurements", "measure"),
    "observe_flux": ("morphology.measurements", "observe"),
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
