"""The dataset manifest: what a dataset directory holds, stored as ``manifest.json``.

A dataset is a directory::

    DIR/manifest.json
    DIR/train-00000-of-00004.tfrecord.gz
    ...

The manifest names the images every example holds (``flux``, the noiseless image in
e-/s per pixel, or depth names such as ``Y10`` for images with noise already in them),
the image shape, class names, bands, pixel scale, the stretch constants and the
generator's parameters, and, per split, every shard's name, record count, byte size and
SHA-256 with the split's count and counts per class (`split_table`, the one place that
table is built). It is written last and atomically, so a directory without one is not a
dataset.

``psf_fwhm`` says whether every record holds its galaxy's own PSF FWHM (feature
``psf_fwhm_arcsec``, `PSF_FWHM`): ``{"band": "r", "units": "arcsec"}`` (`PSF_FWHM_R`) for
mock datasets, whose galaxies each have their own seeing; absent (None) for imported
survey data and for datasets written before it existed. A None field is left out of the
JSON, so such manifests read and write as before.
"""

from __future__ import annotations

import dataclasses
import json
import os

from tfgal import io
from tfgal.errors import DataError, ManifestError

__all__ = ["SCHEMA_VERSION", "MANIFEST_NAME", "CLASS_NAMES", "FLUX", "SPLITS",
           "DEFAULT_SHARD_SIZE", "FILE_KEYS", "PSF_FWHM", "PSF_FWHM_R", "Manifest",
           "load_manifest", "update_manifest", "split_table"]

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
CLASS_NAMES = ("spiral", "elliptical", "merger")  # the study's label order
FLUX = "flux"  # name of the noiseless image
SPLITS = ("train", "val", "test")
DEFAULT_SHARD_SIZE = 256  # galaxies per shard: ~30 MB raw, several shards per worker
FILE_KEYS = ("name", "count", "bytes", "sha256")  # a shard's entry in the split table
PSF_FWHM = "psf_fwhm_arcsec"  # the record feature holding a galaxy's own PSF FWHM
PSF_FWHM_R = {"band": "r", "units": "arcsec"}  # the one PSF description this tfgal reads


def split_table(files, class_counts):
    """A split's manifest entry from its shard entries (in order) and counts per class."""
    files = [{key: entry[key] for key in FILE_KEYS} for entry in files]
    return {"files": files, "count": int(sum(entry["count"] for entry in files)),
            "class_counts": [int(c) for c in class_counts]}


@dataclasses.dataclass
class Manifest:
    """What a dataset directory holds; stored as ``manifest.json``."""

    root: str
    image_shape: tuple
    class_names: tuple
    bands: tuple
    pixel_scale_arcsec: float
    images: dict  # name -> {"noise": bool, "depth": Depth json or None, "units": str}
    splits: dict  # split -> `split_table`: {"files": [FILE_KEYS...], "count", "class_counts"}
    compression: str = ""
    stretch: dict | None = None
    generator: dict | None = None
    schema_version: int = SCHEMA_VERSION
    extra: dict = dataclasses.field(default_factory=dict)
    psf_fwhm: dict | None = None  # PSF_FWHM_R when every record holds feature PSF_FWHM

    @property
    def noiseless(self):
        """True when the dataset holds noiseless flux (noise is added on the fly)."""
        return FLUX in self.images

    def split(self, name):
        if name not in self.splits:
            error = ManifestError(f"split {name!r} is not in the dataset {self.root}; its "
                                  f"splits are {', '.join(self.splits)}")
            # named in the message already, not repeated as "(file ..., index ...)"
            error.path, error.index = os.path.join(self.root, MANIFEST_NAME), name
            raise error
        return self.splits[name]

    def files(self, split):
        """Absolute shard paths of `split`, checked to exist with their recorded size."""
        paths = []
        for entry in self.split(split)["files"]:
            path = os.path.join(self.root, entry["name"])
            if not os.path.exists(path):
                raise DataError("shard listed in the manifest is missing", path=path)
            size = os.path.getsize(path)
            if size != entry["bytes"]:
                raise DataError(
                    f"shard is {size} bytes but the manifest records {entry['bytes']}: "
                    "truncated or rewritten", path=path)
            paths.append(path)
        return paths

    def count(self, split):
        return int(self.split(split)["count"])

    def class_counts(self, split):
        return list(self.split(split)["class_counts"])

    def to_json(self):
        obj = dataclasses.asdict(self)
        obj.pop("root")
        obj["image_shape"] = list(self.image_shape)
        obj["class_names"] = list(self.class_names)
        obj["bands"] = list(self.bands)
        if obj["psf_fwhm"] is None:  # manifests without PSFs stay as they were
            del obj["psf_fwhm"]
        return obj

    @classmethod
    def load(cls, root):
        """Reads ``root/manifest.json``; errors name the file and the bad key."""
        root = os.fspath(root)
        path = os.path.join(root, MANIFEST_NAME)
        if not os.path.isdir(root):
            raise ManifestError("dataset directory does not exist", path=root)
        if not os.path.exists(path):
            raise ManifestError(
                "no manifest: not a tfgal dataset, or its build did not finish", path=path)
        try:
            with open(path, encoding="utf-8") as f:
                obj = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise ManifestError(f"unreadable manifest: {e}", path=path) from None
        version = obj.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ManifestError(
                f"manifest schema version {version!r}, this tfgal reads {SCHEMA_VERSION}",
                path=path, index="schema_version")
        fields = {f.name for f in dataclasses.fields(cls)} - {"root"}
        unknown = set(obj) - fields
        if unknown:
            raise ManifestError(f"unknown manifest keys {sorted(unknown)}", path=path,
                                index=sorted(unknown)[0])
        required = ("image_shape", "class_names", "bands", "pixel_scale_arcsec", "images",
                    "splits")
        for key in required:
            if key not in obj:
                raise ManifestError("manifest lacks a required key", path=path, index=key)
        obj["image_shape"] = tuple(obj["image_shape"])
        obj["class_names"] = tuple(obj["class_names"])
        obj["bands"] = tuple(obj["bands"])
        if obj.get("psf_fwhm") not in (None, PSF_FWHM_R):
            raise ManifestError(f"psf_fwhm {obj['psf_fwhm']!r}: this tfgal reads only "
                                f"{PSF_FWHM_R} (r-band FWHMs in arcsec)", path=path,
                                index="psf_fwhm")
        return cls(root=root, **obj)

    def save(self):
        io.write_json(os.path.join(self.root, MANIFEST_NAME), self.to_json())


def load_manifest(root):
    return Manifest.load(root)


def update_manifest(root, **fields):
    """Rewrites some manifest fields atomically (e.g. `stretch` once fitted)."""
    manifest = Manifest.load(root)
    for key, value in fields.items():
        if not hasattr(manifest, key) or key == "root":
            raise ManifestError("unknown manifest field", path=root, index=key)
        setattr(manifest, key, value)
    manifest.save()
    return manifest
