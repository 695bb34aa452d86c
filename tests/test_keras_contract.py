"""The private Keras API tfgal relies on, checked on the real classes and instances.

Keras does not promise these names. Each test fails with a message naming the private
name, where tfgal uses it and why, and the Keras version found, so that a Keras upgrade
that renames one fails here rather than silently (setup.cfg pins the minor version tested).
"""

import configparser
import inspect
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from packaging.requirements import Requirement

from tfgal.model import adaptation, architectures


def _require(ok, name, where, why):
    if not ok:
        pytest.fail(f"Keras {keras.__version__}: private {name} is gone or changed. tfgal uses "
                    f"it in {where} to {why}. Adapt that code to this Keras, or install a "
                    "Keras within the range pinned in setup.cfg.", pytrace=False)


def test_installed_keras_is_the_pinned_range():
    parser = configparser.ConfigParser()
    parser.read(os.path.join(os.path.dirname(__file__), "..", "setup.cfg"))
    lines = parser["options"]["install_requires"].splitlines()
    pin = next(Requirement(line) for line in lines
               if line.strip().startswith("keras") and not line.strip().startswith("#"))
    assert pin.specifier.contains(keras.__version__), \
        f"keras {keras.__version__} is installed, but setup.cfg pins {pin}: run the tests " \
        "(test_keras_contract.py first) on the new version, then move the pin"


# --------------------------------------------------------------------------- MorphologyModel

SYMBOLIC_BUILD = ("keras.Model._maybe_symbolic_build",
                  "tfgal/model/adaptation.py (MorphologyModel._maybe_symbolic_build)",
                  "build the model on this replica's own first batch, since tf.distribute "
                  "cannot mean-reduce nested batches under MultiWorkerMirroredStrategy")
STRATEGY = ("keras.Model._distribute_strategy",
            "tfgal/model/adaptation.py (MorphologyModel._maybe_symbolic_build)",
            "tell whether the model was built under a tf.distribute strategy, as Keras' own "
            "symbolic build does")


def _tiny_model():
    encoder, head = architectures.build_convnet((8, 8, 3), latent_dim=4, seed=0,
                                                filters=(2,), kernels=(3,))
    model = adaptation.MorphologyModel(encoder, head, mmd_weight=0.01)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=False)
    return model


def _tiny_batches():
    rng = np.random.default_rng(0)
    x = rng.random((4, 8, 8, 3), np.float32)
    return tf.data.Dataset.from_tensors(((x, x), np.array([0, 1, 2, 0]))).repeat()


def test_maybe_symbolic_build_signature():
    method = getattr(keras.Model, "_maybe_symbolic_build", None)
    _require(callable(method), *SYMBOLIC_BUILD)
    params = inspect.signature(method).parameters
    _require({"iterator", "data_batch"} <= set(params), *SYMBOLIC_BUILD)


def test_distribute_strategy_attribute():
    outside = keras.Sequential([keras.layers.Dense(1)])
    _require(hasattr(outside, "_distribute_strategy"), *STRATEGY)
    _require(outside._distribute_strategy is None, *STRATEGY)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        inside = keras.Sequential([keras.layers.Dense(1)])
    _require(inside._distribute_strategy is strategy, *STRATEGY)


def test_fit_under_a_strategy_goes_through_the_override(monkeypatch):
    """fit() calls the override with an iterator of (begin, end, iterator) triples."""
    seen = []
    local_value = adaptation._local_value
    monkeypatch.setattr(adaptation, "_local_value", lambda v: seen.append(v) or local_value(v))
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        model = _tiny_model()
    model.fit(_tiny_batches(), steps_per_epoch=1, epochs=1, verbose=0)
    _require(len(seen) == 3, *SYMBOLIC_BUILD)  # source, target and labels of one batch


# --------------------------------------------------------------------------- flatten_layers

INBOUND = ("keras.layers.Layer._inbound_nodes and Node.input_tensors",
           "tfgal/attack/incremental.py (flatten_layers)",
           "refuse models whose layers merge branches, which the incremental one-pixel "
           "evaluator cannot follow (it reads them with getattr defaults, so a rename would "
           "silently let such models through)")


def test_inbound_nodes_show_merged_branches():
    x = keras.Input((4,))
    dense = keras.layers.Dense(4)
    add = keras.layers.Add()
    keras.Model(x, add([dense(x), x]))
    for layer, n_inputs in ((dense, 1), (add, 2)):
        nodes = getattr(layer, "_inbound_nodes", None)
        _require(isinstance(nodes, list) and len(nodes) == 1, *INBOUND)
        tensors = getattr(nodes[0], "input_tensors", None)
        _require(tensors is not None and len(tensors) == n_inputs, *INBOUND)


def test_flatten_layers_refuses_merged_branches():
    from tfgal.attack.incremental import Unsupported, flatten_layers
    x = keras.Input((4,))
    merged = keras.Model(x, keras.layers.Add()([keras.layers.Dense(4)(x), x]))
    chain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4), keras.layers.ReLU()])
    assert len(flatten_layers(chain)) == 2
    try:
        flatten_layers(merged)
    except Unsupported:
        return
    _require(False, *INBOUND)
