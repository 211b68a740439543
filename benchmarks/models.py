"""Every aekit model on MNIST at code size 32, the same number of epochs each, in one table beside PCA-32.

Columns: test SSE per image, PSNR, logistic-regression probe accuracy on the codes, the holes measure (how well
a 5-NN classifier tells z ~ N(0, I) from real codes: 0.5 = no holes, 1.0 = all holes) and seconds per epoch.
The VAE is trained with BCE (its usual likelihood), the others with the chapter's MSE. Every model uses its
body's and objective's defaults (vq: 8 slices of the code, 512 codebook vectors).
Run: ``python benchmarks/models.py [--epochs 5] [--models mlp,conv,...]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import aekit
from aekit.model.config import SHORTCUTS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--models", default=",".join(sorted(SHORTCUTS)),
                        help="shortcuts, or body+objective pairs such as conv+vae")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models.split(","):
            body, objective = name.split("+") if "+" in name else SHORTCUTS[name]
            loss = "bce" if objective == "vae" else "mse"
            config = aekit.make_config(body=body, objective=objective, latent_dim=32)
            history, m = aekit.train_run(Path(folder) / name, config,
                                         aekit.DataConfig(name="mnist"), aekit.TrainConfig(epochs=args.epochs, loss=loss),
                                         progress=False)  # fmt: skip
            seconds = statistics.median(row["seconds"] for row in history)
            rows.append((name, m["test_sse_per_image"], m["psnr"], m["probe_logreg_ae"], m["holes"], seconds))
            print(f"done: {name}", flush=True)
    pca = ("PCA-32", m["pca_test_sse_per_image"], m["pca_psnr"], m["probe_logreg_pca"], float("nan"), 0.0)
    print(f"\nMNIST test set, code size 32, {args.epochs} epochs each")
    print(f"{'model':<16}{'SSE/image':>10}{'PSNR':>8}{'probe':>8}{'holes':>8}{'s/epoch':>9}")
    for name, sse, psnr, probe, hole, sec in [pca, *rows]:
        print(f"{name:<16}{sse:>10.3f}{psnr:>8.2f}{probe:>8.3f}{hole:>8.3f}{sec:>9.2f}")


if __name__ == "__main__":
    main()
