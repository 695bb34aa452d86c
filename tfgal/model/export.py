"""SavedModel export and loading: the contract serving, the attacker and the study rely on.

An exported model is a SavedModel directory with two signatures:

* ``serving_default``: input ``images`` float32 [batch, H, W, C] of stretched images
  (exactly what the pipeline yields); outputs ``probabilities`` [batch, n_classes],
  ``logits`` [batch, n_classes] and ``latent`` [batch, latent_dim];
* ``classify_latent``: input ``latent`` [batch, latent_dim]; outputs ``probabilities`` and
  ``logits`` (the church-window plot classifies points of latent space with it).

Beside them, ``assets/tfgal.json`` holds the class names, bands, image shape, stretch
constants (so raw e-/s images can be preprocessed without tfgal), the value range of
stretched pixels, the resolved training config and library versions, and
``assets/classifier.keras`` the same classifier (images -> probabilities) as a Keras
archive of standard layers: the attacker reads its layers to evaluate one-pixel changes
incrementally (`tfgal.attack.incremental`), and checks it against ``serving_default`` first.

Loading needs only TensorFlow: ``tf.saved_model.load(path).signatures["serving_default"]``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid

import numpy as np
import tensorflow as tf

from tfgal import io
from tfgal.errors import ModelContractError

__all__ = ["export_saved_model", "load", "resolve", "ExportedClassifier", "library_versions",
           "fingerprint", "ASSETS_NAME", "KERAS_NAME", "SAVED_MODEL_PB", "SERVING",
           "CLASSIFY_LATENT", "OUTPUTS"]

ASSETS_NAME = "tfgal.json"
KERAS_NAME = "classifier.keras"
SAVED_MODEL_PB = "saved_model.pb"
SERVING = "serving_default"
CLASSIFY_LATENT = "classify_latent"
OUTPUTS = ("probabilities", "logits", "latent")


def library_versions():
    import keras
    import tfgal
    return {"tfgal": tfgal.__version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": np.__version__}


def fingerprint(path):
    """Digest of a SavedModel's variables and signatures (not its assets): what its outputs
    depend on, so what anything computed from them (a study's stages, saved predictions)
    must be keyed by.

    It reads values, not files: Keras lists an export's variables in an order that varies
    from one process to the next, so the same weights make other bytes. Each variable's
    dtype, shape and values are digested, and the sorted digests hashed with the
    signatures: the same weights give the same fingerprint, whichever process wrote them.
    """
    from tensorflow.core.protobuf import saved_model_pb2
    reader = tf.train.load_checkpoint(os.path.join(os.fspath(path), "variables", "variables"))
    digests = []
    for key in reader.get_variable_to_shape_map():
        if key == "_CHECKPOINTABLE_OBJECT_GRAPH":
            continue
        value = np.asarray(reader.get_tensor(key))
        digests.append(hashlib.sha256(
            f"{value.dtype}{value.shape}".encode() + value.tobytes()).hexdigest())
    h = hashlib.sha256("".join(sorted(digests)).encode())
    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(os.fspath(path), SAVED_MODEL_PB), "rb") as f:
        saved.ParseFromString(f.read())
    for graph in saved.meta_graphs:
        for name in sorted(graph.signature_def):
            h.update(name.encode())
            h.update(graph.signature_def[name].SerializeToString(deterministic=True))
    return h.hexdigest()[:16]


def export_saved_model(encoder, head, path, *, image_shape, assets=None, overwrite=True):
    """Writes `encoder` + `head` as a SavedModel at `path`, atomically.

    Args:
      encoder: Keras model, images [N, H, W, C] -> latent [N, D].
      head: Keras model, latent [N, D] -> logits [N, K].
      path: target directory; built beside it under a temporary name, then renamed.
      image_shape: (H, W, C) of the serving input.
      assets: JSON-able dict stored as ``assets/tfgal.json`` (versions are added).
    Returns:
      the path written.
    """
    import keras
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and not overwrite:
        raise ModelContractError(f"export target exists: {path}")
    image_shape = tuple(int(d) for d in image_shape)
    latent_dim = int(head.inputs[0].shape[-1])
    encoder, head = _float32(encoder), _float32(head)

    archive = keras.export.ExportArchive()
    archive.track(encoder)
    archive.track(head)

    def serve(images):
        latent = encoder(images, training=False)
        logits = head(latent, training=False)
        return {"probabilities": tf.nn.softmax(logits), "logits": logits, "latent": latent}

    def classify_latent(latent):
        logits = head(latent, training=False)
        return {"probabilities": tf.nn.softmax(logits), "logits": logits}

    archive.add_endpoint(
        SERVING, serve,
        input_signature=[tf.TensorSpec((None, *image_shape), tf.float32, name="images")])
    archive.add_endpoint(
        CLASSIFY_LATENT, classify_latent,
        input_signature=[tf.TensorSpec((None, latent_dim), tf.float32, name="latent")])

    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        archive.write_out(tmp, verbose=False)
        meta = dict(assets or {})
        meta.setdefault("image_shape", list(image_shape))
        meta.setdefault("latent_dim", latent_dim)
        meta["versions"] = library_versions()
        os.makedirs(os.path.join(tmp, "assets"), exist_ok=True)
        with open(os.path.join(tmp, "assets", ASSETS_NAME), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2)
        images = keras.Input(image_shape, name="images")
        softmax = keras.layers.Softmax(name="probabilities", dtype="float32")
        classifier = keras.Model(images, softmax(head(encoder(images))), name="classifier")
        classifier.save(os.path.join(tmp, "assets", KERAS_NAME))
        io.publish_directory(tmp, path)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def _float32(model):
    """`model` with float32 layers and its weights: an export serves float32 whatever
    policy it was trained under (mixed_float16 layers would make a float16 Keras replica,
    which the attack's incremental evaluator cannot read)."""
    import keras
    if all(layer.dtype_policy.name == "float32" for layer in model.layers):
        return model

    def float32_layer(layer):
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})
    copy = keras.models.clone_model(model, clone_function=float32_layer)
    copy.set_weights(model.get_weights())
    return copy


class ExportedClassifier:
    """A loaded tfgal SavedModel, checked against the export contract.

    Attributes:
      path: the SavedModel directory.
      assets: the dict of ``assets/tfgal.json`` ({} if absent).
      image_shape: (H, W, C) accepted by ``serving_default``.
      latent_dim, n_classes: from the signatures.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        if not os.path.isdir(self.path):
            raise ModelContractError(f"no SavedModel directory at {self.path}")
        try:
            self._loaded = tf.saved_model.load(self.path)
        except (OSError, ValueError, tf.errors.OpError) as e:
            raise ModelContractError(f"cannot load a SavedModel from {self.path}: {e}") from None
        signatures = self._loaded.signatures
        if SERVING not in signatures:
            raise ModelContractError(
                f"SavedModel {self.path} has no {SERVING!r} signature; it has {sorted(signatures)}")
        self.serving = signatures[SERVING]
        _, kwargs = self.serving.structured_input_signature
        if "images" not in kwargs:
            raise ModelContractError(
                f"{SERVING} of {self.path} takes {sorted(kwargs)}, not 'images'")
        missing = set(OUTPUTS) - set(self.serving.structured_outputs)
        if missing:
            raise ModelContractError(
                f"{SERVING} of {self.path} lacks outputs {sorted(missing)}")
        self.image_shape = tuple(kwargs["images"].shape[1:])
        self.latent_dim = int(self.serving.structured_outputs["latent"].shape[-1])
        self.n_classes = int(self.serving.structured_outputs["logits"].shape[-1])
        self.classify_latent_fn = signatures.get(CLASSIFY_LATENT)
        self.assets = {}
        assets_path = os.path.join(self.path, "assets", ASSETS_NAME)
        if os.path.exists(assets_path):
            with open(assets_path, encoding="utf-8") as f:
                self.assets = json.load(f)

    def keras_replica(self):
        """The exported classifier as a Keras model (images -> probabilities), from
        ``assets/classifier.keras``; None when the SavedModel has none. Loaded once."""
        if not hasattr(self, "_keras"):
            import keras
            path = os.path.join(self.path, "assets", KERAS_NAME)
            self._keras = None
            if os.path.exists(path):
                try:
                    self._keras = keras.saving.load_model(path, compile=False)
                except (OSError, ValueError, TypeError) as e:
                    raise ModelContractError(f"cannot load {path}: {e}") from None
        return self._keras

    def check_images(self, shape):
        """Raises `ModelContractError` unless images of `shape` (N, H, W, C) fit."""
        if tuple(shape[1:]) != self.image_shape:
            raise ModelContractError(
                f"model {self.path} takes images of shape {self.image_shape}; "
                f"received {tuple(shape[1:])}")

    def __call__(self, images):
        """Runs ``serving_default`` on a batch; returns a dict of tensors."""
        images = tf.convert_to_tensor(images, tf.float32)
        self.check_images(images.shape)
        return self.serving(images=images)

    def predict(self, images, batch_size=256):
        """Runs the model over a NumPy array in batches; returns a dict of NumPy arrays."""
        images = np.asarray(images, np.float32)
        self.check_images(images.shape)
        parts = {k: [] for k in OUTPUTS}
        for start in range(0, len(images), batch_size):
            out = self.serving(images=tf.constant(images[start:start + batch_size]))
            for k in OUTPUTS:
                parts[k].append(out[k].numpy())
        return {k: (np.concatenate(v) if v else np.zeros((0,))) for k, v in parts.items()}

    def classify_latent(self, latent):
        if self.classify_latent_fn is None:
            raise ModelContractError(f"SavedModel {self.path} has no {CLASSIFY_LATENT!r} signature")
        return self.classify_latent_fn(latent=tf.convert_to_tensor(latent, tf.float32))


def resolve(path):
    """(SavedModel directory, version or None) of a model path, checked before TensorFlow
    reads anything: the one place a bad ``--model`` is named, so every command says the
    same. `path` is a SavedModel directory, or a TF Serving base directory whose
    integer-named subdirectories hold versions of one model: the highest is taken, and its
    number is the version."""
    given = os.fspath(path)
    shown = os.path.abspath(given)
    if not os.path.isdir(given):
        what = "not a directory" if os.path.exists(given) else "no such directory"
        raise ModelContractError(f"no SavedModel at {shown}: {what}")
    if os.path.exists(os.path.join(given, SAVED_MODEL_PB)):
        return given, None
    versions = [int(d) for d in os.listdir(given)
                if d.isdigit() and os.path.exists(os.path.join(given, d, SAVED_MODEL_PB))]
    if not versions:
        raise ModelContractError(
            f"no SavedModel at {shown}: it has no {SAVED_MODEL_PB} and no integer-named "
            "version subdirectories holding one (TF Serving layout BASE/<version>/)")
    return os.path.join(given, str(max(versions))), str(max(versions))


def load(path):
    """Loads and checks a tfgal SavedModel (see `ExportedClassifier`); `path` may be a TF
    Serving base directory (`resolve`)."""
    return ExportedClassifier(resolve(path)[0])
