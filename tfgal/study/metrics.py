"""Classification metrics of predicted probabilities, from scikit-learn.

An evaluator has a `run()` that yields ``(metric, value)`` pairs (big_vision style);
`collect` turns them into a dict. The metrics:

* ``accuracy``; ``precision/C``, ``recall/C``, ``f1/C``, ``support/C`` per class ``C`` and
  their ``macro`` and ``weighted`` (by support) averages; a class never predicted has
  precision 0 (``zero_division=0``);
* ``brier``: mean over galaxies of sum over classes of (p - onehot)^2, in [0, 2];
* ``ece``: top-label expected calibration error (Guo et al. 2017) over ``n_bins``
  equal-width confidence bins, in [0, 1]; `reliability` gives its per-bin table;
* ``roc_auc/C``: one-vs-rest area under the ROC curve, ``roc_auc/macro`` their mean; None
  when a class has no positive or no negative galaxy;
* ``confusion``: counts, rows true class, columns predicted class.
"""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

from tfgal.errors import DataError

__all__ = ["collect", "brier_score", "binary_auc", "accuracy_sem", "expected_calibration_error",
           "reliability", "ClassificationEvaluator"]


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


def _calibration_bins(labels, probabilities, n_bins):
    """(edges, bin index, confidence, correct) of each galaxy; see `expected_calibration_error`."""
    p = np.asarray(probabilities, np.float64)
    labels = np.asarray(labels, np.int64)
    if p.ndim != 2 or len(p) != len(labels) or len(p) == 0:
        raise DataError(f"need probabilities [N > 0, K] for {len(labels)} labels; received "
                        f"{p.shape}")
    if int(n_bins) < 1:
        raise DataError(f"n_bins must be at least 1; received {n_bins}")
    edges = np.linspace(0.0, 1.0, int(n_bins) + 1)
    confidence = p.max(axis=1)
    correct = p.argmax(axis=1) == labels
    # side="left": a confidence equal to edges[i] lands in the bin ending there, (lo, hi];
    # the clip puts 0 in the first bin (and anything past 1 by rounding in the last).
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, len(edges) - 2)
    return edges, index, confidence, correct


def _bin_table(labels, probabilities, n_bins):
    edges, index, confidence, correct = _calibration_bins(labels, probabilities, n_bins)
    k = len(edges) - 1
    count = np.bincount(index, minlength=k)
    safe = np.maximum(count, 1)
    accuracy = np.bincount(index, weights=correct, minlength=k) / safe
    mean_conf = np.bincount(index, weights=confidence, minlength=k) / safe
    ece = float(np.sum(count / len(index) * np.abs(accuracy - mean_conf)))
    return edges, count, accuracy, mean_conf, ece


def expected_calibration_error(labels, probabilities, n_bins=15):
    """Top-label expected calibration error (Guo et al. 2017), a float in [0, 1].

    Confidence is a galaxy's largest probability, its prediction the argmax. Confidences
    fall in `n_bins` equal-width bins with edges ``np.linspace(0, 1, n_bins + 1)``; bins
    are (lo, hi] -- a confidence equal to an edge goes to the bin below it -- except that 0
    goes to the first bin. ECE = sum over bins of (n_bin / N) |accuracy_bin - confidence_bin|.
    """
    return _bin_table(labels, probabilities, n_bins)[-1]


def reliability(labels, probabilities, n_bins=15):
    """Per-bin reliability table, JSON-able: {"edges" [n_bins + 1], "count", "accuracy",
    "confidence" [n_bins] (None for empty bins), "ece"}; bins as in
    `expected_calibration_error`."""
    edges, count, accuracy, mean_conf, ece = _bin_table(labels, probabilities, n_bins)
    empty = count == 0
    return {"edges": edges.tolist(), "count": count.astype(int).tolist(),
            "accuracy": [None if e else float(a) for e, a in zip(empty, accuracy)],
            "confidence": [None if e else float(c) for e, c in zip(empty, mean_conf)],
            "ece": ece}


class ClassificationEvaluator:
    """Metrics of predicted `probabilities` [N, K] against integer `labels` [N].

    `n_bins`: confidence bins of the ``ece`` metric.
    """

    def __init__(self, labels, probabilities, class_names, *, n_bins=15):
        self.labels = np.asarray(labels, np.int64)
        self.probabilities = np.asarray(probabilities, np.float64)
        self.class_names = list(class_names)
        self.n_bins = int(n_bins)
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
        yield "ece", expected_calibration_error(self.labels, self.probabilities, self.n_bins)
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
