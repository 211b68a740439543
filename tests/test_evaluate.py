import math

import numpy as np
import pytest
import torch

from aekit.analysis.evaluate import pca_reconstruct, reconstruction_metrics
from aekit.faces.report import format_metrics


def numpy_pca_reconstruction(train, test, k):
    mean = train.mean(0)
    _, _, vt = np.linalg.svd(train - mean, full_matrices=False)
    basis = vt[:k]  # (k, D)
    return (test - mean) @ basis.T @ basis + mean


def test_pca_matches_a_direct_svd():
    rng = np.random.default_rng(0)
    train = rng.random((500, 30)).astype(np.float32)
    test = rng.random((100, 30)).astype(np.float32)
    ours = pca_reconstruct(torch.from_numpy(train), torch.from_numpy(test), 7).numpy()
    direct = numpy_pca_reconstruction(train.astype(np.float64), test.astype(np.float64), 7)
    np.testing.assert_allclose(ours, direct, atol=1e-4)
    ours_sse = reconstruction_metrics(torch.from_numpy(test), torch.from_numpy(ours), unit=True)["test_sse_per_image"]
    assert ours_sse == pytest.approx(((direct - test) ** 2).sum(1).mean(), rel=1e-4)


def test_pca_on_mnist_matches_the_paper_at_30_components():
    from aekit.data import datasets as data

    d = data.load(data.DataConfig(name="mnist"))
    metrics = reconstruction_metrics(d.x_test, pca_reconstruct(d.x_train, d.x_test, 30), unit=True)
    assert metrics["test_sse_per_image"] == pytest.approx(13.87, abs=0.01)  # Hinton & Salakhutdinov 2006


def test_metric_units():
    x = torch.zeros(4, 1, 2, 2)
    x_hat = torch.full_like(x, 0.5)
    m = reconstruction_metrics(x, x_hat, unit=True)
    assert m["test_sse_per_image"] == pytest.approx(4 * 0.25)  # summed over 4 pixels, averaged over images
    assert m["test_mse_per_pixel"] == pytest.approx(0.25)
    assert m["psnr"] == pytest.approx(10 * math.log10(1 / 0.25))
    assert m["test_bce_per_pixel"] == pytest.approx(math.log(2))
    assert set(reconstruction_metrics(x, x_hat, unit=False)) == {"test_mse_per_pixel", "test_sse_per_image"}


def test_metrics_by_blocks_of_rows_equal_the_whole_and_leave_the_inputs_alone():
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(37, 1, 3, 3, generator=generator, dtype=torch.float64)
    x_hat = torch.rand(37, 1, 3, 3, generator=generator, dtype=torch.float64) * 1.4 - 0.2  # PCA-like: leaves [0, 1]
    kept = x_hat.clone()
    whole = reconstruction_metrics(x, x_hat, unit=True, rows=37)
    for rows in (1, 8, 36):
        assert reconstruction_metrics(x, x_hat, unit=True, rows=rows) == pytest.approx(whole, rel=1e-12)
    assert torch.equal(x_hat, kept)  # float64 reconstructions are not clipped in place
    p = x_hat.clamp(1e-7, 1 - 1e-7)
    bce = float(-(x * p.log() + (1 - x) * (1 - p).log()).mean())
    assert whole["test_bce_per_pixel"] == pytest.approx(bce, rel=1e-12)
    assert whole["test_sse_per_image"] == pytest.approx(float(((x_hat - x) ** 2).sum((1, 2, 3)).mean()), rel=1e-12)


def test_format_metrics_puts_pca_beside_the_model():
    text = format_metrics({"test_sse_per_image": 4.9, "pca_test_sse_per_image": 13.2, "latent_dim": 32})
    lines = text.splitlines()
    assert "SSE/image" in lines[0] and "autoencoder (k=32)" in lines[1] and "PCA (k=32)" in lines[2]
    assert "4.900" in lines[1] and "13.200" in lines[2]
