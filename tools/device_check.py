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
"""

from __future__ import annotations

import argparse
import datetime
import functools
import importlib.util
import json
import os
import platform
import shutil
import signal
import statistics
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

SEED = 0
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
SECTIONS = tuple(SIZES["full"]["budgets"])
QUICK_OVERRIDES = ("log.projector=0", "log.images=0")  # logging only: minutes saved
TOLERANCE_POINTS = 2.0
MIN_SECTION_S = 5  # a section left less than this by the deadline is skipped
REQUIRED = ("tensorflow", "keras", "numpy", "galsim", "astropy", "tqdm")


class SectionTimeout(BaseException):  # not an Exception: library code must not swallow it
    """A section's budget is spent."""


class Skip(Exception):
    """The section does not apply here; the message says why."""


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


def row(entry, figure, value, settings=""):
    entry["table"].append([figure, value, settings])


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


def section_data(ctx, entry):
    from tfgal import data as data_wing
    (n_train, n_val, n_test), workers = ctx.size["mock"], os.cpu_count() or 1
    entry["settings"] = {"rendered": True, "train": n_train, "val": n_val, "test": n_test,
                         "seed": SEED, "workers": workers}
    start, path = time.perf_counter(), os.path.join(ctx.work, "mock")
    data_wing.build_mocks(path, n_train=n_train, n_val=n_val, n_test=n_test, seed=SEED,
                          workers=workers, progress=False)
    seconds, total = time.perf_counter() - start, n_train + n_val + n_test
    entry["results"] = {"galaxies": total, "seconds": round(seconds, 1)}
    row(entry, "mock galaxies rendered", f"{total} in {seconds:.0f} s ({total / seconds:.1f}/s)",
        f"{n_train}/{n_val}/{n_test}, seed {SEED}, {workers} workers")
    ctx.data = path


def section_quick_training(ctx, entry):
    if not ctx.data:
        raise Skip("no dataset: the data section failed")
    runs = {"float32": ()}
    if ctx.gpu and ctx.size_name == "full":
        runs["mixed_float16"] = ("train.mixed_precision=true",)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [
        ROOT, os.environ.get("PYTHONPATH")])))
    entry["settings"]["concurrent"] = len(runs) > 1
    procs = {}
    try:
        for label, extra in runs.items():
            sets = [f"data.dir={json.dumps(os.path.abspath(ctx.data))}",
                    f'name="device-check-{label}"', *QUICK_OVERRIDES,
                    *ctx.size["train_overrides"], *extra]
            entry["settings"][label] = {"config": "pipelines/quick.toml", "overrides": sets}
            cmd = [sys.executable, "-c", "import sys; from tfgal.cli import train_main; "
                   "sys.exit(train_main())", "--config", f"{ROOT}/pipelines/quick.toml",
                   "--out", f"{ctx.work}/models/{label}", "--logdir", f"{ctx.work}/runs/{label}",
                   *[a for s in sets for a in ("--set", s)]]
            log = open(os.path.join(ctx.work, f"train-{label}.log"), "w")
            procs[label] = (subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log,
                                             start_new_session=True), log)
        for label, (proc, log) in procs.items():
            proc.wait()
            log.close()
            entry["results"][label] = _train_result(ctx, entry, label, proc.returncode)
    finally:
        for proc, log in procs.values():
            if proc.poll() is None:  # out of time: end the run we started, its children too
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()
    if entry["results"]["float32"]["ok"]:
        ctx.model = entry["results"]["float32"]["export_dir"]
    if not all(v["ok"] for v in entry["results"].values()):
        raise RuntimeError("tfgal-train failed: see each run's log_tail in the results")


def _train_result(ctx, entry, label, returncode):
    with open(os.path.join(ctx.work, f"train-{label}.log"), errors="replace") as f:
        log = f.read()
    out = {"ok": False, "returncode": returncode, "device_line": next(
        (ln for ln in log.splitlines() if ln.startswith("tfgal: TensorFlow")), None)}
    summary = os.path.join(ctx.work, "runs", label, "summary.json")
    if returncode == 0 and os.path.exists(summary):
        with open(summary) as f:
            s = json.load(f)
        acc = s.get("test_accuracy") or {}
        out.update(ok=True, export_dir=s["export_dir"], test_accuracy=acc,
                   val_accuracy=s.get("val_accuracy"), wall_s=s.get("wall_time_s"))
        row(entry, f"test accuracy {' / '.join(acc)}, {label}",
            " / ".join(f"{a:.1%}" for a in acc.values()),
            f"quick.toml, {out['wall_s']} s in tfgal.model.train")
    else:
        out["log_tail"] = log[-2000:].splitlines()
        row(entry, f"tfgal-train {label}", f"failed (exit {returncode})")
    return out


def section_mixed_precision(ctx, entry):
    if not ctx.gpu:
        raise Skip("n/a (CPU): tfgal applies train.mixed_precision only on a GPU "
                   "(tfgal/model/training.py)")
    if ctx.size_name != "full":
        raise Skip("size small trains the float32 model only")
    runs = ctx.report["sections"].get("quick_training", {}).get("results", {})
    if not all(runs.get(k, {}).get("ok") for k in ("float32", "mixed_float16")):
        raise RuntimeError("needs both quick_training runs, float32 and mixed_float16")
    a, b = runs["float32"]["test_accuracy"], runs["mixed_float16"]["test_accuracy"]
    diff = {d: round(100 * (b[d] - a[d]), 2) for d in a}
    within = all(abs(x) <= TOLERANCE_POINTS for x in diff.values())
    entry["settings"] = {"tolerance_points": TOLERANCE_POINTS, "split": "test", "seed": "same"}
    entry["results"] = dict(float32=a, mixed_float16=b, difference_points=diff,
                            within_tolerance=within)
    row(entry, f"mixed - float32 test accuracy, points ({' / '.join(diff)})",
        " / ".join(f"{x:+.1f}" for x in diff.values()) + ("" if within else " NOT") +
        f" within {TOLERANCE_POINTS:g}")
    import warnings
    import zipfile
    from tfgal.attack import OnePixelAttack
    from tfgal.data import pipeline
    from tfgal.model import export
    path, used = runs["mixed_float16"]["export_dir"], runs["mixed_float16"]["device_line"]
    with zipfile.ZipFile(os.path.join(path, "assets", "classifier.keras")) as z:
        layers = "mixed_float16" if b"mixed_float16" in z.read("config.json") else "float32"
    classifier = export.load(path)
    dtypes = sorted({v.dtype.name for v in classifier.serving.structured_outputs.values()})
    data = pipeline.load_arrays(ctx.data, "test", "Y10", n=8, seed=SEED,
                                stretch=classifier.assets.get("stretch"))
    with warnings.catch_warnings(record=True) as caught:  # e.g. evaluator deviations
        warnings.simplefilter("always")
        try:  # tfgal's attack reads the export's Keras layers (classifier.keras)
            OnePixelAttack(classifier, popsize=40, iters=2, success="class", seed=SEED).attack(
                data["images"], data["labels"])
            attack = "ok"
        except Exception as e:
            attack = f"{type(e).__name__}: {str(e)[:300]}"
    entry["results"].update(trained_on=used, export_layers=layers, serving_dtypes=dtypes,
                            attack_on_export=attack, warnings=[str(w.message) for w in caught])
    row(entry, "mixed run: device; export layers; serving outputs; tfgal attack on it",
        f"{'GPU' if used and ' GPU (' in used else 'CPU'}; {layers}; {', '.join(dtypes)}; "
        f"{attack}", "; ".join(str(w.message)[:120] for w in caught))


def section_attack(ctx, entry):
    if not ctx.model:
        raise Skip("no exported model: quick_training failed")
    import bench_attack
    s = ctx.size["attack"]
    args = types.SimpleNamespace(model=ctx.model, data=ctx.data, split="test", seed=SEED, **s)
    model, images, labels = bench_attack.load_model_and_data(args)
    images, labels = bench_attack.pick_images(model, images, labels, s["n"])
    if not len(images):
        raise RuntimeError("the model classifies none of the test images correctly")
    bounds = (float(images.min()), float(images.max()))
    entry["settings"] = {**s, "images": len(images), "pixels": 1, "success": "class change",
                         "value_range": [round(v, 4) for v in bounds], "split": "test",
                         "depth": "Y10", "seed": SEED, "model": "quick_training float32",
                         "tfgal": "OnePixelAttack, evaluator auto, init bounds",
                         "art": "PixelAttack(th=1, es=1): DE, population 400 (fixed in ART)"}
    runners = {"tfgal": functools.partial(bench_attack.run_tfgal, evaluator="auto"),
               "art": bench_attack.run_art}
    budget = f"{len(images)} images, population {s['popsize']}, {s['iters']} generations"
    for name, run in runners.items():
        success, queries, seconds, cpu = bench_attack.timed(run, model, images, labels, args,
                                                            bounds)
        r = entry["results"][name] = {
            "success_rate": float(success.mean()), "successes": int(success.sum()),
            "queries": int(queries), "wall_s": round(seconds, 2), "cpu_s": round(cpu, 2),
            "us_per_query": round(1e6 * seconds / queries, 2)}
        row(entry, f"{name}: success, wall time", f"{r['success_rate']:.1%} "
            f"({r['successes']}/{len(images)}), {r['wall_s']} s",
            f"{budget}; {queries} queries, {r['us_per_query']} us each")
    t, a = entry["results"]["tfgal"], entry["results"]["art"]
    speedup, equal = a["wall_s"] / t["wall_s"], t["successes"] == a["successes"]
    entry["results"].update(speedup_vs_art=round(speedup, 2), success_equal=equal)
    row(entry, "tfgal speed-up over ART; success equal", f"x{speedup:.1f}; "
        f"{'yes' if equal else 'no'}", "success = class change")


def _manifest(ctx):
    from tfgal import data as data_wing
    if ctx.data:
        return data_wing.Manifest.load(ctx.data)
    from bench_pipeline import synthetic_dataset  # the data section failed: synthetic stamps
    return synthetic_dataset(os.path.join(ctx.work, "synthetic"), 512)


def section_training(ctx, entry):
    import keras
    import tensorflow as tf
    import bench_train
    from tfgal.data import pipeline
    tf.config.experimental.enable_op_determinism()  # tfgal-train's default; process-wide
    manifest, size = _manifest(ctx), ctx.size
    steps, rounds = size["steps"], size["rounds"]
    entry["settings"] = {"step": "CE + MMD (weight 0.01), MorphologyModel.train_step, one "
                                 "iterator", "images_counted": "source + target",
                         "steps_per_round": steps, "rounds": rounds, "statistic": "median",
                         "op_determinism": True, "jit_compile": False, "data": manifest.root}
    for arch in ("convnet", "resnet18"):
        b = size["batch"] if arch == "convnet" else size["resnet_batch"]
        batches = pipeline.make_paired_dataset(manifest, "train", batch_size=b, repeat=True,
                                               seed=SEED).prefetch(4)
        for policy in ("float32", "mixed_float16"):
            key = f"{arch}/{policy}"
            if policy != "float32" and not ctx.gpu:
                entry["results"][key] = "n/a (CPU)"
                row(entry, f"train step {key}", "n/a (CPU)", "tfgal uses it on a GPU only")
                continue
            keras.mixed_precision.set_global_policy(policy)
            try:
                model = bench_train.make_model(arch, manifest, 0.01, None, jit_compile=False)
                bench_train.prepare_steps(model)
                iterator = iter(batches)
                bench_train.step_rate(model, iterator, 1, 1)  # traces, fills shuffle buffers
                rates = [bench_train.step_rate(model, iterator, steps, 2 * b)
                         for _ in range(rounds)]
            finally:
                keras.mixed_precision.set_global_policy("float32")
            median = statistics.median(rates)
            entry["results"][key] = {"images_per_s": round(median, 1), "batch_per_domain": b,
                                     "rounds": [round(r, 1) for r in rates]}
            row(entry, f"train step {key}", f"{median:.1f} images/s",
                f"{b} + {b} per step, median of {rounds} x {steps} steps")


def section_pipeline(ctx, entry):
    import bench_train
    from tfgal.data import pipeline
    manifest, b = _manifest(ctx), ctx.size["batch"]
    steps, rounds = 4 * ctx.size["steps"], ctx.size["rounds"]
    entry["settings"] = {"pipeline": f"make_paired_dataset, train split, {b} Y10 + {b} Y1 a "
                                     f"batch, {steps} batches a round (as bench_train)",
                         "rounds": rounds, "statistic": "median"}
    batches = pipeline.make_paired_dataset(manifest, "train", batch_size=b, repeat=True,
                                           seed=SEED).prefetch(4)
    rate = statistics.median(bench_train.pipeline_rate(batches, steps, 2 * b)
                             for _ in range(rounds))
    trained = ctx.report["sections"].get("training", {}).get("results", {})
    ratios = {k: round(rate / v["images_per_s"], 2) for k, v in trained.items()
              if isinstance(v, dict)}
    entry["results"] = {"paired_images_per_s": round(rate, 1), "pipeline_over_training": ratios}
    row(entry, "paired training pipeline", f"{rate:.1f} images/s",
        ", ".join(f"x{v} {k}" for k, v in ratios.items()) or "no training rate to compare")


def section_predict(ctx, entry):
    if not ctx.model:
        raise Skip("no exported model: quick_training failed")
    import bench_predict
    from tfgal.model import predict as predict_lib
    args = types.SimpleNamespace(model=ctx.model, data=ctx.data, split=ctx.size["predict_split"],
                                 batch_size=predict_lib.DEFAULT_BATCH_SIZE,
                                 repeat=ctx.size["repeat"])
    entry["settings"] = {"split": args.split, "batch": args.batch_size, "repeat": args.repeat,
                         "statistic": "best", "format": "FITS", "model": "quick_training float32"}
    m = bench_predict.measure(args)
    best = {k: round(v, 1) for k, v in m["best"].items()}
    entry["results"] = {"galaxies": m["n_galaxies"], "depth": m["depth"],
                        "first_call_galaxies_per_s": round(m["cold"], 1),
                        "predict_over_forward": round(best["predict"] / best["forward"], 2),
                        **{f"{k.replace('+', '_with_')}_galaxies_per_s": v
                           for k, v in best.items()}}
    where = f"{m['n_galaxies']} galaxies ({args.split}), batch {args.batch_size}"
    row(entry, "tfgal-predict, catalogue written", f"{best['predict']} galaxies/s "
        f"(x{best['predict'] / best['forward']:.2f} of bare forward)", where)
    row(entry, "bare forward / pipeline alone / first call",
        f"{best['forward']} / {best['pipeline']} / {m['cold']:.1f} galaxies/s",
        f"best of {args.repeat}")


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
            entry = run_section(report, name, budget, globals()[f"section_{name}"], ctx)
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
