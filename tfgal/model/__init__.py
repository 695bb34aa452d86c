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
"""

# Networks and their losses
from tfgal.model.architectures import build, build_convnet, build_head, build_resnet18
from tfgal.model.losses import STUDY_SIGMAS, entropy, fisher, mmd
from tfgal.model.adaptation import MorphologyModel

# Training and its callbacks
from tfgal.model.callbacks import TrainingDiverged
from tfgal.model.training import ensure_dataset, train

# The exported artifact
from tfgal.model.export import ExportedClassifier, export_saved_model
from tfgal.model.export import load as load_exported

__all__ = [
    "build", "build_convnet", "build_head", "build_resnet18",
    "mmd", "fisher", "entropy", "STUDY_SIGMAS", "MorphologyModel",
    "train", "ensure_dataset", "TrainingDiverged",
    "export_saved_model", "load_exported", "ExportedClassifier",
]
