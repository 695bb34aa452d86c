"""The stage store on its own: typed outputs round-trip, keys decide reuse."""

import dataclasses
import json

import numpy as np

from tfgal.study import store


@dataclasses.dataclass
class Output:
    count: int
    per_model: dict = store.array_field()                # {kind: array}
    values: np.ndarray = store.array_field(default=None)


def _run(st, settings, output, calls, deps=()):
    def fn():
        calls.append(settings)
        return output
    return st.run("stage", Output, settings, fn, deps=deps)


def test_outputs_round_trip_and_same_key_reuses(tmp_path):
    st, calls = store.StageStore(tmp_path, log=lambda m: None), []
    out = Output(3, {"baseline": np.arange(4.0), "adapted": np.ones((2, 2))}, np.array([7]))
    first = _run(st, {"n": 1}, out, calls)
    again = _run(st, {"n": 1}, out, calls)
    assert len(calls) == 1 and again.reused and not first.reused and again.id == first.id
    assert again.output.count == 3 and again.output.values.tolist() == [7]
    np.testing.assert_array_equal(again.output.per_model["adapted"], np.ones((2, 2)))
    saved = json.loads((tmp_path / "stage.json").read_text())
    assert saved["result"] == {"count": 3} and saved["npz"]


def test_a_changed_setting_or_dependency_reruns(tmp_path):
    st, calls = store.StageStore(tmp_path, log=lambda m: None), []
    out = Output(1, {"a": np.zeros(1)}, np.zeros(1))
    dep = store.StageRecord("train", "k", "model-1", None, 0.0, False)
    _run(st, {"n": 1}, out, calls, deps=[dep])
    _run(st, {"n": 2}, out, calls, deps=[dep])
    _run(st, {"n": 2}, out, calls, deps=[dataclasses.replace(dep, id="model-2")])
    assert len(calls) == 3


def test_an_empty_dict_of_arrays_is_still_reused(tmp_path):
    st, calls = store.StageStore(tmp_path, log=lambda m: None), []
    _run(st, {}, Output(0, {}, np.arange(3)), calls)
    again = _run(st, {}, Output(0, {}, np.arange(3)), calls)
    assert len(calls) == 1 and again.reused and again.output.per_model == {}


def test_an_absent_array_is_still_reused(tmp_path):
    """A skipped stage leaves its arrays None: it is reused, not rerun on every resume."""
    st, calls = store.StageStore(tmp_path, log=lambda m: None), []
    _run(st, {}, Output(0, {}, None), calls)
    again = _run(st, {}, Output(0, {}, None), calls)
    assert len(calls) == 1 and again.reused and again.output.values is None


def test_a_record_of_another_shape_reruns(tmp_path):
    st, calls = store.StageStore(tmp_path, log=lambda m: None), []
    _run(st, {}, Output(0, {"a": np.zeros(1)}, np.zeros(1)), calls)
    path = tmp_path / "stage.json"
    saved = json.loads(path.read_text())
    del saved["result"]["count"]  # e.g. written by an older tfgal
    path.write_text(json.dumps(saved))
    _run(st, {}, Output(0, {"a": np.zeros(1)}, np.zeros(1)), calls)
    assert len(calls) == 2
