"""What an attack returns, and the bookkeeping that fills it as images finish.

`AttackResult` holds per-image outcomes (arrays indexed like the images attacked).
`Outcome` collects them on the host while the engine runs, `Clean` is the model's verdict
on the unperturbed images, and `apply_pixels` writes an answer's pixels into images.
Candidate statistics travel as rows of ``N_STATS`` columns (``FIT`` .. ``SCORE``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["AttackResult", "apply_pixels", "Clean", "Outcome",
           "FIT", "SUCCESS", "CLASS", "PROB", "SCORE", "N_STATS"]

# Columns of the per-candidate statistics kept beside each population.
FIT, SUCCESS, CLASS, PROB, SCORE = range(5)
N_STATS = 5


@dataclasses.dataclass
class AttackResult:
    """Outcome of attacking N images (arrays indexed like the input images).

    Attributes:
      success: [N] bool, the criterion was met by a perturbed image.
      already: [N] bool, the clean image already met the criterion; it was not attacked
        (1 query, success False, pixels -1).
      generations: [N] int, the generation that succeeded (0: the initial population), or
        the generations run on a failure.
      queries: [N] int, model evaluations spent on the image.
      labels, targets: [N] int (targets -1 when untargeted).
      original_class, original_prob: argmax and its probability on the clean image.
      original_score: probability the attack acts on (true class, or target) before.
      final_class, final_prob, final_score: the same for the returned image: the first
        successful candidate, or on failure the best one found.
      pixels: [N, k, 2] int (x, y) of the changed pixels; values: [N, k, C].
      images: [N, H, W, C] float32, the returned (adversarial) images.
      settings: the attack's configuration, bounds included.
      seconds: wall time of the attack.
    """

    success: np.ndarray
    already: np.ndarray
    generations: np.ndarray
    queries: np.ndarray
    labels: np.ndarray
    targets: np.ndarray
    original_class: np.ndarray
    original_prob: np.ndarray
    original_score: np.ndarray
    final_class: np.ndarray
    final_prob: np.ndarray
    final_score: np.ndarray
    pixels: np.ndarray
    values: np.ndarray
    images: np.ndarray
    settings: dict
    seconds: float

    @property
    def n(self):
        return len(self.success)

    @classmethod
    def empty(cls, image_shape, pixels, settings):
        """The result of attacking no image (e.g. every galaxy was misclassified): arrays
        of length 0, shaped like an attack's on images of `image_shape` (H, W, C)."""
        ints, floats = np.zeros(0, np.int32), np.zeros(0, np.float32)
        return cls(success=np.zeros(0, bool), already=np.zeros(0, bool),
                   generations=np.zeros(0, np.int64), queries=np.zeros(0, np.int64),
                   labels=ints, targets=ints, original_class=ints, original_prob=floats,
                   original_score=floats, final_class=ints, final_prob=floats,
                   final_score=floats, pixels=np.zeros((0, pixels, 2), np.int64),
                   values=np.zeros((0, pixels, image_shape[-1]), np.float32),
                   images=np.zeros((0, *image_shape), np.float32), settings=settings,
                   seconds=0.0)

    @property
    def success_rate(self):
        """Successes over the images that were attacked (not already adversarial)."""
        attacked = int(np.sum(~self.already))
        return float(np.sum(self.success) / attacked) if attacked else float("nan")


@dataclasses.dataclass
class Clean:
    """The model's verdict on the clean images."""

    probs: np.ndarray  # [N, K]
    already: np.ndarray  # [N] bool


class Outcome:
    """Host-side per-image records, filled as images finish."""

    @classmethod
    def start(cls, n, k, n_bands, clean):
        self = cls()
        self.already = clean.already
        self.probs = clean.probs
        self.success = np.zeros(n, bool)
        self.generations = np.zeros(n, np.int64)
        self.queries = np.ones(n, np.int64)  # the clean image
        self.genes = np.full((n, k, 2 + n_bands), -1.0, np.float32)
        self.stats = np.full((n, N_STATS), np.nan, np.float32)
        return self

    def finish(self, index, success, generations, genes, stats):
        self.success[index] = success
        self.generations[index] = generations
        self.genes[index] = genes
        self.stats[index] = stats

    def pixels(self, image_shape):
        """[N, k, 2] integer (x, y) of the answers for images of `image_shape` (N, H, W,
        C); -1 for the images not attacked."""
        size = np.array([image_shape[2], image_shape[1]]) - 1  # (x, y) limits
        xy = np.clip(np.floor(np.nan_to_num(self.genes[:, :, :2])), 0, size).astype(np.int64)
        return np.where(~self.already[:, None, None], xy, -1)

    def result(self, images, labels, targets, settings, seconds):
        n = len(images)
        cls = np.where(targets >= 0, targets, labels)
        orig_class = self.probs.argmax(axis=1).astype(np.int32)
        orig_score = self.probs[np.arange(n), cls]
        attacked = ~self.already
        pixels = self.pixels(images.shape)
        final_class = np.where(attacked, self.stats[:, CLASS], orig_class).astype(np.int32)
        return AttackResult(
            success=self.success, already=self.already, generations=self.generations,
            queries=self.queries, labels=labels, targets=targets,
            original_class=orig_class, original_prob=self.probs.max(axis=1),
            original_score=orig_score, final_class=final_class,
            final_prob=np.where(attacked, self.stats[:, PROB], self.probs.max(axis=1)),
            final_score=np.where(attacked, self.stats[:, SCORE], orig_score),
            pixels=pixels, values=np.where(attacked[:, None, None], self.genes[:, :, 2:], np.nan),
            images=apply_pixels(images, pixels, self.genes[:, :, 2:]),
            settings=settings, seconds=seconds)


def apply_pixels(images, pixels, values):
    """Returns copies of `images` with pixels (x, y) set to `values` (-1 pixels skipped)."""
    out = np.array(images, np.float32, copy=True)
    for j in range(pixels.shape[1]):
        rows = np.flatnonzero(pixels[:, j, 0] >= 0)
        out[rows, pixels[rows, j, 1], pixels[rows, j, 0]] = values[rows, j]
    return out

