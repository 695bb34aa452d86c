"""Sections on the data wing: a mock set rendered, and the tf.data pipeline's rate."""

from __future__ import annotations

import os
import statistics
import time

from device_sections.common import SEED, row

__all__ = ["section_data", "section_pipeline", "dataset"]


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


def dataset(ctx):
    """The data section's mock set, or synthetic stamps when that section failed."""
    from tfgal import data as data_wing
    if ctx.data:
        return data_wing.Manifest.load(ctx.data)
    from bench_pipeline import synthetic_dataset  # the data section failed: synthetic stamps
    return synthetic_dataset(os.path.join(ctx.work, "synthetic"), 512)


def section_pipeline(ctx, entry):
    import bench_train
    from tfgal.data import pipeline
    manifest, b = dataset(ctx), ctx.size["batch"]
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
