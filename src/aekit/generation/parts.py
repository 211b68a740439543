"""The latent priors, declared without torch: each a small dataclass of its own options (``option()`` fields: its
``aekit fit-prior`` flags and what its stored JSON holds), its checks, its fit and its load, as a model's parts are.
:data:`PRIORS` is the registry, one line a prior; ``aekit fit-prior`` and ``sample``, ``run.priors`` and the run
directory's storage all read it. ``normal`` (N(0, I)) is no entry: it is never fitted, and every run has it.

What a prior makes when it is fitted or loaded is a sampler (:class:`aekit.generation.priors.Prior`: ``sample``,
``labels``, ``state``); the built-in ones are in :mod:`aekit.generation.priors`, loaded (with torch) only when a
prior is fitted or loaded. A prior of your own can be one class: a ``PriorConfig`` whose ``fit`` returns a sampler.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import ClassVar

from ..errors import ConfigError
from ..options import option


@dataclass
class PriorConfig:
    """A prior's options; ``fit`` makes its sampler from codes ``(N, d)`` (and labels ``(N,)``, conditional),
    ``load`` rebuilds it from what :func:`aekit.generation.priors.to_stored` kept."""

    kind: ClassVar[str]
    help: ClassVar[str]
    epoch_bar: ClassVar[bool] = False  # its fit shows a bar of its own (``progress`` wraps its epochs)

    def validate(self) -> PriorConfig:
        """Check the options; a ConfigError names the bad one as its flag."""
        return self

    def fit(self, codes, labels=None, seed: int = 0, progress=None):
        raise NotImplementedError

    def load(self, meta: dict, tensors: dict, latent_dim: int, where: str):
        raise NotImplementedError


@dataclass
class GaussianConfig(PriorConfig):
    kind: ClassVar[str] = "gaussian"
    help: ClassVar[str] = "one full-covariance Gaussian fitted to the codes (one per label with --conditional)"

    def fit(self, codes, labels=None, seed: int = 0, progress=None):
        from .priors import Mixture

        return Mixture.fit(self.kind, codes, labels, 1, seed)

    def load(self, meta, tensors, latent_dim, where):
        from .priors import Mixture

        return Mixture.load(self.kind, meta, tensors, latent_dim, where)


@dataclass
class GMMConfig(GaussianConfig):
    kind: ClassVar[str] = "gmm"
    help: ClassVar[str] = "a mixture of full-covariance Gaussians (Ghosh et al. 2020), fitted by EM"

    components: int = option(10, "components (per label with --conditional)", metavar="K")

    def validate(self) -> GMMConfig:
        if int(self.components) < 1:
            raise ConfigError(f"--components {self.components} must be at least 1")
        return self

    def fit(self, codes, labels=None, seed: int = 0, progress=None):
        from .priors import Mixture

        return Mixture.fit(self.kind, codes, labels, int(self.components), seed)


@dataclass
class DiffusionConfig(PriorConfig):
    """The diffusion prior's settings; defaults measured on MNIST's 16-D codes (benchmarks/generation.py)."""

    kind: ClassVar[str] = "diffusion"
    help: ClassVar[str] = ("a small denoising diffusion model of the codes (about a minute or two for MNIST's 60,000 "
                           "codes on 2 CPU cores)")  # fmt: skip
    epoch_bar: ClassVar[bool] = True

    steps: int = option(1000, "diffusion steps T of training")
    sample_steps: int = option(100, "DDIM steps when sampling")
    width: int = option(256, "the noise predictor's width")
    blocks: int = option(3, "the noise predictor's residual blocks")
    epochs: int = option(20, "passes over the codes (MNIST's 60,000 16-D codes: about 100 s on 2 CPU cores)")
    batch_size: int = option(128, "codes per step (512 takes as long per epoch on 2 cores for a worse fit)")
    lr: float = option(1e-3, "AdamW's learning rate, cosine-decayed to 0")
    ema: float = option(0.999, "the sampled weights are an exponential moving average of the trained ones")
    guidance: float = option(1.0, "classifier-free guidance scale for a label (1: plain conditional sampling)")
    label_dropout: float = option(0.1, "share of training rows with their label hidden (conditional only)")

    def validate(self) -> DiffusionConfig:
        for name in ("steps", "sample_steps", "width", "blocks", "epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"diffusion {name}={getattr(self, name)} must be at least 1")
        if self.sample_steps > self.steps:
            raise ConfigError(f"diffusion sample_steps={self.sample_steps} must be at most steps={self.steps}")
        if not (self.lr > 0 and 0 <= self.ema < 1 and 0 <= self.label_dropout < 1 and self.guidance >= 0):
            raise ConfigError("diffusion lr must be > 0, ema and label_dropout in [0, 1), guidance >= 0")
        return self

    def fit(self, codes, labels=None, seed: int = 0, progress=None):
        from .priors import Diffusion

        return Diffusion.fit(codes, labels, self.validate(), seed, progress)

    def load(self, meta, tensors, latent_dim, where):
        from .priors import Diffusion

        return Diffusion.load(self.validate(), meta, tensors, latent_dim, where)


PRIORS: dict[str, type[PriorConfig]] = {cls.kind: cls for cls in (GaussianConfig, GMMConfig, DiffusionConfig)}


def prior_names() -> tuple[str, ...]:
    """Every prior a run may have: ``normal``, then the registry's, in its order."""
    return ("normal", *PRIORS)


def prior_options() -> dict[str, list[type[PriorConfig]]]:
    """Every option of every prior -> the priors that have it, in registry order (one ``fit-prior`` flag each)."""
    options: dict[str, list[type[PriorConfig]]] = {}
    for prior in PRIORS.values():
        for f in fields(prior):
            options.setdefault(f.name, []).append(prior)
    return options


def make_prior(prior: str | PriorConfig, **options) -> PriorConfig:
    """Prior ``prior`` (a name, or a config) with ``options`` (None: its default), checked: an unknown prior, an
    option it does not have or a bad value is one ConfigError."""
    if isinstance(prior, PriorConfig):
        config = prior
    elif prior == "normal":
        raise ConfigError("prior 'normal' is N(0, I) and needs no fitting; sample from it directly")
    elif prior not in PRIORS:
        raise ConfigError(f"unknown prior {prior!r}; choose one of {list(prior_names())}")
    else:
        config = PRIORS[prior]()
    given = {name: value for name, value in options.items() if value is not None}
    own = {f.name for f in fields(config)}
    for name in given:
        if name not in own:
            owners = [p.kind for p in prior_options().get(name, [])]
            where = f"it belongs to the {' and '.join(owners)} prior" if owners else "no prior has it"
            raise ConfigError(f"option --{name.replace('_', '-')} does not apply to the {config.kind} prior: {where}")
    return replace(config, **given).validate()


def stored_config(meta: dict, where: str) -> PriorConfig:
    """The config of a stored prior from its JSON (its ``kind`` and options), checked."""
    kind = meta.get("kind")
    if kind not in PRIORS:
        raise ConfigError(f"{where}: unknown prior kind {kind!r}; aekit knows {list(prior_names())}")
    cls = PRIORS[kind]
    return cls(**{f.name: meta[f.name] for f in fields(cls) if f.name in meta})


def from_stored(stored, latent_dim: int, where: str = "prior"):
    """Rebuild a prior from :func:`aekit.generation.priors.to_stored`'s output by its kind's config (:data:`PRIORS`),
    checked against the code size (a ConfigError otherwise)."""
    meta, tensors = stored.meta, stored.tensors
    config = stored_config(meta, where)
    try:
        prior = config.load(meta, tensors, latent_dim, where)
    except (KeyError, TypeError, RuntimeError, ValueError) as err:
        raise ConfigError(f"{where}: not a stored {config.kind} prior ({str(err).splitlines()[0]})") from None
    prior.labels = [int(v) for v in meta.get("labels", [])]
    return prior


def fit_prior(prior, codes, labels=None, seed: int = 0, progress=None, **options):
    """Fit ``prior`` (a name of :data:`PRIORS` with its ``options``, or a config) to ``codes``
    ``(N, d)``, per label if ``labels``; ``progress`` wraps the epochs of a prior that trains for epochs."""
    return make_prior(prior, **options).fit(codes, labels, seed, progress)
