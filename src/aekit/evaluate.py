"""Metrics in the paper's units, the PCA baseline at the same code size, and loading a finished run.

Units (Hinton & Salakhutdinov 2006): the squared error summed over an example's features and averaged over
examples ("SSE per image"); beside it the mean squared error per pixel, the binary cross-entropy per pixel and
the PSNR, for data in [0, 1]. PCA is fitted on the same training data with as many components as the code has.
"""

from __future__ import annotations

import logging
import math

import torch
from sklearn.decomposition import PCA

from .data import Data
from .models import AutoEncoder

log = logging.getLogger(__name__)

METRIC_NAMES = ("test_mse_per_pixel", "test_sse_per_image", "test_bce_per_pixel", "psnr")


def reconstruction_metrics(x: torch.Tensor, x_hat: torch.Tensor, unit: bool) -> dict[str, float]:
    """Test metrics of reconstructions ``x_hat`` of ``x`` (both ``(N, ...)``, model space).

    ``test_bce_per_pixel`` and ``psnr`` are given for data in [0, 1] only (``unit``); BCE clips ``x_hat`` to
    [1e-7, 1 - 1e-7] since a linear baseline such as PCA can leave that range.
    """
    x = x.reshape(len(x), -1).double()
    x_hat = x_hat.reshape(len(x_hat), -1).double()
    sse = (x_hat - x).pow(2).sum(1)  # (N,)
    mse = float(sse.mean()) / x.shape[1]
    metrics = {"test_mse_per_pixel": mse, "test_sse_per_image": float(sse.mean())}
    if unit:
        p = x_hat.clamp(1e-7, 1 - 1e-7)
        metrics["test_bce_per_pixel"] = float(-(x * p.log() + (1 - x) * (1 - p).log()).mean())
        metrics["psnr"] = 10 * math.log10(1 / mse) if mse > 0 else math.inf
    return metrics


@torch.no_grad()
def reconstruct(model: AutoEncoder, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Reconstructions of ``x`` in model space, batched, in eval mode, returned on the CPU."""
    model.eval()
    device = next(model.parameters()).device
    return torch.cat([model(x[i : i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)])


@torch.no_grad()
def encode(model: AutoEncoder, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Codes ``(N, latent_dim)`` of ``x``, batched, in eval mode, returned on the CPU."""
    model.eval()
    device = next(model.parameters()).device
    return torch.cat([model.encode(x[i : i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)])


def pca_reconstruct(x_train: torch.Tensor, x_test: torch.Tensor, n_components: int) -> torch.Tensor:
    """Fit PCA with ``n_components`` on the training data and return its reconstruction of the test data."""
    train = x_train.reshape(len(x_train), -1).numpy()
    test = x_test.reshape(len(x_test), -1).numpy()
    n_components = min(n_components, *train.shape)
    pca = PCA(n_components=n_components, svd_solver="covariance_eigh" if train.shape[0] > train.shape[1] else "full")
    pca.fit(train)
    return torch.from_numpy(pca.inverse_transform(pca.transform(test))).reshape(x_test.shape)


def evaluate_model(model: AutoEncoder, data: Data) -> dict[str, float]:
    """The model's test metrics, with PCA's (same training data, as many components as the code) beside them."""
    unit = data.scaling == "unit"
    k = model.config.latent_dim
    metrics = reconstruction_metrics(data.x_test, reconstruct(model, data.x_test), unit)
    pca = reconstruction_metrics(data.x_test, pca_reconstruct(data.x_train, data.x_test, k), unit)
    metrics.update({f"pca_{name}": value for name, value in pca.items()})
    metrics["latent_dim"] = k
    metrics["n_test"] = len(data.x_test)
    return metrics


def format_metrics(metrics: dict[str, float]) -> str:
    """A small table: the autoencoder's row and PCA's row in the same units."""
    k = metrics.get("latent_dim", "?")
    names = [n for n in METRIC_NAMES if n in metrics]
    heads = {"test_mse_per_pixel": "MSE/pixel", "test_sse_per_image": "SSE/image",
             "test_bce_per_pixel": "BCE/pixel", "psnr": "PSNR (dB)"}  # fmt: skip
    lines = [f"{'':<20}" + "".join(f"{heads[n]:>12}" for n in names)]
    for label, prefix in ((f"autoencoder (k={k})", ""), (f"PCA (k={k})", "pca_")):
        cells = []
        for n in names:
            value = metrics.get(prefix + n, float("nan"))
            cells.append(f"{value:>12.5f}" if n == "test_mse_per_pixel" else f"{value:>12.3f}")
        lines.append(f"{label:<20}" + "".join(cells))
    return "\n".join(lines)
