"""The model's config: one body and one objective (:mod:`aekit.model.parts`), the code size, the data's shape and
columns; the names users type (shortcuts, presets) and :func:`make_config`, which routes each option to the part
that owns it. Declared without torch, as the parts are."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

from ..errors import ConfigError, DataError
from ..io.tables import Column, check_columns
from .parts import (MAX_WEIGHTS, OUTPUTS, Body, ConvBody, Denoising, Imputing, LinearBody, MLPBody, Objective, Part,
                    Plain, Rate, Sparse, TopK, Variational, VectorQuantized)  # fmt: skip
from .sequences import GRUBody, TCNBody

# The registries: every body and objective by its kind (the name in files and flags). A new part is one class and one
# entry here; the CLI's flags, the estimators' parameters and the run format follow.
BODIES: dict[str, type[Body]] = {cls.kind: cls for cls in (MLPBody, ConvBody, LinearBody, TCNBody, GRUBody)}
OBJECTIVES: dict[str, type[Objective]] = {cls.kind: cls for cls in (Plain, Denoising, Imputing, Sparse, Variational,
                                                                     VectorQuantized, Rate, TopK)}  # fmt: skip

# The names users type, each a (body, objective) pair.
SHORTCUTS: dict[str, tuple[str, str]] = {
    "mlp": ("mlp", "plain"),
    "conv": ("conv", "plain"),
    "tcn": ("tcn", "plain"),
    "gru": ("gru", "plain"),
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


# What a model left to its data gets (aekit train without --latent-dim, --hidden or --epochs; the imputer's defaults):
# a code narrower than the data (half its width) where the default's would be at least as wide, and for filling
# holes the imputer's recipe, chosen on benchmarks/impute.py's tables at 30% missing.
FILLING_HIDDEN = (256, 128)
FILLING_EPOCHS = 200


def narrow_code(width: int) -> int:
    """A code narrower than ``width`` features (half of it, at least 1): for a table whose width the default's meets."""
    return max(1, width // 2)


def filling_code(width: int) -> int:
    """The imputer's code for ``width`` features: half of them, from 2 up to 64."""
    return int(min(64, max(2, width // 2)))


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
