"""The trainable model: encoder + head with optional domain adaptation.

`MorphologyModel` trains on batches ``((x_s, x_t), y_s)`` (a tuple, not a dict: Keras'
distributed fit reduces tuples of per-replica values but not dicts). Its loss is
class-weighted cross-entropy on the labelled source batch plus, each with its weight,
the MMD between source and target latents, a Fisher loss on source latents and the
entropy of source + target predictions, plus, optionally, an L2 penalty
``0.5 l2 sum w^2`` over the trainable weights (PyTorch Adam's weight decay: gradient
``+ l2 w``). The baseline is the same model with every adaptation weight at zero: then
target images are never seen in training (not even by batch normalisation), so the
baseline is a true Y10-only model. ``use_target=True`` with every weight at zero is the
"target-bn" control: target images go through the network (and its batch norm) but the
loss is the baseline's; the MMD is then only logged, outside the gradient.

With adaptation on, source and target go through the network as one concatenated batch,
so batch-norm statistics cover both domains (as in DAN). The MMD is computed per replica
on that replica's own source and target batch under `tf.distribute`, and every term is
scaled by the number of replicas like Keras' own losses.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfgal.model import losses

__all__ = ["MorphologyModel"]


def _local_value(value):
    if isinstance(value, tf.distribute.DistributedValues):
        return value.values[0]
    return value


def _replicas():
    return tf.distribute.get_strategy().num_replicas_in_sync


class MorphologyModel(keras.Model):
    """Galaxy morphology classifier with an MMD/Fisher/entropy domain-adaptation loss.

    Args:
      encoder: Keras model, images -> latent.
      head: Keras model, latent -> logits.
      class_weights: per-class cross-entropy weights (None: all 1).
      mmd_weight, fisher_weight, entropy_weight: weights of the adaptation terms.
      mmd_sigmas: None (the study's 19 bandwidths), "data", or a list of numbers.
      use_target: feed target images in training even with every weight at zero (the
        target-bn control); None: exactly when some adaptation weight is non-zero.
      l2: coefficient of the training loss' ``0.5 l2 sum w^2`` over trainable weights.
    """

    def __init__(self, encoder, head, *, class_weights=None, mmd_weight=0.0, mmd_sigmas=None,
                 fisher_weight=0.0, entropy_weight=0.0, use_target=None, l2=0.0, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.head = head
        n_classes = int(head.outputs[0].shape[-1])
        latent_dim = int(head.inputs[0].shape[-1])
        weights = class_weights if class_weights is not None else [1.0] * n_classes
        self.class_weights = tf.constant(weights, tf.float32)
        self.mmd_weight = float(mmd_weight)
        self.mmd_sigmas = mmd_sigmas
        self.fisher_weight = float(fisher_weight)
        self.entropy_weight = float(entropy_weight)
        self.use_target = use_target
        self.l2 = float(l2)
        self.class_centers = self.add_weight(
            shape=(n_classes, latent_dim), initializer=keras.initializers.RandomNormal(0, 1),
            trainable=self.fisher_weight > 0, name="class_centers")
        names = ("loss", "ce", "mmd", "fisher", "entropy")
        self.trackers = {n: keras.metrics.Mean(name=n) for n in names}
        self.source_accuracy = keras.metrics.SparseCategoricalAccuracy(name="source_accuracy")
        self.target_accuracy = keras.metrics.SparseCategoricalAccuracy(name="target_accuracy")

    @property
    def adapts(self):
        """True when training feeds target images (`use_target`, else any adaptation weight)."""
        if self.use_target is not None:
            return bool(self.use_target)
        return bool(self.mmd_weight or self.fisher_weight or self.entropy_weight)

    @property
    def metrics(self):
        return [*self.trackers.values(), self.source_accuracy, self.target_accuracy]

    def call(self, inputs, training=False):
        """Images -> {"logits", "latent"}; (source,) or (source, target) -> prefixed keys."""
        if not isinstance(inputs, (tuple, list)):
            latent = self.encoder(inputs, training=training)
            return {"logits": self.head(latent, training=training), "latent": latent}
        source = inputs[0]
        target = inputs[1] if len(inputs) > 1 else None
        if target is None:
            return {f"source_{k}": v for k, v in self.call(source, training).items()}
        out = self.call(tf.concat([source, target], axis=0), training)
        n = tf.shape(source)[0]
        split = {}
        for key, value in out.items():
            split[f"source_{key}"], split[f"target_{key}"] = value[:n], value[n:]
        return split

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras shapes its symbolic build on the first batch mean-reduced across replicas,
        # but tf.distribute cannot reduce nested values under MultiWorkerMirroredStrategy
        # (a TODO in TensorFlow): only shapes matter, so take this replica's own batch.
        # Private Keras API, pinned in setup.cfg and checked by tests/test_keras_contract.py.
        if iterator is not None and self._distribute_strategy is not None:
            for _, _, it in iterator:
                data_batch = keras.tree.map_structure(_local_value, next(it))
                break
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Class-weighted CE on source + weighted adaptation terms (+ the L2 penalty when
        training: validation losses stay comparable across weight-decay modes)."""
        y = tf.cast(y, tf.int32)  # Keras' distributed symbolic build passes mean-reduced labels
        weights = tf.gather(self.class_weights, y)
        ce = super().compute_loss(x, y, y_pred["source_logits"], sample_weight=weights,
                                  training=training)
        replicas = _replicas()
        total = ce
        self.trackers["ce"].update_state(ce * replicas)
        for name, term in self._adaptation_terms(y, y_pred).items():
            self.trackers[name].update_state(term)
            weight = getattr(self, f"{name}_weight")
            if weight:  # a zero-weight term is a logged diagnostic, never part of the loss
                total = total + weight * term / replicas
        if self.l2 and training:
            total = total + self.l2_penalty() / replicas
        self.trackers["loss"].update_state(total * replicas)
        return total

    def l2_penalty(self):
        """0.5 * l2 * sum of squared trainable weights: its gradient is l2 * w."""
        squares = [tf.reduce_sum(tf.square(tf.cast(w, tf.float32)))
                   for w in self.trainable_variables]
        return 0.5 * self.l2 * tf.add_n(squares)

    def _adaptation_terms(self, y, y_pred):
        terms = {}
        has_target = "target_latent" in y_pred
        if has_target:
            mmd = losses.mmd(y_pred["source_latent"], y_pred["target_latent"], self.mmd_sigmas)
            # Weight 0 (the baseline in validation, target-bn): logged, no gradient.
            terms["mmd"] = mmd if self.mmd_weight else tf.stop_gradient(mmd)
        if self.fisher_weight:
            terms["fisher"] = losses.fisher(y_pred["source_latent"], y, self.class_centers)
        if self.entropy_weight:
            logits = y_pred["source_logits"]
            if has_target:
                logits = tf.concat([logits, y_pred["target_logits"]], axis=0)
            terms["entropy"] = losses.entropy(logits)
        return terms

    def train_step(self, data):
        x, y = data
        if not self.adapts:  # the baseline never sees target images
            x = (x[0],)
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred, training=True)
            scaled = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply(gradients, self.trainable_variables)
        self.source_accuracy.update_state(y, y_pred["source_logits"])
        return self._results(y_pred, target_labelled=False)

    def test_step(self, data):
        """Validation on the same galaxies at source and target depth (labels shared)."""
        x, y = data
        y_pred = self(x, training=False)
        self.compute_loss(x=x, y=y, y_pred=y_pred, training=False)
        self.source_accuracy.update_state(y, y_pred["source_logits"])
        if "target_logits" in y_pred:
            self.target_accuracy.update_state(y, y_pred["target_logits"])
        return self._results(y_pred, target_labelled=True)

    def _results(self, y_pred, target_labelled):
        names = ["loss", "ce"] + [n for n in ("mmd", "fisher", "entropy")
                                  if self._reports(n, y_pred)]
        out = {n: self.trackers[n].result() for n in names}
        out["source_accuracy"] = self.source_accuracy.result()
        if target_labelled and "target_logits" in y_pred:
            out["target_accuracy"] = self.target_accuracy.result()
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            # Keras 3 mean-reduces step logs across workers along axis 0, which fails on
            # scalars (tensorflow#72388); shape [1] reduces to the scalar it should be.
            out = {k: tf.reshape(v, [1]) for k, v in out.items()}
        return out

    def _reports(self, name, y_pred):
        if name == "mmd":
            return "target_latent" in y_pred
        return bool(getattr(self, f"{name}_weight"))
