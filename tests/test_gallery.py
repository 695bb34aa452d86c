"""`tfgal-data gallery`: one galaxy per class under every corruption and severity, drawn
through the real pipeline into one PNG, written atomically; bad input is one line naming
what is wrong, exit status 2, and no file."""

import contextlib
import dataclasses
import inspect
import io
import json

import matplotlib.pyplot as plt
import numpy as np
import pytest

from tfgal import cli
from tfgal.data import corruptions, gallery
from tfgal.errors import ConfigError


@pytest.fixture(scope="module")
def drawn(blob_dataset, tmp_path_factory):
    """One full run of the command (every accepted corruption), with the images the
    library drew kept aside: (summary printed, stderr, images, PNG path)."""
    out = tmp_path_factory.mktemp("gallery") / "sub" / "gallery.png"
    kept = {}
    original = gallery.gallery

    def keeping(*args, **kwargs):
        result = original(*args, **kwargs, return_images=True)
        kept["images"] = result.pop("images")
        return result

    stdout, stderr = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(stdout), \
            contextlib.redirect_stderr(stderr):
        mp.setattr(gallery, "gallery", keeping)
        status = cli.data_main(["gallery", "--data", blob_dataset.root, "--out", str(out)])
    assert status == 0, stderr.getvalue()
    return json.loads(stdout.getvalue()), stderr.getvalue(), kept["images"], out


def test_the_png_holds_every_corruption_and_severity_for_one_galaxy_per_class(
        drawn, blob_dataset):
    summary, said, images, out = drawn
    assert summary["out"] == str(out) and str(out) in said
    assert summary["corruptions"] == gallery.accepted(blob_dataset) == list(corruptions.NAMES)
    assert summary["severities"] == [0, 1, 2, 3, 4, 5]
    assert summary["image_size"] == [16, 16, 3]
    assert summary["classes"] == list(blob_dataset.class_names)
    # The blobs' labels are galaxy_id % 3, test ids 32..39 in file order: the first of each
    # class is the smallest test id with that label.
    test_ids = range(32, 40)
    assert summary["galaxy_ids"] == [min(i for i in test_ids if i % 3 == c) for c in range(3)]
    # Readable, and as large as the layout of 10 rows x 3 classes x 6 severities says.
    png = plt.imread(out)
    assert png.shape[:2] == tuple(summary["figure_px"][::-1])
    width, height = gallery.figure_size(len(summary["corruptions"]), 3)
    assert abs(png.shape[1] - width * gallery.DPI) <= 1
    assert abs(png.shape[0] - height * gallery.DPI) <= 1
    assert width > height  # 18 columns against 10 rows
    assert png[..., :3].std() > 0.05  # not blank
    assert images.shape == (10, 3, 6, 16, 16, 3)
    assert not list(out.parent.glob("*.tmp-*"))  # no temporary file left behind


def test_severity_zero_is_the_same_clean_image_in_every_row(drawn):
    summary, _, images, _ = drawn
    clean = images[:, :, 0]
    names = summary["corruptions"]
    # Severity 0 is the same galaxy with the same noise in every row, bit for bit.
    for i, name in enumerate(names):
        np.testing.assert_array_equal(clean[i], clean[0], err_msg=name)
    # ...and every corruption shows at severity 5.
    for i, name in enumerate(names):
        assert np.abs(images[i, :, 5] - clean[i]).max() > 1e-3, name


def test_panel_titles_carry_the_physical_values():
    assert gallery.panel_title("seeing", 0) == "s0\nclean"
    seeing = corruptions.CORRUPTIONS["seeing"].rows
    assert gallery.panel_title("seeing", 2) == f"s2\n{seeing[1][0]:g} arcsec"
    mag, distance = corruptions.CORRUPTIONS["neighbour"].rows[4]
    assert gallery.panel_title("neighbour", 5) == f"s5\n{mag:g} AB mag, {distance:g} arcsec"
    trail = corruptions.CORRUPTIONS["trail"].rows
    assert gallery.panel_title("trail", 1) == f"s1\n{trail[0][0]:g} AB mag/arcsec²"


def test_unknown_corruption_is_refused_by_name_and_nothing_is_written(
        blob_dataset, tmp_path, capsys):
    out = tmp_path / "g.png"
    status = cli.data_main(["gallery", "--data", blob_dataset.root, "--out", str(out),
                            "--corruptions", "seeing,smudge"])
    err = capsys.readouterr().err
    assert status == 2
    assert "smudge" in err and "corruptions" in err and "seeing" in err  # valid names listed
    assert not out.exists() and not list(tmp_path.iterdir())


def test_missing_dataset_is_one_line_naming_it(tmp_path, capsys):
    out = tmp_path / "g.png"
    missing = tmp_path / "nowhere"
    assert cli.data_main(["gallery", "--data", str(missing), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "data" in err and str(missing) in err
    assert not out.exists()


def test_corruptions_a_dataset_cannot_take_are_refused_with_the_reason(blob_dataset, tmp_path):
    noisy = dataclasses.replace(blob_dataset, images={"Y10": {"noise": True}})
    with pytest.raises(ConfigError, match="corruptions: corruption 'seeing' cannot act"):
        gallery.gallery(noisy, tmp_path / "g.png", corruptions=["trail", "seeing"])
    assert "seeing" not in gallery.accepted(noisy) and "trail" in gallery.accepted(noisy)
    assert not list(tmp_path.iterdir())


def test_command_defaults_are_the_librarys():
    parser = next(a for a in cli.data.parser()._actions if a.dest == "command")
    options = {a.dest: a for a in parser.choices["gallery"]._actions}
    defaults = {k: p.default for k, p in inspect.signature(gallery.gallery).parameters.items()
                if p.default is not inspect.Parameter.empty}
    for name in ("depth", "seed", "split", "corruptions"):
        assert options[name].default == defaults[name], name
