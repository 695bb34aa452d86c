"""The model wing: architectures, losses, the adaptation model, training and export.

Reads datasets from the data wing; the attack and study wings read what it exports.

    architectures  encoders (ConvNet, ResNet18) to a latent bottleneck, a linear head
    losses         MMD, Fisher and entropy terms on latent embeddings
    adaptation     MorphologyModel: class-weighted CE plus the adaptation terms
    callbacks      NaN stop, the exact training state, precise batch norm, resumable stopping
    tensorboard    example galaxies and the latent projector for TensorBoard
    training       tfgal-train: a config in, a trained and exported classifier out
    run_dir        a run's directory: resume it, start it over, or say it is finished
    final_eval     its final evaluation: per-galaxy predictions saved for the study to reuse
    export         the SavedModel contract: export_saved_model, load, ExportedClassifier
    predict        tfgal-predict: an exported model over a dataset or FITS cutouts -> a catalogue
    beam_predict   the same catalogue on Apache Beam (RunInference; the beam extra)

Names load on first use (PEP 562): ``import tfgal.model`` does not import TensorFlow.
"""

from __future__ import annotations

from tfgal import lazy_exports

_EXPORTS = {
    # networks and their losses
    "build": "architectures", "build_convnet": "architectures", "build_head": "architectures",
    "build_resnet18": "architectures", "mmd": "losses", "fisher": "losses", "entropy": "losses",
    "STUDY_SIGMAS": "losses", "MorphologyModel": "adaptation",
    # training and its callbacks
    "train": "training", "ensure_dataset": "training", "TrainingDiverged": "callbacks",
    # the exported artifact
    "export_saved_model": "export", "load_exported": ("export", "load"),
    "ExportedClassifier": "export",
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
