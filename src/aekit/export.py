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
                                         latent-distance score (``score.safetensors``) that score

Needs the ``onnx`` extra (``pip install 'aekit[onnx]'``: onnx and onnxscript for torch's exporter; onnxruntime to
run the graphs).
"""

from __future__ import annotations

import io
import logging
import math
import warnings
from contextlib import redirect_stdout
from pathlib import Path

import torch
from torch import nn

from .files import atomic_write_bytes
from .evaluate import LatentScore
from .space import Scaler
from .errors import AekitError, ConfigError
from .models import AutoEncoder

log = logging.getLogger(__name__)

PARTS = ("encoder", "decoder", "autoencoder", "score")
OPSET = 18


class Exported(nn.Module):
    """One part of a trained model with its scaling, as a plain ``forward`` for the exporter."""

    def __init__(self, model: AutoEncoder, scaler: Scaler | None, part: str, latent: LatentScore | None = None):
        super().__init__()
        if part not in PARTS:
            raise ConfigError(f"unknown part {part!r}; choose one of {list(PARTS)}")
        self.model, self.part = model.eval(), part
        standard = scaler is not None
        self.register_buffer("mean", scaler.mean.clone() if standard else torch.zeros(model.input_shape))
        self.register_buffer("std", scaler.std.clone() if standard else torch.ones(model.input_shape))
        self.standard = standard
        self.latent = latent is not None and part == "score"  # the score with the code's distance (aekit score's)
        if self.latent:
            for name, value in latent.tensors().items():
                self.register_buffer(f"latent_{name}", value.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.part == "decoder":
            return self.unscale(self.model.decode(x))
        x = (x - self.mean) / self.std if self.standard else x
        if self.part == "encoder":
            return self.model.encode(x)
        if self.part == "autoencoder":
            return self.unscale(self.model(x))
        if not self.latent:
            return self.model.anomaly_score(x)
        score = LatentScore(self.latent_code_mean, self.latent_precision, self.latent_stats)
        return score.combine(self.model.anomaly_score(x), self.model.encode(x))

    def unscale(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean if self.standard else x

    def example(self, batch: int = 2) -> torch.Tensor:
        device = self.mean.device
        if self.part == "decoder":
            return torch.zeros(batch, self.model.config.latent_dim, device=device)
        return torch.rand(batch, *self.model.input_shape, device=device)


def io_names(part: str) -> tuple[str, str]:
    return ("z" if part == "decoder" else "x"), {"encoder": "z", "score": "score"}.get(part, "x_hat")


def export_onnx(model: AutoEncoder, scaler: Scaler | None, path: str | Path, part: str = "autoencoder",
                latent: LatentScore | None = None) -> Path:  # fmt: skip
    """Write ``part`` of ``model`` (with ``scaler`` folded in; for ``score``, the run's latent-distance score if it has
    one) to ``path`` as ONNX with a dynamic batch axis."""
    try:
        import onnxscript  # noqa: F401  (torch's exporter needs it)
    except ImportError:
        raise AekitError("ONNX export needs the 'onnx' extra: pip install 'aekit[onnx]'") from None
    module = Exported(model.cpu(), scaler, part, latent)
    name_in, name_out = io_names(part)
    batch = torch.export.Dim("batch", min=1, max=2**31 - 1)
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):  # the exporter's progress chatter
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, (module.example(),), input_names=[name_in], output_names=[name_out],
                                    dynamic_shapes=({0: batch},), opset_version=OPSET, dynamo=True,
                                    verbose=False)  # fmt: skip
    buffer = io.BytesIO()
    program.save(buffer)
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue())
    log.info("wrote %s (%s, %d weights)", path, part, sum(math.prod(p.shape) for p in model.parameters()))
    return path
