"""A codec run's capability (``run.codec``): compress rows into a file's bytes and decode them back, as a
CompressAI model owns its ``compress`` / ``decompress``. Built from the fitted model, its frozen tables and the
bytes of the weights it was trained with (the file's header names them by SHA-256)."""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from ..core.fitted import Fitted
from ..errors import DataError
from .coder import Tables, decode_streams, encode_streams, model_digest, pack, unpack

log = logging.getLogger(__name__)


class Codec:
    """The codec of a run trained with the rate objective: its :class:`~aekit.codec.coder.Tables` and the model."""

    def __init__(self, fitted: Fitted, tables: Tables, model_file: bytes, name: str = "the run"):
        self.fitted, self.tables, self.name = fitted, tables, name
        self.digest = model_digest(model_file, tables)

    def codes(self, x: torch.Tensor) -> np.ndarray:
        """The integer codes of model-space rows ``x``, ``(N, latent_dim)``."""
        return self.fitted.encode(x).to(torch.int64).numpy()

    def compress(self, x: torch.Tensor, per_item: bool = False) -> bytes:
        """The rows ``x`` (model space) as a compressed file's bytes (:mod:`aekit.codec.coder`): one ANS stream for
        all of them, or (``per_item``) one per row, each decodable alone."""
        codes = self.codes(x)
        streams, moved = encode_streams(codes, self.tables, per_item)
        if moved:
            log.warning("%d code values lay outside their tables (the training codes' range) and were moved to its "
                        "end", moved)  # fmt: skip
        config = self.fitted.model.config
        return pack(streams, len(codes), codes.shape[1], config.input_shape, self.digest)

    def decompress(self, data: bytes, source: str = "file") -> torch.Tensor:
        """A compressed file's rows, decoded in the data's units ``(N, *input_shape)``; a file of another model, of a
        newer format, damaged or cut short is refused in one line. Decoded on one thread, so that any thread count
        gives the same array."""
        unpacked = unpack(data, source)
        config = self.fitted.model.config
        if unpacked.digest != self.digest:
            raise DataError(f"{source}: written with another model (SHA-256 {unpacked.digest.hex()[:12]}...) than "
                            f"{self.name}'s ({self.digest.hex()[:12]}...); decompress it with the run that compressed "
                            "it")  # fmt: skip
        if unpacked.code_size != config.latent_dim or unpacked.shape != config.input_shape:
            raise DataError(f"{source}: holds {unpacked.code_size}-D codes of {unpacked.shape} rows, not this run's")
        codes = torch.from_numpy(decode_streams(unpacked.streams, unpacked.n, self.tables)).float()
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self.fitted.decode(codes)
        finally:
            torch.set_num_threads(threads)

    def item_bytes(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Each row's bytes: coded alone (its own stream's words) and as its share of one stream of all (its ideal
        cost under the tables, which a long stream approaches)."""
        codes = self.codes(x)
        streams, _ = encode_streams(codes, self.tables, per_item=True)
        return np.array([4.0 * len(s) for s in streams]), self.tables.bits(codes) / 8

    def rate_bits(self, x: torch.Tensor) -> np.ndarray:
        """Each row's code cost in bits as the codec's density estimates it (``(N,)``; the file spends about this)."""
        model = self.fitted.model
        codes = self.fitted.encode(x).double().to(next(model.parameters()).device)
        with torch.no_grad():
            return model.bottleneck.bits(codes).cpu().numpy()

    def summary(self, x: torch.Tensor, payload: bytes) -> dict:
        """What compressing ``x`` into ``payload`` gave: ``rows``, ``bytes`` (the file's), ``estimated_bytes`` (the
        density's estimate of the codes), and the decoded rows' ``psnr`` (data in [0, 1]) or ``mse`` (per feature, in
        the data's units)."""
        space = self.fitted.space
        error = float((self.fitted.reconstruct(x) - space.to_data(x)).double().square().mean())
        out = {"rows": len(x), "bytes": len(payload), "estimated_bytes": float(self.rate_bits(x).sum()) / 8}
        return out | ({"psnr": 10 * math.log10(1 / error)} if space.unit else {"mse": error})

    def draw(self, x: torch.Tensor, path=None):
        """Rows ``x``, their decodings from a file, and each one's bytes (the report's codec figure)."""
        from ..analysis import plots

        alone, in_batch = self.item_bytes(x)
        return plots.codec_digits(self.fitted.space.to_data(x), self.decompress(self.compress(x)), alone, in_batch, path)
