"""A codec's rate beside PCA transform coding at that rate: the same quantizer and entropy coder with a linear
transform (:class:`PCACoding`), measured when a codec's training ends and by ``aekit evaluate``."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..analysis.evaluate import fit_pca, flat_rows
from ..core.fitted import encode
from ..core.space import Data
from ..model.autoencoder import AutoEncoder
from .coder import Tables, quantized


class PCACoding:
    """Transform coding with PCA, the baseline of a codec: the first ``components`` principal components of the
    training rows, each coefficient rounded to a multiple of one ``step`` and coded under the training rows' histogram
    of it (frozen to integer tables as a codec's are, :class:`aekit.codec.coder.Tables`): the same quantizer and coder as
    the autoencoder's, with a linear transform. A larger step: fewer bits, more error."""

    def __init__(self, x_train: torch.Tensor, components: int = 100):
        self.pca = fit_pca(x_train, components)
        self.train = self.pca.transform(flat_rows(x_train))

    def symbols(self, coefficients: np.ndarray, step: float) -> np.ndarray:
        return np.round(coefficients / step).astype(np.int64)

    def tables(self, step: float):
        codes = self.symbols(self.train, step)
        low = codes.min(0)
        frequencies = []
        for c in range(codes.shape[1]):
            counts = np.bincount(codes[:, c] - low[c]).astype(np.float64) + 0.5  # a symbol never seen still costs
            frequencies.append(quantized(counts / counts.sum()))
        return Tables(low.astype(np.int64), frequencies)

    def measure(self, x_test: torch.Tensor, step: float) -> tuple[float, float]:
        """``(bits per row, PSNR)`` of the test rows coded with ``step`` (bits: the tables' ideal cost)."""
        tables = self.tables(step)
        symbols, _ = tables.clip(self.symbols(self.pca.transform(flat_rows(x_test)), step))
        decoded = (symbols + tables.offsets) * step
        rows = self.pca.inverse_transform(decoded)
        mse = float(np.mean((rows - flat_rows(x_test)) ** 2))
        return float(tables.bits(symbols + tables.offsets).mean()), 10 * math.log10(1 / mse)

    def at_rate(self, x_test: torch.Tensor, bits: float) -> tuple[float, float, float]:
        """``(step, bits, PSNR)`` with the step that spends about ``bits`` per row (bisection on the step's log)."""
        low, high = math.log(1e-3), math.log(100.0)
        for _ in range(30):
            middle = (low + high) / 2
            spent, _ = self.measure(x_test, math.exp(middle))
            low, high = (middle, high) if spent > bits else (low, middle)
        step = math.exp((low + high) / 2)
        return (step, *self.measure(x_test, step))


def codec_metrics(model: AutoEncoder, data: Data, tables) -> dict[str, float]:
    """A codec's rate on the test rows, in bits per row: as its density estimates it (``rate_bits_estimated``) and
    under its frozen integer tables (``rate_bits_tables``: what the coder spends, up to a few bytes a stream), beside
    PCA transform coding at that rate (:class:`PCACoding`: its PSNR; the codec's own is ``psnr``)."""
    codes = encode(model, data.x_test).to(torch.int64)
    with torch.no_grad():
        estimated = float(model.bottleneck.bits(codes.double()).mean())
    spent = float(tables.bits(codes.numpy()).mean())
    step, bits, psnr = PCACoding(data.x_train).at_rate(data.x_test, spent)
    return {"rate_bits_estimated": estimated, "rate_bits_tables": spent, "pca_coding_bits": bits,
            "pca_coding_psnr": psnr, "pca_coding_step": step}  # fmt: skip
