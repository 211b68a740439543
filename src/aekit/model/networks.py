"""The torch side of the models: the layers the bodies build, the bottlenecks the objectives hold, and the losses.

:mod:`aekit.parts` declares the parts (their options, their validation) without torch, so that the command line can
describe them without loading it; a part's ``build``, ``bottleneck`` and ``loss`` come here for what they make.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..configs import LOSSES
from ..errors import ConfigError

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "elu": nn.ELU}


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
        y = self.deconvs(self.linear(z).reshape(-1, *self.feature_shape))
        return y[:, :, : self.input_shape[1], : self.input_shape[2]]


class TCNEncoder(nn.Module):
    """Dilated 1-D convolutions (kernel 3, dilation 1, 2, 4, ..., the length kept), then one linear layer to the code."""

    def __init__(self, input_shape: tuple[int, int], channels: tuple[int, ...], code: int, activation: str):
        super().__init__()
        c, length = input_shape
        layers: list[nn.Module] = []
        for i, out in enumerate(channels):
            layers += [nn.Conv1d(c, out, 3, padding=2**i, dilation=2**i), ACTIVATIONS[activation]()]
            c = out
        self.convs = nn.Sequential(*layers)
        self.linear = nn.Linear(c * length, code)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, L) -> (N, code)
        return self.linear(self.convs(x).flatten(1))


class TCNDecoder(nn.Module):
    """The mirror of :class:`TCNEncoder`: a linear layer to (channels[-1], L), the dilated convolutions in reverse,
    and a 1x1 convolution to the C channels (logits)."""

    def __init__(self, input_shape: tuple[int, int], channels: tuple[int, ...], latent: int, activation: str):
        super().__init__()
        c, self.length = input_shape
        self.width = channels[-1]
        self.linear = nn.Linear(latent, self.width * self.length)
        layers: list[nn.Module] = [ACTIVATIONS[activation]()]
        back = list(reversed(channels))
        for i, (a, b) in enumerate(zip(back[:-1], back[1:])):
            dilation = 2 ** (len(channels) - 1 - i)
            layers += [nn.Conv1d(a, b, 3, padding=dilation, dilation=dilation), ACTIVATIONS[activation]()]
        layers.append(nn.Conv1d(back[-1], c, 1))
        self.convs = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (N, latent) -> (N, C, L) logits
        return self.convs(self.linear(z).reshape(-1, self.width, self.length))


class GRUEncoder(nn.Module):
    """A GRU over the steps of (N, C, L); its last layer's final state, through a linear layer, is the code."""

    def __init__(self, input_shape: tuple[int, int], units: int, layers: int, code: int):
        super().__init__()
        self.gru = nn.GRU(input_shape[0], units, layers, batch_first=True)
        self.linear = nn.Linear(units, code)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, L) -> (N, code)
        _, state = self.gru(x.transpose(1, 2))
        return self.linear(state[-1])


class GRUDecoder(nn.Module):
    """A GRU that starts from the code (a linear layer to its state) and is given the code at each of the L steps;
    a linear layer reads the C channels out of each step's output (logits)."""

    def __init__(self, input_shape: tuple[int, int], units: int, layers: int, latent: int):
        super().__init__()
        self.channels, self.length, self.layers = input_shape[0], input_shape[1], layers
        self.start = nn.Linear(latent, units)
        self.gru = nn.GRU(latent, units, layers, batch_first=True)
        self.out = nn.Linear(units, self.channels)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (N, latent) -> (N, C, L) logits
        state = torch.tanh(self.start(z)).unsqueeze(0).expand(self.layers, -1, -1).contiguous()
        steps, _ = self.gru(z.unsqueeze(1).expand(-1, self.length, -1), state)
        return self.out(steps).transpose(1, 2)


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


class Firing(nn.Module):
    """A sparse autoencoder's bookkeeping, saved with its weights: rows seen since each latent last fired (to find
    the dead ones) and, for BatchTopK, the activation threshold that stands in for the batch at inference."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.register_buffer("rows_since", torch.zeros(latent_dim, dtype=torch.int64))
        self.register_buffer("threshold", torch.zeros(()))


def corrupt(x: torch.Tensor, noise, output: str = "sigmoid",
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
