"""A run's priors (``run.priors``): fit a distribution to the training codes, store it beside the run, sample from it
and measure its samples beside the floor. Built from the fitted model, the run directory that stores the priors (any
object with ``prior_names``, ``load_prior``, ``save_prior``, ``prior_digest``, ``writing`` and its ``PRIORS`` folder:
the run layer's ``RunDir``) and a function that loads the run's data once asked."""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from ..core.fitted import Fitted
from ..core.space import Data
from ..errors import ConfigError
from ..progress import bar as progress_bar
from ..progress import working as progress_working
from .metrics import generation_metrics
from .parts import PriorConfig, from_stored, make_prior, prior_names
from .priors import Normal, Prior, to_stored

log = logging.getLogger(__name__)


class Priors:
    """The priors of one run: ``normal`` (always) and those fitted to it (``aekit fit-prior``)."""

    def __init__(self, fitted: Fitted, store, data: Callable[[], Data], name: str = "RUN", data_name: str = "the data"):
        self.fitted, self.store, self.data, self.name, self.data_name = fitted, store, data, name, data_name
        self._measured: dict[str, float] = {}  # every prior's sample quality, as fit() measured it just now

    @property
    def latent_dim(self) -> int:
        return self.fitted.model.config.latent_dim

    def names(self) -> list[str]:
        """The priors this run can sample from: ``normal`` and those fitted to it, in the registry's order."""
        fitted = set(self.store.prior_names())
        return [name for name in prior_names() if name == "normal" or name in fitted]

    def __getitem__(self, name: str) -> Prior:
        """Prior ``name``; a ConfigError for an unknown one or one not fitted (saying how to fit it)."""
        if name not in prior_names():
            raise ConfigError(f"unknown prior {name!r}; choose one of {list(prior_names())}")
        if name == "normal":
            return Normal(self.latent_dim)
        if name not in self.store.prior_names():
            raise ConfigError(f"{self.name} has no {name!r} prior; fit it first: aekit fit-prior {self.name} --prior "
                              f"{name}")  # fmt: skip
        return from_stored(self.store.load_prior(name), self.latent_dim, str(self.store / self.store.PRIORS / name))

    def fit(self, prior: str | PriorConfig, conditional: bool = False, seed: int = 0, progress: bool | None = None,
            **options) -> Prior:  # fmt: skip
        """Fit ``prior`` (a name of :data:`aekit.generation.parts.PRIORS`, e.g. gaussian, gmm, diffusion, with its
        ``options``, such as ``components=5``; or a config) to the codes of the run's training rows, per label with
        ``conditional``, and store it (replacing one of the same kind); then measure every prior's samples."""
        config = make_prior(prior, **options)  # checked before the data is loaded
        kind = config.kind
        data = self.data()
        if conditional and data.y_train is None:
            raise ConfigError(f"--conditional needs labels, and {self.data_name} has none")
        codes = self.fitted.encode(data.x_train)
        bar = lambda epochs: progress_bar(epochs, desc=f"{kind} prior", unit="epoch", progress=progress)  # noqa: E731
        with self.store.writing():
            log.info("fitting the %s prior to %d codes%s", kind, len(codes), " per label" if conditional else "")
            with progress_working(f"fitting the {kind} prior", False if config.epoch_bar else progress):
                fitted = config.fit(codes, data.y_train if conditional else None, seed, bar)
            self.store.save_prior(kind, to_stored(fitted))
        # its sample quality, measured now as training measures a model's: aekit evaluate reads it back
        log.info("measuring the priors' samples beside the floor (what aekit evaluate reports, read back from then on)")
        with progress_working("measuring the priors' samples", progress):
            self._measured = self.metrics(data=data)
        return fitted

    def sample(self, n: int, prior: str = "normal", label: int | None = None, seed: int = 0,
               guidance: float | None = None) -> torch.Tensor:  # fmt: skip
        """``n`` decoded samples ``(n, *input_shape)`` in the data's own units from prior ``prior``, of class ``label``
        if given (a conditional prior); the same ``seed`` gives the same samples. ``guidance``: the conditional
        diffusion prior's classifier-free guidance scale (default: its own, 1 = none)."""
        if not isinstance(n, int) or n < 1:
            raise ConfigError(f"--n {n} must be a positive number of samples")
        chosen = self[prior]
        if label is not None and not chosen.labels and self.data().y_train is None:
            raise ConfigError(f"--label {label}: {self.data_name} has no labels, so there is no class to ask for")
        if guidance is None:
            return self.fitted.decode(chosen.sample(n, seed, label))
        if prior != "diffusion" or not chosen.labels or label is None:
            raise ConfigError("--guidance applies to a conditional diffusion prior asked for a --label")
        if not guidance >= 0:
            raise ConfigError(f"--guidance {guidance:g} must be zero or positive")
        return self.fitted.decode(chosen.sample(n, seed, label, guidance=guidance))

    def quality(self, name: str, data: Data | None = None) -> dict[str, float]:
        """The sample quality of prior ``name`` beside the floor (:func:`aekit.generation.metrics.generation_metrics`'s
        rows for it), computed once per model and prior and read back from the analysis cache after (or, just after
        :meth:`fit`, from what it measured)."""
        if f"gen_{name}_fd" in self._measured and data is None:
            return self._measured
        key = {name: self.store.prior_digest(name)} if name != "normal" else {}
        return generation_metrics(self.fitted.model, data or self.data(), {name: self[name]}, prior_keys=key)

    def metrics(self, n: int = 10_000, seed: int = 0, data: Data | None = None) -> dict[str, float]:
        """Sample quality of every prior this run has, beside the floor; ``data``: the run's data when loaded."""
        priors = {name: self[name] for name in self.names()}
        keys = {name: self.store.prior_digest(name) for name in priors if name != "normal"}
        return generation_metrics(self.fitted.model, data or self.data(), priors, n, seed, keys)

    def draw(self, metrics: dict, path=None, n: int = 36):
        """A grid of ``n`` samples (seed 0) from each prior, titled with its FD from ``metrics`` when measured."""
        from ..analysis import plots

        panels = [(name + (f" (FD {metrics[f'gen_{name}_fd']:.1f})" if f"gen_{name}_fd" in metrics else ""),
                   self.sample(n, name)) for name in self.names()]  # fmt: skip
        return plots.prior_samples(panels, path)
