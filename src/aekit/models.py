"""Model configs, model classes and the name -> class table.

Every model shares the chapter's API: ``encode(x) -> z`` of shape ``(N, latent_dim)``, ``decode(z) -> x_hat``
of shape ``(N, *input_shape)``, ``forward(x) -> x_hat`` of ``x``'s shape, and ``loss(x, kind)`` that returns
the training objective with its named terms, so one training loop serves them all.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "elu": nn.ELU}
OUTPUTS = ("sigmoid", "linear")  # sigmoid for data in [0, 1], linear for standardized data
LOSSES = ("mse", "bce")
MAX_WEIGHTS = 5e8  # refuse configs whose model would not fit in a sane amount of memory (2 GB of fp32)


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model; stored in every run's ``config.json``."""

    model: str = "mlp"  # architecture: a key of MODELS
    input_shape: tuple[int, ...] = (1, 28, 28)  # one example's shape: (C, H, W) for images, (D,) for tables
    latent_dim: int = 32  # size of the code z
    hidden: tuple[int, ...] = (256,)  # encoder hidden widths; the decoder mirrors them
    activation: str = "relu"  # hidden-layer nonlinearity: a key of ACTIVATIONS
    output: str = "sigmoid"  # "sigmoid" for data in [0, 1], "linear" for standardized data

    def validate(self) -> ModelConfig:
        """Check every field, naming the bad value; returns self."""
        if self.model not in MODELS:
            raise ConfigError(f"unknown model {self.model!r}; choose one of {sorted(MODELS)}")
        if not self.input_shape or any(int(d) < 1 for d in self.input_shape):
            raise ConfigError(f"input_shape={self.input_shape} must be a non-empty tuple of positive sizes")
        if self.latent_dim < 1:
            raise ConfigError(f"latent_dim={self.latent_dim} must be a positive integer")
        if any(int(h) < 1 for h in self.hidden):
            raise ConfigError(f"hidden={self.hidden} must hold positive layer widths")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {self.activation!r}; choose one of {sorted(ACTIVATIONS)}")
        if self.output not in OUTPUTS:
            raise ConfigError(f"output={self.output!r} must be one of {list(OUTPUTS)}")
        widths = [math.prod(self.input_shape), *self.hidden, self.latent_dim]
        n_weights = 2 * sum(a * b for a, b in zip(widths[:-1], widths[1:]))
        if n_weights > MAX_WEIGHTS:  # a hostile or mistyped config must not allocate terabytes
            raise ConfigError(f"this model would have {n_weights:.3g} weights, more than the {MAX_WEIGHTS:.0e} allowed")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


def mlp(widths: list[int], activation: str) -> nn.Sequential:
    """Linear layers of the given widths with ``activation`` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(widths) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class AutoEncoder(nn.Module):
    """A fully connected autoencoder: the chapter's model (784-256-32-256-784 by default).

    Parameters
    ----------
    input_shape : tuple of int, default (1, 28, 28)
        Shape of one example. Inputs may be given as ``(N, *input_shape)`` or flattened ``(N, D)``.
    latent_dim : int, default 32
        Size of the code ``z``.
    hidden : tuple of int, default (256,)
        Widths of the encoder's hidden layers; the decoder uses them in reverse.
    activation : str, default "relu"
        Nonlinearity between layers.
    output : {"sigmoid", "linear"}, default "sigmoid"
        Sigmoid for data in [0, 1] (pixels), linear for standardized data.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...] = (1, 28, 28),
        latent_dim: int = 32,
        hidden: tuple[int, ...] = (256,),
        activation: str = "relu",
        output: str = "sigmoid",
    ):
        super().__init__()
        self.config = ModelConfig(
            model=model_name(type(self)),
            input_shape=tuple(int(d) for d in input_shape),
            latent_dim=int(latent_dim),
            hidden=tuple(int(h) for h in hidden),
            activation=activation,
            output=output,
        ).validate()
        self.input_shape = self.config.input_shape
        self.input_dim = math.prod(self.input_shape)
        widths = [self.input_dim, *self.config.hidden, self.config.latent_dim]
        self.encoder = mlp(widths, activation)
        self.decoder = mlp(widths[::-1], activation)

    def flatten(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, *input_shape)`` or ``(N, D)`` -> ``(N, D)``, checking the size."""
        if x.ndim < 2 or math.prod(x.shape[1:]) != self.input_dim:
            raise ValueError(f"expected input of shape (N, {', '.join(map(str, self.input_shape))}), got {tuple(x.shape)}")
        return x.reshape(len(x), self.input_dim)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes ``(N, latent_dim)`` of inputs ``(N, *input_shape)`` or ``(N, D)``."""
        return self.encoder(self.flatten(x))

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's output before the output nonlinearity, ``(N, *input_shape)``."""
        return self.decoder(z).reshape(len(z), *self.input_shape)

    def output_activation(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits) if self.config.output == "sigmoid" else logits

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Reconstructions ``(N, *input_shape)`` of codes ``(N, latent_dim)``."""
        return self.output_activation(self.decode_logits(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction of ``x``, in ``x``'s shape."""
        return self.decode(self.encode(x)).reshape(x.shape)

    def loss(self, x: torch.Tensor, kind: str = "mse") -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The training objective on a batch, and its named parts when it has several (scalar tensors).

        ``"mse"`` is the mean squared error per element (``nn.MSELoss``); ``"bce"`` the binary cross-entropy per
        element, computed from the logits for numerical stability.
        """
        logits = self.decode_logits(self.encode(x))
        return reconstruction_loss(logits, x.reshape(logits.shape), kind, self.config.output), {}


def reconstruction_loss(logits: torch.Tensor, x: torch.Tensor, kind: str, output: str) -> torch.Tensor:
    """Mean per-element MSE or BCE between the decoder's ``logits`` and the targets ``x``."""
    if kind == "bce":
        if output != "sigmoid":
            raise ConfigError("loss='bce' needs data in [0, 1] (a sigmoid output); use loss='mse' for this data")
        return F.binary_cross_entropy_with_logits(logits, x)
    if kind == "mse":
        return F.mse_loss(torch.sigmoid(logits) if output == "sigmoid" else logits, x)
    raise ConfigError(f"unknown loss {kind!r}; choose one of {list(LOSSES)}")


MODELS: dict[str, type[AutoEncoder]] = {
    "mlp": AutoEncoder,
}
MODEL_HELP = {
    "mlp": "fully connected encoder/decoder (the chapter's model)",
}

# Named architectures (--preset): model fields, and training settings the preset is known to need.
PRESETS: dict[str, dict] = {
    "chapter": {
        "help": "784-256-32, the chapter's two-layer encoder and decoder (default)",
        "model": {"hidden": (256,), "latent_dim": 32},
    },
    "funnel": {
        "help": "784-256-64-16, the chapter's worked example",
        "model": {"hidden": (256, 64), "latent_dim": 16},
    },
    "hinton2006": {
        "help": "784-1000-500-250-30, Hinton & Salakhutdinov 2006's deep autoencoder",
        "model": {"hidden": (1000, 500, 250), "latent_dim": 30},
    },
}


def model_name(cls: type) -> str:
    """The MODELS name of ``cls`` or of its nearest registered base class (so subclasses still rebuild)."""
    return next((name for base in cls.__mro__ for name, c in MODELS.items() if c is base), cls.__name__.lower())


def build_model(config: ModelConfig) -> AutoEncoder:
    """Rebuild a model from its config (the inverse of ``model.config``)."""
    config.validate()
    cls = MODELS[config.model]
    accepted = inspect.signature(cls.__init__).parameters
    return cls(**{f.name: getattr(config, f.name) for f in fields(config) if f.name in accepted})
