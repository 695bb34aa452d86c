"""The study wing: the robustness study as resumable stages, its measurements and report.

    from tfgal import study
    cfg = study.load_config("pipelines/quick.toml")
    results = study.run(cfg, "studies/quick")
"""

# Measurements: classification metrics, predictions and the depth curve, latent space.
from tfgal.study.metrics import ClassificationEvaluator, accuracy_sem, brier_score, collect
from tfgal.study.curve import RobustnessCurve, curve_depths, predict_split
from tfgal.study.latent import church_window, isomap, window_summary

# Presentation: figures and the Markdown report (with the paper's published figures).
from tfgal.study import plots, report
from tfgal.study.report import PAPER

# Machinery: the stage store and the stage base class every stage derives from.
from tfgal.study.store import StageRecord, StageStore, array_field, digest, plain
from tfgal.study.stage import MODELS, Stage, StudyContext, derived_configs

# Stages, grouped by theme.
from tfgal.study.models import Curve, Evaluate, Train
from tfgal.study.attacks import Attack, Church, Latent
from tfgal.study.outputs import FIGURES, Figures

# The study: its stage list, the results schema and the `tfgal-study` entry points.
from tfgal.study.runner import (STAGES, Report, Study, default_stages, load_config, results,
                                run)

__all__ = [
    "ClassificationEvaluator", "accuracy_sem", "brier_score", "collect",
    "RobustnessCurve", "curve_depths", "predict_split",
    "church_window", "isomap", "window_summary",
    "plots", "report", "PAPER",
    "StageRecord", "StageStore", "array_field", "digest", "plain",
    "MODELS", "Stage", "StudyContext", "derived_configs",
    "Train", "Evaluate", "Curve", "Attack", "Latent", "Church", "Figures", "Report",
    "FIGURES", "STAGES", "Study", "default_stages", "results", "load_config", "run",
]
