"""Sparse autoencoders scored against ground truth: synthetic data with known features, and MNIST strokes.

    python benchmarks/sae.py [--ks 2,4,8] [--rows 100000] [--epochs 10] [--out runs/sae]

Synthetic data (:func:`synthetic`): ``--features`` (256) random unit directions in ``--dims`` (64) dimensions; each
row fires each feature independently with a Zipf-like rate (the i-th most common fires about 1/(i+8)^0.8 as
often, scaled so a row fires ``--active`` (4) on average), each firing with a magnitude drawn from an exponential
of mean 1 or from |N(1, 0.3)| (``--magnitudes``: both by default), plus a little Gaussian noise. aekit trains
``aekit train --data train.npy --model sae --latent-dim 256 --k K`` (the defaults otherwise: 10 epochs, Adam,
lr 1e-3). Scored, per k:

- mean matched |cos|: the decoder's directions (``aekit features``, in the data's units) matched one to one to the
  true ones (Hungarian, scipy's ``linear_sum_assignment``), the mean |cosine| of the pairs, and the share above 0.9;
- dead latents (never active on the test rows), L0 (active per row) and the fraction of variance unexplained;
- beside them: PCA with as many components as the L0 (FVU; its directions are not features), a plain TopK loop
  (the textbook one: TopK on the encoder's output, no pre-bias, no unit-norm columns, no dead-latent loss, random
  init, the same epochs, batch and optimizer) and a ReLU autoencoder with an L1 penalty bisected (six fits) toward
  the same L0 (the L0 of an L1 code falls off a cliff as the penalty grows: the nearest one found is shown).

MNIST (``--mnist``): a 512-latent SAE with k=16 on the pixels; its features drawn as a grid (strokes).
"""

from __future__ import annotations

import argparse
import math
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.decomposition import PCA


def synthetic(rows: int, dims: int = 64, features: int = 256, active: float = 4.0, magnitudes: str = "exponential",
              seed: int = 0) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``(x (rows, dims) float32, directions (features, dims))``: sparse sums of known unit directions. The directions
    depend on nothing but the shapes (seed 0); ``seed`` draws the rows. ``magnitudes``: each firing's size,
    ``exponential`` (mean 1: a few large ones per row) or ``normal`` (|N(1, 0.3)|: all about alike, harder for a
    TopK code, which keeps the k largest)."""
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(features, dims))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    rate = 1 / (np.arange(features) + 8) ** 0.8  # Zipf-like: the i-th most common feature fires ~1/(i+8)^0.8
    rate = np.minimum(rate * active / rate.sum(), 1.0)[rng.permutation(features)]
    rng = np.random.default_rng(seed + 1)
    fires = rng.random((rows, features)) < rate
    size = (rows, features)
    magnitude = rng.exponential(1.0, size) if magnitudes == "exponential" else np.abs(rng.normal(1.0, 0.3, size))
    x = (fires * magnitude) @ directions + 0.01 * rng.normal(size=(rows, dims))
    return x.astype(np.float32), directions


def matched(found: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Mean |cos| of the one-to-one matching of ``found`` directions to ``truth`` (Hungarian), and the share > 0.9."""
    found = found / np.linalg.norm(found, axis=1, keepdims=True).clip(1e-12)
    cos = np.abs(truth @ found.T)  # (true, found)
    rows, cols = linear_sum_assignment(-cos)
    best = cos[rows, cols]
    return float(best.mean()), float((best > 0.9).mean())


def fvu(x: np.ndarray, rebuilt: np.ndarray) -> float:
    return float(((x - rebuilt) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())


def plain_loop(x: np.ndarray, width: int, k: int, epochs: int, l1: float | None = None, seed: int = 0):
    """The textbook loop: a linear encoder, TopK of its output (or, with ``l1``, ReLU and an L1 penalty on the code),
    a linear decoder, Adam at 1e-3, batches of 128, MSE; no pre-bias, no unit columns, no dead-latent loss.
    Returns ``code(rows) -> codes`` and the decoder."""
    torch.manual_seed(seed)
    data = torch.from_numpy(x)
    encoder, decoder = torch.nn.Linear(x.shape[1], width), torch.nn.Linear(width, x.shape[1])
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=1e-3)

    def code(rows: torch.Tensor) -> torch.Tensor:
        pre = encoder(rows)
        if l1 is not None:
            return torch.relu(pre)
        top = torch.topk(pre, k, dim=1)
        return torch.zeros_like(pre).scatter_(1, top.indices, torch.relu(top.values))

    for epoch in range(epochs):
        for index in torch.randperm(len(data), generator=torch.Generator().manual_seed(epoch)).split(128):
            batch = data[index]
            z = code(batch)
            loss = torch.nn.functional.mse_loss(decoder(z), batch) + (l1 * z.abs().sum(1).mean() if l1 else 0)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return code, decoder


def aekit_sae(train: Path, out: Path, k: int, epochs: int | None) -> float:
    """Train with the CLI, as a user does (its defaults: 10 epochs); the seconds it took."""
    began = time.perf_counter()
    command = [sys.executable, "-m", "aekit", "train", "--data", str(train), "--model", "sae", "--latent-dim", "256",
               "--k", str(k), "--out", str(out), "--overwrite", "--no-progress", "--device", "cpu"]
    subprocess.run(command + (["--epochs", str(epochs)] if epochs else []), check=True, capture_output=True)
    return time.perf_counter() - began


def line(name: str, directions: np.ndarray, x: np.ndarray, rebuilt: np.ndarray, codes: np.ndarray,
         truth: np.ndarray, seconds: float) -> tuple[float, float, float, float]:  # fmt: skip
    cos, share = matched(directions, truth)
    l0 = float((codes > 0).sum(1).mean())
    dead = float(((codes > 0).sum(0) == 0).mean())
    error = fvu(x, rebuilt)
    print(f"  {name:<36}{cos:>9.3f}{share:>7.2f}{dead:>7.1%}{l0:>7.2f}{error:>7.3f}{seconds:>8.0f} s", flush=True)
    return cos, dead, l0, error


def compare(k: int, x: np.ndarray, x_test: np.ndarray, truth: np.ndarray, folder: Path, epochs: int) -> None:
    import aekit

    np.save(folder / "train.npy", x)
    print(f"  {'':<36}{'matched':>9}{'> 0.9':>7}{'dead':>7}{'L0':>7}{'FVU':>7}{'train':>10}")
    seconds = aekit_sae(folder / "train.npy", folder / f"k{k}", k, None)
    run = aekit.load_run(folder / f"k{k}")
    held = run.space.to_model(x_test)
    ours = line(f"aekit --model sae --k {k} (defaults)", run.analysis.features()["directions"], x_test,
                run.reconstruct(held).numpy(), run.encode(held).numpy(), truth, seconds)  # fmt: skip
    began = time.perf_counter()
    code, decoder = plain_loop(x, 256, k, epochs)
    with torch.no_grad():
        z = code(torch.from_numpy(x_test))
        plain = line(f"plain TopK loop ({epochs} epochs)", decoder.weight.T.numpy(), x_test, decoder(z).numpy(),
                     z.numpy(), truth, time.perf_counter() - began)  # fmt: skip
    best, low, high = None, math.log(0.003), math.log(0.06)  # the L1 penalty (on the code's sum) bisected to L0 = k
    for _ in range(6):
        l1 = math.exp((low + high) / 2)
        began = time.perf_counter()
        code, decoder = plain_loop(x, 256, k, epochs, l1=l1)
        with torch.no_grad():
            z = code(torch.from_numpy(x_test))
            l0 = float((z > 0).sum(1).float().mean())
            if best is None or abs(l0 - k) < abs(best[0] - k):
                best = (l0, l1, decoder.weight.T.numpy(), decoder(z).numpy(), z.numpy(), time.perf_counter() - began)
        low, high = (math.log(l1), high) if l0 > k else (low, math.log(l1))  # denser than k: a larger penalty
    line(f"ReLU + L1 {best[1]:.3g} (L0 nearest {k})", best[2], x_test, best[3], best[4], truth, best[5])
    pca = PCA(k).fit(x)
    print(f"  {'PCA, ' + str(k) + ' components':<36}{'':>30}{fvu(x_test, pca.inverse_transform(pca.transform(x_test))):>7.3f}")
    print(f"  aekit - plain loop: matched |cos| {ours[0] - plain[0]:+.3f}, dead {ours[1] - plain[1]:+.1%}, FVU "
          f"{ours[3] - plain[3]:+.3f}", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ks", default="4,2,8")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=10, help="the plain loops' epochs (aekit: its defaults)")
    parser.add_argument("--magnitudes", default="exponential,normal")
    parser.add_argument("--out", type=Path, default=Path("runs/sae"))
    parser.add_argument("--mnist", action="store_true", help="also MNIST pixels: 512 latents, k=16, its features drawn")
    args = parser.parse_args()
    print(f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} "
          "threads")  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    for magnitudes in args.magnitudes.split(","):
        x, truth = synthetic(args.rows, magnitudes=magnitudes)
        x_test, _ = synthetic(10_000, magnitudes=magnitudes, seed=1)  # held-out rows of the same features
        for k in (int(v) for v in args.ks.split(",")):
            print(f"\n{magnitudes} magnitudes, k={k}: {args.rows} rows, 256 features in 64 dimensions, ~4 active a row; "
                  "scored on 10,000 held-out rows")  # fmt: skip
            compare(k, x, x_test, truth, args.out, args.epochs)
    if args.mnist:
        mnist(args.out)


def mnist(folder: Path) -> None:
    """A sparse autoencoder of MNIST's pixels (512 latents, 16 active): its metrics beside PCA-16, its features drawn."""
    import aekit

    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "aekit", "train", "--model", "sae", "--latent-dim", "512", "--k", "16",
                    "--out", str(folder / "mnist"), "--overwrite", "--no-progress"], check=True, capture_output=True)
    run = aekit.load_run(folder / "mnist")
    m = run.metrics()
    print(f"\nMNIST pixels, 512 latents, k=16 ({time.perf_counter() - began:.0f} s): L0 {m['sae_l0']:.2f}, dead "
          f"{m['sae_dead']:.1%}, FVU {m['sae_fvu']:.3f} beside PCA-{m['sae_pca_components']} {m['sae_pca_fvu']:.3f}, "
          f"shrinkage {m['sae_shrinkage']:.3f}")  # fmt: skip
    run.analysis.draw("features", Path("docs"))
    print("features drawn: docs/features.png")


if __name__ == "__main__":
    main()
