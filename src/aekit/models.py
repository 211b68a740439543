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
from dataclasses import dataclass, field, fields, replace
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError, DataError
from .options import option
from .tables import Column, category_blocks, check_columns, column_of_feature

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "elu": nn.ELU}
OUTPUTS = ("sigmoid", "linear")  # sigmoid for data in [0, 1], linear for standardized data
LOSSES = ("mse", "bce")
NOISES = ("gaussian", "masking", "salt-pepper")
MAX_WEIGHTS = 5e8  # refuse configs whose model would not fit in a sane amount of memory (2 GB of fp32)
MAX_LAYERS = 64  # per encoder (the decoder mirrors it): a mistyped or hostile config must not build for minutes


class Part:
    """A body or an objective: a dataclass of its own options, with a ``kind`` name used in files and flags."""

    kind: ClassVar[str]
    help: ClassVar[str]

    def validate(self, config: ModelConfig) -> None:
        """Check this part's options (and that it suits ``config``); raise :class:`ConfigError` naming the value."""

    def options(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def describe(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{self.kind}({shown})"


def _check_activation(activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")


def _check_widths(name: str, values: tuple[int, ...], allow_empty: bool) -> None:
    if (not values and not allow_empty) or any(not isinstance(v, int) or v < 1 for v in values):
        raise ConfigError(f"{name}={values} must hold positive {'layer widths' if name == 'hidden' else 'counts'}")
    if len(values) > MAX_LAYERS:
        raise ConfigError(f"{name} lists {len(values)} layers; at most {MAX_LAYERS} are allowed")


# ------------------------------------------------------------------------------------------ bodies
class Body(Part):
    """Builds the encoder (input -> ``code_width`` numbers) and the decoder (``latent_dim`` -> input-sized logits)."""

    def build(self, config: ModelConfig, code_width: int) -> tuple[nn.Module, nn.Module]:
        raise NotImplementedError

    def n_weights(self, config: ModelConfig, code_width: int) -> int:
        """The number of weights :meth:`build` would allocate, computed without allocating them."""
        raise NotImplementedError

    def shape_input(self, x: torch.Tensor, input_shape: tuple[int, ...]) -> torch.Tensor:
        """``(N, ...)`` -> what the encoder takes (flat rows by default)."""
        return x.reshape(-1, math.prod(input_shape))  # -1, not len(x): exports keep a dynamic batch

    def default_output(self, unit_data: bool) -> str:
        """The output nonlinearity for data in [0, 1] (``unit_data``) or standardized data."""
        return "sigmoid" if unit_data else "linear"


def mlp(widths: list[int], activation: str) -> nn.Sequential:
    """Linear layers of the given widths with ``activation`` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(widths) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def _linear_weights(widths: list[int]) -> int:
    return sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))


@dataclass
class MLPBody(Body):
    """Fully connected encoder and decoder; the decoder mirrors the encoder's widths."""

    kind: ClassVar[str] = "mlp"
    help: ClassVar[str] = "fully connected encoder and decoder (the chapter's)"
    hidden: tuple[int, ...] = option((256,), "encoder hidden widths, e.g. 256,64 (the decoder mirrors them)")
    activation: str = option("relu", "hidden-layer nonlinearity", tuple(ACTIVATIONS))

    def validate(self, config):
        _check_widths("hidden", self.hidden, allow_empty=True)
        _check_activation(self.activation)

    def build(self, config, code_width):
        widths = [math.prod(config.input_shape), *self.hidden]
        return mlp([*widths, code_width], self.activation), mlp([config.latent_dim, *reversed(widths)], self.activation)

    def n_weights(self, config, code_width):
        widths = [math.prod(config.input_shape), *self.hidden]
        return _linear_weights([*widths, code_width]) + _linear_weights([config.latent_dim, *reversed(widths)])


@dataclass
class LinearBody(Body):
    """One linear layer each way. With MSE and a linear output it learns PCA's subspace, so it keeps a linear
    output whatever the data (give ``output="sigmoid"`` in Python for a logistic PCA)."""

    kind: ClassVar[str] = "linear"
    help: ClassVar[str] = "one linear layer each way: with MSE it learns PCA's subspace"

    def build(self, config, code_width):
        return mlp([math.prod(config.input_shape), code_width], "relu"), mlp([config.latent_dim, math.prod(config.input_shape)], "relu")

    def n_weights(self, config, code_width):
        d = math.prod(config.input_shape)
        return _linear_weights([d, code_width]) + _linear_weights([config.latent_dim, d])

    def default_output(self, unit_data):
        return "linear"


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
        y = self.deconvs(self.linear(z).reshape(-1, *self.feature_shape))
        return y[:, :, : self.input_shape[1], : self.input_shape[2]]


@dataclass
class ConvBody(Body):
    """Stride-2 3x3 convolutions and their transposed mirror, for images (C, H, W) of any H x W."""

    kind: ClassVar[str] = "conv"
    help: ClassVar[str] = "convolutional encoder and decoder for images (C, H, W) of any H x W"
    channels: tuple[int, ...] = option((32, 64), "channels of each stride-2 conv layer, e.g. 32,64")
    activation: str = option("relu", "hidden-layer nonlinearity", tuple(ACTIVATIONS))

    def validate(self, config):
        _check_widths("channels", self.channels, allow_empty=False)
        _check_activation(self.activation)
        if len(config.input_shape) != 3:
            raise ConfigError(f"a convolutional body needs image data (C, H, W); this data has shape "
                              f"{tuple(config.input_shape)}: use the mlp body")  # fmt: skip

    def _feature_shape(self, config) -> tuple[int, int, int]:
        _, h, w = config.input_shape
        for _ in self.channels:
            h, w = (h + 1) // 2, (w + 1) // 2
        return self.channels[-1], h, w

    def build(self, config, code_width):
        encoder = ConvEncoder(config.input_shape, self.channels, code_width, self.activation)
        decoder = ConvDecoder(config.input_shape, self.channels, config.latent_dim, self.activation,
                              encoder.feature_shape)  # fmt: skip
        return encoder, decoder

    def n_weights(self, config, code_width):
        ins = [config.input_shape[0], *self.channels]
        convs = 2 * sum(9 * a * b for a, b in zip(ins[:-1], ins[1:])) + sum(ins[1:]) + sum(ins[:-1])  # and mirror
        features = math.prod(self._feature_shape(config))
        return convs + _linear_weights([features, code_width]) + _linear_weights([config.latent_dim, features])

    def shape_input(self, x, input_shape):
        return x.reshape(-1, *input_shape)


# ------------------------------------------------------------------------------------------ objectives
class Objective(Part):
    """What the code is (``encode``) and what training minimises (``loss``); plain reconstruction by default."""

    def code_width(self, latent_dim: int) -> int:
        """Width of the encoder's output (a VAE's holds a mean and a log-variance per code unit)."""
        return latent_dim

    def bottleneck(self, latent_dim: int) -> nn.Module | None:
        """Extra parameters between encoder and decoder (a VQ codebook), stored as ``bottleneck.*``."""
        return None

    def encode(self, model: AutoEncoder, x: torch.Tensor) -> torch.Tensor:
        return model.encoder(model.shaped(x))

    def sample_codes(self, model: AutoEncoder, x: torch.Tensor) -> torch.Tensor:
        """Codes as the decoder sees them in training (a VAE's are samples); compared with the prior."""
        return self.encode(model, x)

    def loss(self, model: AutoEncoder, x: torch.Tensor, kind: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = model.decode_logits(self.encode(model, x))
        return reconstruction_loss(logits, x.reshape(logits.shape), kind, model.config.output, model.blocks), {}

    def initialize(self, model: AutoEncoder) -> None:
        """Set the new model's weights where this objective wants its own start (the default layers' otherwise)."""

    after_step = None  # a method (model) -> None the training loop calls after each optimizer step, if set


@dataclass
class Plain(Objective):
    """Reconstruction error alone: the chapter's objective."""

    kind: ClassVar[str] = "plain"
    help: ClassVar[str] = "reconstruction error alone (the chapter's)"


NOISE_LEVEL_HELP = ("sigma of gaussian noise, or the fraction of features masked / salt-and-peppered (impute: the "
                    "share of observed cells hidden in each step)")


@dataclass
class Denoising(Objective):
    """Reconstruct the clean input from a corrupted copy (Vincent et al. 2008)."""

    kind: ClassVar[str] = "denoising"
    help: ClassVar[str] = "reconstructs clean inputs from corrupted ones"
    noise: str = option("gaussian", "kind of corruption", NOISES)
    noise_level: float = option(0.3, NOISE_LEVEL_HELP)

    def validate(self, config):
        if self.noise not in NOISES:
            raise ConfigError(f"noise={self.noise!r} must be one of {list(NOISES)}")
        if not 0 <= self.noise_level < (math.inf if self.noise == "gaussian" else 1):
            raise ConfigError(f"noise_level={self.noise_level} must be a sigma >= 0 for gaussian noise, "
                              "a fraction in [0, 1) otherwise")  # fmt: skip

    def loss(self, model, x, kind):
        logits = model.decode_logits(self.encode(model, corrupt(x, self, model.config.output)))
        return reconstruction_loss(logits, x.reshape(logits.shape), kind, model.config.output, model.blocks), {}


@dataclass
class Imputing(Objective):
    """Data with holes: cells that are NaN are missing, neither input nor target; each step also hides
    ``noise_level`` of the observed cells (masking noise), so the model learns to fill holes from what is left
    (MIDA, Gondara & Wang 2018: a denoising autoencoder with masking noise is an imputer). The loss is the mean
    reconstruction error over the observed cells only. Missing cells enter the encoder as 0 (the mean of a
    standardized feature)."""

    kind: ClassVar[str] = "impute"
    help: ClassVar[str] = "missing values (NaN) allowed: the loss skips them, training hides observed cells"
    noise_level: float = option(0.25, NOISE_LEVEL_HELP)  # the same flag as Denoising's: one help for both

    def validate(self, config):
        if not 0 <= self.noise_level < 1:
            raise ConfigError(f"noise_level={self.noise_level} must be a fraction in [0, 1)")

    def encode(self, model, x):
        return model.encoder(model.shaped(torch.nan_to_num(x, nan=0.0)))  # a missing cell enters as 0

    def loss(self, model, x, kind):
        observed = ~torch.isnan(x)
        x = torch.where(observed, x, 0.0)
        if model.blocks:  # a table: a categorical column is hidden whole, all its slots at once
            columns = torch.as_tensor(column_of_feature(model.config.columns), device=x.device)
            hidden = torch.rand((len(x), len(model.config.columns)), device=x.device)[:, columns] < self.noise_level
        else:
            hidden = torch.rand(x.shape, device=x.device) < self.noise_level
        kept = observed & ~hidden
        logits = model.decode_logits(self.encode(model, torch.where(kept, x, 0.0)))
        return masked_reconstruction_loss(logits, x.reshape(logits.shape), observed.reshape(logits.shape), kind,
                                          model.config.output, model.blocks), {}  # fmt: skip


@dataclass
class Sparse(Objective):
    """Reconstruction plus ``sparsity`` times the mean absolute code (an L1 penalty)."""

    kind: ClassVar[str] = "sparse"
    help: ClassVar[str] = "L1 penalty on the codes"
    sparsity: float = option(1e-3, "weight of the L1 penalty on the codes")

    def validate(self, config):
        if not (self.sparsity >= 0 and math.isfinite(self.sparsity)):
            raise ConfigError(f"sparsity={self.sparsity} must be zero or positive")

    def loss(self, model, x, kind):
        z = self.encode(model, x)
        logits = model.decode_logits(z)
        recon = reconstruction_loss(logits, x.reshape(logits.shape), kind, model.config.output, model.blocks)
        l1 = z.abs().mean()
        return recon + self.sparsity * l1, {"recon": recon, "l1": l1}


@dataclass
class Variational(Objective):
    """A VAE (Kingma & Welling 2014): Gaussian q(z|x), reparameterized samples, KL to N(0, I) weighted by ``beta``.

    ``encode`` returns the posterior mean. The loss is per example: the reconstruction summed over features
    (MSE or BCE) plus ``beta`` times the KL divergence, averaged over the batch (the negative ELBO for beta=1).
    """

    kind: ClassVar[str] = "vae"
    help: ClassVar[str] = "variational: Gaussian encoder, KL term to N(0, I); decoding random z gives data"
    beta: float = option(1.0, "weight of the KL term")

    def validate(self, config):
        if not (self.beta >= 0 and math.isfinite(self.beta)):
            raise ConfigError(f"beta={self.beta} must be zero or positive")

    def code_width(self, latent_dim):
        return 2 * latent_dim

    def posterior(self, model, x) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z|x), each ``(N, latent_dim)``."""
        mean, log_var = model.encoder(model.shaped(x)).chunk(2, dim=1)
        return mean, log_var.clamp(-30, 20)

    def encode(self, model, x):
        return self.posterior(model, x)[0]

    def sample_codes(self, model, x):
        mean, log_var = self.posterior(model, x)
        return mean + torch.randn_like(mean) * (0.5 * log_var).exp()

    def loss(self, model, x, kind):
        mean, log_var = self.posterior(model, x)
        z = mean + torch.randn_like(mean) * (0.5 * log_var).exp()
        logits = model.decode_logits(z)
        d = logits[0].numel()
        recon = reconstruction_loss(logits, x.reshape(logits.shape), kind, model.config.output, model.blocks) * d  # per example
        kl = 0.5 * (mean.pow(2) + log_var.exp() - 1 - log_var).sum(1).mean()
        return recon + self.beta * kl, {"recon": recon, "kl": kl}


class Codebook(nn.Module):
    """``size`` learned vectors of ``dim`` numbers; ``quantize`` snaps each slice of a code to its nearest one."""

    def __init__(self, size: int, dim: int):
        super().__init__()
        self.vectors = nn.Parameter(torch.empty(size, dim).uniform_(-1 / size, 1 / size))  # (K, d), as the paper's code

    def quantize(self, z: torch.Tensor, groups: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest codebook vectors of ``z`` (N, groups * d), and their indices (N, groups)."""
        flat = z.reshape(-1, self.vectors.shape[1])  # (N * groups, d)
        distances = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.vectors.T + self.vectors.pow(2).sum(1)
        index = distances.argmin(1)
        # a one-hot product rather than self.vectors[index]: the same values, and a backward pass without the
        # scattered atomic adds that make indexing's gradient nondeterministic on GPUs (resume stays exact)
        chosen = F.one_hot(index, len(self.vectors)).to(self.vectors.dtype) @ self.vectors
        return chosen.reshape(z.shape), index.reshape(-1, groups)


@dataclass
class VectorQuantized(Objective):
    """VQ-VAE's bottleneck (van den Oord et al. 2017), for one code vector per example.

    The code is cut into ``groups`` slices; each snaps to its nearest of ``codebook_size`` shared codebook
    vectors, so a code is ``groups`` discrete symbols (``codebook_size ** groups`` possible codes). The decoder
    sees the snapped code; the gradient passes straight through to the encoder. The loss adds the codebook term
    ``||sg[z_e] - e||^2`` and ``commitment`` times ``||z_e - sg[e]||^2`` (per element, like the reconstruction).
    ``encode`` returns the snapped code.
    """

    kind: ClassVar[str] = "vq"
    help: ClassVar[str] = "vector quantization (VQ-VAE): codes snap to a learned codebook"
    codebook_size: int = option(512, "number of codebook vectors")
    groups: int = option(8, "slices of the code, each quantized on its own (must divide the code size)")
    commitment: float = option(0.25, "weight of the commitment loss (the paper's beta)")

    def validate(self, config):
        if not (isinstance(self.codebook_size, int) and 1 <= self.codebook_size <= 2**20):
            raise ConfigError(f"codebook_size={self.codebook_size} must be an integer from 1 to {2**20}")
        if not (isinstance(self.groups, int) and self.groups >= 1 and config.latent_dim % self.groups == 0):
            raise ConfigError(f"groups={self.groups} must be a positive divisor of the code size "
                              f"latent_dim={config.latent_dim}")  # fmt: skip
        if not (self.commitment >= 0 and math.isfinite(self.commitment)):
            raise ConfigError(f"commitment={self.commitment} must be zero or positive")

    def bottleneck(self, latent_dim):
        return Codebook(self.codebook_size, latent_dim // self.groups)

    def symbols(self, model, x) -> torch.Tensor:
        """The discrete code of each example: ``(N, groups)`` codebook indices."""
        return model.bottleneck.quantize(model.encoder(model.shaped(x)), self.groups)[1]

    def encode(self, model, x):
        return model.bottleneck.quantize(model.encoder(model.shaped(x)), self.groups)[0]

    def loss(self, model, x, kind):
        z_e = model.encoder(model.shaped(x))
        z_q, _ = model.bottleneck.quantize(z_e, self.groups)
        codebook = F.mse_loss(z_q, z_e.detach())
        commit = F.mse_loss(z_e, z_q.detach())
        logits = model.decode_logits(z_e + (z_q - z_e).detach())  # straight-through gradient
        recon = reconstruction_loss(logits, x.reshape(logits.shape), kind, model.config.output, model.blocks)
        return recon + codebook + self.commitment * commit, {"recon": recon, "codebook": codebook, "commitment": commit}


class EntropyModel(nn.Module):
    """A factorized density over integer codes: for each code channel its own mixture of ``components`` logistics,
    integrated over each integer's bin ``[k - 1/2, k + 1/2]`` (Ballé et al. 2017's factorized prior, with a parametric
    density per channel). The same density, frozen to integer tables at the end of training, drives the entropy
    coder (:mod:`aekit.codec`)."""

    LIKELIHOOD_FLOOR = 1e-9  # no bin is cheaper to hit than 30 bits: a code far out costs, but never infinity

    def __init__(self, channels: int, components: int = 3):
        super().__init__()
        self.means = nn.Parameter(torch.linspace(-1, 1, components).repeat(channels, 1))  # (C, K)
        self.log_scales = nn.Parameter(torch.zeros(channels, components))
        self.logits = nn.Parameter(torch.zeros(channels, components))

    def likelihood(self, y: torch.Tensor) -> torch.Tensor:
        """The probability mass of each value's bin, ``(N, C)`` for codes ``(N, C)`` (integers or not)."""
        scale = self.log_scales.exp()
        upper = (y.unsqueeze(-1) + 0.5 - self.means) / scale  # (N, C, K)
        lower = (y.unsqueeze(-1) - 0.5 - self.means) / scale
        # above the mean both sigmoids are near 1: take the difference of the mirrored tails (no cancellation)
        right = (upper + lower) > 0
        mass = torch.where(right, torch.sigmoid(-lower) - torch.sigmoid(-upper), torch.sigmoid(upper) - torch.sigmoid(lower))
        return (torch.softmax(self.logits, -1) * mass).sum(-1).clamp_min(self.LIKELIHOOD_FLOOR)

    def bits(self, y: torch.Tensor) -> torch.Tensor:
        """Bits of each code under the density, ``(N,)``: minus log2 of its channels' bin masses, summed."""
        return -torch.log2(self.likelihood(y)).sum(1)


@dataclass
class Rate(Objective):
    """An autoencoder as a codec (Ballé et al. 2017): the code is rounded to integers and stored under a learned
    entropy model (:class:`EntropyModel`), and training minimises distortion + ``lmbda`` x rate: the squared error
    per example plus ``lmbda`` times the bits its code costs. In training, the rate is that of the code plus uniform
    noise (a differentiable stand-in for rounding) and the decoder sees the rounded code (gradient straight
    through); ``encode`` rounds. ``aekit compress`` writes the rounded codes with a real entropy coder."""

    kind: ClassVar[str] = "rate"
    help: ClassVar[str] = "a codec: the code rounded to integers under a learned entropy model, loss = error + lmbda x bits"
    lmbda: float = option(0.01, "rate's weight: the squared error per example one bit of code is worth (higher: "
                          "smaller files, lower PSNR)")

    def validate(self, config):
        if not (self.lmbda >= 0 and math.isfinite(self.lmbda)):
            raise ConfigError(f"lmbda={self.lmbda} must be zero or positive")

    def bottleneck(self, latent_dim):
        return EntropyModel(latent_dim)

    def encode(self, model, x):
        return torch.round(model.encoder(model.shaped(x)))

    def loss(self, model, x, kind):
        y = model.encoder(model.shaped(x))
        bits = model.bottleneck.bits(y + torch.rand_like(y) - 0.5).mean()  # per example
        logits = model.decode_logits(y + (torch.round(y) - y).detach())  # rounded, gradient straight through
        recon = reconstruction_loss(logits, x.reshape(logits.shape), kind, model.config.output, model.blocks)
        return recon + self.lmbda * bits / logits[0].numel(), {"recon": recon, "bits": bits}


class Firing(nn.Module):
    """A sparse autoencoder's bookkeeping, saved with its weights: rows seen since each latent last fired (to find
    the dead ones) and, for BatchTopK, the activation threshold that stands in for the batch at inference."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.register_buffer("rows_since", torch.zeros(latent_dim, dtype=torch.int64))
        self.register_buffer("threshold", torch.zeros(()))


SELECTIONS = ("row", "batch")


@dataclass
class TopK(Objective):
    """A sparse autoencoder (Gao et al. 2024): the code keeps each row's ``k`` largest pre-activations (ReLU'd), the
    rest are 0, so every row is explained by ``k`` decoder columns: features. With the linear body (``--model sae``):
    the input's pre-bias (the decoder's bias) is subtracted before the encoder; the decoder's columns are kept at
    unit norm (renormalized after every step) and start as the encoder's transpose; latents that have not fired
    for ``dead_rows`` training rows get a gradient from the auxiliary loss (the top ``aux_k`` of the dead latents
    rebuild what the live ones miss, weighted ``aux_weight``). ``selection="batch"`` is BatchTopK: the ``k x rows``
    largest activations of the whole batch, and at inference a threshold learned in training."""

    kind: ClassVar[str] = "topk"
    help: ClassVar[str] = "a sparse autoencoder: each row keeps its k largest latents (TopK); with the linear body"
    k: int = option(32, "latents active per row")
    selection: str = option("row", "row: each row's k largest (TopK); batch: the batch's k x rows largest (BatchTopK)",
                            SELECTIONS)
    aux_k: int = option(256, "dead latents that rebuild the residual in the auxiliary loss")
    aux_weight: float = option(1 / 32, "weight of the auxiliary loss that revives dead latents")
    dead_rows: int = option(10_000, "training rows without firing after which a latent counts as dead")

    def validate(self, config):
        if not isinstance(config.body, LinearBody):
            raise ConfigError(f"the topk objective needs the linear body (--model sae): its decoder's columns are the "
                              f"features; this model's body is {config.body.kind}")  # fmt: skip
        if not (isinstance(self.k, int) and 1 <= self.k <= config.latent_dim):
            raise ConfigError(f"k={self.k} must be from 1 to the code size latent_dim={config.latent_dim}")
        if self.selection not in SELECTIONS:
            raise ConfigError(f"selection={self.selection!r} must be one of {list(SELECTIONS)}")
        if not (isinstance(self.aux_k, int) and self.aux_k >= 0) or not (self.aux_weight >= 0 and
                                                                          math.isfinite(self.aux_weight)):  # fmt: skip
            raise ConfigError(f"aux_k={self.aux_k} and aux_weight={self.aux_weight} must be zero or positive")
        if not (isinstance(self.dead_rows, int) and self.dead_rows >= 1):
            raise ConfigError(f"dead_rows={self.dead_rows} must be a positive number of rows")

    def bottleneck(self, latent_dim):
        return Firing(latent_dim)

    @staticmethod
    def layers(model) -> tuple[nn.Linear, nn.Linear]:
        return model.encoder[0], model.decoder[0]

    def initialize(self, model):
        encoder, decoder = self.layers(model)
        with torch.no_grad():
            decoder.weight.div_(decoder.weight.norm(dim=0, keepdim=True).clamp_min(1e-12))  # (D, L): unit columns
            encoder.weight.copy_(decoder.weight.T)
            encoder.bias.zero_()
            decoder.bias.zero_()

    def after_step(self, model):
        decoder = self.layers(model)[1]
        with torch.no_grad():
            decoder.weight.div_(decoder.weight.norm(dim=0, keepdim=True).clamp_min(1e-12))

    def pre_activations(self, model, x: torch.Tensor) -> torch.Tensor:
        encoder, decoder = self.layers(model)
        return encoder(model.shaped(x) - decoder.bias)  # (N, L)

    def select(self, model, pre: torch.Tensor) -> torch.Tensor:
        """The sparse code of pre-activations ``(N, L)``."""
        pre = torch.relu(pre)
        if self.selection == "batch":
            if not model.training:
                return pre * (pre > model.bottleneck.threshold)
            kept = torch.topk(pre.flatten(), min(self.k * len(pre), pre.numel())).values
            with torch.no_grad():  # the smallest activation kept, averaged: the threshold inference uses
                smallest = kept[kept > 0].min() if (kept > 0).any() else pre.new_zeros(())
                model.bottleneck.threshold.mul_(0.99).add_(0.01 * smallest)
            return pre * (pre >= kept[-1]) * (pre > 0)
        top = torch.topk(pre, self.k, dim=1)
        return torch.zeros_like(pre).scatter_(1, top.indices, top.values)

    def encode(self, model, x):
        return self.select(model, self.pre_activations(model, x))

    def loss(self, model, x, kind):
        pre = self.pre_activations(model, x)
        z = self.select(model, pre)
        logits = model.decode_logits(z)
        target = x.reshape(logits.shape)
        recon = reconstruction_loss(logits, target, kind, model.config.output, model.blocks)
        firing = model.bottleneck
        with torch.no_grad():
            fired = (z > 0).any(0)
            firing.rows_since.add_(len(x)).masked_fill_(fired, 0)
            dead = firing.rows_since > self.dead_rows
        terms = {"recon": recon, "dead": dead.float().mean(), "aux": recon.new_zeros(())}  # the same terms every step
        if self.aux_k and self.aux_weight and dead.any():
            dead_pre = torch.relu(pre).masked_fill(~dead, 0)
            top = torch.topk(dead_pre, min(self.aux_k, int(dead.sum())), dim=1)
            revived = torch.zeros_like(pre).scatter_(1, top.indices, top.values)
            residual = (target - logits).detach().flatten(1)
            rebuilt = revived @ self.layers(model)[1].weight.T  # the dead columns' share, without the bias
            terms["aux"] = F.mse_loss(rebuilt, residual)
            return recon + self.aux_weight * terms["aux"], terms
        return recon, terms


BODIES: dict[str, type[Body]] = {cls.kind: cls for cls in (MLPBody, ConvBody, LinearBody)}
OBJECTIVES: dict[str, type[Objective]] = {cls.kind: cls for cls in (Plain, Denoising, Imputing, Sparse, Variational,
                                                                     VectorQuantized, Rate, TopK)}  # fmt: skip

# The names users type, each a (body, objective) pair.
SHORTCUTS: dict[str, tuple[str, str]] = {
    "mlp": ("mlp", "plain"),
    "conv": ("conv", "plain"),
    "linear": ("linear", "plain"),
    "denoising": ("mlp", "denoising"),
    "sparse": ("mlp", "sparse"),
    "vae": ("mlp", "vae"),
    "vq": ("mlp", "vq"),
    "sae": ("linear", "topk"),
}


# ------------------------------------------------------------------------------------------ config
@dataclass
class ModelConfig:
    """Everything needed to rebuild a model; stored in every run's ``config.json``."""

    input_shape: tuple[int, ...] = (1, 28, 28)  # one example's shape: (C, H, W) for images, (D,) for tables
    latent_dim: int = 32  # size of the code z
    output: str = "sigmoid"  # "sigmoid" for data in [0, 1], "linear" for standardized data
    body: Body = field(default_factory=MLPBody)  # the encoder/decoder architecture
    objective: Objective = field(default_factory=Plain)  # what training minimises
    columns: tuple[Column, ...] = field(default=(), metadata={"omit_empty": True})  # a table's columns, else ()

    def validate(self) -> ModelConfig:
        """Check every field, naming the bad value; returns self."""
        if not self.input_shape or any(not isinstance(d, int) or d < 1 for d in self.input_shape):
            raise ConfigError(f"input_shape={self.input_shape} must be a non-empty tuple of positive sizes")
        if not isinstance(self.latent_dim, int) or self.latent_dim < 1:
            raise ConfigError(f"latent_dim={self.latent_dim} must be a positive integer")
        if self.output not in OUTPUTS:
            raise ConfigError(f"output={self.output!r} must be one of {list(OUTPUTS)}")
        if not isinstance(self.body, Body) or not isinstance(self.objective, Objective):
            raise ConfigError(f"body={self.body!r} and objective={self.objective!r} must be a Body and an Objective")
        self.body.validate(self)
        self.objective.validate(self)
        if self.columns:
            self._validate_columns()
        n_weights = self.body.n_weights(self, self.objective.code_width(self.latent_dim))
        if n_weights > MAX_WEIGHTS:  # a hostile or mistyped config must not allocate terabytes
            raise ConfigError(f"this model would have {n_weights:.3g} weights, more than the {MAX_WEIGHTS:.0e} allowed")
        return self

    def _validate_columns(self) -> None:
        try:
            check_columns(self.columns)
        except DataError as err:
            raise ConfigError(str(err)) from None
        width = sum(c.width for c in self.columns)
        if len(self.input_shape) != 1 or width != self.input_shape[0]:
            raise ConfigError(f"columns encode {width} features but input_shape is {self.input_shape}")
        if self.output != "linear":
            raise ConfigError("a table's model has a linear output (softmax heads for its categorical columns), "
                              f"not output={self.output!r}")  # fmt: skip

    def overcomplete(self) -> str | None:
        """Why a code at least as wide as the input is a problem for this model, or None when it is not one: a plain
        autoencoder (or a linear one) can then learn the identity and compress nothing."""
        width = math.prod(self.input_shape)
        if self.latent_dim < width or type(self.objective) is not Plain:
            return None
        return (f"the code (latent_dim={self.latent_dim}) is at least as wide as the input ({width} features): a plain "
                "autoencoder can learn the identity and compress nothing; the denoising or sparse objective makes an "
                "overcomplete code meaningful")

    @property
    def name(self) -> str:
        """The shortcut for this pair if there is one (``vae``), else ``body+objective`` (``conv+vae``)."""
        pair = (self.body.kind, self.objective.kind)
        return next((name for name, p in SHORTCUTS.items() if p == pair), "+".join(pair))


def part_options() -> dict[str, list[type[Part]]]:
    """Every option of every body and objective -> the part classes that have it, in registry order.

    The CLI makes one flag of each and the estimators one parameter of each.
    """
    options: dict[str, list[type[Part]]] = {}
    for part in (*BODIES.values(), *OBJECTIVES.values()):
        for f in fields(part):
            options.setdefault(f.name, []).append(part)
    return options


def option_owners(name: str) -> list[str]:
    """The parts that have an option called ``name``, as "the mlp body", "the vae objective"."""
    return [f"the {part.kind} {'body' if issubclass(part, Body) else 'objective'}"
            for part in part_options().get(name, [])]  # fmt: skip


def make_config(model: str | None = None, *, body: str | Body | None = None, objective: str | Objective | None = None,
                base: ModelConfig | None = None, spell=repr, **options) -> ModelConfig:  # fmt: skip
    """A :class:`ModelConfig` from a shortcut and flat options, each option routed to the part it belongs to.

    ``model`` is a key of :data:`SHORTCUTS` (a body and an objective); ``body`` and ``objective`` (kind names or
    instances) override its parts. Starts from ``base`` (default: ``ModelConfig()``): a part whose kind stays
    keeps its options, a part whose kind changes starts from that kind's defaults. ``options`` are
    ``input_shape``, ``latent_dim``, ``output`` or any option of the chosen parts; one that belongs to neither
    part is refused with a :class:`ConfigError` naming the parts it belongs to (``spell`` writes the option's
    name in that message: the CLI gives its flag).

    >>> make_config("vae", body="conv", beta=4.0, channels=(16, 32)).objective
    Variational(beta=4.0)
    """
    config = base or ModelConfig()
    body_kind, objective_kind = config.body.kind, config.objective.kind
    if model is not None:
        if model not in SHORTCUTS:
            raise ConfigError(f"unknown model {model!r}; choose one of {sorted(SHORTCUTS)}")
        body_kind, objective_kind = SHORTCUTS[model]
    new_body = _part(body if body is not None else body_kind, config.body, BODIES, "body")
    new_objective = _part(objective if objective is not None else objective_kind, config.objective, OBJECTIVES,
                          "objective")  # fmt: skip
    top, body_options, objective_options = {}, {}, {}
    body_fields = {f.name for f in fields(new_body)}
    objective_fields = {f.name for f in fields(new_objective)}
    for name, value in options.items():
        if isinstance(value, list):
            value = tuple(value)
        if name in ("input_shape", "latent_dim", "output"):
            top[name] = value
        elif name in body_fields:
            body_options[name] = value
        elif name in objective_fields:
            objective_options[name] = value
        else:
            owners = option_owners(name)
            where = f"it belongs to {' and '.join(owners)}" if owners else "no body or objective has it"
            raise ConfigError(f"option {spell(name)} does not apply to a {new_body.kind} body with the "
                              f"{new_objective.kind} objective: {where}")  # fmt: skip
    return replace(config, **top, body=replace(new_body, **body_options),
                   objective=replace(new_objective, **objective_options)).validate()  # fmt: skip


def _part(choice, current, registry: dict, what: str):
    if isinstance(choice, Part):
        return choice
    if choice not in registry:
        raise ConfigError(f"unknown {what} {choice!r}; choose one of {sorted(registry)}")
    return current if current.kind == choice else registry[choice]()


# ------------------------------------------------------------------------------------------ the model
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


def corrupt(x: torch.Tensor, noise: Denoising, output: str = "sigmoid",
            generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
    """Apply a denoising objective's noise to a batch (clipped to [0, 1] for data in [0, 1], ``output="sigmoid"``)."""
    level = noise.noise_level
    if noise.noise == "gaussian":
        noisy = x + level * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    else:
        hit = torch.rand(x.shape, generator=generator, device=x.device) < level
        if noise.noise == "masking":
            noisy = x.masked_fill(hit, 0.0)
        else:  # salt-pepper: half the hit features to the low end, half to the high end
            high = torch.rand(x.shape, generator=generator, device=x.device) < 0.5
            low_value, high_value = (0.0, 1.0) if output == "sigmoid" else (float(x.min()), float(x.max()))
            noisy = torch.where(hit, torch.where(high, high_value, low_value), x).to(x.dtype)
    return noisy.clamp(0, 1) if output == "sigmoid" else noisy


def masked_reconstruction_loss(logits: torch.Tensor, x: torch.Tensor, observed: torch.Tensor, kind: str,
                               output: str, blocks: list[tuple[int, int]] = ()) -> torch.Tensor:  # fmt: skip
    """:func:`reconstruction_loss` averaged over the ``observed`` cells only (a table's: over its observed
    numeric cells and categorical columns, each column one term)."""
    if kind == "bce" and output != "sigmoid":
        raise ConfigError("loss='bce' needs data in [0, 1] (a sigmoid output); use loss='mse' for this data")
    if blocks:
        each, weight = table_terms(logits, x, blocks)
        weight = weight * observed
        return (each * weight).sum() / weight.sum().clamp(min=1)
    if kind == "bce":
        each = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    elif kind == "mse":
        each = F.mse_loss(torch.sigmoid(logits) if output == "sigmoid" else logits, x, reduction="none")
    else:
        raise ConfigError(f"unknown loss {kind!r}; choose one of {list(LOSSES)}")
    return (each * observed).sum() / observed.sum().clamp(min=1)


def reconstruction_loss(logits: torch.Tensor, x: torch.Tensor, kind: str, output: str,
                        blocks: list[tuple[int, int]] = ()) -> torch.Tensor:  # fmt: skip
    """Mean per-element MSE or BCE between the decoder's ``logits`` and the targets ``x``; for a table with
    categorical ``blocks``, the mean over its columns of the squared error (numeric) or cross-entropy (categorical)."""
    if kind == "bce":
        if output != "sigmoid":
            raise ConfigError("loss='bce' needs data in [0, 1] (a sigmoid output); use loss='mse' for this data")
        return F.binary_cross_entropy_with_logits(logits, x)
    if kind != "mse":
        raise ConfigError(f"unknown loss {kind!r}; choose one of {list(LOSSES)}")
    if blocks:
        each, weight = table_terms(logits, x, blocks)
        return (each * weight).sum() / (weight.sum() * len(x))
    return F.mse_loss(torch.sigmoid(logits) if output == "sigmoid" else logits, x)


def table_terms(logits: torch.Tensor, x: torch.Tensor, blocks: list[tuple[int, int]]
                ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """A table's loss terms ``(N, D)`` and their weights ``(D,)``: the squared error at a numeric feature, a
    categorical column's cross-entropy at its block's first slot (the block's other slots weigh 0)."""
    each = (logits - x).square()
    weight = torch.ones(x.shape[1], dtype=x.dtype, device=x.device)
    for start, stop in blocks:
        each[:, start] = -(x[:, start:stop] * F.log_softmax(logits[:, start:stop], dim=1)).sum(1)
        weight[start + 1 : stop] = 0
    return each, weight


def with_softmax_blocks(logits: torch.Tensor, blocks: list[tuple[int, int]]) -> torch.Tensor:
    """``logits`` ``(N, D)`` with each categorical block's slots replaced by their softmax."""
    out = logits.clone()
    for start, stop in blocks:
        out[:, start:stop] = torch.softmax(logits[:, start:stop], dim=1)
    return out


# Named architectures (--preset): a model config, and training settings the preset is known to need.
PRESETS: dict[str, dict] = {
    "chapter": {
        "help": "784-256-32, the chapter's two-layer encoder and decoder (default)",
        "model": ModelConfig(latent_dim=32, body=MLPBody(hidden=(256,))),
    },
    "funnel": {
        "help": "784-256-64-16, the chapter's worked example",
        "model": ModelConfig(latent_dim=16, body=MLPBody(hidden=(256, 64))),
    },
    "hinton2006": {
        "help": "784-1000-500-250-30, Hinton & Salakhutdinov 2006's deep autoencoder",
        "model": ModelConfig(latent_dim=30, body=MLPBody(hidden=(1000, 500, 250))),
    },
    "codec": {
        "help": "a codec for aekit compress: convolutional, 32-D integer code under a learned entropy model "
        "(--objective rate, lmbda 0.01), 30 epochs, cosine schedule (16.6 bytes a digit at 24.3 dB on MNIST)",
        "model": ModelConfig(latent_dim=32, body=ConvBody(channels=(32, 64)), objective=Rate()),
        "train": {"epochs": 30, "lr": 2e-3, "schedule": "cosine"},
    },
    "conv30": {
        "help": "convolutional, 30-D code, cosine schedule, 40 epochs: beats the paper's 3.00 SSE/image "
        "(README, results)",
        "model": ModelConfig(latent_dim=30, body=ConvBody(channels=(32, 64))),
        "train": {"epochs": 40, "lr": 2e-3, "schedule": "cosine"},
    },
}
