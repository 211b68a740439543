"""Hinton & Salakhutdinov 2006, Fig. 2 (MNIST, 30-D codes): our row beside the paper's and our own PCA-30.

Trains a preset (default ``conv30``: convolutional body, 30-D code, cosine schedule, 40 epochs) with aekit on
the 60,000 training images and measures the 10,000 test images in the paper's unit: squared error summed over
the 784 pixels, averaged over images. Same as ``aekit train --preset conv30 --out runs/conv30``.
Run: ``python benchmarks/hinton2006.py [--preset conv30] [--epochs N] [--out runs/conv30]``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import aekit
from aekit.model.config import PRESETS

PAPER = [("deep autoencoder (Hinton & Salakhutdinov 2006)", 3.00), ("logistic PCA (same paper)", 8.01),
         ("PCA (same paper)", 13.87)]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="conv30", choices=sorted(PRESETS))
    parser.add_argument("--epochs", type=int, help="override the preset's epochs")
    parser.add_argument("--out", default=None, help="run directory (default: runs/<preset>)")
    args = parser.parse_args()

    preset = PRESETS[args.preset]
    model_config = preset["model"]
    train_config = aekit.TrainConfig(**preset.get("train", {}))
    if args.epochs:
        train_config = replace(train_config, epochs=args.epochs)
    began = time.perf_counter()
    _, metrics = aekit.train_run(args.out or f"runs/{args.preset}", model_config, aekit.DataConfig(name="mnist"),
                                 train_config, overwrite=True, progress=False, analysis=False)  # fmt: skip
    minutes = (time.perf_counter() - began) / 60
    assert metrics["latent_dim"] == 30, "the paper's table is for 30-D codes"
    print("\nMNIST test set, 30-D codes, squared error per image (summed over 784 pixels)")
    for name, sse in PAPER:
        print(f"  {name:<52}{sse:>7.2f}")
    print(f"  {'PCA-30, measured here':<52}{metrics['pca_test_sse_per_image']:>7.2f}")
    label = f"aekit {args.preset} ({model_config.name}, {train_config.epochs} epochs, {minutes:.0f} min)"
    print(f"  {label:<52}{metrics['test_sse_per_image']:>7.2f}")


if __name__ == "__main__":
    main()
