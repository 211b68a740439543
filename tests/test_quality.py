"""The feature network and the sample-quality metrics: known answers on small synthetic sets, the shipped weights."""

import math
import shutil

import numpy as np
import pytest
import torch

from aekit.configs import DataConfig
from aekit.data.datasets import load
from aekit.errors import CheckpointError
from aekit.generation.quality import (WEIGHTS, WEIGHTS_SHA256, ClassifierSpace, PCASpace, Reference, frechet_distance,
                                      label_entropy, load_classifier, precision_recall, sha256)  # fmt: skip


def test_frechet_distance_is_the_closed_form_for_gaussians():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-8)
    # N(0, I) vs N(mu, 4 I): |mu|^2 + tr(I + 4I - 2 * 2I) = |mu|^2 + 3, up to sampling error
    b = 2 * rng.normal(size=(4000, 3)) + np.array([1.0, 2.0, 0.0])
    assert frechet_distance(a, b) == pytest.approx(5 + 3, rel=0.05)


def test_frechet_distance_matches_scipy_sqrtm():
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(300, 5)) @ rng.normal(size=(5, 5)), rng.normal(size=(300, 5)) @ rng.normal(size=(5, 5))
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    reference = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(ca + cb - 2 * sqrtm(ca @ cb).real)
    assert frechet_distance(a, b) == pytest.approx(reference, rel=1e-6)


def test_precision_and_recall_tell_quality_from_coverage():
    rng = np.random.default_rng(0)
    real = np.concatenate([rng.normal(size=(500, 2)) - 6, rng.normal(size=(500, 2)) + 6])
    same = np.concatenate([rng.normal(size=(500, 2)) - 6, rng.normal(size=(500, 2)) + 6])
    one_mode = rng.normal(size=(1000, 2)) + 6  # realistic samples that miss half the data
    far = rng.normal(size=(1000, 2)) + 40  # samples nowhere near the data
    p, r = precision_recall(real, same)
    assert p > 0.9 and r > 0.9
    p, r = precision_recall(real, one_mode)
    assert p > 0.9 and 0.4 < r < 0.6
    assert precision_recall(real, far) == (0.0, 0.0)


def test_label_entropy():
    uniform = np.eye(10)[np.arange(1000) % 10]
    assert label_entropy(uniform) == pytest.approx(math.log(10))
    assert label_entropy(np.eye(10)[np.zeros(50, dtype=int)]) == 0


def test_the_shipped_weights_have_their_hash_and_classify_mnist():
    assert sha256(WEIGHTS) == WEIGHTS_SHA256
    data = load(DataConfig(name="mnist"))
    _, probabilities = ClassifierSpace().features(data.x_test[:2000])
    assert (probabilities.argmax(1) == data.y_test[:2000].numpy()).mean() > 0.985


def test_changed_weights_are_refused(tmp_path):
    changed = tmp_path / "weights.safetensors"
    shutil.copy(WEIGHTS, changed)
    payload = bytearray(changed.read_bytes())
    payload[-1] ^= 1
    changed.write_bytes(bytes(payload))
    with pytest.raises(CheckpointError, match="is not the shipped weights'"):
        load_classifier(changed)
    with pytest.raises(CheckpointError, match="weights are missing"):
        load_classifier(tmp_path / "none.safetensors")


def test_the_floor_is_low_and_noise_is_far_in_the_classifier_space():
    data = load(DataConfig(name="mnist", limit=3000))
    reference = Reference.of(data.x_train, data.x_test[:3000], classifier=True)
    floor = reference.measure(data.x_train[:3000])
    noise = reference.measure(torch.rand(3000, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
    assert 20 * floor["fd"] < noise["fd"]  # (3,000 rows of 128 features: FD's small-sample bias is large)
    assert floor["recall"] > 0.7 and noise["recall"] == 0
    assert floor["label_entropy"] > 2.25 and floor["confidence"] > 0.95


def test_pca_space_for_other_data(digits):
    reference = Reference.of(digits.x_train, digits.x_test, classifier=False)
    assert isinstance(reference.space, PCASpace) and reference.space.k == 32
    assert reference.space.name == "FD (PCA-32 of the training rows)"
    measured = reference.measure(digits.x_train)
    assert set(measured) == {"fd", "precision", "recall"} and measured["fd"] < 5
    assert reference.labels(digits.x_train) is None
