"""Models: a body (the encoder/decoder architecture) times an objective (what training minimises).

    bodies      MLPBody(hidden, activation)   ConvBody(channels, activation)   LinearBody()
    objectives  Plain()   Denoising(noise, noise_level)   Imputing(noise_level)   Sparse(sparsity)   Variational(beta)
                VectorQuantized(codebook_size, groups, commitment)

Each part is a small dataclass holding only its own options, each option a field with its default and help
(the CLI builds its flags from them), and its own validation. The body builds the encoder and decoder; the
objective says what the code is and what the loss is. :class:`ModelConfig` holds one of each plus the input
shape, the code size and the output nonlinearity, and the one :class:`AutoEncoder` class is built from it. The
names users type (``mlp``, ``conv``, ``linear``, ``denoising``, ``sparse``, ``vae``, ``vq``) are shortcuts for
pairs (:data:`SHORTCUTS`); any body goes with any objective. Adding a kind is one class here plus its tests
(and, if it has its own metric or figure, one entry in ``evaluate.PART_METRICS`` or ``plots.PART_FIGURES``).

Every model has the chapter's API: ``encode(x) -> z`` of shape ``(N, latent_dim)``, ``decode(z) -> x_hat`` of
shape ``(N, *input_shape)``, ``forward(x) -> x_hat`` of ``x``'s shape, and ``loss(x, kind)`` returning the
training objective with its named parts, so one training loop, one run format and one evaluation serve all.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError
from ..io.tables import Column, category_blocks
from .config import ModelConfig
from .networks import with_softmax_blocks
from .parts import Body, MLPBody, Objective, Plain


class AutoEncoder(nn.Module):
    """An autoencoder: a body's encoder and decoder, trained on an objective (the chapter's model by default).

    Parameters
    ----------
    input_shape : tuple of int, default (1, 28, 28)
        Shape of one example. Inputs may be given as ``(N, *input_shape)`` or flattened ``(N, D)``.
    latent_dim : int, default 32
        Size of the code ``z``.
    hidden : tuple of int, optional
        Shorthand for ``body=MLPBody(hidden=...)``: encoder hidden widths, mirrored by the decoder. Default (256,).
    activation : str, optional
        Shorthand for ``body=MLPBody(activation=...)``. Default "relu".
    output : {"sigmoid", "linear"}, default "sigmoid"
        Sigmoid for data in [0, 1] (pixels), linear for standardized data.
    body : Body, optional
        :class:`MLPBody` (default), :class:`ConvBody` or :class:`LinearBody`.
    objective : Objective, optional
        :class:`Plain` (default), :class:`Denoising`, :class:`Sparse`, :class:`Variational` or
        :class:`VectorQuantized`.
    """

    def __init__(self, input_shape: tuple[int, ...] = (1, 28, 28), latent_dim: int = 32,
                 hidden: tuple[int, ...] | None = None, activation: str | None = None, output: str = "sigmoid", *,
                 body: Body | None = None, objective: Objective | None = None,
                 columns: tuple[Column, ...] = ()):  # fmt: skip
        super().__init__()
        shorthand = {k: v for k, v in (("hidden", hidden), ("activation", activation)) if v is not None}
        if body is not None and shorthand:
            raise ConfigError(f"give {sorted(shorthand)} inside the body (e.g. MLPBody(hidden=...)), not beside it")
        if body is None:
            body = MLPBody(**{k: tuple(int(h) for h in v) if k == "hidden" else v for k, v in shorthand.items()})
        self.config = ModelConfig(tuple(int(d) for d in input_shape), int(latent_dim), output, body,
                                  objective if objective is not None else Plain(), tuple(columns)).validate()  # fmt: skip
        self.input_shape = self.config.input_shape
        self.input_dim = math.prod(self.input_shape)
        self.encoder, self.decoder = body.build(self.config, self.config.objective.code_width(self.config.latent_dim))
        bottleneck = self.config.objective.bottleneck(self.config.latent_dim)
        if bottleneck is not None:
            self.bottleneck = bottleneck
        self.blocks = category_blocks(self.config.columns)  # a table's one-hot blocks: softmax heads, cross-entropy
        self.config.objective.initialize(self)

    @classmethod
    def from_config(cls, config: ModelConfig) -> AutoEncoder:
        return cls(config.input_shape, config.latent_dim, output=config.output, body=config.body,
                   objective=config.objective, columns=config.columns)  # fmt: skip

    def shaped(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, *input_shape)`` or ``(N, D)`` -> what the encoder takes: ``(N, D)`` or ``(N, C, H, W)``."""
        if x.ndim < 2 or math.prod(x.shape[1:]) != self.input_dim:
            raise ValueError(f"expected input of shape (N, {', '.join(map(str, self.input_shape))}), got {tuple(x.shape)}")
        return self.config.body.shape_input(x, self.input_shape)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes ``(N, latent_dim)`` of inputs ``(N, *input_shape)`` or ``(N, D)``."""
        return self.config.objective.encode(self, x)

    def sample_codes(self, x: torch.Tensor) -> torch.Tensor:
        """Codes as the decoder sees them in training (a VAE's are samples); used to compare with the prior."""
        return self.config.objective.sample_codes(self, x)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's output before the output nonlinearity, ``(N, *input_shape)``."""
        return self.decoder(z).reshape(-1, *self.input_shape)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Reconstructions ``(N, *input_shape)`` of codes ``(N, latent_dim)``."""
        logits = self.decode_logits(z)
        if self.blocks:  # a table: each categorical column's slots become its probabilities
            return with_softmax_blocks(logits, self.blocks)
        return torch.sigmoid(logits) if self.config.output == "sigmoid" else logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction of ``x``, in ``x``'s shape."""
        return self.decode(self.encode(x)).reshape(x.shape)

    def loss(self, x: torch.Tensor, kind: str = "mse") -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The training objective on a batch, and its named parts when it has several (scalar tensors).

        ``"mse"`` is the mean squared error per element (``nn.MSELoss``); ``"bce"`` the binary cross-entropy per
        element, computed from the logits for numerical stability (a VAE sums them over features).
        """
        return self.config.objective.loss(self, x, kind)


def build_model(config: ModelConfig) -> AutoEncoder:
    """Rebuild a model from its config (the inverse of ``model.config``)."""
    return AutoEncoder.from_config(config)
