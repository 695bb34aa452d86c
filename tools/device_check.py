"""The prepared device check: what a GPU changes, measured in one run into a JSON and a table.

Sections, each timed with its own budget inside the check's deadline (one that fails or runs
out of time is recorded as an error, its figures so far kept, and the others run): ``data``
(a mock set rendered), ``quick_training`` (tfgal-train on pipelines/quick.toml in float32 and,
on a GPU, with ``train.mixed_precision=true``), ``mixed_precision`` (their test accuracies
within 2 points; n/a on a CPU), ``attack`` (tfgal's OnePixelAttack against ART's PixelAttack,
same images and budget), ``training`` (CE + MMD steps of the ConvNet and ResNet18, float32 and
mixed_float16), ``pipeline`` (tf.data beside training) and ``predict`` (tfgal-predict against
the bare forward pass). Writes device_check.json (device, versions, date, size, every figure
with its settings) and device_check.md into ``--out`` after each section and prints the table
last. ``full`` (default with a GPU) fits 8 minutes on one GPU and 16 cores, ``small`` (default
without) 5 minutes on 2 CPU cores. Run it through tools/device_check.sh.

This file is the runner (sizes and budgets, the deadline, the report); the sections live in
tools/device_sections/, one module per wing they exercise (data, model, attack).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import types

TOOLS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TOOLS)
sys.path[:0] = [ROOT, TOOLS]  # tfgal from this tree, and the bench_* modules
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The training subprocesses share the GPU with this process: none may take all its memory.
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")

from device_sections import SECTIONS as SECTION_FUNCTIONS  # noqa: E402
from device_sections.common import SEED, Skip, row  # noqa: E402

__all__ = ["SIZES", "SECTIONS", "Skip", "row", "run_section", "markdown", "write_report",
           "new_report", "main"]

SIZES = {
    "full": dict(deadline_s=450, mock=(3000, 500, 1000), train_overrides=(), batch=128,
                 resnet_batch=128, steps=20, rounds=3, predict_split="test", repeat=3,
                 attack=dict(n=16, popsize=400, iters=100),
                 budgets=dict(data=90, quick_training=210, mixed_precision=30, attack=150,
                              training=150, pipeline=40, predict=60)),
    "small": dict(deadline_s=250, mock=(96, 24, 48),
                  train_overrides=("train.epochs=1", "train.steps_per_epoch=4",
                                   "train.precise_bn_batches=2"),
                  attack=dict(n=2, popsize=400, iters=2), batch=32, resnet_batch=8,
                  steps=2, rounds=2, predict_split="train", repeat=2,
                  budgets=dict(data=40, quick_training=80, mixed_precision=30, attack=50,
                               training=70, pipeline=20, predict=35)),
}
SECTIONS = tuple(SECTION_FUNCTIONS)
MIN_SECTION_S = 5  # a section left less than this by the deadline is skipped
REQUIRED = ("tensorflow", "keras", "numpy", "galsim", "astropy", "tqdm")


class SectionTimeout(BaseException):  # not an Exception: library code must not swallow it
    """A section's budget is spent."""


def run_section(report, name, budget_s, fn, ctx):
    """Runs ``fn(ctx, entry)`` under a SIGALRM budget. `entry` (settings, results and
    table rows, filled as the section goes, so a timeout keeps what was measured) becomes
    report["sections"][name] with status "ok", "error" or "skipped", seconds and budget."""
    entry = report["sections"][name] = {"status": "running", "budget_s": round(budget_s, 1),
                                        "settings": {}, "results": {}, "table": []}
    start = time.perf_counter()

    def alarm(signum, frame):
        raise SectionTimeout()
    previous = signal.signal(signal.SIGALRM, alarm)
    try:
        if budget_s < MIN_SECTION_S:
            raise Skip("out of time: the check's deadline came first")
        signal.setitimer(signal.ITIMER_REAL, budget_s)
        fn(ctx, entry)
        entry["status"] = "ok"
    except Skip as e:
        entry.update(status="skipped", reason=str(e))
    except SectionTimeout:
        entry.update(status="error", error=f"stopped at its budget of {budget_s:.0f} s "
                                            "(figures measured until then are kept)")
    except Exception as e:  # recorded; the next section runs
        entry.update(status="error", error=f"{type(e).__name__}: {e}",
                     traceback=traceback.format_exc(limit=-6).splitlines()[-12:])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    entry["seconds"] = round(time.perf_counter() - start, 1)
    return entry


def markdown(report):
    """The report as Markdown: a header line, the figures' table, the sections' times."""
    d, v = report["device"], report["versions"]
    lines = [f"# tfgal device check ({report.get('size') or 'not run'})", "",
             f"{d['name']} ({d['kind']}), {d['cpu_count']} cores; TensorFlow "
             f"{v.get('tensorflow')}, Keras {v.get('keras')}; {report['date']}; "
             f"{report.get('wall_s', '?')} s in all (deadline {report.get('deadline_s')} s)", ""]
    if report.get("error"):  # stopped before any section
        return "\n".join(lines + [f"**Not run**: {report['error']}", ""])
    lines += ["| section | figure | value | settings |", "| --- | --- | --- | --- |"]
    for name, entry in report["sections"].items():
        rows = list(entry.get("table", []))
        if entry.get("status") in ("skipped", "error"):
            rows.append([entry["status"], entry.get("reason") or entry.get("error"), ""])
        for cells in rows:
            cells = [str(c).replace("|", "/").replace("\n", " ") for c in [name, *cells]]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| section | status | seconds | budget s |", "| --- | --- | ---: | ---: |"]
    lines += [f"| {n} | {e.get('status')} | {e.get('seconds', '')} | {e.get('budget_s', '')} |"
              for n, e in report["sections"].items()]
    return "\n".join(lines) + "\n"


def write_report(report, out_dir):
    """device_check.json and device_check.md in `out_dir`, each replaced atomically."""
    os.makedirs(out_dir, exist_ok=True)
    for name, text in (("device_check.json", json.dumps(report, indent=2, default=str) + "\n"),
                       ("device_check.md", markdown(report))):
        tmp = os.path.join(out_dir, f".{name}.tmp")
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, os.path.join(out_dir, name))


def new_report(size=None):
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.machine()
    return {"tool": "tools/device_check.py", "schema": 1, "size": size, "seed": SEED,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "device": {"name": cpu, "kind": "CPU", "cpu_count": os.cpu_count(), "gpus": []},
            "versions": {"python": platform.python_version()}, "sections": {}}


def _nvidia_smi():
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):  # no driver here
        return None
    return (out.returncode == 0 and out.stdout.strip()) or None


def _environment(report, smi):
    """Versions and the device into `report`; True when TensorFlow sees a GPU."""
    from importlib import metadata
    import keras
    import numpy as np
    import tensorflow as tf
    import tfgal
    report["versions"].update(tensorflow=tf.__version__, keras=keras.__version__,
                              numpy=np.__version__, tfgal=tfgal.__version__, art=None)
    try:
        report["versions"]["art"] = metadata.version("adversarial-robustness-toolbox")
    except metadata.PackageNotFoundError:
        pass  # the attack section records the ImportError
    gpus, device = tf.config.list_physical_devices("GPU"), report["device"]
    device.update(nvidia_smi=smi, gpus=[g.name for g in gpus],
                  load_average_start=round(os.getloadavg()[0], 2))
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        device.update(kind="GPU", name=details.get("device_name", gpus[0].name),
                      compute_capability=details.get("compute_capability"))
    start = time.perf_counter()
    float(tf.reduce_sum(tf.matmul(tf.ones((256, 256)), tf.ones((256, 256)))))  # device init
    device["init_s"] = round(time.perf_counter() - start, 2)
    return bool(gpus)


def _stop(report, out, message):
    report["error"] = message
    write_report(report, out)
    sys.exit(f"device_check: {message}")


def _parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.environ.get("OUT") or os.path.join(ROOT, "device_check"),
                   help="folder for device_check.json and .md (default: $OUT, else device_check/)")
    p.add_argument("--size", choices=sorted(SIZES),
                   help="full (default with a GPU) or small (default without)")
    p.add_argument("--work", help="scratch folder, kept (default: a temporary one, removed)")
    return p


def main(argv=None):
    started = time.perf_counter()
    args = _parser().parse_args(argv)
    report, smi = new_report(args.size), _nvidia_smi()
    missing = [m for m in REQUIRED if importlib.util.find_spec(m) is None]
    if missing:
        _stop(report, args.out, f"{', '.join(missing)} not installed for {sys.executable}: "
              "pip install -e '.[bench]' (device_check.sh does, unless --no-install or .whl/). "
              "Offline they can only come as wheels in .whl/, and TensorFlow's (hundreds of MB, "
              "CUDA libraries apart) far exceeds the 64 MiB such a folder may hold on the shared "
              "GPU machine. Nothing was measured.")
    gpu = _environment(report, smi)
    if smi and not gpu:
        message = (f"nvidia-smi sees a GPU ({smi.splitlines()[0]}) but TensorFlow "
                   f"{report['versions']['tensorflow']} does not: a CPU-only build or missing "
                   "CUDA libraries (pip install 'tensorflow[and-cuda]').")
        report["device"]["warning"] = message
        if not args.size:  # stop rather than publish CPU figures from a GPU machine
            _stop(report, args.out, message + " Stopped; --size small runs on the CPU anyway.")
        print(f"device_check: WARNING: {message}", file=sys.stderr)
    size_name = args.size or ("full" if gpu else "small")
    size, work = SIZES[size_name], args.work or tempfile.mkdtemp(prefix="tfgal-device-check-")
    report.update(size=size_name, deadline_s=size["deadline_s"], python=sys.executable)
    os.makedirs(work, exist_ok=True)
    ctx = types.SimpleNamespace(size=size, size_name=size_name, gpu=gpu, work=work, data=None,
                                model=None, report=report)
    print(f"device_check: {report['device']['name']} ({report['device']['kind']}), size "
          f"{size_name}, deadline {size['deadline_s']} s", file=sys.stderr)
    try:
        for name in SECTIONS:
            budget = min(size["budgets"][name],
                         size["deadline_s"] - (time.perf_counter() - started))
            entry = run_section(report, name, budget, SECTION_FUNCTIONS[name], ctx)
            report["wall_s"] = round(time.perf_counter() - started, 1)
            write_report(report, args.out)
            note = entry.get("error") or entry.get("reason")
            print(f"device_check: {name}: {entry['status']} in {entry['seconds']} s"
                  + (f" ({note})" if note else ""), file=sys.stderr)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    report["device"]["load_average_end"] = round(os.getloadavg()[0], 2)
    write_report(report, args.out)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
