"""Metrics in the paper's units, the PCA baseline at the same code size, and loading a finished run.

Units (Hinton & Salakhutdinov 2006): the squared error summed over an example's features and averaged over
examples ("SSE per image"); beside it the mean squared error per pixel, the binary cross-entropy per pixel and
the PSNR, for data in [0, 1]. PCA is fitted on the same training data with as many components as the code has.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from ..core.fitted import batched, encode, fill_missing, reconstruct, sample_codes
from ..core.space import Data
from ..io.files import atomic_write_bytes
from ..io.tables import column_of_feature
from ..model.autoencoder import AutoEncoder
from ..model.networks import corrupt
from ..model.parts import Denoising, Imputing, LinearBody, TopK, VectorQuantized

log = logging.getLogger(__name__)
CACHE_FORMAT = 1  # bump when a cached analysis would be computed differently


def cache_folder() -> Path | None:
    """Where analyses that depend on the data alone are kept: ``$AEKIT_CACHE`` (``off``: nowhere), else
    ``$XDG_CACHE_HOME/aekit/analysis`` (``~/.cache/aekit/analysis``)."""
    chosen = os.environ.get("AEKIT_CACHE")
    if chosen is not None:
        return None if chosen in ("", "off", "0") else Path(chosen)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aekit" / "analysis"


def model_fingerprint(model: AutoEncoder) -> str:
    """A digest of a model's config and weights (BLAKE2b): what a cached analysis of this model is filed under."""
    digest = hashlib.blake2b(repr(model.config).encode(), digest_size=16)
    for name, tensor in sorted(model.state_dict().items()):
        array = np.ascontiguousarray(tensor.detach().cpu().numpy())
        digest.update(name.encode() + str(array.dtype).encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def cached(kind: str, key: dict, compute) -> dict[str, float]:
    """``compute()`` (a dict of numbers that depends only on ``key``: the data's fingerprint and the settings), read
    from the cache when it was computed before; a cache that cannot be read or written is recomputed, never an
    error."""
    folder = cache_folder()
    name = hashlib.blake2b(json.dumps({"format": CACHE_FORMAT, **key}, sort_keys=True).encode(), digest_size=16)
    path = None if folder is None else folder / f"{kind}-{name.hexdigest()}.json"
    if path is not None and path.is_file():
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            pass
    result = compute()
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, json.dumps(result).encode())
        except OSError:
            pass
    return result

METRIC_NAMES = ("test_mse_per_pixel", "test_sse_per_image", "test_bce_per_pixel", "psnr")


def reconstruction_metrics(x: torch.Tensor, x_hat: torch.Tensor, unit: bool, rows: int = 1024) -> dict[str, float]:
    """Test metrics of reconstructions ``x_hat`` of ``x`` (both ``(N, ...)``, model space), in float64.

    ``test_bce_per_pixel`` and ``psnr`` are given for data in [0, 1] only (``unit``); BCE clips ``x_hat`` to
    [1e-7, 1 - 1e-7] since a linear baseline such as PCA can leave that range. Computed ``rows`` at a time, so the
    float64 copies stay in the cache (MNIST's 10,000 test images on 2 CPU cores: 0.48 s as one block, 0.10 s so).
    """
    x, x_hat = x.reshape(len(x), -1), x_hat.reshape(len(x_hat), -1)
    sse, bce = torch.empty(len(x), dtype=torch.float64), 0.0
    missing = int(torch.isnan(x).sum())  # cells with no value: they add no error, and the means are per observed cell
    for start in range(0, len(x), rows):
        target, out = x[start : start + rows].double(), x_hat[start : start + rows].double()
        error = (out - target).pow_(2)
        sse[start : start + rows] = (error.nan_to_num_(0.0, math.inf) if missing else error).sum(1)
        if unit:
            p = out.clamp(1e-7, 1 - 1e-7)  # not in place: ``out`` is ``x_hat`` itself when that is float64
            terms = target * p.log() + (1 - target) * (1 - p).log_()
            bce -= float(terms.nansum() if missing else terms.sum())
    mse = float(sse.sum()) / max(x.numel() - missing, 1) if missing else float(sse.mean()) / x.shape[1]
    metrics = {"test_mse_per_pixel": mse, "test_sse_per_image": float(sse.mean())}
    if unit:
        metrics["test_bce_per_pixel"] = bce / max(x.numel() - missing, 1)
        metrics["psnr"] = 10 * math.log10(1 / mse) if mse > 0 else math.inf
    return metrics


def flat_rows(x: torch.Tensor, fill_from: torch.Tensor | None = None) -> np.ndarray:
    """``x`` as flat rows ``(N, D)``, NumPy; PCA takes no holes, so missing cells (NaN) become the means of
    ``fill_from``'s (the training rows', :func:`column_means`), computed only when ``x`` has one."""
    rows = x.reshape(len(x), -1).numpy()
    if fill_from is None or not np.isnan(rows).any():
        return rows
    return np.where(np.isnan(rows), column_means(fill_from).astype(rows.dtype), rows)


def column_means(x_train: torch.Tensor) -> np.ndarray:
    """Each feature's mean over its observed training cells (0 where none is): what fills a missing cell (NaN) of
    the training or the test rows for PCA."""
    rows = x_train.reshape(len(x_train), -1).numpy()
    if not np.isnan(rows).any():
        return rows.mean(0, dtype=np.float64)
    seen = (~np.isnan(rows)).sum(0)
    return np.divide(np.nansum(rows, 0, dtype=np.float64), seen, out=np.zeros(rows.shape[1]), where=seen > 0)


def fit_pca(x_train: torch.Tensor, n_components: int):
    """scikit-learn's PCA of the flattened training data (covariance eigendecomposition when examples outnumber
    features); its missing cells filled with their features' means."""
    train = flat_rows(x_train, x_train)
    solver = "covariance_eigh" if train.shape[0] > train.shape[1] else "full"
    from sklearn.decomposition import PCA  # (scikit-learn loads in a second: only where it is used)

    with warnings.catch_warnings():  # one training row: its explained variance is 0/0, its components still fine
        warnings.simplefilter("ignore", RuntimeWarning)
        return PCA(n_components=min(n_components, *train.shape), svd_solver=solver).fit(train)


def pca_reconstruct(x_train: torch.Tensor, x_test: torch.Tensor, n_components: int) -> torch.Tensor:
    """Fit PCA with ``n_components`` on the training data and return its reconstruction of the test data."""
    pca = fit_pca(x_train, n_components)
    test = flat_rows(x_test, x_train)
    return torch.from_numpy(pca.inverse_transform(pca.transform(test))).reshape(x_test.shape)


def evaluate_model(model: AutoEncoder, data: Data) -> dict[str, float]:
    """The model's test metrics, with PCA's (same training data, as many components as the code) beside them.

    Also the codes' mean absolute value and share of near-zero units (sparsity), and what the model's body and
    objective add (:data:`PART_METRICS`).
    """
    unit = data.scaling == "unit"
    k = model.config.latent_dim
    compared = model.config.objective.compared_components(k)  # a sparse autoencoder's: its L0
    metrics = reconstruction_metrics(data.x_test, reconstruct(model, data.x_test), unit)
    pca = cached("pca", {"data": data.fingerprint, "k": compared, "unit": unit}, lambda: reconstruction_metrics(
        data.x_test, pca_reconstruct(data.x_train, data.x_test, compared), unit))  # the data's alone: computed once
    metrics.update({f"pca_{name}": value for name, value in pca.items()})
    metrics["latent_dim"] = k
    metrics["pca_components"] = min(compared, data.space.width, len(data.x_train))  # fewer when the data has fewer
    if compared != k:
        metrics["pca_at_l0"] = 1.0  # PCA with as many components as the code has active latents per row
    metrics["features"] = data.space.width
    metrics["image_data"] = float(data.space.is_image)  # the report's words: pixels and images, or features and rows
    if data.has_missing:
        metrics["pca_mean_filled"] = 1.0  # PCA given missing cells filled with the training means
    metrics["n_test"] = len(data.x_test)
    codes = encode(model, data.x_test)
    metrics["code_mean_abs"] = float(codes.abs().mean())
    metrics["code_near_zero"] = float((codes.abs() < NEAR_ZERO).double().mean())
    for part in (model.config.body, model.config.objective):
        if type(part) in PART_METRICS:
            metrics.update(PART_METRICS[type(part)](model, data))
    return metrics


NEAR_ZERO = 1e-2  # a code unit with |z| below this counts as off


def denoising_metrics(model: AutoEncoder, data: Data, seed: int = 0) -> dict[str, float]:
    """Error of the corrupted test inputs and of the model's denoised outputs, both against the clean inputs."""
    noisy = corrupt(data.x_test, model.config.objective, model.config.output, torch.Generator().manual_seed(seed))
    unit = data.scaling == "unit"
    before = reconstruction_metrics(data.x_test, noisy, unit)
    after = reconstruction_metrics(data.x_test, reconstruct(model, noisy), unit)
    key = "psnr" if unit else "test_mse_per_pixel"
    return {f"denoise_{key}_noisy": before[key], f"denoise_{key}_denoised": after[key]}


def linear_metrics(model: AutoEncoder, data: Data) -> dict[str, float]:
    return {"linear_max_principal_angle_deg": principal_angle_to_pca(model, data.x_train)}


def codebook_counts(model: AutoEncoder, x: torch.Tensor) -> torch.Tensor:
    """How often each codebook vector of a VQ model is chosen for ``x`` (every slice of every code counts)."""
    objective = model.config.objective
    symbols = batched(lambda xb: objective.symbols(model, xb), model, x)  # (N, groups)
    return torch.bincount(symbols.flatten(), minlength=objective.codebook_size)


def codebook_metrics(model: AutoEncoder, data: Data) -> dict[str, float]:
    """Share of the codebook used on the test set, and the perplexity of the symbols (exp of their entropy)."""
    counts = codebook_counts(model, data.x_test).double()
    p = counts[counts > 0] / counts.sum()
    return {"vq_codebook_usage": float((counts > 0).double().mean()), "vq_perplexity": float((-(p * p.log()).sum()).exp())}


def principal_angle_to_pca(model: AutoEncoder, x_train: torch.Tensor) -> float:
    """Largest principal angle (degrees) between the decoder's column space and the top-k PCA subspace."""
    from scipy.linalg import subspace_angles

    decoder_columns = next(m for m in model.decoder.modules() if isinstance(m, torch.nn.Linear)).weight  # (D, k)
    pca = fit_pca(x_train, model.config.latent_dim)
    angles = subspace_angles(decoder_columns.detach().cpu().double().numpy(), pca.components_.T.astype(np.float64))
    return float(np.degrees(angles.max()))


def imputation_metrics(model: AutoEncoder, data: Data, share: float = 0.2, seed: int = 0) -> dict[str, float]:
    """Hide ``share`` of the observed test cells (a categorical column's whole block), fill them, and measure: the
    RMSE on the hidden numeric cells (model space: standardized units, or pixels) beside filling each with its
    feature's training mean (the floor an imputer must beat); for a table's categorical columns, the share filled
    with the right category beside always guessing its most frequent one."""
    x = data.x_test.reshape(len(data.x_test), -1)
    columns = model.config.columns
    column_of = torch.as_tensor(column_of_feature(columns)) if columns else torch.arange(x.shape[1])  # feature -> column
    first = torch.as_tensor(np.flatnonzero(np.diff(column_of.numpy(), prepend=-1)))  # column -> its first feature
    drawn = torch.rand(x.shape[0], len(first), generator=torch.Generator().manual_seed(seed))
    hidden = (drawn < share) & ~torch.isnan(x[:, first])
    hide = hidden[:, column_of]
    filled = fill_missing(model, torch.where(hide, torch.nan, x)).double()
    means = torch.as_tensor(column_means(data.x_train), dtype=torch.float64)
    numeric = torch.ones(x.shape[1], dtype=torch.bool)
    for start, stop in model.blocks:
        numeric[start:stop] = False
    cells = hide & numeric
    out = {"impute_hidden_cells": int(hidden.sum())}
    if cells.any():
        target = x.double()[cells]
        out["impute_rmse"] = float((filled[cells] - target).square().mean().sqrt())
        out["impute_rmse_mean_fill"] = float((means.expand_as(filled)[cells] - target).square().mean().sqrt())
    right, mode_right, count = 0, 0, 0
    for start, stop in model.blocks:
        rows = hide[:, start]
        truth = x[rows, start:stop].argmax(1)
        right += int((filled[rows, start:stop].argmax(1) == truth).sum())
        mode_right += int((truth == int(means[start:stop].argmax())).sum())
        count += int(rows.sum())
    if count:
        out.update(impute_accuracy=right / count, impute_accuracy_mode=mode_right / count)
    return out


def sparse_metrics(model: AutoEncoder, data: Data) -> dict[str, float]:
    """A sparse autoencoder's code on the test rows: ``sae_l0`` (latents active per row), ``sae_dead`` (the share of
    latents never active), ``sae_fvu`` (the fraction of variance unexplained, in model space), ``sae_shrinkage``
    (the reconstructions' norm over the rows', both about the training mean: below 1, the code shrinks), beside
    ``sae_pca_fvu``: PCA with as many components as the L0 (a dense code of the same size per row)."""
    x = data.x_test.reshape(len(data.x_test), -1).double()
    codes = encode(model, data.x_test)
    rebuilt = reconstruct(model, data.x_test).reshape(x.shape).double()
    mean = data.x_train.reshape(len(data.x_train), -1).double().mean(0)
    total = float((x - x.mean(0)).square().sum())
    l0 = float((codes > 0).sum(1).double().mean())
    k = max(1, min(round(l0), x.shape[1]))
    pca = pca_reconstruct(data.x_train, data.x_test, k).reshape(x.shape).double()
    return {"sae_l0": l0, "sae_dead": float(((codes > 0).sum(0) == 0).double().mean()),
            "sae_fvu": float((x - rebuilt).square().sum()) / total,
            "sae_shrinkage": float(((rebuilt - mean).norm(dim=1) / (x - mean).norm(dim=1).clamp_min(1e-12)).mean()),
            "sae_pca_fvu": float((x - pca).square().sum()) / total, "sae_pca_components": k}  # fmt: skip


# What a body or an objective adds to the metrics, keyed by its class.
PART_METRICS = {Denoising: denoising_metrics, LinearBody: linear_metrics, VectorQuantized: codebook_metrics,
                Imputing: imputation_metrics, TopK: sparse_metrics}  # fmt: skip


# ------------------------------------------------------------------------------------------ the chapter's claims
def pca_codes(x_train: torch.Tensor, x_test: torch.Tensor, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    """PCA codes of the training and test data (fitted on the training data), as the AE's codes are."""
    pca = fit_pca(x_train, n_components)
    return pca.transform(flat_rows(x_train, x_train)), pca.transform(flat_rows(x_test, x_train))


def gaussian_like(codes: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Map standard-normal ``noise`` (n, d) to samples of the Gaussian fitted to ``codes`` (mean, covariance)."""
    d = codes.shape[1]
    cov = torch.cov(codes.T).reshape(d, d)
    cov = cov + (1e-6 * cov.diagonal().mean() + 1e-12) * torch.eye(d, dtype=cov.dtype)  # keep it positive definite
    return codes.mean(0) + noise.to(cov.dtype) @ torch.linalg.cholesky(cov).T


def holes(model: AutoEncoder, x_test: torch.Tensor, n_samples: int = 1000, seed: int = 0) -> dict:
    """Can random z ~ N(0, I) be told apart from the codes of real data? (a classifier two-sample test)

    The codes are what the decoder is trained on: the encoder's outputs, or a VAE's posterior samples. ``holes`` is the 5-fold cross-validated accuracy of a 5-nearest-neighbour classifier separating
    ``n_samples`` random z from as many test codes: 0.5 means z ~ N(0, I) lands where real codes are (what a
    VAE aims for); 1.0 means random z never land among the codes, so decoding them gives what the decoder never
    learned. ``holes_fitted`` is the same for z drawn from a Gaussian fitted to the codes.
    """
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    n = min(n_samples, len(x_test) // 2)
    with torch.random.fork_rng(devices=[]):  # a VAE's codes are samples: seeded, without touching global state
        torch.manual_seed(seed)
        codes = sample_codes(model, x_test[: 2 * n]).double()  # (2n, d)
    held, fit_on = codes[:n], codes[n:]
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(n, codes.shape[1], generator=generator, dtype=torch.float64)
    fitted = gaussian_like(fit_on, z)
    out = {}
    for name, other in (("holes", z), ("holes_fitted", fitted)):
        x = torch.cat([held, other]).numpy()
        y = np.r_[np.zeros(len(held)), np.ones(len(other))]
        folds = min(5, len(held))
        out[name] = float(cross_val_score(KNeighborsClassifier(n_neighbors=5), x, y, cv=folds).mean())
    return out


def probe_accuracies(train: np.ndarray, y_train: np.ndarray, test: np.ndarray, y_test: np.ndarray) -> dict:
    """Test accuracy of a logistic-regression probe and of 5-NN, fitted on ``train`` features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    logreg = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(train, y_train)
    knn = KNeighborsClassifier(n_neighbors=5).fit(train, y_train)
    return {"logreg": float(logreg.score(test, y_test)), "knn": float(knn.score(test, y_test))}


def feature_quality(model: AutoEncoder, data: Data, n_train: int = 5000, n_test: int = 1000, seed: int = 0) -> dict:
    """Probe accuracies on the AE's codes, on PCA codes of the same size, and on the raw inputs.

    Probes are fitted on ``n_train`` random training examples and scored on ``n_test`` random test examples.
    """
    if data.y_train is None or data.y_test is None:
        return {}
    rng = np.random.default_rng(seed)
    tr = rng.permutation(len(data.x_train))[:n_train]
    te = rng.permutation(len(data.x_test))[:n_test]
    x_train, x_test = data.x_train[tr], data.x_test[te]
    y_train, y_test = data.y_train[tr].numpy(), data.y_test[te].numpy()
    def probes(name: str, train: np.ndarray, test: np.ndarray) -> dict[str, float]:
        return {f"probe_{probe}_{name}": accuracy for probe, accuracy in
                probe_accuracies(train, y_train, test, y_test).items()}  # fmt: skip

    out = probes("ae", encode(model, x_train).numpy(), encode(model, x_test).numpy())
    key = {"data": data.fingerprint, "k": model.config.latent_dim, "n": [n_train, n_test], "seed": seed}
    out |= cached("probes", key, lambda: {  # PCA's codes and the raw inputs: the data's alone, computed once
        **probes("pca", *pca_codes(x_train, x_test, model.config.latent_dim)),
        **probes("pixels", x_train.reshape(len(x_train), -1).numpy(), x_test.reshape(len(x_test), -1).numpy())})
    return out
