"""The bodies for sequences ``(C, L)``, declared without torch like every part (:mod:`aekit.model.parts`): windows of
a long series (``aekit train --series``) or whole series of one length (``input_shape=(C, L)``).

    TCNBody(channels, activation)   dilated 1-D convolutions (kernel 3, dilation 1, 2, 4, ...)
    GRUBody(units, layers)          a recurrent encoder and decoder
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..errors import ConfigError
from ..options import option
from .parts import (ACTIVATION_NAMES, CHANNELS_HELP, MAX_LAYERS, Body, check_activation, check_widths, linear_weights,
                    networks)  # fmt: skip


def _check_sequences(kind: str, config) -> None:
    if len(config.input_shape) != 2:
        raise ConfigError(f"a {kind} body needs sequences (C, L): windows of a long series (--series) or whole series "
                          f"(input_shape (C, L)); this data has shape {tuple(config.input_shape)}")  # fmt: skip


@dataclass
class TCNBody(Body):
    """Dilated 1-D convolutions (a TCN's) for sequences (C, L): kernel 3, dilation 1, 2, 4, ... so that each layer
    sees twice as far as the one before, the length kept; one linear layer to the code. The decoder mirrors it from
    a linear layer out of the code, ending in a 1x1 convolution to the C channels."""

    kind: ClassVar[str] = "tcn"
    help: ClassVar[str] = "dilated 1-D convolutions for sequences (C, L): windows of a series (--series), whole series"
    channels: tuple[int, ...] = option((32, 32, 32), CHANNELS_HELP)
    activation: str = option("relu", "hidden-layer nonlinearity", ACTIVATION_NAMES)

    def validate(self, config):
        check_widths("channels", self.channels, allow_empty=False)
        check_activation(self.activation)
        _check_sequences(self.kind, config)

    def build(self, config, code_width):
        return (networks.TCNEncoder(config.input_shape, self.channels, code_width, self.activation),
                networks.TCNDecoder(config.input_shape, self.channels, config.latent_dim, self.activation))  # fmt: skip

    def n_weights(self, config, code_width):
        c, length = config.input_shape
        ins = [c, *self.channels]
        convs = sum(3 * a * b + b for a, b in zip(ins[:-1], ins[1:]))  # the encoder's; the decoder's the same
        back = list(reversed(self.channels))
        decoder = sum(3 * a * b + b for a, b in zip(back[:-1], back[1:])) + back[-1] * c + c
        features = self.channels[-1] * length
        return convs + decoder + linear_weights([features, code_width]) + linear_weights([config.latent_dim, features])

    def shape_input(self, x, input_shape):
        return x.reshape(-1, *input_shape)


@dataclass
class GRUBody(Body):
    """Recurrent encoder and decoder for sequences (C, L): a GRU reads the steps and its last state becomes the code
    (one linear layer); the decoder's GRU starts from the code (a linear layer) and is given the code at every step,
    a linear layer reading out the C channels of each (the LSTM autoencoder's shape, Srivastava et al. 2015)."""

    kind: ClassVar[str] = "gru"
    help: ClassVar[str] = "recurrent (GRU) encoder and decoder for sequences (C, L)"
    units: int = option(64, "units of each GRU's state")
    layers: int = option(1, "stacked GRU layers each way")

    def validate(self, config):
        for name in ("units", "layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 1 <= value <= (4096 if name == "units" else MAX_LAYERS):
                raise ConfigError(f"{name}={value!r} must be a positive integer")
        _check_sequences(self.kind, config)

    def build(self, config, code_width):
        return (networks.GRUEncoder(config.input_shape, self.units, self.layers, code_width),
                networks.GRUDecoder(config.input_shape, self.units, self.layers, config.latent_dim))  # fmt: skip

    def n_weights(self, config, code_width):
        c, _ = config.input_shape
        h = self.units
        gru = lambda n_in: 3 * (n_in * h + h * h + 2 * h) + (self.layers - 1) * 3 * (2 * h * h + 2 * h)  # noqa: E731
        return (gru(c) + linear_weights([h, code_width]) + linear_weights([config.latent_dim, h])
                + gru(config.latent_dim) + linear_weights([h, c]))  # fmt: skip

    def shape_input(self, x, input_shape):
        return x.reshape(-1, *input_shape)
