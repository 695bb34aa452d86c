"""Who is attacked: only galaxies the model classifies correctly at the base depth (Su et
al., the study); misclassified ones are counted apart, in no success rate or distance."""

import csv
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from test_attack import BANDS, SIZE, SPOT, dim_images, spotlight_keras
from tfgal.attack import driver
from tfgal.cli import attack_main
from tfgal.data import DatasetWriter
from tfgal.model import export

# The spotlight model says class 0 for dim images, class 1 once pixel SPOT is bright.
# Galaxy i has spot value SPOTS[i] (None: dim) and label LABELS[i].
SPOTS = [None, None, None, 0.9, 0.464, None]
LABELS = [0, 1, 0, 1, 2, 2]
PREDICTED = [0, 0, 0, 1, 0, 0]
CORRECT = [0, 2, 3]
MISCLASSIFIED = [1, 4, 5]
FIRST_ID = 100
ATTACK = dict(popsize=100, iters=30, seed=0)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    encoder, head = spotlight_keras()
    path = tmp_path_factory.mktemp("models") / "spotlight"
    export.export_saved_model(encoder, head, path, image_shape=(SIZE, SIZE, BANDS),
                              assets={"value_range": [[0.0] * BANDS, [0.9] * BANDS],
                                      "bands": ["g", "r", "i"]})
    return export.load(path)


def _dataset(root, labels, spots):
    base, noisy = dim_images(len(labels), seed=1), dim_images(len(labels), seed=2)
    for i, value in enumerate(spots):
        if value is not None:
            base[i, SPOT[1], SPOT[0]] = noisy[i, SPOT[1], SPOT[0]] = value
    with DatasetWriter(root, images={"Y10": {"noise": True}, "Y1": {"noise": True}},
                       image_shape=(SIZE, SIZE, BANDS)) as writer:
        for i, label in enumerate(labels):
            writer.add("test", {"Y10": base[i], "Y1": noisy[i]}, label, FIRST_ID + i)
        writer.finish(stretch={"kind": "identity"})
    return root


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Six galaxies, three of them (MISCLASSIFIED) misclassified by the spotlight model."""
    return _dataset(tmp_path_factory.mktemp("population") / "mixed", LABELS, SPOTS)


@pytest.fixture(scope="module")
def all_wrong(tmp_path_factory):
    """Three dim galaxies labelled 1: the spotlight model gets every one wrong."""
    return _dataset(tmp_path_factory.mktemp("population") / "wrong", [1, 1, 1], [None] * 3)


def test_the_dataset_is_what_the_tests_assume(model, mixed):
    from tfgal.data import pipeline
    base = pipeline.load_arrays(mixed, "test", "Y10")
    probs = model.predict(base["images"])["probabilities"]
    assert probs.argmax(axis=1).tolist() == PREDICTED and base["labels"].tolist() == LABELS
    # Galaxy 4 is misclassified yet its true class keeps p = 0.31 > 0.05: attacking every
    # galaxy (the old rule) would count pushing it below 0.05 as a success.
    assert 0.25 < probs[4, 2] < 0.4


def test_no_misclassified_galaxy_is_ever_attacked(model, mixed):
    run = driver.attack_galaxies(model, mixed, n=6, progress=False, **ATTACK)
    assert run.predicted.tolist() == PREDICTED
    assert np.flatnonzero(run.correct).tolist() == CORRECT
    assert run.rows.tolist() == CORRECT
    assert run.misclassified_ids.tolist() == [FIRST_ID + i for i in MISCLASSIFIED]
    result = run.result
    assert result.n == 3 and result.labels.tolist() == [0, 0, 1]
    np.testing.assert_array_equal(result.original_class, result.labels)
    assert result.success.all() and not result.already.any()
    s = run.summary
    assert (s["n_galaxies"], s["n_correct"], s["n_misclassified"]) == (6, 3, 3)
    assert (s["n_attacks"], s["n_attacked"], s["n_success"]) == (3, 3, 3)
    assert s["success_rate"] == 1.0  # 3 / 3, not 3 / 6 nor 4 / 4
    assert s["queries"]["total"] == int(result.queries.sum())
    for kind in ("attack", "noisy", "noisy_success"):
        assert s["latent_distance"][kind]["n"] == 3, kind
    # The base latents come from the single base pass, and match the model's.
    np.testing.assert_allclose(run.latents["base"],
                               model.predict(run.images[CORRECT])["latent"], rtol=1e-6)
    assert len(run.d_noisy_galaxies) == 6 and len(run.d_noisy) == 3
    assert [row["galaxy_id"] for row in driver.table(run)] == [FIRST_ID + i for i in CORRECT]


def test_targeted_attacks_skip_misclassified_galaxies(model, mixed):
    run = driver.attack_galaxies(model, mixed, n=6, progress=False, targeted=True,
                                 popsize=8, iters=1)
    assert run.rows.tolist() == [0, 0, 2, 2, 3, 3]
    assert run.result.targets.tolist() == [1, 2, 1, 2, 0, 2]
    assert not set(run.rows.tolist()) & set(MISCLASSIFIED)
    s = run.summary
    assert (s["n_galaxies"], s["n_correct"], s["n_misclassified"]) == (6, 3, 3)
    assert s["n_attacks"] == 6 and s["n_attacked"] + s["n_already_adversarial"] == 6
    assert s["success_rate"] == s["n_success"] / s["n_attacked"]


@pytest.mark.parametrize("target, targeted, rows, targets", [
    (None, False, [0, 2, 3], None),
    ("all", True, [0, 0, 2, 2, 3, 3], [1, 2, 1, 2, 0, 2]),
    ("next", True, [0, 2, 3], [1, 1, 2]),
    ("1", True, [0, 2], [1, 1]),  # galaxy 3 is of class 1 already
])
def test_attack_rows_keep_only_correct_galaxies(target, targeted, rows, targets):
    correct = np.isin(np.arange(6), CORRECT)
    got_rows, got_targets = driver.attack_rows(LABELS, 3, target, targeted, correct=correct)
    assert got_rows.tolist() == rows
    assert (got_targets if got_targets is None else got_targets.tolist()) == targets
    every, _ = driver.attack_rows(LABELS, 3, target, targeted)  # no mask: every galaxy
    assert set(every.tolist()) & set(MISCLASSIFIED)


@pytest.mark.parametrize("targeted", [False, True])
def test_all_misclassified_gives_an_empty_run(model, all_wrong, tmp_path, targeted):
    summary = driver.attack_dataset(model, all_wrong, tmp_path, n=3, progress=False,
                                    targeted=targeted, init="gaussian", **ATTACK)
    stored = json.loads((tmp_path / "attack.json").read_text())  # strict JSON: no NaN
    assert stored == json.loads(json.dumps(summary))
    assert (stored["n_galaxies"], stored["n_correct"], stored["n_misclassified"]) == (3, 0, 3)
    assert (stored["n_attacks"], stored["n_attacked"], stored["n_success"]) == (0, 0, 0)
    assert stored["success_rate"] is None and stored["queries"] == {
        "total": 0, "mean": None, "mean_success": None}
    assert stored["settings"]["init"] == "gaussian"
    assert stored["settings"]["value_range_source"] == "model assets"
    assert all(d["n"] == 0 for d in stored["latent_distance"].values())
    with open(tmp_path / "attack.csv", newline="") as f:
        assert list(csv.DictReader(f)) == []


def test_empty_run_arrays_are_shaped_like_a_runs(model, all_wrong):
    run = driver.attack_galaxies(model, all_wrong, n=3, progress=False, **ATTACK)
    assert not run.correct.any() and run.rows.tolist() == []
    assert run.result.images.shape == (0, SIZE, SIZE, BANDS)
    assert run.result.pixels.shape == (0, 1, 2) and run.result.values.shape == (0, 1, BANDS)
    assert all(v.shape == (0, model.latent_dim) for v in run.latents.values())
    assert driver.table(run) == [] and run.summary["success_rate"] is None


def test_cli_init_reaches_the_attack(model, mixed, tmp_path, capsys):
    out = tmp_path / "gaussian"
    rc = attack_main(["--model", model.path, "--data", str(mixed), "--n", "6",
                      "--popsize", "40", "--iters", "5", "--init", "gaussian",
                      "--out", str(out), "--no-progress"])
    assert rc == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    assert (printed["n_galaxies"], printed["n_misclassified"], printed["n_attacks"]) == (6, 3, 3)
    assert "3 misclassified were skipped" in captured.err and "init gaussian" in captured.err
    stored = json.loads((out / "attack.json").read_text())
    assert stored["settings"]["init"] == "gaussian" and stored["n_misclassified"] == 3
    with open(out / "attack.csv", newline="") as f:
        ids = [int(r["galaxy_id"]) for r in csv.DictReader(f)]
    assert ids == [FIRST_ID + i for i in CORRECT]


def test_cli_refuses_an_unknown_init(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        attack_main(["--model", "m", "--data", "d", "--out", str(tmp_path), "--init", "corners"])
    assert exit_.value.code == 2
    assert "invalid choice: 'corners'" in capsys.readouterr().err
