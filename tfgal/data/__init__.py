"""The data wing: dataset storage, mock galaxies, importers, noise and input pipelines.

Package map, by layer (each name's module in `_EXPORTS`)::

    manifest       Manifest schema, load / save / update, constants, the split table
    codec          tf.train.Example encode / parse / read back, image checks, `verify`
    writer         atomic record files, shard names, DatasetWriter
    shards         a dataset built in parts (job arrays) and merged
    stretch        the arcsinh stretch, fitted once per dataset
    mock_params    MockParams (ranges and why), the split plan
    mock_galaxies  GalSim physics of one mock galaxy
    pools          process pools' worker count and start method (mock_build, morphology)
    mock_build     many galaxies in a process pool -> a dataset
    beam_mock      the same dataset rendered on Apache Beam (the beam extra)
    npy_importer   the study's published .npy files -> a dataset
    fits_importer  tables of FITS cutouts -> a dataset
    noise          Poisson noise on the fly (TensorFlow)
    corruptions    physical corruptions (seeing, trails, ...) at five severities, and plans
    gallery        one galaxy per class under every corruption and severity (a figure)
    morphology     classical morphology: photutils segmentation + statmorph
    morphology_refs  literature ranges per class of those statistics, with references
    observation    a batch of galaxies -> stretched images at a depth; the square's symmetries
    pipeline       tf.data pipelines: shards (or memory) -> observed, stretched batches
    tfds_builders  TensorFlow Datasets builders (imported on demand only)

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
    "MockParams": "mock_params", "plan_mocks": ("mock_params", "plan"),
    "render_galaxy": "mock_galaxies",
    "build_mocks": ("mock_build", "build"), "merge_mocks": ("mock_build", "merge"),
    # importers of survey data
    "import_npy": "npy_importer", "import_fits": "fits_importer",
    "STRETCH_CHOICES": "npy_importer",
    # noise and tf.data pipelines (TensorFlow)
    "poisson_observe": "noise",
    "make_dataset": "pipeline", "make_paired_dataset": "pipeline", "load_arrays": "pipeline",
    "records_dataset": "pipeline", "resolve_depth": "observation",
    "augment_batch": "observation",
    "naming_corrupt_records": "pipeline",
    # classical morphology (statmorph)
    "measure_morphology": ("morphology", "measure"),
    "observe_flux": ("morphology", "observe"),
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
