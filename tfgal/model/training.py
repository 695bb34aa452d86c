"""`tfgal-train`: a config in, a trained, exported morphology classifier out.

Run layout (``log.dir``, default ``runs/<name>``)::

    config.json      the resolved config (a resumed run must match it)
    history.csv      per-epoch metrics (appended across resumes)
    backup/          the exact training state (`callbacks.TrainingState`) at the last epoch
                     end, or every ``train.checkpoint_steps`` steps: a killed run resumes
                     there and ends exactly where an uninterrupted one would
    best.weights.h5  the best validation checkpoint
    train/ validation/ examples/ projector/ hparams/   TensorBoard logs
    summary.json     final metrics on val and test at both depths
    predictions.npz  the final evaluation's per-galaxy outputs (`tfgal.model.final_eval`)

The SavedModel goes to ``export.dir`` (default ``saved_models/<name>``). Under
multi-worker training only the chief writes these (and locks them: `tfgal.locks`); other
workers write to temporary directories that are removed.

Resuming is exact: every random draw of the input streams is addressed by its position
(`tfgal.data.pipeline`, ``start``), and the state saved holds every variable the rest of
the run depends on (weights, batch-norm statistics, dropout seeds, the optimizer's slots
and step, a resumed epoch's running metric sums), so a run killed anywhere and run again
ends with the history and the weights of a run never interrupted. A finished run is not
trained again unless asked (``overwrite``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import warnings

import keras
import numpy as np
import tensorflow as tf

from tfgal import console, io, locks
from tfgal import config as config_lib, seeds
from tfgal import data as data_wing
from tfgal.data import pipeline
from tfgal.data.mock import builder as mock_builder
from tfgal.data import stretch as stretch_lib
from tfgal.errors import ConfigError, DataError
from tfgal.model import adaptation, architectures, callbacks as callbacks_lib, export
from tfgal.model import final_eval
from tfgal.model import tensorboard
from tfgal.model.run_dir import (BACKUP, BEST, CONFIG, HISTORY, PREDICTIONS, SUMMARY,
                                 history_rows, prepare_run_dir, resumable, truncate_history)

__all__ = ["train", "ensure_dataset", "build_model", "jit_compile", "class_weights",
           "make_strategy", "is_chief", "datasets", "learning_rate", "weight_decay",
           "source_depth_range",
           "prepare_run_dir", "resumable", "evaluate_depths", "history_rows", "export_assets",
           "SUMMARY",
           "BACKUP", "CONFIG", "HISTORY", "BEST", "PREDICTIONS"]


def ensure_dataset(data_cfg, seed):
    """The dataset at data.dir (a mock set is built there first if missing and allowed),
    with the stretch's bands of ``data.stretch_bands`` (`stretch.band_manifest`) and its
    lower clip of ``data.stretch_clip`` (`stretch.lower_clip`): every pipeline, the
    export's assets and the attacks then use that one stretch."""
    root = data_cfg.dir
    if os.path.exists(os.path.join(root, data_wing.MANIFEST_NAME)) or not data_cfg.mock:
        manifest = data_wing.Manifest.load(root)
        _note_old_mocks(manifest, root)
    else:
        print(f"tfgal: no dataset at {root} ({_relative_note(root)}): rendering the embedded "
              f"mock set there ({data_cfg.mock_train} train, {data_cfg.mock_val} val, "
              f"{data_cfg.mock_test} test galaxies, seed {seed}; once, reused by later runs)",
              file=sys.stderr, flush=True)
        manifest = data_wing.build_mocks(root, n_train=data_cfg.mock_train,
                                         n_val=data_cfg.mock_val, n_test=data_cfg.mock_test,
                                         seed=seed, workers=data_cfg.mock_workers or None,
                                         progress=None)  # a bar on a terminal only
    manifest = stretch_lib.band_manifest(manifest, data_cfg.stretch_bands)
    return stretch_lib.clip_manifest(manifest, data_cfg.stretch_clip,
                                     (data_cfg.source_depth, data_cfg.target_depth))


def _note_old_mocks(manifest, root):
    """A note when a reused mock set holds an older generator's galaxies."""
    generator = manifest.generator or {}
    version = generator.get("mock_version", 1)
    if generator.get("name") == mock_builder.GENERATOR_NAME and version < mock_builder.MOCK_VERSION:
        print(f"tfgal: note: {root} holds mock galaxies of generator version {version}; "
              f"this tfgal renders version {mock_builder.MOCK_VERSION} (see README, 'Mock "
              "galaxies'). Delete it, or set data.dir elsewhere, to render the current ones.",
              file=sys.stderr, flush=True)


def _relative_note(path):
    absolute = os.path.abspath(path)
    if os.path.isabs(os.fspath(path)):
        return absolute
    return f"{absolute}: relative to the current directory"


def class_weights(manifest):
    """weight_c = N / (n_classes * n_c) over the training split (0 for absent classes)."""
    counts = np.asarray(manifest.class_counts("train"), np.float64)
    weights = np.where(counts > 0, counts.sum() / (len(counts) * np.maximum(counts, 1)), 0.0)
    return weights.astype(np.float32).tolist()


def make_strategy(name):
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ConfigError("train.strategy=multiworker needs TF_CONFIG in the environment",
                              key="train.strategy")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ConfigError(f"unknown strategy {name!r}", key="train.strategy",
                      valid=config_lib.choices("train.strategy"))


def is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "chief" or (not has_chief and task_type == "worker" and task_id == 0)


def learning_rate(cfg, steps_per_epoch):
    train_cfg = cfg.train
    total = train_cfg.epochs * steps_per_epoch
    if train_cfg.schedule == "cosine":
        # Decays to zero by the last epoch: the final weights settle instead of jumping.
        return keras.optimizers.schedules.CosineDecay(train_cfg.learning_rate, decay_steps=total)
    if train_cfg.schedule == "warmup-cosine":
        # A short run at a high rate: rising from a tenth of it keeps the first steps (tiny
        # latent, batch-norm statistics still moving) from throwing the weights far away.
        warmup = int(round(train_cfg.warmup * total))
        return keras.optimizers.schedules.CosineDecay(
            train_cfg.learning_rate / 10, decay_steps=max(total - warmup, 1),
            warmup_target=train_cfg.learning_rate, warmup_steps=warmup)
    return train_cfg.learning_rate


def weight_decay(cfg):
    """The weight decay a config's model trains with.

    Models without an adaptation term (`not cfg.loss.adapts`: the baseline, and the
    target-bn control, which must share the baseline's budget to isolate what feeding
    target images through batch norm does) take ``train.source_only_weight_decay`` when
    it is set (>= 0): the paper used 1e-3 for its plain model and 1e-4 for DA.
    """
    train_cfg = cfg.train
    if not cfg.loss.adapts and train_cfg.source_only_weight_decay >= 0:
        return train_cfg.source_only_weight_decay
    return train_cfg.weight_decay


def source_depth_range(cfg):
    """(target, source) depths to draw labelled depths from, or None without depth_augment."""
    data_cfg = cfg.data
    return (data_cfg.target_depth, data_cfg.source_depth) if data_cfg.depth_augment else None


def source_corruption(cfg):
    """The corruption defence's `Plan` for the labelled stream, or None."""
    data_cfg = cfg.data
    if not data_cfg.corrupt_augment:
        return None
    from tfgal.data import corruptions
    return corruptions.Plan.augment(data_cfg.corrupt_augment, data_cfg.corrupt_prob)


def jit_compile(cfg):
    """Whether the train step is XLA-compiled: ``train.jit_compile``, except under
    ``train.deterministic``, where Keras refuses XLA (not every op has a deterministic XLA
    kernel) and would warn on every run about the option tfgal asked for."""
    return cfg.train.jit_compile and not cfg.train.deterministic


def build_model(cfg, manifest, weights, steps_per_epoch=1):
    model_cfg, train_cfg, loss_cfg = cfg.model, cfg.train, cfg.loss
    kwargs = {"image_shape": tuple(manifest.image_shape), "latent_dim": model_cfg.latent_dim,
              "n_classes": len(manifest.class_names), "seed": seeds.derive(cfg.seed, "init")}
    if model_cfg.dropout >= 0:
        kwargs["dropout"] = model_cfg.dropout
    if model_cfg.name == "resnet18":
        kwargs["width"] = model_cfg.width
    encoder, head = architectures.build(model_cfg.name, **kwargs)
    decay = weight_decay(cfg)
    model = adaptation.MorphologyModel(
        encoder, head, class_weights=weights if train_cfg.class_weights else None,
        mmd_weight=loss_cfg.mmd_weight,
        mmd_sigmas=None if loss_cfg.mmd_sigmas == "study" else "data",
        fisher_weight=loss_cfg.fisher_weight, entropy_weight=loss_cfg.entropy_weight,
        use_target=True if loss_cfg.feed_target else None,
        l2=decay if train_cfg.weight_decay_mode == "l2" else 0.0)
    adam = dict(learning_rate=learning_rate(cfg, steps_per_epoch), beta_1=train_cfg.beta_1,
                beta_2=train_cfg.beta_2)
    if train_cfg.weight_decay_mode == "l2":  # the penalty is in the model's loss
        optimizer = keras.optimizers.Adam(**adam)
    else:
        optimizer = keras.optimizers.AdamW(**adam, weight_decay=decay)
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=jit_compile(cfg))
    shape = (1, *manifest.image_shape)
    model((tf.zeros(shape), tf.zeros(shape)))  # build every variable
    # The optimizer's too (as BackupAndRestore does): slots created inside the first train
    # step would make tf.function trace that step twice.
    model.optimizer.build(model.trainable_variables)
    return model


def datasets(cfg, manifest, strategy, start=0):
    """(training, validation) datasets of a config, distributed when `strategy` asks; the
    training stream begins at global step `start` (a resumed run's)."""
    data_cfg, train_cfg = cfg.data, cfg.train
    common = dict(batch_size=train_cfg.batch_size, seed=cfg.seed,
                  noise_mode=data_cfg.noise_mode)

    def train_fn(ctx=None):
        return pipeline.make_paired_dataset(
            manifest, "train", data_cfg.source_depth, data_cfg.target_depth,
            training=True, augment_images=data_cfg.augment, repeat=True,
            input_context=ctx, fresh_noise=data_cfg.fresh_noise, cache=data_cfg.cache,
            source_depth_range=source_depth_range(cfg),
            source_corruption=source_corruption(cfg), start=start, **common)

    def val_fn(ctx=None):
        return pipeline.make_paired_dataset(
            manifest, "val", data_cfg.source_depth, data_cfg.target_depth,
            training=False, input_context=ctx, cache=data_cfg.cache, **common)

    if strategy.num_replicas_in_sync > 1 or not is_chief(strategy) or _multiworker(strategy):
        return (strategy.distribute_datasets_from_function(train_fn),
                strategy.distribute_datasets_from_function(val_fn))
    return train_fn(), val_fn()


def _multiworker(strategy):
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def _fit(model, train_ds, val_ds, **kwargs):
    """`model.fit` on `datasets`' pair. A distributed validation set has no length Keras
    can read, so Keras runs it to its end and then warns "Your input ran out of data":
    there that is the set's normal end (the training stream repeats, so never ends), and
    exactly that warning is kept off stderr. A plain dataset's length is known (`pipeline`
    asserts it) and nothing is silenced."""
    with warnings.catch_warnings():
        if not isinstance(val_ds, tf.data.Dataset):
            warnings.filterwarnings("ignore", "Your input ran out of data", UserWarning)
        return model.fit(train_ds, validation_data=val_ds, **kwargs)


def _steps_per_epoch(cfg, manifest):
    steps = cfg.train.steps_per_epoch
    if steps:
        return steps
    steps = manifest.count("train") // cfg.train.batch_size
    if steps < 1:
        raise DataError(f"the training split has {manifest.count('train')} galaxies, fewer "
                        f"than one batch of {cfg.train.batch_size}",
                        path=manifest.root, index="train")
    return steps


def _calibration_batches(cfg, manifest, model):
    """epoch -> image batches as training feeds them (source, plus target when the model
    uses it; source depths drawn as in training under depth augmentation): the epoch's
    own batches of one stream, whichever process asks."""
    data_cfg = cfg.data
    n = cfg.train.precise_bn_batches

    def stream(start):
        ds = pipeline.make_paired_dataset(
            manifest, "train", data_cfg.source_depth, data_cfg.target_depth,
            batch_size=cfg.train.batch_size, seed=seeds.derive(cfg.seed, "precise-bn"),
            augment_images=data_cfg.augment, noise_mode=data_cfg.noise_mode,
            fresh_noise=data_cfg.fresh_noise, source_depth_range=source_depth_range(cfg),
            source_corruption=source_corruption(cfg), repeat=True, start=start)
        if model.adapts:
            return iter(ds.map(lambda x, y: tf.concat(x, axis=0)))
        return iter(ds.map(lambda x, y: x[0]))
    # One iterator for the whole run, started again only where a resume moved it: a
    # fresh one per epoch would read the shards again every epoch.
    current = {"iterator": None, "at": None}

    def batches(epoch):
        if current["at"] != epoch * n:
            current["iterator"], current["at"] = stream(epoch * n), epoch * n
        current["at"] += n
        return [next(current["iterator"]) for _ in range(n)]
    return batches


def _callbacks(cfg, run_dir, manifest, chief, backup_dir, model, steps, first_step=0,
               metrics=None, calibration=None):
    """The callbacks of one `fit`; `first_step` > 0 when its first epoch is a resumed one,
    whose running metric sums (`metrics`) are put back as it begins."""
    log_cfg = cfg.log
    history = os.path.join(run_dir, HISTORY)
    best, _ = callbacks_lib.best_and_wait(history, "val_loss")
    callbacks = [
        callbacks_lib.NaNGuard(first_step),
        callbacks_lib.RestoreMetrics(metrics),
        keras.callbacks.ModelCheckpoint(
            os.path.join(run_dir, BEST), monitor="val_loss", save_best_only=True,
            save_weights_only=True, initial_value_threshold=best),
        callbacks_lib.ResumableEarlyStopping(history, monitor="val_loss",
                                             patience=cfg.train.patience),
        callbacks_lib.EpochTimer(history),  # before the loggers, which then record it
        keras.callbacks.CSVLogger(history, append=True),
        keras.callbacks.TensorBoard(run_dir, profile_batch=(2, 6) if log_cfg.profile else 0),
        # After the history row: a kill between the two redoes that epoch (the row is
        # dropped on resume), never skips its row.
        callbacks_lib.TrainingState(backup_dir, steps, every=cfg.train.checkpoint_steps,
                                    first_step=first_step, write=chief),
    ]
    if cfg.train.precise_bn_batches:
        # First, so that validation and checkpoints see the recalibrated statistics.
        callbacks.insert(0, callbacks_lib.PreciseBatchNorm(calibration, steps, first_step))
    if log_cfg.images and chief:
        examples = {str(d): pipeline.load_arrays(manifest, "val", d, n=log_cfg.images,
                                                 seed=cfg.seed)["images"]
                    for d in (cfg.data.source_depth, cfg.data.target_depth)}
        callbacks.append(tensorboard.ExampleGalaxies(run_dir, examples,
                                                     tensorboard.value_range(manifest)))
    return callbacks


def evaluate_depths(classifier, manifest, cfg, split, export_dir=None):
    """Accuracy of an exported classifier on `split` at the source and target depths."""
    return final_eval.accuracies(_final_predictions(classifier, manifest, cfg, [split],
                                                    export_dir)[split])


def _final_predictions(classifier, manifest, cfg, splits, export_dir=None, run_dir=None):
    """`final_eval.evaluate` at the source and target depths, saved in `run_dir` if given."""
    return final_eval.evaluate(
        classifier, export_dir or classifier.path, manifest, splits,
        (cfg.data.source_depth, cfg.data.target_depth), seed=cfg.seed,
        noise_mode=cfg.data.noise_mode,
        path=os.path.join(run_dir, PREDICTIONS) if run_dir else None)


def export_assets(cfg, manifest):
    return {
        "class_names": list(manifest.class_names), "bands": list(manifest.bands),
        "image_shape": list(manifest.image_shape), "stretch": manifest.stretch,
        "value_range": tensorboard.value_range(manifest),
        "source_depth": cfg.data.source_depth, "target_depth": cfg.data.target_depth,
        "dataset": {"root": os.path.abspath(manifest.root), "images": manifest.images,
                    "generator": manifest.generator},
        "config": cfg.to_dict(),
    }


def train(cfg, *, verbose=None, overwrite=False):
    """Trains and exports the model a resolved config describes; returns the summary.

    An interrupted run of this config in ``log.dir`` is resumed exactly; a finished one is
    not trained again (its summary is returned) unless `overwrite`, which starts over.
    """
    started = time.time()
    keras.utils.set_random_seed(seeds.derive(cfg.seed, "init"))
    if cfg.train.deterministic:
        tf.config.experimental.enable_op_determinism()
    strategy = make_strategy(cfg.train.strategy)
    chief = is_chief(strategy)
    run_dir = config_lib.expand(cfg.log.dir, cfg)
    export_dir = config_lib.expand(cfg.export.dir, cfg)
    with contextlib.ExitStack() as held:
        if chief:  # one writer per output: a second run on them is refused at once
            held.enter_context(locks.hold(run_dir, "tfgal-train"))
            held.enter_context(locks.hold(export_dir, "tfgal-train"))
        return _train(cfg, strategy, chief, run_dir, export_dir, verbose, overwrite,
                      started)


def _say(text):
    print(f"tfgal-train: {text}", file=sys.stderr, flush=True)


def _train(cfg, strategy, chief, run_dir, export_dir, verbose, overwrite, started):
    mixed = cfg.train.mixed_precision and bool(tf.config.list_physical_devices("GPU"))
    manifest = ensure_dataset(cfg.data, cfg.seed)
    backup_dir = os.path.join(run_dir, BACKUP)  # the chief's, restored by every worker
    if chief:
        mode = prepare_run_dir(run_dir, cfg, export_dir, overwrite)
        if mode == "finished":
            with open(os.path.join(run_dir, SUMMARY)) as f:
                summary = json.load(f)
            _say(f"{run_dir} is finished (export: {summary.get('export_dir', export_dir)}); "
                 "nothing to do. --overwrite trains it again from scratch.")
            return summary
    else:
        run_dir = tempfile.mkdtemp(prefix="tfgal-worker-")
        prepare_run_dir(run_dir, cfg)
    weights = class_weights(manifest)
    steps = _steps_per_epoch(cfg, manifest)
    with strategy.scope():
        # Layers read the policy when they are made; the rest of the process (export,
        # evaluation, a study's next model) keeps its own.
        previous = keras.mixed_precision.global_policy()
        if mixed:
            keras.mixed_precision.set_global_policy("mixed_float16")
        try:
            model = build_model(cfg, manifest, weights, steps)
        finally:
            keras.mixed_precision.set_global_policy(previous)
    epoch, step, metrics = 0, 0, None
    state = callbacks_lib.load_state(backup_dir)
    if state is not None:
        meta, groups = state
        callbacks_lib.restore_state(model, groups)
        epoch, step = meta["epoch"], meta["step"]
        metrics = groups.get("metrics") if step else None
        if chief:
            truncate_history(run_dir, epoch)
            where = f"epoch {epoch + 1} of {cfg.train.epochs}"
            _say(f"resuming {run_dir} at {where}" + (f", step {step + 1} of {steps}"
                                                      if step else ""))
    if chief and epoch == 0 and step == 0:
        # The HParams session opens now: a run in progress is compared too.
        tensorboard.write_hparams(run_dir, tensorboard.hparams(cfg, weight_decay(cfg)),
                                  trial_id=cfg.name)
    if chief:
        paths = (("data", manifest.root), ("run", run_dir), ("export", export_dir))
        relative = [p for _, p in paths if not os.path.isabs(os.fspath(p))]
        _say(", ".join(f"{k} {os.path.abspath(p)}" for k, p in paths)
             + (f" (relative paths are from the current directory, {os.getcwd()})"
                if relative else ""))
    if verbose is None:  # Keras' bar on a terminal, one line per epoch in a log file
        verbose = 1 if console.is_terminal(sys.stdout) else 2
    calibration = _calibration_batches(cfg, manifest, model)

    def fit(first_epoch, last_epoch, first_step):
        train_ds, val_ds = datasets(cfg, manifest, strategy,
                                    start=first_epoch * steps + first_step)
        _fit(model, train_ds, val_ds, epochs=last_epoch,
             initial_epoch=first_epoch, steps_per_epoch=steps - first_step,
             callbacks=_callbacks(cfg, run_dir, manifest, chief, backup_dir, model,
                                  steps, first_step, metrics, calibration),
             verbose=verbose,
             shuffle=False)  # the pipeline shuffles, seeded
    try:
        with pipeline.naming_corrupt_records(manifest, ["train", "val"]):
            if step and epoch < cfg.train.epochs:  # the rest of a resumed epoch first
                fit(epoch, epoch + 1, step)
                epoch, step, metrics = epoch + 1, 0, None
            if epoch < cfg.train.epochs and not model.stop_training:
                fit(epoch, cfg.train.epochs, 0)
    finally:
        if not chief:
            shutil.rmtree(run_dir, ignore_errors=True)
    if not chief:
        return None
    best = os.path.join(run_dir, BEST)
    if os.path.exists(best):
        model.load_weights(best)
    summary = _finish(cfg, model, manifest, run_dir, export_dir)
    summary["wall_time_s"] = round(time.time() - started, 1)
    io.write_json(os.path.join(run_dir, SUMMARY), summary)
    shutil.rmtree(os.path.join(run_dir, BACKUP), ignore_errors=True)  # the run is complete
    return summary


def _finish(cfg, model, manifest, run_dir, export_dir):
    export.export_saved_model(model.encoder, model.head, export_dir,
                              image_shape=manifest.image_shape, assets=export_assets(cfg, manifest))
    # Measure the exported artifact itself; it also runs outside any tf.distribute strategy,
    # whose collectives would wait for workers that have already finished.
    classifier = export.load(export_dir)
    if cfg.log.projector:
        tensorboard.write_projector(run_dir, classifier, manifest,
                                   (cfg.data.source_depth, cfg.data.target_depth),
                                   n=cfg.log.projector, seed=cfg.seed,
                                   noise_mode=cfg.data.noise_mode)
    # One pass per split and depth gives probabilities and latents, saved for the study's
    # evaluation; the summary's accuracies are computed from those very arrays.
    splits = ["val", *(["test"] if "test" in manifest.splits else [])]
    predictions = _final_predictions(classifier, manifest, cfg, splits, export_dir, run_dir)
    summary = {"name": cfg.name, "export_dir": os.path.abspath(export_dir),
               "run_dir": os.path.abspath(run_dir), "class_weights": class_weights(manifest),
               **{f"{split}_accuracy": final_eval.accuracies(predictions[split])
                  for split in splits}}
    summary["jit_compile"] = jit_compile(cfg)
    epochs = history_rows(run_dir)
    last = {k: float(v) for k, v in (epochs[-1] if epochs else {}).items()
            if k != "epoch" and v not in ("", None)}
    tensorboard.write_final_metrics(run_dir, summary, last, step=len(epochs))
    return summary
