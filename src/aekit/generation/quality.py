"""Sample quality in numbers: a feature space, and the distances the field measures generators by.

The feature space for 1x28x28 images in [0, 1] is the penultimate layer of :class:`DigitClassifier`, a small CNN
trained on MNIST by ``benchmarks/train_classifier.py`` (fixed seed) whose weights ship in the package
(``weights/mnist_classifier.safetensors``, checked by SHA-256 on load). Inception weights are not something an
offline user can download, and the FID authors advise a classifier trained on the data itself for MNIST; such
distances compare only within one classifier, so every report prints the floor (training images vs test images)
beside them and calls the distance what it is: "FD (aekit MNIST classifier)", not FID. For any other data the
same metrics are computed in a PCA space of the data's training rows (:class:`PCASpace`, named in the report).

Metrics: the Fréchet distance between Gaussians fitted to two feature sets (Heusel et al. 2017, the FID formula),
precision and recall of k-nearest-neighbour manifolds (Kynkäänniemi et al. 2019, k=3), and for the classifier
space its mean confidence and the entropy of its label histogram (ln 10 = 2.303 when every digit is as common).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError

WEIGHTS = Path(__file__).resolve().parent / "weights" / "mnist_classifier.safetensors"
# written by benchmarks/train_classifier.py (seed 0, 8 epochs): 99.05% test accuracy
WEIGHTS_SHA256 = "fc9fb10a46794ce9bf30e3449b81b65890cbb998518eaf5829f4802220538094"
CLASSIFIER_SPACE = "FD (aekit MNIST classifier)"
K_NEAREST = 3  # Kynkäänniemi et al.'s default


class DigitClassifier(nn.Module):
    """Two 3x3 conv blocks and a 128-wide layer: the features are that layer's ReLU outputs, (N, 128)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (N, 32, 14, 14)
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (N, 64, 7, 7)
            nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(128, 10))  # dropout: in training only

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_classifier(path: Path = WEIGHTS, expected: str | None = WEIGHTS_SHA256) -> DigitClassifier:
    """The shipped classifier, its file checked by SHA-256 first (a changed file is refused, not used)."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise CheckpointError(f"{path}: the feature network's weights are missing (reinstall aekit)")
    if expected is not None and sha256(path) != expected:
        raise CheckpointError(f"{path}: SHA-256 {sha256(path)} is not the shipped weights' {expected}")
    model = DigitClassifier()
    model.load_state_dict(load_file(str(path)))
    return model.eval()


def fits_classifier(input_shape: tuple[int, ...], scaling: str) -> bool:
    """Whether the classifier's space applies: 1x28x28 images with pixels in [0, 1]."""
    return tuple(input_shape) == (1, 28, 28) and scaling == "unit"


class ClassifierSpace:
    """Images -> the classifier's 128 penultimate features (and its softmax), batched, in eval mode."""

    name = CLASSIFIER_SPACE

    def __init__(self, model: DigitClassifier | None = None):
        self.model = model or load_classifier()

    @torch.no_grad()
    def features(self, x: torch.Tensor, batch_size: int = 2048) -> tuple[np.ndarray, np.ndarray]:
        """``(features (N, 128) float64, probabilities (N, 10) float64)`` of images ``x`` (N, 1, 28, 28) in [0, 1]."""
        feats, probs = [], []
        for start in range(0, len(x), batch_size):
            h = self.model.features(x[start : start + batch_size].float().reshape(-1, 1, 28, 28))
            feats.append(h.double())
            probs.append(torch.softmax(self.model.head(h), 1).double())
        return torch.cat(feats).numpy(), torch.cat(probs).numpy()


class PCASpace:
    """For data the classifier does not fit: rows -> their first ``k`` principal components (fitted on ``x_train``)."""

    def __init__(self, x_train: torch.Tensor, k: int = 32):
        flat = x_train.reshape(len(x_train), -1).double()
        self.k = min(k, flat.shape[1], len(flat) - 1)
        self.mean = flat.mean(0)
        _, _, v = torch.linalg.svd(flat - self.mean, full_matrices=False)
        self.components = v[: self.k].T  # (features, k)
        self.name = f"FD (PCA-{self.k} of the training rows)"

    def features(self, x: torch.Tensor) -> tuple[np.ndarray, None]:
        return ((x.reshape(len(x), -1).double() - self.mean) @ self.components).numpy(), None


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)) for Gaussians fitted to feature rows ``a`` and ``b``.

    The trace of the matrix square root is computed as the sum of the square roots of the eigenvalues of the
    symmetric S_a^(1/2) S_b S_a^(1/2), which has the same eigenvalues as S_a S_b: real and stable (no complex
    ``sqrtm`` residue to discard).
    """
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    cross = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_root = np.sqrt(np.clip(cross, 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root)


def _kth_distances(x: torch.Tensor, k: int, rows: int = 2048) -> torch.Tensor:
    """Each row's distance to its k-th nearest other row of ``x``."""
    out = torch.empty(len(x), dtype=x.dtype)
    for start in range(0, len(x), rows):
        d = torch.cdist(x[start : start + rows], x)
        out[start : start + rows] = d.kthvalue(k + 1, dim=1).values  # +1: a row is its own nearest, at 0
    return out


def _covered(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, rows: int = 2048) -> float:
    """The share of ``points`` inside at least one ball (``centres``, ``radii``)."""
    inside = 0
    for start in range(0, len(points), rows):
        d = torch.cdist(points[start : start + rows], centres)
        inside += int((d <= radii).any(1).sum())
    return inside / len(points)


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = K_NEAREST,
                     real_radii: torch.Tensor | None = None) -> tuple[float, float]:  # fmt: skip
    """Kynkäänniemi et al. 2019: precision is the share of ``fake`` rows inside the real rows' k-NN balls (are
    samples realistic?), recall the share of ``real`` rows inside the fake rows' balls (is the data covered?).
    ``real_radii``: the real rows' k-th neighbour distances, when already computed (:class:`Reference`)."""
    r, f = torch.from_numpy(real).float(), torch.from_numpy(fake).float()
    radii = _kth_distances(r, k) if real_radii is None else real_radii
    return _covered(f, r, radii), _covered(r, f, _kth_distances(f, k))


def label_entropy(probabilities: np.ndarray) -> float:
    """The entropy (nats) of the histogram of the classifier's labels: ln 10 = 2.303 when every digit is as common."""
    counts = np.bincount(probabilities.argmax(1), minlength=probabilities.shape[1]) / len(probabilities)
    counts = counts[counts > 0]
    return float(-(counts * np.log(counts)).sum())


@dataclass
class Reference:
    """A feature space and the real rows' features in it, computed once and compared with many sample sets."""

    space: ClassifierSpace | PCASpace
    features: np.ndarray  # the real rows (the test split)
    radii: torch.Tensor  # each real row's distance to its k-th nearest real row

    @classmethod
    def of(cls, x_train: torch.Tensor, x_real: torch.Tensor, classifier: bool) -> Reference:
        space = ClassifierSpace() if classifier else PCASpace(x_train)
        features = space.features(x_real)[0]
        return cls(space, features, _kth_distances(torch.from_numpy(features).float(), K_NEAREST))

    def measure(self, x: torch.Tensor) -> dict[str, float]:
        """FD, precision and recall of rows ``x`` against the reference; for the classifier space also its mean
        confidence and the entropy of its label histogram."""
        features, probabilities = self.space.features(x)
        precision, recall = precision_recall(self.features, features, K_NEAREST, self.radii)
        out = {"fd": frechet_distance(self.features, features), "precision": precision, "recall": recall}
        if probabilities is not None:
            out |= {"confidence": float(probabilities.max(1).mean()), "label_entropy": label_entropy(probabilities)}
        return out

    def labels(self, x: torch.Tensor) -> np.ndarray | None:
        """The classifier's label for each row (None in a PCA space)."""
        _, probabilities = self.space.features(x)
        return None if probabilities is None else probabilities.argmax(1)

