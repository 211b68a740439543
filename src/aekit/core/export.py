"""ONNX export of a run: the encoder, the decoder, the whole autoencoder or the anomaly score, as one graph.

Each graph takes raw inputs in the data's own units and has a dynamic batch axis: a run trained on standardized
data has its scaler folded in (``(x - mean) / std`` on the way in, ``x * std + mean`` on the way out), so a
service feeds rows exactly as they were in the training file. Pixel data (scaled to [0, 1]) goes in as
float32 values in [0, 1]. The parts:

    encoder       x (N, *input_shape) -> z (N, latent_dim)   (a VAE's posterior mean; a VQ model's quantized code)
    decoder       z (N, latent_dim)   -> x_hat (N, *input_shape)
    autoencoder   x                   -> x_hat
    score         x                   -> score (N,): the number ``aekit score`` writes: the mean squared
                                         reconstruction error per feature in model space, or with the run's
                                         latent-distance score (``score.safetensors``) that score; a series
                                         run's: a series x (T, C) -> score (T,), one per time step

Needs the ``onnx`` extra (``pip install 'aekit[onnx]'``: onnx and onnxscript for torch's exporter; onnxruntime to
run the graphs).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import warnings
from contextlib import redirect_stdout
from pathlib import Path

import torch
from torch import nn

from ..errors import AekitError, ConfigError
from ..io.files import atomic_write_bytes
from .fitted import Fitted, ScoreGraph
from .series import most_abnormal, overlap_mean

log = logging.getLogger(__name__)

PARTS = ("encoder", "decoder", "autoencoder", "score")
OPSET = 18


class SeriesScore(nn.Module):
    """The ``score`` graph of a series run: a long series ``(T, C)`` in the data's units -> one score per step
    ``(T,)``, as :func:`aekit.core.series.step_scores` computes it: every window (stride 1) gathered, its error in
    each channel from the fitted score's per-feature errors, then the one step rule that Python runs too
    (:func:`~aekit.core.series.overlap_mean`, :func:`~aekit.core.series.most_abnormal`): each step the mean over the
    windows that cover it, standardized by the channel ``moments`` and the largest channel taken (the channels' mean
    without them)."""

    def __init__(self, fitted: Fitted, moments=None):
        super().__init__()
        self.channels, self.window = fitted.space.input_shape
        mean, std = fitted.space.affine()
        self.register_buffer("mean", mean[:, 0].clone())
        self.register_buffer("std", std[:, 0].clone())
        self.score = ScoreGraph(fitted.model.eval(), fitted.score_spec)
        if moments is None:
            self.moments = None  # the channels' mean, unstandardized
        else:
            self.register_buffer("moments", torch.as_tensor(moments, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        steps = torch.arange(x.shape[0] - self.window + 1, device=x.device)
        windows = x[steps[:, None] + torch.arange(self.window, device=x.device)].transpose(1, 2)  # (N, C, W)
        errors = self.score.feature_errors(windows).reshape(-1, self.channels, self.window).sum(2) * self.channels
        return most_abnormal(overlap_mean(errors.float(), self.window), self.moments)  # (T,): the one step rule

    def example(self, steps: int = 0) -> torch.Tensor:
        return torch.randn(steps or 2 * self.window + 3, self.channels, device=self.mean.device)


class Exported(nn.Module):
    """One part of a fitted model with its space's scaling folded in, as a plain ``forward`` for the exporter: rows
    in the data's units, any batch. The ``score`` part is the fitted model's own :class:`aekit.core.fitted.ScoreGraph`."""

    def __init__(self, fitted: Fitted, part: str):
        super().__init__()
        if part not in PARTS:
            raise ConfigError(f"unknown part {part!r}; choose one of {list(PARTS)}")
        self.model, self.part, self.input_shape = fitted.model.eval(), part, fitted.space.input_shape
        mean, std = fitted.space.affine()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.standard = fitted.space.scaler is not None
        # the model in float32; the score's sums and distances in float64 as Fitted.score computes them (a float32
        # distance to the nearest codes lost 5e-4 to rounding), the result float32
        self.score = ScoreGraph(self.model, fitted.score_spec) if part == "score" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.part == "decoder":
            return self.unscale(self.model.decode(x))
        x = x.reshape(-1, *self.input_shape)  # flat rows or images alike
        x = (x - self.mean) / self.std if self.standard else x
        if self.part == "encoder":
            return self.model.encode(x)
        if self.part == "autoencoder":
            return self.unscale(self.model(x))
        return self.score(x).float()

    def unscale(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean if self.standard else x

    def example(self, batch: int = 2) -> torch.Tensor:
        device = self.mean.device
        if self.part == "decoder":
            return torch.zeros(batch, self.model.config.latent_dim, device=device)
        return torch.rand(batch, *self.input_shape, device=device)


def io_names(part: str) -> tuple[str, str]:
    return ("z" if part == "decoder" else "x"), {"encoder": "z", "score": "score"}.get(part, "x_hat")


def export_onnx(fitted: Fitted, path: str | Path, part: str = "autoencoder", series: bool = False,
                moments=None) -> Path:  # fmt: skip
    """Write ``part`` of a fitted model (its scaling folded in; for ``score``, its own anomaly score) to ``path`` as
    ONNX with a dynamic batch axis. ``series``: the model is a series run's window model, and its ``score`` graph
    takes a long series ``(T, C)`` (T dynamic, at least one window) and gives one score per step (:class:`SeriesScore`,
    standardized by the run's channel ``moments``)."""
    try:
        import onnxscript  # noqa: F401  (torch's exporter needs it)
    except ImportError:
        raise AekitError("ONNX export needs the 'onnx' extra: pip install 'aekit[onnx]'") from None
    fitted.model.cpu()
    module = SeriesScore(fitted, moments) if series and part == "score" else Exported(fitted, part)
    name_in, name_out = io_names(part)
    low = module.window if isinstance(module, SeriesScore) else 1
    batch = torch.export.Dim("steps" if low > 1 else "batch", min=low, max=2**31 - 1)
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()), quiet_exporter():  # the exporter's chatter
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, (module.example(),), input_names=[name_in], output_names=[name_out],
                                    dynamic_shapes=({0: batch},), opset_version=OPSET, dynamo=True,
                                    verbose=False)  # fmt: skip
    buffer = io.BytesIO()
    program.save(buffer)
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue())
    weights = {"encoder": fitted.model.encoder, "decoder": fitted.model.decoder}.get(part, fitted.model)
    log.debug("wrote %s (%s, %d weights)", path, part, sum(math.prod(p.shape) for p in weights.parameters()))
    return path


@contextlib.contextmanager
def quiet_exporter():
    """torch's exporter logs through ``logging`` as it goes (unused nodes removed, optional packages missing): a user
    asked for a file, not for that. Its loggers are held at ERROR for the export."""
    names = [name for name in logging.root.manager.loggerDict if name.startswith(("torch", "onnx"))]
    loggers = [logging.getLogger(name) for name in {*names, "torch", "onnxscript", "onnx_ir", "onnx"}]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
