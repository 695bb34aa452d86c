"""What a user sees in TensorBoard, asked of a live ``tensorboard`` server's HTTP data API.

Two tiny training runs (with and without MMD) share one log directory, as a study's models
do; the server must serve their scalars (MMD included), the example galaxies at both depths,
the latent projector of each run (tensor, metadata, sprite) and both runs as HParams
trials with their final accuracies.
"""

import contextlib
import csv
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest

from tfgal import config
from tfgal.data import pipeline
from tfgal.model import export, tensorboard, training

RUNS = {"mmd": 0.01, "baseline": 0.0}
N_PROJECTOR = 8


def _binary():
    beside = os.path.join(os.path.dirname(sys.executable), "tensorboard")
    return beside if os.path.exists(beside) else shutil.which("tensorboard")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def logs(tmp_path_factory, blob_dataset):
    root = tmp_path_factory.mktemp("tensorboard")
    out = {"root": str(root / "logs"), "runs": {}}
    for name, mmd in RUNS.items():
        cfg = config.load(overrides=[
            f'data.dir="{blob_dataset.root}"', "data.mock=false", "train.epochs=1",
            "train.steps_per_epoch=2", "train.batch_size=8", "train.learning_rate=1e-3",
            "train.precise_bn_batches=0",
            f"loss.mmd_weight={mmd}", "log.images=2", f"log.projector={N_PROJECTOR}",
            "model.latent_dim=16", f'name="{name}"',
            f'log.dir="{root / "logs" / name}"', f'export.dir="{root / "models" / name}"'])
        out["runs"][name] = {"cfg": cfg, "summary": training.train(cfg, verbose=0)}
    out["manifest"] = blob_dataset
    return out


@contextlib.contextmanager
def _serve(logdir, want):
    """A live `tensorboard --logdir LOGDIR` on a free loopback port, once it serves the
    runs `want`; yields its base URL."""
    binary = _binary()
    if binary is None:
        pytest.skip("the tensorboard binary is not installed (pip install tensorboard)")
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--logdir", logdir, "--host", "127.0.0.1", "--port", str(port),
         "--reload_interval", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_runs(base, proc, want)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


RUN_DIRS = ("train", "validation", "examples", "projector", "hparams")


@pytest.fixture(scope="module")
def server(logs):
    with _serve(logs["root"], {f"{r}/{d}" for r in RUNS for d in RUN_DIRS}) as base:
        yield base


def _wait_for_runs(base, proc, want, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"tensorboard exited: {proc.stdout.read()[-2000:]}")
        try:
            runs = set(_get(base, "/data/runs"))
            tags = _get(base, "/data/plugin/scalars/tags")
            if want <= runs and all(r in tags for r in want if r.endswith("hparams")):
                return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.5)
    raise AssertionError("tensorboard did not load the runs in time")


def _get(base, path, params=None, raw=False, body=None):
    url = base + path + ("?" + urllib.parse.urlencode(params) if params else "")
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        content = response.read()
    return content if raw else json.loads(content)


def _history(cfg):
    with open(os.path.join(cfg.log.dir, training.HISTORY)) as f:
        return list(csv.DictReader(f))


def test_scalars_include_mmd_and_final_accuracies(server, logs):
    tags = _get(server, "/data/plugin/scalars/tags")
    for name, run in logs["runs"].items():
        assert {"epoch_loss", "epoch_ce", "epoch_source_accuracy"} <= set(tags[f"{name}/train"])
        # Validation measures the MMD of every model, training only where it is a loss term.
        assert {"epoch_target_accuracy", "epoch_mmd"} <= set(tags[f"{name}/validation"])
        assert ("epoch_mmd" in tags[f"{name}/train"]) == (RUNS[name] > 0)
        # The served values are the ones training logged.
        key = "mmd" if RUNS[name] > 0 else "ce"
        points = _get(server, "/data/plugin/scalars/scalars",
                      {"run": f"{name}/train", "tag": f"epoch_{key}"})
        assert points[-1][2] == pytest.approx(float(_history(run["cfg"])[-1][key]), rel=1e-5)
        # Seconds of training per epoch, so accuracy can be read against time.
        seconds = _get(server, "/data/plugin/scalars/scalars",
                       {"run": f"{name}/train", "tag": "epoch_train_seconds"})
        rows = _history(run["cfg"])
        assert [p[2] for p in seconds] == pytest.approx(
            [float(r["train_seconds"]) for r in rows], rel=1e-5)
        assert all(b > a for a, b in zip([p[2] for p in seconds], [p[2] for p in seconds][1:]))
        # Final accuracies per split and depth, equal to the run's summary.
        summary = run["summary"]
        for split in ("val", "test"):
            for depth, value in summary[f"{split}_accuracy"].items():
                tag = f"{tensorboard.FINAL_TAG}/{split}_{depth}"
                point = _get(server, "/data/plugin/scalars/scalars",
                             {"run": f"{name}/hparams", "tag": tag})
                assert point[-1][2] == pytest.approx(value, abs=1e-6)
    assert logs["runs"]["mmd"]["cfg"].loss.mmd_weight > 0


def test_example_galaxies_at_both_depths(server):
    tags = _get(server, "/data/plugin/images/tags")
    for name in RUNS:
        served = tags[f"{name}/examples"]
        assert set(served) == {"galaxies/Y10", "galaxies/Y1"}
        assert all(v["samples"] == 2 for v in served.values())
    image = _get(server, "/data/plugin/images/images",
                 {"run": "mmd/examples", "tag": "galaxies/Y1", "sample": 0})
    png = _get(server, "/data/plugin/images/individualImage",
               dict(urllib.parse.parse_qsl(image[0]["query"])), raw=True)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_projector_serves_latents_metadata_and_sprite(server, logs):
    assert sorted(_get(server, "/data/plugin/projector/runs")) == sorted(
        f"{r}/projector" for r in RUNS)
    name = tensorboard.EMBEDDING
    # The same galaxies for every run: loaded once.
    galaxies = {depth: pipeline.load_arrays(logs["manifest"], "val", depth, n=N_PROJECTOR,
                                            seed=0) for depth in ("Y10", "Y1")}
    for run_name, run in logs["runs"].items():
        run_key = f"{run_name}/projector"
        info = _get(server, "/data/plugin/projector/info", {"run": run_key})
        (embedding,) = [e for e in info["embeddings"] if e["tensorName"] == name]
        assert embedding["tensorShape"] == [2 * N_PROJECTOR, 16]
        # The served vectors are the exported model's latents of the same galaxies.
        tensor = np.frombuffer(_get(server, "/data/plugin/projector/tensor",
                                    {"run": run_key, "name": name}, raw=True), np.float32)
        model = export.load(run["cfg"].export.dir)
        expected, labels, ids, predicted = [], [], [], []
        for depth, data in galaxies.items():
            out = model.predict(data["images"])
            expected.append(out["latent"])
            labels += list(data["labels"])
            ids += list(data["galaxy_id"])
            predicted += list(np.argmax(out["probabilities"], 1))
        np.testing.assert_allclose(tensor.reshape(2 * N_PROJECTOR, 16),
                                   np.concatenate(expected), rtol=1e-5, atol=1e-5)
        text = _get(server, "/data/plugin/projector/metadata",
                    {"run": run_key, "name": name}, raw=True).decode()
        rows = list(csv.DictReader(io.StringIO(text), delimiter="\t"))
        classes = logs["manifest"].class_names
        assert [r["depth"] for r in rows] == ["Y10"] * N_PROJECTOR + ["Y1"] * N_PROJECTOR
        assert [int(r["galaxy_id"]) for r in rows] == [int(i) for i in ids]
        assert [r["class"] for r in rows] == [classes[y] for y in labels]
        assert [r["predicted"] for r in rows] == [classes[p] for p in predicted]
        assert [r["correct"] for r in rows] == [
            "yes" if p == y else "no" for p, y in zip(predicted, labels)]
        png = _get(server, "/data/plugin/projector/sprite_image",
                   {"run": run_key, "name": name}, raw=True)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        side = embedding["sprite"]["singleImageDim"]
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        grid = int(np.ceil(np.sqrt(2 * N_PROJECTOR)))
        assert (width, height) == (grid * side[0], grid * side[1])


SESSION_REQUEST = {"experimentName": "", "startIndex": 0, "sliceSize": 100,
                   "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE",
                                       "STATUS_RUNNING"]}


def _metric_values(group):
    return {(m["name"].get("group", ""), m["name"]["tag"]): m["value"]
            for m in group["metricValues"]}


def _check_session_metrics(values, run, name):
    """A session's metrics are the run's final accuracies and last-epoch metrics."""
    for depth, value in run["summary"]["test_accuracy"].items():
        assert values[("", f"{tensorboard.FINAL_TAG}/test_{depth}")] == pytest.approx(
            value, abs=1e-6)
    last = _history(run["cfg"])[-1]
    for key in ("val_target_accuracy", "val_mmd", "loss"):
        assert values[("", f"{tensorboard.EPOCH_TAG}/{key}")] == pytest.approx(
            float(last[key]), rel=1e-5)
    assert (("", f"{tensorboard.EPOCH_TAG}/mmd") in values) == (RUNS[name] > 0)


def test_hparams_compare_the_runs(server, logs):
    experiment = _get(server, "/data/plugin/hparams/experiment", body={"experimentName": ""})
    infos = {h["name"]: h for h in experiment["hparamInfos"]}
    assert {"mmd_weight", "learning_rate", "batch_size", "seed", "model", "data"} <= set(infos)
    assert infos["mmd_weight"]["differs"] and not infos["learning_rate"]["differs"]
    metrics = {(m["name"].get("group", ""), m["name"]["tag"]) for m in experiment["metricInfos"]}
    assert {("", f"{tensorboard.FINAL_TAG}/test_Y10"), ("", f"{tensorboard.FINAL_TAG}/test_Y1"),
            ("", f"{tensorboard.EPOCH_TAG}/val_target_accuracy"),
            ("", f"{tensorboard.EPOCH_TAG}/mmd")} <= metrics
    groups = _get(server, "/data/plugin/hparams/session_groups",
                  body=SESSION_REQUEST)["sessionGroups"]
    by_name = {g["hparams"]["name"]: g for g in groups}
    assert set(by_name) == set(RUNS)
    for name, run in logs["runs"].items():
        group = by_name[name]
        assert group["hparams"]["mmd_weight"] == pytest.approx(RUNS[name])
        assert group["hparams"]["model"] == "convnet"
        _check_session_metrics(_metric_values(group), run, name)


def test_one_run_alone_has_its_projector_and_hparams_metrics(server, logs):
    """`tensorboard --logdir runs/NAME` (one run): the projector and the HParams session
    with its metrics (a session at the log directory's root would have none)."""
    run = logs["runs"]["mmd"]
    with _serve(run["cfg"].log.dir, {f"{d}" for d in RUN_DIRS}) as base:
        assert _get(base, "/data/plugin/projector/runs") == ["projector"]
        (group,) = _get(base, "/data/plugin/hparams/session_groups",
                        body=SESSION_REQUEST)["sessionGroups"]
        assert group["hparams"]["name"] == "mmd"
        _check_session_metrics(_metric_values(group), run, "mmd")
