"""Evaluators of the robustness study: classification metrics, robustness curve, latents.

Every evaluator has a `run()` that yields ``(metric, value)`` pairs (big_vision style);
`collect` turns them into a dict. Metrics are computed here in NumPy from probabilities
(the study's tests check them against scikit-learn on the same predictions):

* ``accuracy``; ``precision/C``, ``recall/C``, ``f1/C``, ``support/C`` per class ``C`` and
  their ``macro`` and ``weighted`` (by support) averages; a class never predicted has
  precision 0 (scikit-learn's ``zero_division=0``);
* ``brier``: mean over galaxies of sum over classes of (p - onehot)^2, in [0, 2];
* ``roc_auc/C``: one-vs-rest area under the ROC curve (ties count one half), ``roc_auc/macro``
  their mean; None when a class has no positive or no negative galaxy;
* ``confusion``: counts, rows true class, columns predicted class.

Latent-space helpers (distances, the church-window grid, the isomap embedding) live here
too, since they are measurements; `tfgal.plots` only draws what they return.
"""

from __future__ import annotations

import numpy as np

from tfgal import survey
from tfgal.data import pipeline
from tfgal.attack.summary import describe
from tfgal.errors import DataError


def collect(evaluator):
    """{metric: value} of an evaluator's `run()`."""
    return dict(evaluator.run())


# --------------------------------------------------------------------------- metrics


def confusion_matrix(labels, predictions, n_classes):
    """Counts [n_classes, n_classes]: rows true class, columns predicted class."""
    out = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(out, (np.asarray(labels, np.int64), np.asarray(predictions, np.int64)), 1)
    return out


def _ratio(num, den):
    """num / den, 0 where den is 0 (scikit-learn's zero_division=0)."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def precision_recall_f1(confusion):
    """Per-class (precision, recall, f1, support) arrays from a confusion matrix."""
    tp = np.diag(confusion).astype(np.float64)
    predicted, support = confusion.sum(axis=0), confusion.sum(axis=1)
    precision, recall = _ratio(tp, predicted), _ratio(tp, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    return precision, recall, f1, support


def brier_score(labels, probabilities):
    """Multi-class Brier score: mean sum of squared errors against one-hot labels."""
    p = np.asarray(probabilities, np.float64)
    onehot = np.eye(p.shape[1])[np.asarray(labels, np.int64)]
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def binary_auc(positive, scores):
    """ROC AUC of `scores` for boolean `positive` (Mann-Whitney U, ties halved); None if
    either class is empty."""
    from scipy.stats import rankdata
    positive = np.asarray(positive, bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(scores)  # average ranks: a tie between classes counts 1/2
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


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
        confusion = confusion_matrix(self.labels, predictions, k)
        yield "n", int(len(self.labels))
        yield "accuracy", float(np.mean(predictions == self.labels))
        yield from self._per_class(confusion)
        yield "brier", brier_score(self.labels, self.probabilities)
        aucs = [binary_auc(self.labels == c, self.probabilities[:, c]) for c in range(k)]
        for name, auc in zip(self.class_names, aucs):
            yield f"roc_auc/{name}", auc
        defined = [a for a in aucs if a is not None]
        yield "roc_auc/macro", float(np.mean(defined)) if len(defined) == k else None
        yield "confusion", confusion.tolist()

    def _per_class(self, confusion):
        precision, recall, f1, support = precision_recall_f1(confusion)
        weights = support / max(support.sum(), 1)
        for metric, values in (("precision", precision), ("recall", recall), ("f1", f1)):
            for name, v in zip(self.class_names, values):
                yield f"{metric}/{name}", float(v)
            yield f"{metric}/macro", float(values.mean())
            yield f"{metric}/weighted", float(np.sum(values * weights))
        for name, s in zip(self.class_names, support):
            yield f"support/{name}", int(s)


def accuracy_sem(accuracy, n):
    """Binomial standard error of an accuracy measured on `n` galaxies."""
    return float(np.sqrt(accuracy * (1 - accuracy) / n)) if n else None


# --------------------------------------------------------------------------- predictions


def predict_split(models, data, split, depth, *, n=None, seed=0, noise_mode="fast",
                  batch_size=256, latent=True):
    """Runs every model of `models` ({name: ExportedClassifier}) over a split at a depth.

    Images are streamed batch by batch (the paper's test split at 100 px is 0.8 GB per
    depth) and each batch is shared by all models, so the noise is drawn once.
    Returns {"labels", "galaxy_id", name: {"probabilities", "latent"}} of NumPy arrays.
    """
    ds = pipeline.make_dataset(data, split, depth, batch_size=batch_size, seed=seed,
                               noise_mode=noise_mode, with_ids=True)
    if n:
        ds = ds.unbatch().take(int(n)).batch(batch_size)
    keys = ("probabilities", "latent") if latent else ("probabilities",)
    parts = {"labels": [], "galaxy_id": [], **{m: {k: [] for k in keys} for m in models}}
    for batch in ds:
        parts["labels"].append(batch["labels"].numpy())
        parts["galaxy_id"].append(batch["galaxy_id"].numpy())
        for name, model in models.items():
            out = model(batch["images"])
            for k in keys:
                parts[name][k].append(out[k].numpy())
    if not parts["labels"]:
        raise DataError(f"split {split!r} holds no galaxies", index=split)
    return {key: ({k: np.concatenate(v) for k, v in value.items()} if isinstance(value, dict)
                  else np.concatenate(value)) for key, value in parts.items()}


# --------------------------------------------------------------------------- robustness curve


def curve_depths(years=(), *, low=0.1, high=20.0, per_decade=3, always=(1.0, 10.0)):
    """Survey depths for the robustness curve.

    `years` given: exactly those. Else a grid log-spaced in exposure with `per_decade`
    depths per factor of ten, anchored at one year (so Y1 and Y10 are grid points and the
    curve passes through the study's depths with the very images the main evaluation
    used), from `low` to `high` years (both included), plus the depths in `always`.
    """
    if len(years):
        values = {float(y) for y in years}
    else:
        lo, hi = np.log10(low) * per_decade, np.log10(high) * per_decade
        steps = np.arange(np.ceil(lo - 1e-9), np.floor(hi + 1e-9) + 1)
        values = {round(float(10 ** (k / per_decade)), 4) for k in steps}
        values |= {float(low), float(high), *(float(y) for y in always)}
    return [survey.Depth.from_years(y, name=f"{y:.3g}y") for y in sorted(values)]


class RobustnessCurve:
    """Accuracy and weighted F1 of each model against survey depth.

    The same test galaxies are observed at every depth with the pipeline's on-the-fly,
    per-galaxy seeded noise (so 10y reproduces the Y10 images exactly). Needs noiseless
    (mock) data: `pipeline.resolve_depth` refuses other depths on imported data.
    `run()` yields ``("<model>/<depth>/<metric>", value)``; `table()` gathers them.
    """

    METRICS = ("accuracy", "accuracy_sem", "f1_weighted", "n")

    def __init__(self, models, data, split, depths, *, n=None, seed=0, noise_mode="fast",
                 progress=None):
        self.models, self.data, self.split = models, data, split
        self.depths = list(depths)
        self.n, self.seed, self.noise_mode = n, seed, noise_mode
        self.progress = progress or (lambda depth: None)

    def run(self):
        for depth in self.depths:
            self.progress(depth)
            out = predict_split(self.models, self.data, self.split, depth, n=self.n,
                                seed=self.seed, noise_mode=self.noise_mode, latent=False)
            for name in self.models:
                metrics = collect(ClassificationEvaluator(
                    out["labels"], out[name]["probabilities"],
                    [str(c) for c in range(out[name]["probabilities"].shape[1])]))
                prefix = f"{name}/{depth.name}"
                yield f"{prefix}/accuracy", metrics["accuracy"]
                yield f"{prefix}/accuracy_sem", accuracy_sem(metrics["accuracy"], metrics["n"])
                yield f"{prefix}/f1_weighted", metrics["f1/weighted"]
                yield f"{prefix}/n", metrics["n"]

    def table(self):
        """{"years", "depths", "exposure_s", "models": {name: {metric: [per depth]}}}."""
        values = collect(self)
        models = {name: {m: [values[f"{name}/{d.name}/{m}"] for d in self.depths]
                         for m in self.METRICS} for name in self.models}
        return {"years": [d.years for d in self.depths], "depths": [d.name for d in self.depths],
                "exposure_s": [list(d.exposure_s) for d in self.depths], "models": models}


# --------------------------------------------------------------------------- latent space


def church_window(model, base, attacked, noisy, *, grid=41, span=2.0, batch_size=4096):
    """Classes on the plane base + a (attacked - base) + b (noisy - base) of latent space.

    `base`, `attacked`, `noisy` are latent vectors [D]. The grid covers a, b in
    [-span, span] (`grid` points each), so the attacked image sits at (1, 0) and the noisy
    one at (0, 1). Points are classified by the model's ``classify_latent`` signature in
    batches. Returns (coords [grid], classes [grid(b), grid(a)] int).
    """
    base, attacked, noisy = (np.asarray(v, np.float32) for v in (base, attacked, noisy))
    coords = np.linspace(-span, span, grid).astype(np.float32)
    a, b = np.meshgrid(coords, coords)  # rows: b (noisy direction), columns: a
    points = (base + a.reshape(-1, 1) * (attacked - base)
              + b.reshape(-1, 1) * (noisy - base)).astype(np.float32)
    classes = np.concatenate([
        np.argmax(model.classify_latent(points[i:i + batch_size])["logits"].numpy(), axis=1)
        for i in range(0, len(points), batch_size)])
    return coords, classes.reshape(grid, grid)


def isomap(latents, *, n_neighbors=10):
    """2-D Isomap embedding (scikit-learn) of latent vectors [N, D].

    The dense eigensolver is used: ARPACK starts from an unseeded random vector, so its
    embedding (signs included) would change from run to run; a few thousand points cost
    seconds densely.
    """
    from sklearn.manifold import Isomap
    latents = np.asarray(latents, np.float64)
    k = max(1, min(n_neighbors, len(latents) - 1))
    return Isomap(n_neighbors=k, n_components=2, eigen_solver="dense").fit_transform(latents)


def window_summary(att, i, coords, classes, n_classes):
    """Which galaxy a church window shows and how its plane divides among the classes."""
    centre = len(coords) // 2
    share = np.bincount(classes.ravel(), minlength=n_classes) / classes.size
    return {"index": int(i), "galaxy_id": int(att["galaxy_id"][i]), "label": int(att["labels"][i]),
            "base_class": int(classes[centre, centre]) if coords[centre] == 0 else None,
            "attacked_class": int(att["final_class"][i]), "class_share": share.tolist()}
