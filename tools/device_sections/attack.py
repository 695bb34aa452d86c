"""The section on the attack wing: tfgal's OnePixelAttack against ART's PixelAttack."""

from __future__ import annotations

import functools
import types

from device_sections.common import SEED, Skip, row

__all__ = ["section_attack"]


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
