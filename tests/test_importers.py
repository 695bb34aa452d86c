"""Tests of tfgal.data's importers: the study's .npy files and FITS cutout tables."""

import os
import pickle

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from tfgal import cli, survey
from tfgal.data import CLASS_NAMES, Manifest, read_examples, verify
from tfgal.data import importers
from tfgal.data import stretch
from tfgal.errors import ConfigError, DataError, OutputExists

HW = 12  # small images keep the tests fast; the importers accept any H x W
STUDY_SPLITS = {"train": "train", "valid": "val", "test": "test"}


# --------------------------------------------------------------------------- helpers


def write_npy(directory, sizes=None, *, unit=False, hw=HW, seed=0):
    """Writes the study's nine files; returns {study split: (y10, y1, onehot)}."""
    sizes = sizes or {"train": 10, "valid": 4, "test": 5}
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    data = {}
    for split, n in sizes.items():
        if unit:  # already stretched, as the published files may be
            y10, y1 = rng.uniform(0.2, 0.9, (2, n, 3, hw, hw))
        else:  # sky-subtracted flux with noise: negatives and values far above 1
            y10 = rng.normal(0, 5, (n, 3, hw, hw)) + 40 * rng.random((n, 3, 1, 1))
            y1 = y10 + rng.normal(0, 15, y10.shape)
        labels = np.eye(3)[np.arange(n) % 3]
        np.save(os.path.join(directory, f"images_Y10_{split}.npy"), y10)
        np.save(os.path.join(directory, f"images_Y1_{split}.npy"), y1)
        np.save(os.path.join(directory, f"labels_{split}.npy"), labels)
        data[split] = (y10, y1, labels)
    return data


def read_dataset(root):
    """{split: {galaxy_id: example}} of a dataset, read through the record reader."""
    manifest = Manifest.load(root)
    out = {}
    for split in manifest.splits:
        out[split] = {}
        for path in manifest.files(split):
            for example in read_examples(path, manifest.compression):
                out[split][example["galaxy_id"]] = example
    return manifest, out


def assert_nothing_left(out):
    parent = os.path.dirname(out)
    assert not os.path.exists(out)
    leftovers = [n for n in os.listdir(parent) if n.startswith(f".{os.path.basename(out)}")]
    assert leftovers == []


@pytest.fixture
def source(tmp_path):
    path = str(tmp_path / "zenodo")
    return path, write_npy(path)


# --------------------------------------------------------------------------- npy: good input


def test_import_npy_round_trip(source, tmp_path):
    src, data = source
    out = str(tmp_path / "ds")
    manifest = importers.import_npy(src, out, shard_size=4)
    assert verify(out).splits.keys() == {"train", "val", "test"}
    manifest, got = read_dataset(out)
    assert manifest.image_shape == (HW, HW, 3)
    assert manifest.images["Y10"] == {"noise": True, "depth": survey.Y10.to_json(),
                                      "units": "as published"}
    assert manifest.images["Y1"]["depth"] == survey.Y1.to_json()
    assert manifest.generator["name"] == "tfgal.importers.npy"
    assert manifest.generator["source"] == os.path.abspath(src)
    for study, split in STUDY_SPLITS.items():
        y10, y1, onehot = data[study]
        labels = onehot.argmax(1)
        assert manifest.count(split) == len(labels)
        assert manifest.class_counts(split) == np.bincount(labels, minlength=3).tolist()
        offset = importers.SPLIT_ID_OFFSETS[split]
        assert sorted(got[split]) == [offset + row for row in range(len(labels))]
        for row in range(len(labels)):
            example = got[split][offset + row]  # Y10 and Y1 travel in one record
            np.testing.assert_array_equal(example["Y10"],
                                          y10[row].transpose(1, 2, 0).astype(np.float32))
            np.testing.assert_array_equal(example["Y1"],
                                          y1[row].transpose(1, 2, 0).astype(np.float32))
            assert example["label"] == labels[row]
    assert len(manifest.splits["train"]["files"]) == 3  # 10 galaxies in shards of 4
    all_ids = [gid for split in got.values() for gid in split]
    assert len(all_ids) == len(set(all_ids))


def test_import_npy_auto_fits_stretch_on_raw_values(source, tmp_path):
    src, data = source
    manifest = importers.import_npy(src, str(tmp_path / "ds"))
    assert manifest.stretch["kind"] == "arcsinh"
    assert manifest.stretch["depth"] == "Y10"
    assert manifest.stretch["n_images"] == 10
    expected = stretch.fit(data["train"][0].transpose(0, 2, 3, 1), noiseless=False)
    np.testing.assert_allclose(manifest.stretch["hi"], expected["hi"], rtol=1e-5)
    assert manifest.extra["stretch_choice"]["chosen"] == "fit"
    assert manifest.extra["value_range"]["train"]["Y10"][0] < 0


def test_import_npy_auto_keeps_stretched_values(tmp_path):
    src = str(tmp_path / "zenodo")
    write_npy(src, unit=True)
    manifest = importers.import_npy(src, str(tmp_path / "ds"))
    assert manifest.stretch == stretch.IDENTITY
    assert manifest.extra["stretch_choice"] == {
        "requested": "auto", "chosen": "identity", "n_sample": 10,
        "sample_min": pytest.approx(0.2, abs=0.05), "sample_max": pytest.approx(0.9, abs=0.05)}


@pytest.mark.parametrize("mode, kind", [("fit", "arcsinh"), ("identity", "identity")])
def test_import_npy_explicit_stretch(tmp_path, mode, kind):
    src = str(tmp_path / "zenodo")
    write_npy(src, {"train": 6}, unit=(mode == "fit"))  # the opposite of what auto picks
    manifest = importers.import_npy(src, str(tmp_path / "ds"), stretch=mode)
    assert manifest.stretch["kind"] == kind


def test_import_npy_skips_absent_split_and_reads_integer_labels(tmp_path):
    src = str(tmp_path / "zenodo")
    write_npy(src, {"train": 7, "test": 3})
    np.save(os.path.join(src, "labels_test.npy"), np.array([2, 0, 1], dtype=np.int64))
    manifest = importers.import_npy(src, str(tmp_path / "ds"), compression="")
    assert set(manifest.splits) == {"train", "test"}
    assert manifest.class_counts("test") == [1, 1, 1]


def test_iter_npy_chunks_and_pairs(source):
    src, data = source
    small = list(importers.iter_npy(src, chunk_rows=3))
    whole = list(importers.iter_npy(src))
    assert [g[:2] + g[4:] for g in small] == [g[:2] + g[4:] for g in whole]
    assert all(np.array_equal(a[2], b[2]) and np.array_equal(a[3], b[3])
               for a, b in zip(small, whole))
    split, gid, y10, y1, label = small[12]  # train has 10 rows: this is val row 2
    assert (split, gid) == ("val", importers.SPLIT_ID_OFFSETS["val"] + 2)
    assert y10.shape == y1.shape == (HW, HW, 3) and y10.dtype == np.float32
    np.testing.assert_array_equal(y1, data["valid"][1][2].transpose(1, 2, 0).astype("f4"))
    assert label == 2


# --------------------------------------------------------------------------- npy: bad input


def _save(name, array):
    def mutate(src, data):
        np.save(os.path.join(src, name), array(data))
    return mutate


def _remove(*names):
    def mutate(src, data):
        for name in names:
            os.remove(os.path.join(src, name))
    return mutate


def _with_bad_pixel(name, study, depth, row, value):
    def array(data):
        images = data[study][depth].copy()
        images[row, 1, 3, 4] = value
        return images
    return _save(name, array)


def _pickled(name):
    def mutate(src, data):
        with open(os.path.join(src, name), "wb") as f:
            pickle.dump(data["train"][0], f)
    return mutate


def _bad_onehot(data):
    labels = data["train"][2].copy()
    labels[3] = [1, 1, 0]
    return labels


BAD_NPY = {
    # case: (mutation, file named by the error, index named by the error)
    "missing_file": (_remove("images_Y1_test.npy"), "images_Y1_test.npy", None),
    "missing_train": (_remove("images_Y10_train.npy", "images_Y1_train.npy",
                              "labels_train.npy"), "images_Y10_train.npy", None),
    "count_mismatch": (_save("images_Y1_train.npy", lambda d: d["train"][1][:8]),
                       "images_Y1_train.npy", 8),
    "channels_last": (_save("images_Y10_valid.npy",
                            lambda d: d["valid"][0].transpose(0, 2, 3, 1)),
                      "images_Y10_valid.npy", None),
    "four_bands": (_save("images_Y10_train.npy",
                         lambda d: np.concatenate([d["train"][0]] * 2, axis=1)[:, :4]),
                   "images_Y10_train.npy", None),
    "three_dims": (_save("images_Y1_test.npy", lambda d: d["test"][1][:, 0]),
                   "images_Y1_test.npy", None),
    "other_size": (_save("images_Y10_test.npy", lambda d: d["test"][0][..., :8, :8]),
                   "images_Y10_test.npy", None),
    "nan_pixel": (_with_bad_pixel("images_Y1_valid.npy", "valid", 1, 3, np.nan),
                  "images_Y1_valid.npy", 3),
    "inf_pixel": (_with_bad_pixel("images_Y10_train.npy", "train", 0, 7, np.inf),
                  "images_Y10_train.npy", 7),
    "not_one_hot": (_save("labels_train.npy", _bad_onehot), "labels_train.npy", 3),
    "fractional_label": (_save("labels_test.npy",
                               lambda d: np.r_[d["test"][2][:4], [[0.5, 0.5, 0]]]),
                         "labels_test.npy", 4),
    "label_out_of_range": (_save("labels_valid.npy", lambda d: np.array([0, 1, 3, 0])),
                           "labels_valid.npy", 2),
    "object_array": (_save("images_Y10_test.npy",
                           lambda d: np.array([None] * 5, dtype=object)),
                     "images_Y10_test.npy", None),
    "pickled": (_pickled("images_Y1_train.npy"), "images_Y1_train.npy", None),
    "string_labels": (_save("labels_train.npy", lambda d: np.array(["spiral"] * 10)),
                      "labels_train.npy", None),
}


@pytest.mark.parametrize("case", sorted(BAD_NPY))
def test_import_npy_rejects_bad_input(source, tmp_path, case):
    src, data = source
    mutate, name, index = BAD_NPY[case]
    mutate(src, data)
    out = str(tmp_path / "ds")
    with pytest.raises(DataError) as err:
        importers.import_npy(src, out)
    assert os.path.basename(err.value.path) == name
    assert err.value.index == index
    assert_nothing_left(out)


def test_missing_files_are_all_named(source, tmp_path):
    src, _ = source
    _remove("images_Y1_test.npy", "labels_valid.npy")(src, None)
    with pytest.raises(DataError, match="2 of the study's 9 files") as err:
        importers.import_npy(src, str(tmp_path / "ds"))
    assert "images_Y1_test.npy" in str(err.value) and "labels_valid.npy" in str(err.value)


def test_failed_import_keeps_the_existing_dataset(source, tmp_path):
    src, data = source
    out = str(tmp_path / "ds")
    importers.import_npy(src, out)
    with pytest.raises(OutputExists, match="rerun with --overwrite"):  # no overwrite
        importers.import_npy(src, out)
    _with_bad_pixel("images_Y1_test.npy", "test", 1, 4, np.nan)(src, data)
    with pytest.raises(DataError):
        importers.import_npy(src, out, overwrite=True)
    assert verify(out).count("test") == 5
    assert sorted(os.listdir(tmp_path)) == ["ds", "zenodo"]


def test_bad_stretch_mode(source, tmp_path):
    with pytest.raises(ConfigError):
        importers.import_npy(source[0], str(tmp_path / "ds"), stretch="percentile")


# --------------------------------------------------------------------------- FITS tables


def write_cube(path, image):
    fits.PrimaryHDU(image.transpose(2, 0, 1)).writeto(path)


def write_band_hdus(path, image, *, keyword=None):
    """Three 2-D HDUs in the order r, i, g, named by EXTNAME or by `keyword`."""
    hdus = [fits.PrimaryHDU()]
    for band in ("r", "i", "g"):
        plane = image[..., survey.BANDS.index(band)]
        if keyword:
            header = fits.Header({keyword: band})
            hdus.append(fits.ImageHDU(plane, header=header, name=f"PLANE{band}"))
        else:
            hdus.append(fits.ImageHDU(plane, name=band.upper()))
    fits.HDUList(hdus).writeto(path)


def write_cutouts(directory, n, *, seed=0, negative=False):
    """n cutouts alternating the layouts; returns (images, relative file names)."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(directory, "cutouts"), exist_ok=True)
    images, names = [], []
    for row in range(n):
        image = rng.gamma(2.0, 3.0, (HW, HW, 3)).astype(np.float32)
        if negative:
            image -= 3.0
        name = os.path.join("cutouts", f"g{row}.fits")
        writer = [write_cube, write_band_hdus,
                  lambda p, im: write_band_hdus(p, im, keyword="FILTER")][row % 3]
        writer(os.path.join(directory, name), image)
        images.append(image)
        names.append(name)
    return images, names


def write_csv(path, columns):
    keys = list(columns)
    with open(path, "w", encoding="utf-8") as f:
        f.write(",".join(keys) + "\n")
        for values in zip(*columns.values()):
            f.write(",".join(map(str, values)) + "\n")


@pytest.fixture
def fits_table(tmp_path):
    base = str(tmp_path / "cutouts_in")
    images, names = write_cutouts(base, 12)
    labels = [["spiral", "elliptical", "merger"][i % 3] for i in range(12)]
    labels[4] = "1"  # an index is accepted in place of a name
    splits = ["train"] * 8 + ["valid", "val", "test", "test"]
    table = os.path.join(base, "labels.csv")
    write_csv(table, {"file": names, "label": labels, "split": splits,
                      "galaxy_id": [100 + i for i in range(12)]})
    return table, images, names


def test_import_fits_round_trip_both_layouts(fits_table, tmp_path):
    table, images, _ = fits_table
    out = str(tmp_path / "ds")
    manifest = importers.import_fits(table, out, shard_size=5)
    verify(out)
    assert manifest.images == {"flux": {"noise": False, "depth": None, "units": "e-/s"}}
    assert {s: manifest.count(s) for s in manifest.splits} == {"train": 8, "val": 2, "test": 2}
    assert manifest.class_counts("train") == [3, 3, 2]
    assert manifest.stretch["kind"] == "arcsinh" and manifest.stretch["n_images"] == 8
    assert manifest.generator["name"] == "tfgal.importers.fits"
    _, got = read_dataset(out)
    for row, image in enumerate(images):
        split = "train" if row < 8 else "val" if row < 10 else "test"
        example = got[split][100 + row]
        np.testing.assert_array_equal(example["flux"], image)
        assert example["label"] == (1 if row == 4 else row % 3)


def test_import_fits_split_by_fractions_is_seeded(tmp_path):
    base = str(tmp_path / "in")
    images, names = write_cutouts(base, 30)
    table = os.path.join(base, "labels.fits")
    Table({"file": names, "label": [i % 3 for i in range(30)]}).write(table)
    first = importers.import_fits(table, str(tmp_path / "a"), seed=3,
                                  split_fractions=(0.6, 0.2, 0.2))
    assert {s: first.class_counts(s) for s in first.splits} == {
        "train": [6, 6, 6], "val": [2, 2, 2], "test": [2, 2, 2]}  # stratified by class
    _, got = read_dataset(str(tmp_path / "a"))
    labels = np.arange(30) % 3
    assigned = importers.stratified_split(labels, (0.6, 0.2, 0.2), seed=3)
    for split in got:  # galaxy ids default to the row number
        assert sorted(got[split]) == np.flatnonzero(assigned == split).tolist()
    again = importers.stratified_split(labels, (0.6, 0.2, 0.2), seed=3)
    other = importers.stratified_split(labels, (0.6, 0.2, 0.2), seed=4)
    assert again.tolist() == assigned.tolist() and other.tolist() != assigned.tolist()
    with pytest.raises(ConfigError):
        importers.stratified_split(labels, (0.6, 0.2), seed=0)


def test_import_fits_with_noise_depth(tmp_path):
    base = str(tmp_path / "in")
    images, names = write_cutouts(base, 6, negative=True)
    table = os.path.join(base, "labels.csv")
    write_csv(table, {"file": names, "label": ["merger"] * 6, "split": ["train"] * 6})
    manifest = importers.import_fits(table, str(tmp_path / "ds"), depth="Y1")
    assert manifest.images == {"Y1": {"noise": True, "depth": survey.Y1.to_json(),
                                      "units": "as in the cutouts"}}
    _, got = read_dataset(str(tmp_path / "ds"))
    np.testing.assert_array_equal(got["train"][5]["Y1"], images[5])


def _rewrite_cutout(row, image_fn, layout=write_cube):
    def mutate(base, names, images):
        path = os.path.join(base, names[row])
        os.remove(path)
        layout(path, image_fn(images[row]))
    return mutate


def _edit_table(column, row, value):
    def mutate(base, names, images):
        path = os.path.join(base, "labels.csv")
        with open(path, encoding="utf-8") as f:
            lines = [line.rstrip("\n").split(",") for line in f]
        lines[row + 1][lines[0].index(column)] = str(value)
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(",".join(line) + "\n" for line in lines)
    return mutate


def _drop_column(column):
    def mutate(base, names, images):
        path = os.path.join(base, "labels.csv")
        with open(path, encoding="utf-8") as f:
            lines = [line.rstrip("\n").split(",") for line in f]
        k = lines[0].index(column)
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(",".join(line[:k] + line[k + 1:]) + "\n" for line in lines)
    return mutate


def _two_bands(path, image):
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(image[..., 0], name="G"),
                  fits.ImageHDU(image[..., 1], name="R")]).writeto(path)


def _with_nan(image):
    image = image.copy()
    image[2, 3, 1] = np.nan
    return image


BAD_FITS = {
    # case: (mutation, file named ("table" or a cutout row), index named)
    "missing_cutout": (lambda b, n, i: os.remove(os.path.join(b, n[5])), 5, 5),
    "unknown_class": (_edit_table("label", 3, "lenticular"), "table", 3),
    "label_out_of_range": (_edit_table("label", 6, "7"), "table", 6),
    "unknown_split": (_edit_table("split", 2, "holdout"), "table", 2),
    "duplicate_id": (_edit_table("galaxy_id", 9, 100), "table", 9),
    "missing_label_column": (_drop_column("label"), "table", "label"),
    "missing_file_column": (_drop_column("file"), "table", "file"),
    "four_band_cube": (_rewrite_cutout(7, lambda im: np.concatenate([im, im], -1)[..., :4]),
                       7, 7),
    "two_band_hdus": (_rewrite_cutout(4, lambda im: im, _two_bands), 4, 4),
    "shape_mismatch": (_rewrite_cutout(8, lambda im: im[:10]), 8, 8),
    "nan_pixel": (_rewrite_cutout(2, _with_nan, write_band_hdus), 2, 2),
    "negative_flux": (_rewrite_cutout(10, lambda im: im - 100), 10, 10),
}


@pytest.mark.parametrize("case", sorted(BAD_FITS))
def test_import_fits_rejects_bad_input(fits_table, tmp_path, case):
    table, images, names = fits_table
    base = os.path.dirname(table)
    mutate, where, index = BAD_FITS[case]
    mutate(base, names, images)
    out = str(tmp_path / "ds")
    with pytest.raises(DataError) as err:
        importers.import_fits(table, out)
    expected = table if where == "table" else os.path.join(base, names[where])
    assert os.path.abspath(err.value.path) == os.path.abspath(expected)
    assert err.value.index == index
    if case == "unknown_class":
        assert all(name in str(err.value) for name in CLASS_NAMES)
    assert_nothing_left(out)


# --------------------------------------------------------------------------- CLI


def test_cli_import_npy(source, tmp_path, capsys):
    src, _ = source
    out = str(tmp_path / "ds")
    assert cli.data_main(["import-npy", "--source", src, "--out", out, "--shard-size", "4",
                          "--no-gzip", "--stretch", "identity"]) == 0
    assert '"val"' in capsys.readouterr().out
    manifest = verify(out)
    assert manifest.compression == "" and manifest.stretch == stretch.IDENTITY
    os.remove(os.path.join(src, "labels_valid.npy"))
    assert cli.data_main(["import-npy", "--source", src, "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "labels_valid.npy" in err
    assert not os.path.exists(tmp_path / "b")


def test_cli_import_fits(fits_table, tmp_path, capsys):
    table, _, _ = fits_table
    out = str(tmp_path / "ds")
    assert cli.data_main(["import-fits", "--table", table, "--out", out]) == 0
    assert verify(out).count("train") == 8
    assert cli.data_main(["import-fits", "--table", table + ".missing",
                          "--out", str(tmp_path / "b")]) == 2
    assert "label table does not exist" in capsys.readouterr().err
