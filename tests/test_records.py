import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import tfgal.data
from conftest import write_blob_dataset
from tfgal.data import DatasetWriter, Manifest, MANIFEST_NAME, read_examples, verify
from tfgal.errors import DataError, ManifestError, OutputExists


def _writer(root, **kw):
    return DatasetWriter(root, images={"flux": {"noise": False}}, image_shape=(4, 4, 3),
                         shard_size=3, **kw)


def test_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (7, 4, 4, 3)).astype(np.float32)
    with _writer(tmp_path / "ds") as w:
        for i, image in enumerate(images):
            w.add("train", {"flux": image}, i % 3, 100 + i)
        manifest = w.finish(generator={"seed": 1})
    assert manifest.count("train") == 7
    assert manifest.class_counts("train") == [3, 2, 2]
    assert [f["count"] for f in manifest.split("train")["files"]] == [3, 3, 1]
    back = [e for path in manifest.files("train") for e in read_examples(path)]
    np.testing.assert_array_equal(np.stack([e["flux"] for e in back]), images)
    assert [e["galaxy_id"] for e in back] == list(range(100, 107))
    assert [e["label"] for e in back] == [i % 3 for i in range(7)]
    loaded = Manifest.load(tmp_path / "ds")
    assert loaded.generator == {"seed": 1} and loaded.image_shape == (4, 4, 3)
    assert verify(tmp_path / "ds").count("train") == 7
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]


@pytest.mark.parametrize("image, message", [
    (np.full((4, 4, 3), np.nan, np.float32), "NaN"),
    (np.full((4, 4, 3), np.inf, np.float32), "NaN or inf"),
    (-np.ones((4, 4, 3), np.float32), "negative"),
    (np.ones((4, 4, 2), np.float32), "shape"),
    (np.ones((3, 4, 4), np.float32), "shape"),
])
def test_bad_images_are_refused_with_index(tmp_path, image, message):
    with pytest.raises(DataError, match=message) as err:
        with _writer(tmp_path / "ds", source="input.npy") as w:
            w.add("train", {"flux": np.ones((4, 4, 3))}, 0, 0, index=0)
            w.add("train", {"flux": image}, 0, 1, index=1)
            w.finish()
    assert err.value.index == 1 and err.value.path == "input.npy"
    assert not os.path.exists(tmp_path / "ds")
    assert os.listdir(tmp_path) == []  # nothing half-written


def test_noisy_images_may_be_negative(tmp_path):
    with DatasetWriter(tmp_path / "ds", images={"Y1": {"noise": True}},
                       image_shape=(4, 4, 3)) as w:
        w.add("test", {"Y1": -np.ones((4, 4, 3))}, 2, 0)
        manifest = w.finish()
    assert not manifest.noiseless and manifest.class_counts("test") == [0, 0, 1]


@pytest.mark.parametrize("label", [-1, 3])
def test_label_out_of_range(tmp_path, label):
    with pytest.raises(DataError, match="label") as err:
        with _writer(tmp_path / "ds") as w:
            w.add("train", {"flux": np.ones((4, 4, 3))}, label, 5)
    assert err.value.index == 5


def test_duplicate_galaxy_id_and_missing_image(tmp_path):
    with pytest.raises(DataError, match="duplicate"):
        with _writer(tmp_path / "a") as w:
            w.add("train", {"flux": np.ones((4, 4, 3))}, 0, 5)
            w.add("val", {"flux": np.ones((4, 4, 3))}, 0, 5)
    with pytest.raises(DataError, match="declares"):
        with _writer(tmp_path / "b") as w:
            w.add("train", {"Y1": np.ones((4, 4, 3))}, 0, 5)


def test_existing_output_needs_overwrite(tmp_path):
    root = tmp_path / "ds"
    write_blob_dataset(root, counts=(3, 0, 0))
    with pytest.raises(OutputExists, match="exists and is not empty; rerun with --overwrite"):
        write_blob_dataset(root, counts=(3, 0, 0))
    with _writer(root, overwrite=True) as w:
        w.add("train", {"flux": np.ones((4, 4, 3))}, 0, 0)
        assert Manifest.load(root).image_shape == (16, 16, 3)  # old one intact meanwhile
        w.finish()
    assert Manifest.load(root).image_shape == (4, 4, 3)


def test_interrupted_build_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with _writer(tmp_path / "ds") as w:
            for i in range(5):
                w.add("train", {"flux": np.ones((4, 4, 3))}, 0, i)
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


@pytest.fixture()
def dataset_copy(blob_dataset, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(blob_dataset.root, root)
    return root


def test_truncated_shard_is_named(dataset_copy):
    manifest = Manifest.load(dataset_copy)
    path = manifest.files("train")[1]
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    with pytest.raises(DataError, match="truncated") as err:
        manifest.files("train")
    assert err.value.path == path


def test_corrupt_shard_is_named_with_record(dataset_copy, tmp_path):
    manifest = Manifest.load(dataset_copy)
    path = manifest.files("val")[0]
    # Flip bytes inside an uncompressed copy so the record CRC fails.
    raw = tmp_path / "raw.tfrecord"
    import gzip
    data = bytearray(gzip.decompress(open(path, "rb").read()))
    data[len(data) // 2] ^= 0xFF
    raw.write_bytes(bytes(data))
    with pytest.raises(DataError, match="corrupt") as err:
        list(read_examples(raw, compression=""))
    assert err.value.path == str(raw) and err.value.index is not None
    # The same damage in the dataset itself is caught by verify (checksum first).
    with open(path, "wb") as f:
        f.write(gzip.compress(bytes(data)))
    entry = manifest.split("val")["files"][0]
    entry["bytes"] = os.path.getsize(path)
    manifest.save()
    with pytest.raises(DataError, match="checksum") as err:
        verify(dataset_copy)
    assert err.value.path == path


def test_missing_shard_and_manifest(dataset_copy):
    manifest = Manifest.load(dataset_copy)
    path = manifest.files("test")[0]
    os.remove(path)
    with pytest.raises(DataError, match="missing") as err:
        manifest.files("test")
    assert err.value.path == path
    os.remove(dataset_copy / MANIFEST_NAME)
    with pytest.raises(ManifestError, match="no manifest"):
        Manifest.load(dataset_copy)
    with pytest.raises(ManifestError, match="does not exist"):
        Manifest.load(dataset_copy / "nowhere")


@pytest.mark.parametrize("edit, key", [
    (lambda m: m.update(schema_version=99), "schema_version"),
    (lambda m: m.update(colour="red"), "colour"),
    (lambda m: m.pop("splits"), "splits"),
])
def test_bad_manifest_names_the_key(dataset_copy, edit, key):
    path = dataset_copy / MANIFEST_NAME
    obj = json.loads(path.read_text())
    edit(obj)
    path.write_text(json.dumps(obj))
    with pytest.raises(ManifestError) as err:
        Manifest.load(dataset_copy)
    assert err.value.index == key and err.value.path == str(path)


def test_unknown_split(blob_dataset):
    with pytest.raises(ManifestError, match="split 'holdout' is not in the dataset"):
        blob_dataset.files("holdout")


def test_package_map_resolves_every_name_lazily():
    for name in tfgal.data.__all__:
        assert getattr(tfgal.data, name) is not None, name
        assert name in dir(tfgal.data)
    assert tfgal.data.build_mocks.__module__ == "tfgal.data.mock.builder"
    assert tfgal.data.import_npy.__module__ == "tfgal.data.importers.npy"
    with pytest.raises(AttributeError):
        tfgal.data.records  # noqa: B018 (the old module is gone, with no shim)
    # The package and the mock builder stay free of TensorFlow (the pool forks) and the
    # package of GalSim.
    code = ("import sys, tfgal.data as d; d.MockParams; d.plan_mocks; d.Manifest; "
            "assert 'tensorflow' not in sys.modules and 'galsim' not in sys.modules; "
            "import tfgal.data.mock.builder; assert 'tensorflow' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
