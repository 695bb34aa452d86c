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

__version__ = "0.1.0"
