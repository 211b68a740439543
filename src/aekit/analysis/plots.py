"""The chapter's figures, each a function returning a matplotlib Figure (saved as PNG and SVG when given a path).

Uses matplotlib's object API (no pyplot), so nothing here touches the user's backend or global state.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..core.fitted import Fitted, batched, encode, reconstruct
from ..core.space import Data, is_image_data
from ..errors import DataError
from ..io.files import atomic_write_bytes
from ..model.autoencoder import AutoEncoder
from ..model.config import ModelConfig
from ..model.networks import corrupt
from ..model.parts import Denoising, Objective, TopK, VectorQuantized
from .evaluate import codebook_counts, gaussian_like, pca_codes, pca_reconstruct

log = logging.getLogger(__name__)



def save(fig: Figure, path: str | Path | None) -> Figure:
    """Write ``fig`` as ``path.png`` and ``path.svg`` (``path`` without suffix) if a path is given."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in (".png", ".svg"):
            fig.savefig(path.with_suffix(suffix), dpi=110, bbox_inches="tight")
    return fig


def _require_images(model: AutoEncoder, what: str) -> None:
    if not is_image_data(model.config.input_shape):
        raise DataError(f"the {what} figure needs image data (C, H, W); this model's input is "
                        f"{model.config.input_shape}")  # fmt: skip


def _show(ax, image: torch.Tensor) -> None:
    """One image (C, H, W) in [0, 1] on an axis, without ticks."""
    image = image.detach().clamp(0, 1).cpu()
    if image.shape[0] == 1:
        ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _grid(images: torch.Tensor, ncol: int) -> torch.Tensor:
    """Tile ``(N, C, H, W)`` images into one ``(C, rows*H, ncol*W)`` image with 1-pixel gaps."""
    n, c, h, w = images.shape
    rows = -(-n // ncol)
    canvas = torch.ones(c, rows * (h + 1) - 1, ncol * (w + 1) - 1)
    for i, image in enumerate(images):
        r, col = divmod(i, ncol)
        canvas[:, r * (h + 1) : r * (h + 1) + h, col * (w + 1) : col * (w + 1) + w] = image
    return canvas


def reconstructions(model: AutoEncoder, data: Data, n: int = 6, seed: int = 0, path=None) -> Figure:
    """Random test images (top), the autoencoder's reconstructions, and PCA's with as many components.

    Each row is labelled with its SSE per image on the images shown, as in Hinton & Salakhutdinov 2006, Fig. 2.
    """
    _require_images(model, "reconstructions")
    index = torch.randperm(len(data.x_test), generator=torch.Generator().manual_seed(seed))[:n]
    x = data.x_test[index]
    k = model.config.latent_dim
    rows = [("original", x), (f"AE, {k}-D", reconstruct(model, x))]
    rows.append((f"PCA, k={k}", pca_reconstruct(data.x_train, x, k).float()))
    fig = Figure(figsize=(1.3 * n + 2.2, 4.2))
    axes = fig.subplots(3, n, squeeze=False)
    for r, (label, images) in enumerate(rows):
        sse = float((images - x).reshape(n, -1).pow(2).sum(1).mean())
        for c in range(n):
            _show(axes[r, c], images[c])
        axes[r, 0].set_ylabel(label, fontsize=9)
        note = "" if r == 0 else f"SSE/image {sse:.2f}"
        axes[r, -1].text(1.08, 0.5, note, transform=axes[r, -1].transAxes, va="center", fontsize=9)
    fig.suptitle("Test images and their reconstructions")
    return save(fig, path)


def denoising(model: AutoEncoder, data: Data, n: int = 8, seed: int = 0, path=None) -> Figure:
    """Corrupted test images (top), the model's denoised outputs, and the clean images, with each row's PSNR."""
    from .evaluate import reconstruction_metrics

    _require_images(model, "denoising")
    index = torch.randperm(len(data.x_test), generator=torch.Generator().manual_seed(seed))[:n]
    clean = data.x_test[index]
    noise = model.config.objective
    noisy = corrupt(clean, noise, model.config.output, torch.Generator().manual_seed(seed))
    rows = [("noisy", noisy), ("denoised", reconstruct(model, noisy)), ("clean", clean)]
    fig = Figure(figsize=(1.3 * n + 2.2, 4.2))
    axes = fig.subplots(3, n, squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c in range(n):
            _show(axes[r, c], images[c])
        axes[r, 0].set_ylabel(label, fontsize=9)
        if r < 2:
            psnr = reconstruction_metrics(clean, images, unit=True)["psnr"]
            axes[r, -1].text(1.08, 0.5, f"PSNR {psnr:.1f} dB", transform=axes[r, -1].transAxes, va="center", fontsize=9)
    fig.suptitle(f"Denoising: {noise.noise} noise, level {noise.noise_level:g}")
    return save(fig, path)


def fitted_gaussian_samples(model: AutoEncoder, data: Data, n: int, seed: int = 0) -> torch.Tensor:
    """Codes drawn from a Gaussian fitted (mean and full covariance) to the training codes."""
    noise = torch.randn(n, model.config.latent_dim, generator=torch.Generator().manual_seed(seed))
    return gaussian_like(encode(model, data.x_train[:10000]).double(), noise).float()


def decode(model: AutoEncoder, z: torch.Tensor) -> torch.Tensor:
    return batched(model.decode, model, z)


GRID_MAX_SIDE = 16_384  # pixels: beyond it a grid is no picture to look at (and Pillow's limits come near)


def write_grid(images: torch.Tensor, path: str | Path, ncol: int | None = None, zoom: int | None = None) -> Path:
    """Tile images ``(N, C, H, W)`` in [0, 1] into one PNG (``ncol`` per row, default about square), each pixel drawn
    as ``zoom`` x ``zoom`` screen pixels (default: about 112 screen pixels per image, so that a digit can be seen,
    less where the grid would pass 4,096 pixels a side; 1 keeps the images' own pixels), written by Pillow
    atomically: the same images give the same bytes. A grid over 16,384 pixels a side at 1 is refused."""
    import io

    from PIL import Image

    ncol = ncol or int(np.ceil(np.sqrt(len(images))))
    side = max(ncol * images.shape[-1], int(np.ceil(len(images) / ncol)) * images.shape[-2])
    if side > GRID_MAX_SIDE:
        raise DataError(f"{path}: {len(images)} images make a grid {side} pixels a side (at most {GRID_MAX_SIDE}); "
                        "write a .npy, or a folder of PNGs (an --out without a suffix)")  # fmt: skip
    zoom = zoom or max(1, min(round(112 / images.shape[-2]), 4096 // side))
    grid = (_grid(images.detach().float().clamp(0, 1).cpu(), ncol) * 255).round().to(torch.uint8)
    grid = grid.repeat_interleave(zoom, 1).repeat_interleave(zoom, 2)
    buffer = io.BytesIO()
    Image.fromarray(grid[0].numpy() if grid.shape[0] == 1 else grid.permute(1, 2, 0).numpy()).save(buffer, "PNG")
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def prior_samples(panels: list[tuple[str, torch.Tensor]], path=None) -> Figure:
    """One grid of decoded samples per prior (title, images ``(N, C, H, W)``), side by side."""
    fig = Figure(figsize=(3.2 * len(panels), 3.6))
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (title, images) in zip(axes, panels):
        _show(ax, _grid(images, int(np.ceil(np.sqrt(len(images))))))
        ax.set_title(title, fontsize=9)
    fig.suptitle("Samples from each latent prior (decoded)")
    return save(fig, path)


def samples(model: AutoEncoder, data: Data, n: int = 36, seed: int = 0, path=None) -> Figure:
    """Decoded z ~ N(0, I) (left: the chapter's holes) beside z from a Gaussian fitted to training codes."""
    _require_images(model, "samples")
    z = torch.randn(n, model.config.latent_dim, generator=torch.Generator().manual_seed(seed))
    panels = [("z ~ N(0, I)", decode(model, z)),
              ("z ~ Gaussian fitted to training codes", decode(model, fitted_gaussian_samples(model, data, n, seed)))]  # fmt: skip
    fig = Figure(figsize=(10, 5.3))
    ncol = int(np.ceil(np.sqrt(n)))
    for ax, (title, images) in zip(fig.subplots(1, 2), panels):
        _show(ax, _grid(images, ncol))
        ax.set_title(title, fontsize=11)
    fig.suptitle("Decoding random codes")
    return save(fig, path)


def anomalies(fitted: Fitted, data: Data, n: int = 8, path=None) -> Figure:
    """The ``n`` test images with the highest anomaly score (the fitted model's own, as ``aekit score`` computes it):
    each image, its reconstruction and where the error is (the score's error per pixel,
    :meth:`aekit.core.fitted.Fitted.feature_errors`)."""
    model = fitted.model
    _require_images(model, "anomalies")
    x = data.x_test
    scores = torch.from_numpy(fitted.score(x))
    top = scores.argsort(descending=True)[:n]
    shown = x[top]
    rebuilt = reconstruct(model, shown).clamp(0, 1)
    # the score's own per-pixel part (blurred as the score blurs it), summed over channels: (n, H, W)
    errors = torch.from_numpy(fitted.feature_errors(shown)).reshape(len(shown), *model.config.input_shape).sum(1)
    fig = Figure(figsize=(1.3 * n + 1, 4.4), layout="constrained")
    axes = fig.subplots(3, n, squeeze=False)
    peak = float(errors.max()) or 1.0
    for j in range(len(top)):
        _show(axes[0, j], shown[j])
        _show(axes[1, j], rebuilt[j])
        axes[2, j].imshow(errors[j].numpy(), cmap="magma", vmin=0, vmax=peak, interpolation="nearest")
        axes[2, j].set_xticks([])
        axes[2, j].set_yticks([])
        axes[0, j].set_title(f"{float(scores[top[j]]):.3g}", fontsize=8)
    for ax, label in zip(axes[:, 0], ("input", "rebuilt", "error")):
        ax.set_ylabel(label)
    fig.suptitle(f"The {len(top)} most anomalous test images (anomaly score above each)")
    return save(fig, path)


def latent(model: AutoEncoder, data: Data, n: int = 1000, seed: int = 0, path=None) -> Figure:
    """The codes of ``n`` random test images, coloured by label: t-SNE, and PCA of the codes (raw if 2-D)."""
    from sklearn.manifold import TSNE

    index = torch.randperm(len(data.x_test), generator=torch.Generator().manual_seed(seed))[:n]
    codes = encode(model, data.x_test[index]).numpy()
    labels = data.y_test[index].numpy() if data.y_test is not None else None
    k = codes.shape[1]
    panels = []
    if k == 2:
        panels.append(("codes (2-D, as they are)", codes, ("z1", "z2")))
    elif k == 1:
        panels.append(("codes (1-D) against example index", np.c_[codes[:, 0], np.arange(len(codes))], ("z", "example")))
    distinct = len(np.unique(codes, axis=0))
    if k > 2:
        with np.errstate(invalid="ignore", divide="ignore"):  # codes all alike: no variance to explain, PCs of 0
            projected = pca_codes(torch.from_numpy(codes), torch.from_numpy(codes), 2)[0]
        panels.append(("PCA of the codes", projected, ("PC 1", "PC 2")))
    if distinct > 5:  # (scikit-learn's t-SNE of codes that are all alike divides by zero, and can crash)
        embedded = TSNE(n_components=2, random_state=42, perplexity=min(30.0, (len(codes) - 1) / 3)).fit_transform(codes)
        panels.insert(0, (f"t-SNE of the {k}-D codes", embedded, ("t-SNE 1", "t-SNE 2")))
    fig = Figure(figsize=(6 * len(panels) + 1, 5.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    colour = {"c": "tab:blue"} if labels is None else {"c": labels, "cmap": "tab10", "vmin": -0.5, "vmax": 9.5}
    for ax, (title, points, (xlabel, ylabel)) in zip(axes, panels):
        scatter = ax.scatter(points[:, 0], points[:, 1], s=7, alpha=0.75, **colour)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    if labels is not None:
        bar = fig.colorbar(scatter, ax=list(axes), ticks=range(int(labels.max()) + 1))
        bar.set_label("label")
    fig.suptitle(f"Latent codes of {len(codes)} test images" + ("" if distinct > 5 else
                 f" (they take {distinct} distinct value(s): no t-SNE map)"))  # fmt: skip
    return save(fig, path)


def interpolation(model: AutoEncoder, data: Data, pairs: int = 4, steps: int = 10, seed: int = 0, path=None) -> Figure:
    """Decode along the straight line between the codes of two test images, for a few random pairs."""
    _require_images(model, "interpolation")
    index = torch.randperm(len(data.x_test), generator=torch.Generator().manual_seed(seed))[: 2 * pairs]
    x = data.x_test[index]
    codes = encode(model, x)
    t = torch.linspace(0, 1, steps)[:, None]
    fig = Figure(figsize=(1.1 * (steps + 2), 1.25 * pairs + 0.6))
    axes = fig.subplots(pairs, steps + 2, squeeze=False)
    for p in range(pairs):
        a, b = codes[2 * p], codes[2 * p + 1]
        images = decode(model, (1 - t) * a + t * b)
        _show(axes[p, 0], x[2 * p])
        _show(axes[p, -1], x[2 * p + 1])
        for s in range(steps):
            _show(axes[p, s + 1], images[s])
    axes[0, 0].set_title("start", fontsize=9)
    axes[0, -1].set_title("end", fontsize=9)
    axes[0, 1].set_title("decoded along the line →", fontsize=9, loc="left")
    fig.suptitle("Interpolating between the codes of two test images")
    return save(fig, path)


def curves(history: list[dict], pca_sse: float | None = None, path=None) -> Figure:
    """Training loss and test error per epoch (left), test SSE per image against PCA's (right).

    A VAE's history adds a third panel: the ELBO's terms (reconstruction and KL) per epoch.
    """
    elbo = "train_kl" in history[0]
    fig = Figure(figsize=(16 if elbo else 11, 4), layout="constrained")
    left, right, *more = fig.subplots(1, 3 if elbo else 2)
    if elbo:
        terms = more[0]
        for key, label in (("train_recon", "reconstruction"), ("train_kl", "KL(q(z|x) || N(0, I))")):
            terms.plot([row["epoch"] for row in history], [row[key] for row in history], "o-", label=label)
        terms.set_xlabel("epoch")
        terms.set_ylabel("per example (nats for BCE)")
        terms.set_title("ELBO terms per epoch")
        terms.legend()
        terms.grid(alpha=0.3)
    epochs = [row["epoch"] for row in history]
    tested = [row for row in history if "test_sse_per_image" in row]  # --eval-every K leaves the others out
    left.plot(epochs, [row["train_loss"] for row in history], "o-", label="train loss")
    left.plot([r["epoch"] for r in tested], [r["test_mse_per_pixel"] for r in tested], "s-", label="test MSE per pixel")
    left.set_xlabel("epoch")
    left.set_ylabel("loss")
    left.set_yscale("log")
    left.legend()
    left.set_title("Loss per epoch")
    right.plot([r["epoch"] for r in tested], [r["test_sse_per_image"] for r in tested], "o-", color="tab:green",
               label="autoencoder")
    if pca_sse is not None:
        right.axhline(pca_sse, color="tab:red", linestyle="--", label="PCA, same code size")
    right.set_xlabel("epoch")
    right.set_ylabel("test SSE per image")
    right.legend()
    right.set_title("Test error per epoch")
    for ax in (left, right, *more):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return save(fig, path)


def error_vs_dim(dims: list[int], ae_sse: list[float], pca_sse: list[float], epochs: int | None = None,
                 path=None) -> Figure:  # fmt: skip
    """Test SSE per image against code size, for the autoencoder and for PCA."""
    fig = Figure(figsize=(6.5, 4.3), layout="constrained")
    ax = fig.subplots()
    ax.plot(dims, ae_sse, "o-", label="autoencoder" + (f" ({epochs} epochs each)" if epochs else ""))
    ax.plot(dims, pca_sse, "s--", label="PCA")
    for d, a, p in zip(dims, ae_sse, pca_sse):
        ax.annotate(f"{a:.1f}", (d, a), textcoords="offset points", xytext=(0, -13), ha="center", fontsize=8)
        ax.annotate(f"{p:.1f}", (d, p), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    ax.margins(x=0.08, y=0.12)  # room inside the frame for the labels above the top point and below the lowest
    ax.set_xscale("log", base=2)
    ax.set_xticks(dims, [str(d) for d in dims])
    ax.set_xlabel("code size k")
    ax.set_ylabel("test SSE per image")
    ax.set_title("Reconstruction error against code size")
    ax.grid(alpha=0.3)
    ax.legend()
    return save(fig, path)


def codebook(model: AutoEncoder, data: Data, path=None) -> Figure:
    """How often each codebook vector of a VQ model is used on the test set, most used first."""
    counts = codebook_counts(model, data.x_test).double()
    share = (counts / counts.sum()).sort(descending=True).values.numpy()
    p = share[share > 0]
    used, perplexity = int((share > 0).sum()), float(np.exp(-(p * np.log(p)).sum()))
    fig = Figure(figsize=(8, 3.6), layout="constrained")
    ax = fig.subplots()
    ax.bar(np.arange(len(share)), share, width=1.0, color="tab:blue")
    ax.set_xlabel("codebook vectors, most used first")
    ax.set_ylabel("share of test symbols")
    ax.set_title(f"Codebook usage: {used} of {len(share)} vectors used, perplexity {perplexity:.1f}")
    ax.grid(alpha=0.3)
    return save(fig, path)


def features(model: AutoEncoder, data: Data, n: int = 12, examples: int = 6, path=None) -> Figure:
    """A sparse autoencoder's ``n`` most frequent features on the test images: each one's decoder direction (red
    where it adds ink, blue where it takes it away) and the ``examples`` test images it is most active on."""
    _require_images(model, "features")
    codes = encode(model, data.x_test)  # (N, L)
    firing = (codes > 0).double().mean(0)
    chosen = firing.argsort(descending=True)[:n]
    columns = next(m for m in model.decoder.modules() if isinstance(m, torch.nn.Linear)).weight.detach().cpu()
    fig = Figure(figsize=(1.1 * (examples + 1) + 1.6, 1.15 * len(chosen) + 0.6), layout="constrained")
    axes = fig.subplots(len(chosen), examples + 1, squeeze=False)
    for r, j in enumerate(chosen.tolist()):
        direction = columns[:, j].reshape(model.input_shape)[0]
        peak = float(direction.abs().max()) or 1.0
        axes[r, 0].imshow(direction.numpy(), cmap="RdBu_r", vmin=-peak, vmax=peak, interpolation="nearest")
        axes[r, 0].set_ylabel(f"#{j}\n{float(firing[j]):.1%}", fontsize=8, rotation=0, ha="right", va="center")
        top = codes[:, j].argsort(descending=True)[:examples]
        for c, i in enumerate(top.tolist()):
            _show(axes[r, c + 1], data.x_test[i]) if codes[i, j] > 0 else axes[r, c + 1].axis("off")
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"The {len(chosen)} most frequent features (share of test images each fires on): direction, then "
                 "the images it is most active on", fontsize=9)  # fmt: skip
    return save(fig, path)


def codec_digits(originals: torch.Tensor, decoded: torch.Tensor, alone: np.ndarray, in_batch: np.ndarray,
                 path=None) -> Figure:  # fmt: skip
    """Test images (top) and their decodings from a codec's file, each with its bytes: in a file of its own and as
    its share of a file of all the test images."""
    n = len(originals)
    fig = Figure(figsize=(1.3 * n + 1.6, 3.3), layout="constrained")
    axes = fig.subplots(2, n, squeeze=False)
    for j in range(n):
        _show(axes[0, j], originals[j])
        _show(axes[1, j], decoded[j])
        axes[1, j].set_title(f"{alone[j]:.0f} B alone\n{in_batch[j]:.1f} B in batch", fontsize=7)
    axes[0, 0].set_ylabel("original")
    axes[1, 0].set_ylabel("decoded")
    fig.suptitle("Compressed: each image's bytes", fontsize=10)
    return save(fig, path)


# ------------------------------------------------------------------------------------------ the figure registry
# name -> (draw(fitted, data, history, metrics, path), needs image data). Every model gets the common figures;
# a body or an objective adds its own, keyed by its class. `aekit plot` and the report both read this.
COMMON_FIGURES = {
    "reconstructions": (lambda fit, data, history, metrics, path: reconstructions(fit.model, data, path=path), True),
    "samples": (lambda fit, data, history, metrics, path: samples(fit.model, data, path=path), True),
    "latent": (lambda fit, data, history, metrics, path: latent(fit.model, data, path=path), False),
    "interpolation": (lambda fit, data, history, metrics, path: interpolation(fit.model, data, path=path), True),
    "anomalies": (lambda fit, data, history, metrics, path: anomalies(fit, data, path=path), True),
    "curves": (lambda fit, data, history, metrics, path: curves(history, metrics.get("pca_test_sse_per_image"),
                                                                path=path), False),  # fmt: skip
}
PART_FIGURES = {
    Denoising: {"denoising": (lambda fit, data, history, metrics, path: denoising(fit.model, data, path=path), True)},
    TopK: {"features": (lambda fit, data, history, metrics, path: features(fit.model, data, path=path), True)},
    VectorQuantized: {"codebook": (lambda fit, data, history, metrics, path: codebook(fit.model, data, path=path),
                                   False)},  # fmt: skip
}
KINDS = (*COMMON_FIGURES, *(name for figures in PART_FIGURES.values() for name in figures))  # and error-vs-dim


def figures_for(config: ModelConfig) -> dict[str, tuple]:
    """The figures that apply to a model: the common ones and its body's and objective's, less those that need
    image data when its input is not an image."""
    figures = dict(COMMON_FIGURES)
    if not config.objective.dense_code:  # decoding random dense codes says nothing of a sparse autoencoder
        figures.pop("samples")
        figures.pop("interpolation")
    for part in (config.body, config.objective):
        figures.update(PART_FIGURES.get(type(part), {}))
    return {name: entry for name, entry in figures.items() if not entry[1] or is_image_data(config.input_shape)}


def draw(kind: str, fitted: Fitted, data: Data | None, history: list[dict], metrics: dict, path=None) -> Figure:
    """Draw figure ``kind`` for a fitted model; a kind that does not apply to it is refused with the reason."""
    model = fitted.model
    figures = figures_for(model.config)
    if kind not in figures:
        owners = [f"the {part.kind} {'objective' if issubclass(part, Objective) else 'body'}"
                  for part, names in PART_FIGURES.items() if kind in names]  # fmt: skip
        if owners:
            raise DataError(f"the {kind} figure belongs to {' and '.join(owners)}; this model is {model.config.name}")
        raise DataError(f"the {kind} figure needs image data (C, H, W); this model's input is "
                        f"{model.config.input_shape}")  # fmt: skip
    if kind == "curves" and not history:
        raise DataError("the curves figure needs a history: this run has no finished epoch")
    return figures[kind][0](fitted, data, history, metrics, path)


def series_scores(x: np.ndarray, scores: np.ndarray, threshold: float, worst: list, path=None,
                  names: tuple[str, ...] | None = None) -> Figure:  # fmt: skip
    """A long series ``(T, C)`` (up to 4 channels drawn, by ``names``) above its score per step and the threshold, and
    below them the worst windows (``(start, window, reconstruction, channel)``, each ``(C, W)``) beside their
    reconstructions, each in its most abnormal channel."""
    names = names or tuple(f"channel {c}" for c in range(x.shape[1]))
    steps = np.arange(len(x))
    fig = Figure(figsize=(11, 6.2), layout="constrained")
    grid = fig.add_gridspec(3, max(1, len(worst)), height_ratios=(1.2, 0.8, 1.0))
    top = fig.add_subplot(grid[0, :])
    for c in range(min(4, x.shape[1])):
        top.plot(steps, x[:, c], lw=0.7, label=names[c])
    above = scores > threshold
    for start, window, _, _ in worst:
        top.axvspan(start, start + window.shape[1], color="tab:red", alpha=0.12)
    top.set_title("the series (the worst windows shaded)" + (f"; the first 4 of {x.shape[1]} channels"
                                                             if x.shape[1] > 4 else ""), fontsize=9)  # fmt: skip
    if x.shape[1] > 1:
        top.legend(fontsize=7, loc="upper right")
    middle = fig.add_subplot(grid[1, :], sharex=top)
    middle.plot(steps, scores, lw=0.8, color="black")
    middle.axhline(threshold, color="tab:red", lw=0.8, ls="--", label=f"threshold {threshold:.3g}")
    middle.fill_between(steps, threshold, scores, where=above, color="tab:red", alpha=0.3,
                        label=f"{int(above.sum())} steps above")  # fmt: skip
    middle.set_title("anomaly score per step (its most abnormal channel's error over the windows covering it, "
                     "standardized on the training part)", fontsize=9)
    middle.legend(fontsize=7, loc="upper right")
    for i, (start, window, rebuilt, channel) in enumerate(worst):
        ax = fig.add_subplot(grid[2, i])
        offsets = np.arange(start, start + window.shape[1])
        ax.plot(offsets, window[channel], lw=0.9, label="window")
        ax.plot(offsets, rebuilt[channel], lw=0.9, ls="--", label="reconstruction")
        ax.set_title(f"steps {start}-{start + window.shape[1] - 1} ({names[channel]}, the most abnormal)", fontsize=8)
        ax.tick_params(labelsize=7)
        if i == 0:
            ax.legend(fontsize=7)
    return save(fig, path)
