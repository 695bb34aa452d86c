"""TensorFlow Datasets builders: ``tfds.load("tfgal_mock/tiny")`` and ``"deep_adversaries"``.

Importing this module registers two builders with TFDS; both work offline:

* ``tfgal_mock``: the mock galaxies of `tfgal.data.mock.galaxies`, rendered noiseless (e-/s per
  pixel) into feature ``flux``. Configs "tiny" (24/6/6 galaxies) and "default"
  (3000/500/1000), seed 0. Noise is added on the fly downstream, as for tfgal datasets.
  Given Beam options or a runner (``tfds build tfgal_mock --beam_pipeline_options=...``,
  or ``DownloadConfig(beam_runner=...)``), it renders on Apache Beam, as TFDS's own large
  datasets do; otherwise in this process. Both give the same examples.
* ``deep_adversaries``: the study's published files (Zenodo 10.5281/zenodo.5514180),
  read from TFDS's manual directory with the same validation as `tfgal.data.importers.npy`.
  Features ``image_y10`` and ``image_y1`` hold the same galaxy at both depths.

Both name their splits train / validation / test (tfgal's "val" is TFDS's
"validation") and key examples by ``galaxy_id``, which for the study's files is
``npy_importer.SPLIT_ID_OFFSETS[split] + row``.
"""

from __future__ import annotations

import importlib

import numpy as np
import tensorflow_datasets as tfds

from tfgal.data.importers import npy as npy_importer
from tfgal.data.manifest import CLASS_NAMES
from tfgal.data.mock import params as mock_params
from tfgal.errors import DataError

__all__ = ["TFDS_SPLITS", "IMAGE_SIZE", "TfgalMockConfig", "TfgalMock", "DeepAdversaries"]

TFDS_SPLITS = {"train": "train", "val": "validation", "test": "test"}  # tfgal -> TFDS
IMAGE_SIZE = 100
CITATION = """@article{ciprijanovic2022deepadversaries,
  title={DeepAdversaries: examining the robustness of deep learning models for galaxy
         morphology classification},
  author={{\\'C}iprijanovi{\\'c}, Aleksandra and Kafkes, Diana and Snyder, Gregory and
          S{\\'a}nchez, F Javier and Perdue, Gabriel Nathan and Pedro, Kevin and
          Nord, Brian and Madireddy, Sandeep and Wild, Stefan M},
  journal={Machine Learning: Science and Technology},
  volume={3}, number={3}, pages={035007}, year={2022}
}"""


def _image_feature():
    return tfds.features.Tensor(shape=(IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.float32)


class TfgalMockConfig(tfds.core.BuilderConfig):
    """A mock set's size and seed."""

    def __init__(self, *, n_train, n_val, n_test, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.n_train, self.n_val, self.n_test, self.seed = n_train, n_val, n_test, seed


class TfgalMock(tfds.core.GeneratorBasedBuilder):
    """Noiseless mock LSST galaxies (spiral / elliptical / merger) from `tfgal.data`."""

    VERSION = tfds.core.Version("2.0.0")
    RELEASE_NOTES = {"1.0.0": "First release.",
                     "2.0.0": "Mock version 2 (galaxies that measure like real ones) and each "
                              "galaxy's r-band PSF FWHM."}
    BUILDER_CONFIGS = [
        TfgalMockConfig(name="tiny", description="24/6/6 galaxies, for tests",
                        n_train=24, n_val=6, n_test=6, seed=0),
        TfgalMockConfig(name="default", description="3000/500/1000 galaxies",
                        n_train=3000, n_val=500, n_test=1000, seed=0),
    ]
    DEFAULT_BUILDER_CONFIG_NAME = "default"

    def _info(self):
        return self.dataset_info_from_configs(
            description="Noiseless mock LSST g, r, i cutouts in e-/s per pixel "
                        "(0.2 arcsec pixels) rendered by tfgal.mocks with GalSim.",
            features=tfds.features.FeaturesDict({
                "flux": _image_feature(),
                "label": tfds.features.ClassLabel(names=CLASS_NAMES),
                "galaxy_id": tfds.features.Scalar(dtype=np.int64),
                "psf_fwhm_arcsec": tfds.features.Scalar(
                    dtype=np.float32, doc="the galaxy's own r-band PSF FWHM, arcsec"),
            }),
            supervised_keys=("flux", "label"),
            citation=CITATION,
        )

    _on_beam = False

    def _generate_splits(self, dl_manager, download_config):
        # TFDS builds with Beam when `_generate_examples` returns a PTransform; render on
        # Beam exactly when the user gave Beam something to run on.
        self._on_beam = bool(download_config.beam_options or download_config.beam_runner)
        return super()._generate_splits(dl_manager, download_config)

    def _split_generators(self, dl_manager):
        del dl_manager  # rendered locally, nothing to download
        cfg = self.builder_config
        plan = mock_params.plan(cfg.n_train, cfg.n_val, cfg.n_test, cfg.seed)
        by_split = {name: [] for name in TFDS_SPLITS.values()}
        for split, galaxy_id, label in plan:
            by_split[TFDS_SPLITS.get(split, split)].append((int(galaxy_id), label))
        return {name: self._generate_examples(rows) for name, rows in by_split.items()}

    def _generate_examples(self, rows):
        seed = self.builder_config.seed
        if self._on_beam:
            beam = tfds.core.lazy_imports.apache_beam
            return (beam.Create(rows) | beam.Reshuffle()
                    | beam.Map(_mock_example, seed))
        return (_mock_example(row, seed) for row in rows)


def _mock_example(row, seed):
    galaxy_id, label = row
    flux, props = _galaxies().render(galaxy_id, label, seed)
    return galaxy_id, {"flux": flux, "label": label, "galaxy_id": galaxy_id,
                       "psf_fwhm_arcsec": np.float32(props["psf_fwhm_arcsec"])}


def _galaxies():
    # Imported late: the module renders with GalSim, which the npy builder never needs.
    return importlib.import_module("tfgal.data.mock.galaxies")


class DeepAdversaries(tfds.core.GeneratorBasedBuilder):
    """The study's LSST Y10 / Y1 images of Illustris TNG100 galaxies."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Download the files of Zenodo record 10.5281/zenodo.5514180
    (https://zenodo.org/record/5514180) and put the nine .npy files,
    images_Y10_{train,valid,test}.npy, images_Y1_{train,valid,test}.npy and
    labels_{train,valid,test}.npy, directly in the manual directory
    (`download_config=tfds.download.DownloadConfig(manual_dir=...)`, or
    <data_dir>/downloads/manual/ by default).
    """

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description="Mock LSST g, r, i images (100 x 100, channels last) of Illustris "
                        "TNG100 galaxies at 10-year (Y10) and 1-year (Y1) depth, as "
                        "published with DeepAdversaries (Ciprijanovic et al. 2022).",
            features=tfds.features.FeaturesDict({
                "image_y10": _image_feature(),
                "image_y1": _image_feature(),
                "label": tfds.features.ClassLabel(names=CLASS_NAMES),
                "galaxy_id": tfds.features.Scalar(dtype=np.int64),
            }),
            supervised_keys=("image_y10", "label"),
            homepage="https://doi.org/10.5281/zenodo.5514180",
            citation=CITATION,
        )

    def _split_generators(self, dl_manager):
        files = npy_importer.open_npy(dl_manager.manual_dir)
        expected = (IMAGE_SIZE, IMAGE_SIZE, 3)
        if files.image_shape != expected:
            raise DataError(f"images are {files.image_shape} (HWC); this builder declares "
                            f"{expected}: import other sizes with `tfgal-data import-npy`",
                            path=files.source)
        return {TFDS_SPLITS[split]: self._generate_examples(files, split)
                for split in files.splits}

    def _generate_examples(self, files, split):
        for _, galaxy_id, y10, y1, label in npy_importer.iter_npy(files, [split]):
            yield galaxy_id, {"image_y10": y10, "image_y1": y1, "label": label,
                              "galaxy_id": galaxy_id}
