"""Model configs, model classes and the name -> class table.

Every model shares the chapter's API: ``encode(x) -> z`` of shape ``(N, latent_dim)``, ``decode(z) -> x_hat``
of shape ``(N, *input_shape)``, ``forward(x) -> x_hat`` of ``x``'s shape, and ``loss(x, kind)`` that returns
the training objective with its named parts, so one training loop, one checkpoint format and one evaluation
serve them all. A model is a body (fully connected or convolutional encoder/decoder) and an objective
(plain, denoising, sparse, variational).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "elu": nn.ELU}
OUTPUTS = ("sigmoid", "linear")  # sigmoid for data in [0, 1], linear for standardized data
LOSSES = ("mse", "bce")
BODIES = ("mlp", "conv")
NOISES = ("gaussian", "masking", "salt-pepper")
MAX_WEIGHTS = 5e8  # refuse configs whose model would not fit in a sane amount of memory (2 GB of fp32)


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model; stored in every run's ``config.json``."""

    model: str = "mlp"  # architecture and objective: a key of MODELS
    input_shape: tuple[int, ...] = (1, 28, 28)  # one example's shape: (C, H, W) for images, (D,) for tables
    latent_dim: int = 32  # size of the code z
    hidden: tuple[int, ...] = (256,)  # fully connected body: encoder hidden widths (the decoder mirrors them)
    activation: str = "relu"  # hidden-layer nonlinearity: a key of ACTIVATIONS
    output: str = "sigmoid"  # "sigmoid" for data in [0, 1], "linear" for standardized data
    body: str = "mlp"  # encoder/decoder of denoising, sparse and vae models: "mlp" or "conv"
    channels: tuple[int, ...] = (32, 64)  # convolutional body: channels of each stride-2 conv layer
    noise: str = "gaussian"  # denoising: "gaussian" (sigma), "masking" or "salt-pepper" (fraction of features)
    noise_level: float = 0.3  # denoising: sigma of the Gaussian noise, or the fraction of features corrupted
    sparsity: float = 1e-3  # sparse: weight of the L1 penalty on the codes
    beta: float = 1.0  # vae: weight of the KL term

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
        if not self.channels or any(int(c) < 1 for c in self.channels):
            raise ConfigError(f"channels={self.channels} must hold positive channel counts")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {self.activation!r}; choose one of {sorted(ACTIVATIONS)}")
        if self.output not in OUTPUTS:
            raise ConfigError(f"output={self.output!r} must be one of {list(OUTPUTS)}")
        if self.body not in BODIES:
            raise ConfigError(f"body={self.body!r} must be one of {list(BODIES)}")
        if self.noise not in NOISES:
            raise ConfigError(f"noise={self.noise!r} must be one of {list(NOISES)}")
        if not 0 <= self.noise_level < (math.inf if self.noise == "gaussian" else 1):
            raise ConfigError(f"noise_level={self.noise_level} must be a sigma >= 0 for gaussian noise, "
                              "a fraction in [0, 1) otherwise")  # fmt: skip
        if not (self.sparsity >= 0 and math.isfinite(self.sparsity)):
            raise ConfigError(f"sparsity={self.sparsity} must be zero or positive")
        if not (self.beta >= 0 and math.isfinite(self.beta)):
            raise ConfigError(f"beta={self.beta} must be zero or positive")
        convolutional = self.model == "conv" or (self.body == "conv" and self.model != "linear")
        if convolutional and len(self.input_shape) != 3:
            raise ConfigError(f"a convolutional model needs image data (C, H, W); this data has shape "
                              f"{tuple(self.input_shape)}: use --model mlp or --body mlp")  # fmt: skip
        widths = [math.prod(self.input_shape), *self.hidden, self.latent_dim]
        n_weights = 2 * sum(a * b for a, b in zip(widths[:-1], widths[1:]))
        if n_weights > MAX_WEIGHTS:  # a hostile or mistyped config must not allocate terabytes
            raise ConfigError(f"this model would have {n_weights:.3g} weights, more than the {MAX_WEIGHTS:.0e} allowed")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------------ bodies
def mlp(widths: list[int], activation: str) -> nn.Sequential:
    """Linear layers of the given widths with ``activation`` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(widths) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class ConvEncoder(nn.Module):
    """Stride-2 3x3 convolutions, then one linear layer to the code. Any H x W."""

    def __init__(self, input_shape: tuple[int, int, int], channels: tuple[int, ...], code: int, activation: str):
        super().__init__()
        c, h, w = input_shape
        layers: list[nn.Module] = []
        for out in channels:
            layers += [nn.Conv2d(c, out, 3, stride=2, padding=1), ACTIVATIONS[activation]()]
            c, h, w = out, (h + 1) // 2, (w + 1) // 2
        self.convs = nn.Sequential(*layers)
        self.feature_shape = (c, h, w)
        self.linear = nn.Linear(c * h * w, code)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, code)
        return self.linear(self.convs(x).flatten(1))


class ConvDecoder(nn.Module):
    """The mirror of :class:`ConvEncoder`: linear, then stride-2 transposed convolutions, cropped to H x W."""

    def __init__(self, input_shape: tuple[int, int, int], channels: tuple[int, ...], latent: int, activation: str,
                 feature_shape: tuple[int, int, int]):  # fmt: skip
        super().__init__()
        self.input_shape, self.feature_shape = input_shape, feature_shape
        self.linear = nn.Linear(latent, math.prod(feature_shape))
        outs = [*reversed(channels[:-1]), input_shape[0]]
        layers: list[nn.Module] = [ACTIVATIONS[activation]()]
        c = feature_shape[0]
        for i, out in enumerate(outs):
            layers.append(nn.ConvTranspose2d(c, out, 3, stride=2, padding=1, output_padding=1))
            if i < len(outs) - 1:
                layers.append(ACTIVATIONS[activation]())
            c = out
        self.deconvs = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (N, latent) -> (N, C, H, W) logits
        y = self.deconvs(self.linear(z).reshape(len(z), *self.feature_shape))
        return y[:, :, : self.input_shape[1], : self.input_shape[2]]


# ------------------------------------------------------------------------------------------ models
class AutoEncoder(nn.Module):
    """A plain autoencoder: the chapter's model (784-256-32-256-784 by default).

    Parameters
    ----------
    input_shape : tuple of int, default (1, 28, 28)
        Shape of one example. Inputs may be given as ``(N, *input_shape)`` or flattened ``(N, D)``.
    latent_dim : int, default 32
        Size of the code ``z``.
    hidden : tuple of int, default (256,)
        Widths of the encoder's hidden layers (fully connected body); the decoder uses them in reverse.
    activation : str, default "relu"
        Nonlinearity between layers.
    output : {"sigmoid", "linear"}, default "sigmoid"
        Sigmoid for data in [0, 1] (pixels), linear for standardized data.
    body : {"mlp", "conv"}, default "mlp"
        Fully connected or convolutional encoder and decoder.
    channels : tuple of int, default (32, 64)
        Channels of the convolutional body's stride-2 layers.
    """

    default_body = "mlp"

    def __init__(
        self,
        input_shape: tuple[int, ...] = (1, 28, 28),
        latent_dim: int = 32,
        hidden: tuple[int, ...] = (256,),
        activation: str = "relu",
        output: str = "sigmoid",
        body: str | None = None,
        channels: tuple[int, ...] = (32, 64),
        **objective,
    ):
        super().__init__()
        self.config = ModelConfig(
            model=model_name(type(self)),
            input_shape=tuple(int(d) for d in input_shape),
            latent_dim=int(latent_dim),
            hidden=tuple(int(h) for h in hidden),
            activation=activation,
            output=output,
            body=body or self.default_body,
            channels=tuple(int(c) for c in channels),
            **objective,
        ).validate()
        self.input_shape = self.config.input_shape
        self.input_dim = math.prod(self.input_shape)
        self.encoder, self.decoder = self.build_body(self.code_width())

    def code_width(self) -> int:
        """Width of the encoder's output (a VAE's holds a mean and a log-variance per code unit)."""
        return self.config.latent_dim

    def build_body(self, code: int) -> tuple[nn.Module, nn.Module]:
        cfg = self.config
        if cfg.body == "conv":
            encoder = ConvEncoder(cfg.input_shape, cfg.channels, code, cfg.activation)
            decoder = ConvDecoder(cfg.input_shape, cfg.channels, cfg.latent_dim, cfg.activation,
                                  encoder.feature_shape)  # fmt: skip
            return encoder, decoder
        widths = [self.input_dim, *cfg.hidden]
        return mlp([*widths, code], cfg.activation), mlp([cfg.latent_dim, *reversed(widths)], cfg.activation)

    def shaped(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, *input_shape)`` or ``(N, D)`` -> what the body takes: ``(N, D)`` or ``(N, C, H, W)``."""
        if x.ndim < 2 or math.prod(x.shape[1:]) != self.input_dim:
            raise ValueError(f"expected input of shape (N, {', '.join(map(str, self.input_shape))}), got {tuple(x.shape)}")
        return x.reshape(len(x), *self.input_shape) if self.config.body == "conv" else x.reshape(len(x), self.input_dim)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes ``(N, latent_dim)`` of inputs ``(N, *input_shape)`` or ``(N, D)``."""
        return self.encoder(self.shaped(x))

    def sample_codes(self, x: torch.Tensor) -> torch.Tensor:
        """Codes as the decoder sees them in training (a VAE's are samples); used to compare with the prior."""
        return self.encode(x)

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


class ConvAutoEncoder(AutoEncoder):
    """A plain autoencoder with a convolutional encoder and decoder (images of any H x W)."""

    default_body = "conv"

    def __init__(self, input_shape=(1, 28, 28), latent_dim=32, activation="relu", output="sigmoid",
                 channels=(32, 64)):  # fmt: skip
        super().__init__(input_shape, latent_dim, (), activation, output, "conv", channels)


class DenoisingAutoEncoder(AutoEncoder):
    """Trained to reconstruct clean inputs from corrupted ones (``noise``, ``noise_level``)."""

    def __init__(self, input_shape=(1, 28, 28), latent_dim=32, hidden=(256,), activation="relu", output="sigmoid",
                 body="mlp", channels=(32, 64), noise="gaussian", noise_level=0.3):  # fmt: skip
        super().__init__(input_shape, latent_dim, hidden, activation, output, body, channels, noise=noise,
                         noise_level=noise_level)  # fmt: skip

    def loss(self, x, kind="mse"):
        logits = self.decode_logits(self.encode(corrupt(x, self.config)))
        return reconstruction_loss(logits, x.reshape(logits.shape), kind, self.config.output), {}


class SparseAutoEncoder(AutoEncoder):
    """Reconstruction plus ``sparsity`` times the mean absolute code (an L1 penalty)."""

    def __init__(self, input_shape=(1, 28, 28), latent_dim=32, hidden=(256,), activation="relu", output="sigmoid",
                 body="mlp", channels=(32, 64), sparsity=1e-3):  # fmt: skip
        super().__init__(input_shape, latent_dim, hidden, activation, output, body, channels, sparsity=sparsity)

    def loss(self, x, kind="mse"):
        z = self.encode(x)
        logits = self.decode_logits(z)
        recon = reconstruction_loss(logits, x.reshape(logits.shape), kind, self.config.output)
        l1 = z.abs().mean()
        return recon + self.config.sparsity * l1, {"recon": recon, "l1": l1}


class LinearAutoEncoder(AutoEncoder):
    """One linear encoder layer and one linear decoder layer, linear output: with MSE it learns PCA's subspace."""

    def __init__(self, input_shape=(1, 28, 28), latent_dim=32):
        super().__init__(input_shape, latent_dim, (), "relu", "linear", "mlp")


class VariationalAutoEncoder(AutoEncoder):
    """A VAE: Gaussian encoder q(z|x), reparameterized samples, KL to N(0, I) weighted by ``beta``.

    ``encode`` returns the posterior mean. The loss is per example: the reconstruction summed over features
    (MSE or BCE) plus ``beta`` times the KL divergence, averaged over the batch (the negative ELBO for beta=1).
    """

    def __init__(self, input_shape=(1, 28, 28), latent_dim=32, hidden=(256,), activation="relu", output="sigmoid",
                 body="mlp", channels=(32, 64), beta=1.0):  # fmt: skip
        super().__init__(input_shape, latent_dim, hidden, activation, output, body, channels, beta=beta)

    def code_width(self) -> int:
        return 2 * self.config.latent_dim

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z|x), each ``(N, latent_dim)``."""
        mean, log_var = self.encoder(self.shaped(x)).chunk(2, dim=1)
        return mean, log_var.clamp(-30, 20)

    def encode(self, x):
        return self.posterior(x)[0]

    def sample_codes(self, x):
        mean, log_var = self.posterior(x)
        return mean + torch.randn_like(mean) * (0.5 * log_var).exp()

    def loss(self, x, kind="mse"):
        mean, log_var = self.posterior(x)
        z = mean + torch.randn_like(mean) * (0.5 * log_var).exp()
        logits = self.decode_logits(z)
        d = logits[0].numel()
        recon = reconstruction_loss(logits, x.reshape(logits.shape), kind, self.config.output) * d  # per example
        kl = 0.5 * (mean.pow(2) + log_var.exp() - 1 - log_var).sum(1).mean()
        return recon + self.config.beta * kl, {"recon": recon, "kl": kl}


def corrupt(x: torch.Tensor, config: ModelConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply the denoising model's noise to a batch (clipped to [0, 1] for data in [0, 1])."""
    level = config.noise_level
    if config.noise == "gaussian":
        noisy = x + level * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    else:
        hit = torch.rand(x.shape, generator=generator, device=x.device) < level
        if config.noise == "masking":
            noisy = x.masked_fill(hit, 0.0)
        else:  # salt-pepper: half the hit features to the low end, half to the high end
            high = torch.rand(x.shape, generator=generator, device=x.device) < 0.5
            low_value, high_value = (0.0, 1.0) if config.output == "sigmoid" else (float(x.min()), float(x.max()))
            noisy = torch.where(hit, torch.where(high, high_value, low_value), x).to(x.dtype)
    return noisy.clamp(0, 1) if config.output == "sigmoid" else noisy


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
    "conv": ConvAutoEncoder,
    "denoising": DenoisingAutoEncoder,
    "sparse": SparseAutoEncoder,
    "linear": LinearAutoEncoder,
    "vae": VariationalAutoEncoder,
}
MODEL_HELP = {
    "mlp": "fully connected encoder/decoder (the chapter's model)",
    "conv": "convolutional encoder/decoder for images of any HxW",
    "denoising": "reconstructs clean inputs from corrupted ones (--noise, --noise-level; --body mlp|conv)",
    "sparse": "L1 penalty on the codes (--sparsity; --body mlp|conv)",
    "linear": "one linear layer each way with MSE: learns the PCA subspace",
    "vae": "variational autoencoder: Gaussian encoder, KL term weighted by --beta (--body mlp|conv)",
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
    "conv30": {
        "help": "convolutional, 30-D code, cosine schedule, 40 epochs: beats the paper's 3.00 SSE/image "
        "(README, results)",
        "model": {"model": "conv", "latent_dim": 30, "channels": (32, 64)},
        "train": {"epochs": 40, "lr": 2e-3, "schedule": "cosine"},
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
    return cls(**{name: value for name, value in config.to_dict().items() if name in accepted and name != "model"})
