"""Rate and distortion on the 10,000 MNIST test digits: aekit's learned codec beside PNG, WebP, JPEG and PCA coding.

    python benchmarks/codec.py [--lmbdas 0.04,0.02,0.01,0.005] [--epochs 30] [--runs runs/codec] [--figure docs/codec.png]

Each row is bytes per digit and PSNR (10 log10(1/MSE) on pixels in [0, 1]) over the test set.

- aekit: ``aekit train --preset codec --lmbda L`` (``--epochs``; a run already in ``--runs/lL`` with those settings
  is reused), then ``Run.compress`` of the test set: the whole file over 10,000 ("file", its header and checksum
  counted) beside the streams alone ("payload"), with one stream for all digits and with one stream per digit
  (each decodable alone). The rate the model estimated is printed beside the file's. The defaults' row is
  ``--preset codec`` as it is (no ``--lmbda``).
- PCA coding: the same quantizer and coder with a linear transform (:class:`aekit.codec.metrics.PCACoding`: 100
  principal components of the training digits, one rounding step, tables from the training digits' histograms,
  the same ANS coder and container), at several steps.
- PNG (optimize), WebP lossless, WebP lossy and JPEG at several qualities (Pillow): one file per digit, its bytes.

Prints a table and the CPU; writes the rate-distortion figure.
"""

from __future__ import annotations

import argparse
import io
import platform
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import aekit
from aekit.codec.coder import decode_streams, encode_streams, pack, unpack
from aekit.codec.metrics import PCACoding
from aekit.data.datasets import load_mnist_arrays


def psnr(decoded: np.ndarray, original: np.ndarray) -> float:
    """10 log10(1 / MSE) on [0, 1] pixels; infinite for a lossless codec."""
    mse = float(np.mean((decoded.astype(np.float64) - original) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1 / mse)


def image_codecs(images: np.ndarray) -> list[tuple[str, float, float]]:
    """(name, bytes per digit, PSNR) of Pillow's codecs, one file per digit."""
    rows = []
    settings = [("PNG", dict(format="PNG", optimize=True)),
                ("WebP lossless", dict(format="WEBP", lossless=True, quality=100, method=6))]
    settings += [(f"WebP q{q}", dict(format="WEBP", quality=q, method=6)) for q in (0, 10, 30, 60)]
    settings += [(f"JPEG q{q}", dict(format="JPEG", quality=q)) for q in (5, 10, 30, 60)]
    original = images.astype(np.float64) / 255
    for name, options in settings:
        sizes, decoded = [], np.empty_like(images)
        for i, image in enumerate(images):
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, **options)
            sizes.append(buffer.tell())
            buffer.seek(0)
            decoded[i] = np.asarray(Image.open(buffer).convert("L"))
        rows.append((name, float(np.mean(sizes)), psnr(decoded / 255, original)))
    return rows


def pca_coding(x_train: torch.Tensor, x_test: torch.Tensor, steps) -> list[tuple[str, float, float, float, float]]:
    """(name, file bytes per digit, payload bytes per digit, per-digit-stream bytes per digit, PSNR) of PCA coding."""
    coder, rows = PCACoding(x_train), []
    test = coder.pca.transform(x_test.reshape(len(x_test), -1).numpy())
    for step in steps:
        tables = coder.tables(step)
        symbols, _ = tables.clip(coder.symbols(test, step))
        codes = symbols + tables.offsets
        streams, _ = encode_streams(codes, tables)
        file = pack(streams, len(codes), codes.shape[1], (1, 28, 28), b"\0" * 32)
        assert np.array_equal(decode_streams(streams, len(codes), tables), codes)  # it decodes
        alone, _ = encode_streams(codes, tables, per_item=True)
        each = len(pack(alone, len(codes), codes.shape[1], (1, 28, 28), b"\0" * 32))
        decoded = coder.pca.inverse_transform(codes * step)
        rows.append((f"PCA coding, step {step:g}", len(file) / len(codes), sum(4 * len(s) for s in streams) /
                     len(codes), each / len(codes), psnr(decoded, x_test.reshape(len(x_test), -1).numpy())))  # fmt: skip
    return rows


def codec_run(folder: Path, lmbda: float | None, epochs: int | None) -> aekit.Run:
    """The codec preset (with ``lmbda``, ``epochs`` if given) trained into ``folder``, or found there already."""
    options = {} if lmbda is None else {"lmbda": lmbda}
    config = aekit.make_config(base=aekit.PRESETS["codec"]["model"], **options)
    train = aekit.TrainConfig(**{**aekit.PRESETS["codec"]["train"], **({"epochs": epochs} if epochs else {})})
    if (folder / "metrics.json").is_file():
        run = aekit.load_run(folder)
        if run.model_config.objective == config.objective and run.train_config.epochs == train.epochs:
            return run
    began = time.perf_counter()
    aekit.train_run(folder, config, aekit.DataConfig(), train, overwrite=True, progress=False, analysis=False)
    print(f"  trained {folder} in {time.perf_counter() - began:.0f} s", flush=True)
    return aekit.load_run(folder)


def learned(run: aekit.Run, x_test: torch.Tensor, name: str) -> tuple:
    """(name, file, payload, per-digit file bytes per digit, PSNR, estimated bytes per digit) of a codec run."""
    n = len(x_test)
    file = run.codec.compress(x_test)
    alone = run.codec.compress(x_test, per_item=True)
    decoded = run.codec.decompress(file)
    payload = sum(4 * len(s) for s in unpack(file).streams)
    estimated = float(run.codec.rate_bits(x_test).sum()) / 8
    return (name, len(file) / n, payload / n, len(alone) / n, psnr(decoded.numpy(), x_test.numpy()), estimated / n)


def figure(rows: list[tuple[str, float, float]], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.subplots()
    groups: dict[str, list[tuple[float, float]]] = {}
    for name, size, quality in rows:
        if not np.isfinite(quality):  # lossless: a line at the top, labelled
            ax.axvline(size, color="0.6", linestyle=":", linewidth=1)
            ax.annotate(f"{name} (lossless)", (size, 0.02), xycoords=("data", "axes fraction"), rotation=90,
                        fontsize=7, color="0.4", ha="right")  # fmt: skip
            continue
        key = name.split(" q")[0].split(",")[0].split(" (")[0]
        groups.setdefault(key, []).append((size, quality))
    for key, points in groups.items():
        points.sort()
        style = "o-" if len(points) > 1 else "s"
        ax.plot([p[0] for p in points], [p[1] for p in points], style, label=key)
    ax.set_xscale("log")
    ax.set_xlabel("bytes per digit (log scale; the file's, header counted)")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title("MNIST test digits: rate and distortion")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lmbdas", default="0.04,0.02,0.005")
    parser.add_argument("--epochs", type=int, help="epochs per codec (default: the preset's)")
    parser.add_argument("--runs", type=Path, default=Path("runs/codec"))
    parser.add_argument("--figure", type=Path, default=Path("docs/codec.png"))
    args = parser.parse_args()
    print(f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    images, _ = load_mnist_arrays(train=False)
    train_images, _ = load_mnist_arrays(train=True)
    x_test = torch.from_numpy(images[:, None].astype(np.float32) / 255)
    x_train = torch.from_numpy(train_images[:, None].astype(np.float32) / 255)
    rows = []
    print(f"{'':<34}{'file B/digit':>13}{'payload':>9}{'per-digit streams':>19}{'PSNR dB':>9}{'estimated':>11}")
    runs = [("aekit codec (defaults)", codec_run(args.runs / "default", None, args.epochs))]
    runs += [(f"aekit codec, lmbda {l:g}", codec_run(args.runs / f"l{l:g}", l, args.epochs))
             for l in (float(v) for v in args.lmbdas.split(","))]  # fmt: skip
    for name, run in runs:
        row = learned(run, x_test, name)
        rows.append((name.replace(" (defaults)", ""), row[1], row[4]))
        print(f"{name:<34}{row[1]:>13.2f}{row[2]:>9.2f}{row[3]:>19.2f}{row[4]:>9.2f}{row[5]:>11.2f}   file / estimate "
              f"{row[1] / row[5]:.4f}", flush=True)  # fmt: skip
    for name, file, payload, each, quality in pca_coding(x_train, x_test, (0.6, 0.9, 1.3, 2.0)):
        rows.append(("PCA coding", file, quality))
        print(f"{name:<34}{file:>13.2f}{payload:>9.2f}{each:>19.2f}{quality:>9.2f}", flush=True)
    for name, size, quality in image_codecs(images):
        rows.append((name, size, quality))
        print(f"{name:<34}{size:>13.2f}{'':>9}{'':>19}{quality:>9.2f}", flush=True)
    figure(rows, args.figure)
    print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
