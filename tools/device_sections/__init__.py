"""The device check's sections, one module per wing they exercise (tools/device_check.py
runs them in `SECTIONS` order, each under its own budget):

    data    a mock set rendered (data); the tf.data pipeline beside training (pipeline)
    model   tfgal-train in float32 and mixed precision (quick_training, mixed_precision),
            the CE + MMD training step (training), tfgal-predict (predict)
    attack  tfgal's OnePixelAttack against ART's PixelAttack, same images and budget (attack)
    common  the seed, the tree's root, `Skip` and `row`

A section is ``fn(ctx, entry)``: it reads the run's context (`ctx.size`, `ctx.data`,
`ctx.model`, `ctx.gpu`, ...) and fills `entry` (settings, results, table rows) as it goes.
"""

from device_sections.attack import section_attack
from device_sections.data import section_data, section_pipeline
from device_sections.model import (section_mixed_precision, section_predict,
                                   section_quick_training, section_training)

__all__ = ["SECTIONS"]

SECTIONS = {  # in running order: each needs what the ones before it made
    "data": section_data, "quick_training": section_quick_training,
    "mixed_precision": section_mixed_precision, "attack": section_attack,
    "training": section_training, "pipeline": section_pipeline, "predict": section_predict,
}
