"""Any model the attack accepts, seen as one traceable images -> probabilities function.

`wrap_model` takes a SavedModel path, an `ExportedClassifier`, a loaded SavedModel (its
``serving_default`` signature), a Keras model or a callable, and returns a `Classifier`:
the probabilities function, the image shape it declares, its assets (value range,
stretch) and, where there is one, a Keras model of the same probabilities for the
incremental evaluator. `check_shape` and `check_probabilities` refuse inputs and outputs
that break the contract, with the model named.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from tfgal.errors import ModelContractError
from tfgal.model import export

__all__ = ["Classifier", "wrap_model", "check_shape", "check_probabilities", "PROB_TOLERANCE"]

PROB_TOLERANCE = 1e-3  # rows of a probability output must sum to 1 within this


@dataclasses.dataclass
class Classifier:
    """The attack's view of a model."""

    probabilities: object  # images tensor -> probabilities tensor, traceable
    image_shape: tuple | None
    assets: dict
    name: str
    keras: object = None  # () -> a Keras model of the same probabilities, or None


def wrap_model(model):
    """Accepts a SavedModel path, an `ExportedClassifier`, a loaded SavedModel, a Keras
    model or a callable images -> probabilities; returns the attack's view of it."""
    if isinstance(model, (str, os.PathLike)):
        model = export.load(model)
    if isinstance(model, export.ExportedClassifier):
        return Classifier(lambda x: model.serving(images=x)["probabilities"],
                          model.image_shape, model.assets, model.path, model.keras_replica)
    if hasattr(model, "signatures") and not hasattr(model, "layers"):
        return _from_signatures(model)
    if not callable(model):
        raise ModelContractError(f"cannot attack a {type(model).__name__}: not callable")
    shape = None
    if getattr(model, "inputs", None):
        shape = tuple(model.inputs[0].shape[1:])
    is_keras = hasattr(model, "layers")
    call = (lambda x: model(x, training=False)) if is_keras else model
    return Classifier(lambda x: _probabilities_of(call(x)), shape, {}, type(model).__name__,
                      (lambda: model) if is_keras else None)


def _from_signatures(loaded):
    if export.SERVING not in loaded.signatures:
        raise ModelContractError(
            f"SavedModel has no {export.SERVING!r} signature; it has {sorted(loaded.signatures)}")
    serving = loaded.signatures[export.SERVING]
    _, kwargs = serving.structured_input_signature
    if "images" not in kwargs or "probabilities" not in serving.structured_outputs:
        raise ModelContractError(
            f"{export.SERVING} must map 'images' to 'probabilities'; it takes {sorted(kwargs)} "
            f"and returns {sorted(serving.structured_outputs)}")
    return Classifier(lambda x: serving(images=x)["probabilities"],
                      tuple(kwargs["images"].shape[1:]), {}, "SavedModel")


def _probabilities_of(out):
    if isinstance(out, dict):
        if "probabilities" not in out:
            raise ModelContractError(f"model returns {sorted(out)}, not 'probabilities'")
        return out["probabilities"]
    return out


def check_shape(model, images):
    """Refuses images whose shape differs from the one `model` (a `Classifier`) declares."""
    declared = model.image_shape
    shape = tuple(images.shape[1:])
    if declared is None:
        return
    if len(declared) != len(shape) or any(d not in (None, s) for d, s in zip(declared, shape)):
        raise ModelContractError(
            f"model {model.name} takes images of shape {declared}; received {shape}")


def check_probabilities(probs, name):
    """Refuses an output of model `name` that is not [N, classes] rows summing to 1."""
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise ModelContractError(f"model {name} returned shape {probs.shape}, not [N, classes]")
    sums = probs.sum(axis=1)
    if np.any(probs < -PROB_TOLERANCE) or np.any(np.abs(sums - 1) > PROB_TOLERANCE):
        raise ModelContractError(
            f"model {name} does not return probabilities (row sums {sums.min():.3g} .. "
            f"{sums.max():.3g}); pass a model ending in softmax")

