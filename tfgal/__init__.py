"""tfgal: robustness of galaxy morphology classifiers to noise and one-pixel attacks.

The package follows the flow of the work, one wing per stage; a wing imports the leaves
and earlier wings only (tests/test_layout.py checks it):

    tfgal.data     datasets: storage (manifest, codec, writer, shards), GalSim mocks,
                   importers, Poisson noise at any depth, the stretch, tf.data pipelines
    tfgal.model    architectures, MMD/Fisher/entropy losses, the adaptation model,
                   training with its callbacks and TensorBoard extras, SavedModel export
    tfgal.attack   one-pixel attacks by batched differential evolution, the incremental
                   evaluator, the driver that attacks a dataset, and its summary
    tfgal.study    the resumable study: stages, metrics, robustness curve, latent space,
                   figures and report

Leaves used by every wing: `tfgal.errors` (error hierarchy), `tfgal.seeds` (named
sub-seeds), `tfgal.survey` (LSST bands, zero points, sky, depths), `tfgal.config` (typed
experiment configs), `tfgal.io` (atomic writes), `tfgal.locks` (one writer per output),
`tfgal.progress` (progress bars), `tfgal.console` (TensorFlow's C++ start-up log kept off
the commands' stderr), `tfgal.beam` (Apache Beam options for the ``--beam`` jobs; Beam is
an optional extra).
`tfgal.cli` holds the ``tfgal-*`` commands.

Importing `tfgal` imports none of the wings, so that TensorFlow and GalSim load only where
they are used (a mock build forks its workers before TensorFlow exists).
"""

import importlib
import sys

__version__ = "0.1.0"

__all__ = ["lazy_exports"]


def lazy_exports(package, exports):
    """PEP 562 ``__getattr__`` and ``__dir__`` for a wing whose names load on first use.

    `exports` maps a public name to its module in `package` (or to (module, attribute));
    any other name that is a submodule (e.g. ``attack.driver``) is imported. So importing a
    wing costs nothing, and a command's ``--help`` never waits for TensorFlow.
    """
    def __getattr__(name):
        target = exports.get(name)
        if target is None:
            try:
                return importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as e:
                if e.name != f"{package}.{name}":
                    raise
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        module, attr = target if isinstance(target, tuple) else (target, name)
        value = getattr(importlib.import_module(f"{package}.{module}"), attr)
        vars(sys.modules[package])[name] = value  # later look-ups skip this function
        return value

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
