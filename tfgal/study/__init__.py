"""The study wing: the robustness study as resumable stages, its measurements and report.

    from tfgal import study
    cfg = study.load_config("pipelines/quick.toml")
    results = study.run(cfg, "studies/quick")

The study trains the controls of `CONTROLS` (``study.models``) at every seed of
``study.seeds`` and measures them on the same galaxies.
"""

# Measurements: classification metrics, predictions and the depth curve, latent space.
from tfgal.study.metrics import (ClassificationEvaluator, accuracy_sem, brier_score, collect,
                                 expected_calibration_error, reliability)
from tfgal.study.curve import RobustnessCurve, curve_depths, predict_split
from tfgal.study.latent import (GalaxyBootstrap, bootstrap_ci, church_window, galaxy_mean,
                                isomap, latent_scale, paired_ratio, paired_scaled,
                                scaled_mean, window_summary)

# Presentation: figures and the Markdown report (with the paper's published figures).
from tfgal.study import classical, controlled, plots, report
from tfgal.study.report import PAPER

# Machinery: the stage store and the stage base class every stage derives from.
from tfgal.study.store import StageRecord, StageStore, array_field, digest, plain
from tfgal.study.stage import CONTROLS, Member, Stage, StudyContext, derived_configs, members

# Stages, grouped by theme.
from tfgal.study.models import Curve, Evaluate, Train
from tfgal.study.attacks import Attack, Church, Distances, Latent
from tfgal.study.corruption import Corruptions
from tfgal.study.classical import Morphology
from tfgal.study.outputs import CORRUPTION_FIGURES, FIGURES, Figures

# The study: its stage list, the results schema and the `tfgal-study` entry points.
from tfgal.study.runner import (Report, Study, default_stages, load_config, results, run,
                                stage_names)

__all__ = [
    "ClassificationEvaluator", "accuracy_sem", "brier_score", "collect",
    "expected_calibration_error", "reliability",
    "RobustnessCurve", "curve_depths", "predict_split",
    "church_window", "isomap", "window_summary", "bootstrap_ci", "latent_scale",
    "paired_ratio", "GalaxyBootstrap", "scaled_mean", "galaxy_mean", "paired_scaled",
    "classical", "controlled", "plots", "report", "PAPER",
    "StageRecord", "StageStore", "array_field", "digest", "plain",
    "CONTROLS", "Member", "Stage", "StudyContext", "derived_configs", "members",
    "Train", "Evaluate", "Curve", "Morphology", "Corruptions", "Attack", "Distances", "Latent", "Church",
    "Figures", "Report", "FIGURES", "CORRUPTION_FIGURES", "stage_names", "Study",
    "default_stages", "results", "load_config", "run",
]
