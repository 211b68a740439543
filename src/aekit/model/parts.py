"""The parts of a model, declared without torch: a body (the encoder/decoder architecture) times an objective (what
training minimises), the config that holds one of each (:mod:`aekit.model.config`, with the registries and the presets).

    bodies      MLPBody(hidden, activation)   ConvBody(channels, activation)   LinearBody()
                (for sequences, :mod:`aekit.model.sequences`: TCNBody, GRUBody)
    objectives  Plain()   Denoising(noise, noise_level)   Imputing(noise_level)   Sparse(sparsity)   Variational(beta)
                VectorQuantized(codebook_size, groups, commitment)   Rate(lmbda)   TopK(k, selection, ...)

Each part is a small dataclass holding only its own options, each option a field with its default and help (the CLI
builds its flags from them, the estimators their parameters), and its own validation. Importing this module loads no
torch: the command line's help, its flags and its argument errors need only the declarations. What a part builds,
holds and computes (layers, bottlenecks, losses) it takes from :mod:`aekit.networks` when it is asked to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import ClassVar

from ..errors import ConfigError
from ..io.tables import column_of_feature
from ..options import option

ACTIVATION_NAMES = ("relu", "gelu", "tanh", "sigmoid", "elu")  # aekit.model.networks.ACTIVATIONS' keys


class _Later:
    """A module imported when a part first needs it (to build, hold or compute), not when this module is imported:
    the command line describes the parts without loading torch (half a second to two seconds)."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attribute: str):
        import importlib

        return getattr(importlib.import_module(self._name), attribute)


torch = _Later("torch")
networks = _Later("aekit.model.networks")  # layers, bottlenecks and losses (torch)
OUTPUTS = ("sigmoid", "linear")  # sigmoid for data in [0, 1], linear for standardized data
NOISES = ("gaussian", "masking", "salt-pepper")
MAX_WEIGHTS = 5e8  # refuse configs whose model would not fit in a sane amount of memory (2 GB of fp32)
MAX_LAYERS = 64  # per encoder (the decoder mirrors it): a mistyped or hostile config must not build for minutes


class Part:
    """A body or an objective: a dataclass of its own options, with a ``kind`` name used in files and flags."""

    kind: ClassVar[str]
    help: ClassVar[str]

    def validate(self, config) -> None:
        """Check this part's options (and that it suits ``config``); raise :class:`ConfigError` naming the value."""

    def options(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def describe(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{self.kind}({shown})"


def check_activation(activation: str) -> None:
    if activation not in ACTIVATION_NAMES:
        raise ConfigError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATION_NAMES)}")


def check_widths(name: str, values: tuple[int, ...], allow_empty: bool) -> None:
    if (not values and not allow_empty) or any(not isinstance(v, int) or v < 1 for v in values):
        raise ConfigError(f"{name}={values} must hold positive {'layer widths' if name == 'hidden' else 'counts'}")
    if len(values) > MAX_LAYERS:
        raise ConfigError(f"{name} lists {len(values)} layers; at most {MAX_LAYERS} are allowed")


# ------------------------------------------------------------------------------------------ bodies
class Body(Part):
    """Builds the encoder (input -> ``code_width`` numbers) and the decoder (``latent_dim`` -> input-sized logits)."""

    def build(self, config, code_width: int) -> tuple:
        """The encoder and the decoder, torch modules."""
        raise NotImplementedError

    def n_weights(self, config, code_width: int) -> int:
        """The number of weights :meth:`build` would allocate, computed without allocating them."""
        raise NotImplementedError

    def shape_input(self, x: torch.Tensor, input_shape: tuple[int, ...]) -> torch.Tensor:
        """``(N, ...)`` -> what the encoder takes (flat rows by default)."""
        return x.reshape(-1, math.prod(input_shape))  # -1, not len(x): exports keep a dynamic batch

    def default_output(self, unit_data: bool) -> str:
        """The output nonlinearity for data in [0, 1] (``unit_data``) or standardized data."""
        return "sigmoid" if unit_data else "linear"




def linear_weights(widths: list[int]) -> int:
    return sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))


@dataclass
class MLPBody(Body):
    """Fully connected encoder and decoder; the decoder mirrors the encoder's widths."""

    kind: ClassVar[str] = "mlp"
    help: ClassVar[str] = "fully connected encoder and decoder (the chapter's)"
    hidden: tuple[int, ...] = option((256,), "encoder hidden widths, e.g. 256,64 (the decoder mirrors them)")
    activation: str = option("relu", "hidden-layer nonlinearity", ACTIVATION_NAMES)

    def validate(self, config):
        check_widths("hidden", self.hidden, allow_empty=True)
        check_activation(self.activation)

    def build(self, config, code_width):
        widths = [math.prod(config.input_shape), *self.hidden]
        return networks.mlp([*widths, code_width], self.activation), networks.mlp([config.latent_dim, *reversed(widths)], self.activation)

    def n_weights(self, config, code_width):
        widths = [math.prod(config.input_shape), *self.hidden]
        return linear_weights([*widths, code_width]) + linear_weights([config.latent_dim, *reversed(widths)])


@dataclass
class LinearBody(Body):
    """One linear layer each way. With MSE and a linear output it learns PCA's subspace, so it keeps a linear
    output whatever the data (give ``output="sigmoid"`` in Python for a logistic PCA)."""

    kind: ClassVar[str] = "linear"
    help: ClassVar[str] = "one linear layer each way: with MSE it learns PCA's subspace"

    def build(self, config, code_width):
        return networks.mlp([math.prod(config.input_shape), code_width], "relu"), networks.mlp([config.latent_dim, math.prod(config.input_shape)], "relu")

    def n_weights(self, config, code_width):
        d = math.prod(config.input_shape)
        return linear_weights([d, code_width]) + linear_weights([config.latent_dim, d])

    def default_output(self, unit_data):
        return "linear"




CHANNELS_HELP = "channels of each conv layer, e.g. 32,64 (conv: stride 2; tcn: dilation 1, 2, 4, ...)"


@dataclass
class ConvBody(Body):
    """Stride-2 3x3 convolutions and their transposed mirror, for images (C, H, W) of any H x W."""

    kind: ClassVar[str] = "conv"
    help: ClassVar[str] = "convolutional encoder and decoder for images (C, H, W) of any H x W"
    channels: tuple[int, ...] = option((32, 64), CHANNELS_HELP)
    activation: str = option("relu", "hidden-layer nonlinearity", ACTIVATION_NAMES)

    def validate(self, config):
        check_widths("channels", self.channels, allow_empty=False)
        check_activation(self.activation)
        if len(config.input_shape) != 3:
            raise ConfigError(f"a convolutional body needs image data (C, H, W); this data has shape "
                              f"{tuple(config.input_shape)}: use the mlp body")  # fmt: skip

    def _feature_shape(self, config) -> tuple[int, int, int]:
        _, h, w = config.input_shape
        for _ in self.channels:
            h, w = (h + 1) // 2, (w + 1) // 2
        return self.channels[-1], h, w

    def build(self, config, code_width):
        encoder = networks.ConvEncoder(config.input_shape, self.channels, code_width, self.activation)
        decoder = networks.ConvDecoder(config.input_shape, self.channels, config.latent_dim, self.activation,
                              encoder.feature_shape)  # fmt: skip
        return encoder, decoder

    def n_weights(self, config, code_width):
        ins = [config.input_shape[0], *self.channels]
        convs = 2 * sum(9 * a * b for a, b in zip(ins[:-1], ins[1:])) + sum(ins[1:]) + sum(ins[:-1])  # and mirror
        features = math.prod(self._feature_shape(config))
        return convs + linear_weights([features, code_width]) + linear_weights([config.latent_dim, features])

    def shape_input(self, x, input_shape):
        return x.reshape(-1, *input_shape)


# ------------------------------------------------------------------------------------------ objectives
class Objective(Part):
    """What the code is (``encode``) and what training minimises (``loss``); plain reconstruction by default.

    What a trained model of this objective can do beyond encoding and decoding is declared here, not found by
    ``isinstance`` elsewhere: ``wing`` names the capability a run of it has (``run.codec`` for ``"codec"``, a sparse
    autoencoder's ``run.analysis.features()`` for ``"features"``), ``fills_missing`` that its model takes missing
    cells."""

    wing: ClassVar[str | None] = None
    fills_missing: ClassVar[bool] = False
    dense_code: ClassVar[bool] = True  # random dense codes (N(0, I), the holes measure) mean something for it

    def compared_components(self, latent_dim: int) -> int:
        """How many PCA components its headline compares with: as many as the code has numbers."""
        return latent_dim

    def code_width(self, latent_dim: int) -> int:
        """Width of the encoder's output (a VAE's holds a mean and a log-variance per code unit)."""
        return latent_dim

    def bottleneck(self, latent_dim: int):
        """Extra parameters between encoder and decoder (a VQ codebook), stored as ``bottleneck.*``."""
        return None

    def encode(self, model, x: torch.Tensor) -> torch.Tensor:
        return model.encoder(model.shaped(x))

    def sample_codes(self, model, x: torch.Tensor) -> torch.Tensor:
        """Codes as the decoder sees them in training (a VAE's are samples); compared with the prior."""
        return self.encode(model, x)

    def loss(self, model, x: torch.Tensor, kind: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = model.decode_logits(self.encode(model, x))
        return networks.reconstruction_loss(logits, x.reshape(logits.shape), kind, model.config.output, model.blocks), {}

    def initialize(self, model) -> None:
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
        logits = model.decode_logits(self.encode(model, networks.corrupt(x, self, model.config.output)))
        return networks.reconstruction_loss(logits, x.reshape(logits.shape), kind, model.config.output, model.blocks), {}


@dataclass
class Imputing(Objective):
    """Data with holes: cells that are NaN are missing, neither input nor target; each step also hides
    ``noise_level`` of the observed cells (masking noise), so the model learns to fill holes from what is left
    (MIDA, Gondara & Wang 2018: a denoising autoencoder with masking noise is an imputer). The loss is the mean
    reconstruction error over the observed cells only. Missing cells enter the encoder as 0 (the mean of a
    standardized feature)."""

    kind: ClassVar[str] = "impute"
    fills_missing: ClassVar[bool] = True
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
        return networks.masked_reconstruction_loss(logits, x.reshape(logits.shape), observed.reshape(logits.shape), kind,
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
        recon = networks.reconstruction_loss(logits, x.reshape(logits.shape), kind, model.config.output, model.blocks)
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
        recon = networks.reconstruction_loss(logits, x.reshape(logits.shape), kind, model.config.output, model.blocks) * d  # per example
        kl = 0.5 * (mean.pow(2) + log_var.exp() - 1 - log_var).sum(1).mean()
        return recon + self.beta * kl, {"recon": recon, "kl": kl}




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
        return networks.Codebook(self.codebook_size, latent_dim // self.groups)

    def symbols(self, model, x) -> torch.Tensor:
        """The discrete code of each example: ``(N, groups)`` codebook indices."""
        return model.bottleneck.quantize(model.encoder(model.shaped(x)), self.groups)[1]

    def encode(self, model, x):
        return model.bottleneck.quantize(model.encoder(model.shaped(x)), self.groups)[0]

    def loss(self, model, x, kind):
        z_e = model.encoder(model.shaped(x))
        z_q, _ = model.bottleneck.quantize(z_e, self.groups)
        codebook = torch.nn.functional.mse_loss(z_q, z_e.detach())
        commit = torch.nn.functional.mse_loss(z_e, z_q.detach())
        logits = model.decode_logits(z_e + (z_q - z_e).detach())  # straight-through gradient
        recon = networks.reconstruction_loss(logits, x.reshape(logits.shape), kind, model.config.output, model.blocks)
        return recon + codebook + self.commitment * commit, {"recon": recon, "codebook": codebook, "commitment": commit}




@dataclass
class Rate(Objective):
    """An autoencoder as a codec (Ballé et al. 2017): the code is rounded to integers and stored under a learned
    entropy model (:class:`EntropyModel`), and training minimises distortion + ``lmbda`` x rate: the squared error
    per example plus ``lmbda`` times the bits its code costs. In training, the rate is that of the code plus uniform
    noise (a differentiable stand-in for rounding) and the decoder sees the rounded code (gradient straight
    through); ``encode`` rounds. ``aekit compress`` writes the rounded codes with a real entropy coder."""

    kind: ClassVar[str] = "rate"
    wing: ClassVar[str | None] = "codec"
    help: ClassVar[str] = "a codec: the code rounded to integers under a learned entropy model, loss = error + lmbda x bits"
    lmbda: float = option(0.01, "rate's weight: the squared error per example one bit of code is worth (higher: "
                          "smaller files, lower PSNR)")

    def validate(self, config):
        if not (self.lmbda >= 0 and math.isfinite(self.lmbda)):
            raise ConfigError(f"lmbda={self.lmbda} must be zero or positive")

    def bottleneck(self, latent_dim):
        return networks.EntropyModel(latent_dim)

    def encode(self, model, x):
        return torch.round(model.encoder(model.shaped(x)))

    def loss(self, model, x, kind):
        y = model.encoder(model.shaped(x))
        bits = model.bottleneck.bits(y + torch.rand_like(y) - 0.5).mean()  # per example
        logits = model.decode_logits(y + (torch.round(y) - y).detach())  # rounded, gradient straight through
        recon = networks.reconstruction_loss(logits, x.reshape(logits.shape), kind, model.config.output, model.blocks)
        return recon + self.lmbda * bits / logits[0].numel(), {"recon": recon, "bits": bits}




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
    wing: ClassVar[str | None] = "features"
    dense_code: ClassVar[bool] = False  # k of its latents are on: N(0, I) codes and the holes measure do not apply

    def compared_components(self, latent_dim: int) -> int:
        """PCA at the code's L0: each row is rebuilt from ``k`` numbers, as from ``k`` components."""
        return self.k
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
        return networks.Firing(latent_dim)

    @staticmethod
    def layers(model) -> tuple:
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
        recon = networks.reconstruction_loss(logits, target, kind, model.config.output, model.blocks)
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
            terms["aux"] = torch.nn.functional.mse_loss(rebuilt, residual)
            return recon + self.aux_weight * terms["aux"], terms
        return recon, terms
