"""Sections on the model wing: tfgal-train (float32 and mixed precision), the training step
and tfgal-predict against the bare forward pass."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import types

from device_sections.common import ROOT, SEED, Skip, row
from device_sections.data import dataset

__all__ = ["QUICK_OVERRIDES", "TOLERANCE_POINTS", "section_quick_training",
           "section_mixed_precision", "section_training", "section_predict"]

QUICK_OVERRIDES = ("log.projector=0", "log.images=0")  # logging only: minutes saved
TOLERANCE_POINTS = 2.0


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


def section_training(ctx, entry):
    import keras
    import tensorflow as tf
    import bench_train
    from tfgal.data import pipeline
    tf.config.experimental.enable_op_determinism()  # tfgal-train's default; process-wide
    manifest, size = dataset(ctx), ctx.size
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
