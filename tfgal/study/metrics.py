"""Classification metrics of predicted probabilities, from scikit-learn.

An evaluator has a `run()` that yields ``(metric, value)`` pairs (big_vision style);
`collect` turns them into a dict. The metrics:

* ``accuracy``; ``precision/C``, ``recall/C``, ``f1/C``, ``support/C`` per class ``C`` and
  their ``macro`` and ``weighted`` (by support) averages; a class never predicted has
  precision 0 (``zero_division=0``);
* ``brier``: mean over galaxies of sum over classes of (p - onehot)^2, in [0, 2];
* ``roc_auc/C``: one-vs-rest area under the ROC curve, ``roc_auc/macro`` their mean; None
  when a class has no positive or no negative galaxy;
* ``confusion``: counts, rows true class, columns predicted class.
"""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

from tfgal.errors import DataError

__all__ = ["collect", "brier_score", "binary_auc", "accuracy_sem", "ClassificationEvaluator"]


def collect(evaluator):
    """{metric: value} of an evaluator's `run()`."""
    return dict(evaluator.run())


def brier_score(labels, probabilities):
    """Multi-class Brier score: mean sum of squared errors against one-hot labels.

    Own code: scikit-learn's `brier_score_loss` gives the same number but warns on every
    batch of float32 softmax outputs, whose rows miss one by rounding.
    """
    p = np.asarray(probabilities, np.float64)
    onehot = np.eye(p.shape[1])[np.asarray(labels, np.int64)]
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def binary_auc(positive, scores):
    """ROC AUC of `scores` for boolean `positive`; None if either class is empty."""
    positive = np.asarray(positive, bool)
    if positive.all() or not positive.any():
        return None
    return float(skm.roc_auc_score(positive, scores))


def accuracy_sem(accuracy, n):
    """Binomial standard error of an accuracy measured on `n` galaxies."""
    return float(np.sqrt(accuracy * (1 - accuracy) / n)) if n else None


class ClassificationEvaluator:
    """Metrics of predicted `probabilities` [N, K] against integer `labels` [N]."""

    def __init__(self, labels, probabilities, class_names):
        self.labels = np.asarray(labels, np.int64)
        self.probabilities = np.asarray(probabilities, np.float64)
        self.class_names = list(class_names)
        k = len(self.class_names)
        if self.probabilities.ndim != 2 or self.probabilities.shape != (len(self.labels), k):
            raise DataError(f"need probabilities [{len(self.labels)}, {k}]; received "
                            f"{self.probabilities.shape}")
        if len(self.labels) == 0:
            raise DataError("no galaxies to evaluate")

    def run(self):
        k = len(self.class_names)
        predictions = self.probabilities.argmax(axis=1)
        yield "n", int(len(self.labels))
        yield "accuracy", float(skm.accuracy_score(self.labels, predictions))
        yield from self._per_class(predictions)
        yield "brier", brier_score(self.labels, self.probabilities)
        aucs = [binary_auc(self.labels == c, self.probabilities[:, c]) for c in range(k)]
        for name, auc in zip(self.class_names, aucs):
            yield f"roc_auc/{name}", auc
        defined = [a for a in aucs if a is not None]
        yield "roc_auc/macro", float(np.mean(defined)) if len(defined) == k else None
        yield "confusion", skm.confusion_matrix(self.labels, predictions,
                                                labels=np.arange(k)).tolist()

    def _per_class(self, predictions):
        precision, recall, f1, support = skm.precision_recall_fscore_support(
            self.labels, predictions, labels=np.arange(len(self.class_names)), zero_division=0)
        weights = support / max(support.sum(), 1)
        for metric, values in (("precision", precision), ("recall", recall), ("f1", f1)):
            for name, v in zip(self.class_names, values):
                yield f"{metric}/{name}", float(v)
            yield f"{metric}/macro", float(values.mean())
            yield f"{metric}/weighted", float(np.sum(values * weights))
        for name, s in zip(self.class_names, support):
            yield f"support/{name}", int(s)
