"""tools/device_check.py's machinery, without measuring anything: sections that fail, skip
or overrun their budget are recorded and the next one still runs; the JSON and Markdown
report; the plain stop when a required package is missing."""

import importlib.util
import json
import pathlib
import time

import pytest

PATH = pathlib.Path(__file__).resolve().parents[1] / "tools" / "device_check.py"


@pytest.fixture(scope="module")
def dc():
    spec = importlib.util.spec_from_file_location("device_check", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _report(dc):
    report = dc.new_report("small")
    report["versions"].update(tensorflow="2.x", keras="3.x")
    return report


def test_sections_record_ok_error_skip_and_timeout(dc, monkeypatch):
    monkeypatch.setattr(dc, "MIN_SECTION_S", 0.2)
    report = _report(dc)

    def ok(ctx, entry):
        entry["results"]["rate"] = 1.5
        dc.row(entry, "rate", "1.5 images/s", "batch 2")

    def fails(ctx, entry):
        entry["results"]["before"] = 1
        raise ValueError("no such thing")

    def skips(ctx, entry):
        raise dc.Skip("n/a (CPU)")

    def hangs(ctx, entry):
        entry["results"]["partial"] = 2
        while True:  # a stuck section: only its budget ends it
            time.sleep(0.02)

    start = time.perf_counter()
    for name, fn, budget in [("a", ok, 5), ("b", fails, 5), ("c", skips, 5), ("d", hangs, 0.5),
                             ("e", ok, 5), ("f", ok, 0.1)]:
        dc.run_section(report, name, budget, fn, None)
    assert time.perf_counter() - start < 3
    s = report["sections"]
    assert s["a"]["status"] == "ok" and s["a"]["results"] == {"rate": 1.5}
    assert s["b"]["status"] == "error" and "ValueError: no such thing" in s["b"]["error"]
    assert s["b"]["results"] == {"before": 1} and s["b"]["traceback"]
    assert s["c"]["status"] == "skipped" and s["c"]["reason"] == "n/a (CPU)"
    assert s["d"]["status"] == "error" and "budget" in s["d"]["error"]
    assert s["d"]["results"] == {"partial": 2}  # measured before the budget ran out: kept
    assert s["e"]["status"] == "ok"  # the alarm of d is gone
    assert s["f"]["status"] == "skipped" and "deadline" in s["f"]["reason"]
    assert all(isinstance(e["seconds"], float) for e in s.values())


def test_report_json_and_markdown(dc, tmp_path):
    report = _report(dc)

    def training(ctx, entry):
        dc.row(entry, "train step convnet/float32", "80.0 images/s", "32 + 32 | median")
        dc.row(entry, "train step convnet/mixed_float16", "n/a (CPU)")

    def mixed(ctx, entry):
        raise dc.Skip("n/a (CPU): GPU only")

    dc.run_section(report, "training", 5, training, None)
    dc.run_section(report, "mixed_precision", 5, mixed, None)
    report["wall_s"] = 12.5
    dc.write_report(report, tmp_path)
    saved = json.loads((tmp_path / "device_check.json").read_text())
    assert saved["size"] == "small" and saved["sections"]["training"]["status"] == "ok"
    assert {"device", "versions", "date", "seed", "sections"} <= set(saved)
    md = (tmp_path / "device_check.md").read_text()
    assert md == dc.markdown(report)
    assert "| training | train step convnet/float32 | 80.0 images/s | 32 + 32 / median |" in md
    assert "| training | train step convnet/mixed_float16 | n/a (CPU) |  |" in md
    assert "| mixed_precision | skipped | n/a (CPU): GPU only |  |" in md
    assert "| mixed_precision | skipped |" in md.split("| section | status")[1]
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically


def test_missing_package_stops_plainly_with_a_report(dc, tmp_path, monkeypatch):
    monkeypatch.setattr(dc, "REQUIRED", ("numpy", "tfgal_no_such_package"))
    with pytest.raises(SystemExit) as stop:
        dc.main(["--out", str(tmp_path)])
    assert "tfgal_no_such_package not installed" in str(stop.value)
    assert "Nothing was measured" in str(stop.value)
    saved = json.loads((tmp_path / "device_check.json").read_text())
    assert "tfgal_no_such_package" in saved["error"] and saved["sections"] == {}
    assert "**Not run**" in (tmp_path / "device_check.md").read_text()


def test_sections_one_module_per_wing_in_running_order(dc):
    assert dc.SECTIONS == ("data", "quick_training", "mixed_precision", "attack", "training",
                           "pipeline", "predict")
    for size in dc.SIZES.values():  # every size budgets every section, in that order
        assert tuple(size["budgets"]) == dc.SECTIONS
    wing = {"data": "data", "pipeline": "data", "quick_training": "model",
            "mixed_precision": "model", "training": "model", "predict": "model",
            "attack": "attack"}
    for name, fn in dc.SECTION_FUNCTIONS.items():
        assert fn.__name__ == f"section_{name}"
        assert fn.__module__ == f"device_sections.{wing[name]}"
    root = PATH.parent / "device_sections"
    assert {p.stem for p in root.glob("*.py")} == {"__init__", "common", *wing.values()}


def test_a_section_that_skips_runs_through_the_runner(dc, tmp_path):
    # The real attack and predict sections, with no model: skipped with the reason, and
    # the data-less training context still reaches the section's own code.
    report = _report(dc)
    ctx = dc.types.SimpleNamespace(model=None, data=None, gpu=False, size_name="small",
                                   size=dc.SIZES["small"], report=report, work=str(tmp_path))
    for name in ("attack", "predict", "mixed_precision"):
        dc.run_section(report, name, 5, dc.SECTION_FUNCTIONS[name], ctx)
    s = report["sections"]
    assert s["attack"] == {**s["attack"], "status": "skipped",
                           "reason": "no exported model: quick_training failed"}
    assert s["predict"]["reason"] == "no exported model: quick_training failed"
    assert s["mixed_precision"]["status"] == "skipped"
    assert "n/a (CPU)" in s["mixed_precision"]["reason"]
