"""Latent priors: distributions over an autoencoder's codes, fitted after training, that decoding turns into samples.

The chapter's point is that z ~ N(0, I) decodes to garbage for a plain autoencoder: its codes fill only a few
regions of the latent space (the holes). A prior fitted to the training codes fills them:

- ``normal``: N(0, I), nothing fitted (a VAE's own prior; the chapter's demonstration for a plain AE);
- ``gaussian``: one full-covariance Gaussian fitted to the codes;
- ``gmm``: a mixture of ``components`` full-covariance Gaussians (10, as in Ghosh et al. 2020 and Chadebec &
  Allassonnière 2022), fitted by EM (scikit-learn's ``GaussianMixture``), sampled here;
- ``diffusion``: a denoising diffusion model of the codes (DDPM training, Ho et al. 2020, with the cosine schedule
  and v-prediction; deterministic DDIM sampling, Song et al. 2021) with a residual-MLP noise predictor: the seed's "latent space
  in diffusion models" made concrete, at the scale of a 16-D code.

Each is class-conditional where the data has labels (``conditional=True``): the mixtures get their components per
label, the diffusion model a label embedding (trained with the label dropped 10% of the time, so it also samples
without one and may be guided, Ho & Salimans 2022). A prior is plain tensors and a JSON-able dict
(:meth:`Prior.state`, :func:`from_state`): no pickle. Samples are a function of ``(n, seed, label)`` only.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields

import torch
from torch import nn

from ..errors import ConfigError


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


class Prior:
    """A distribution over codes ``(N, latent_dim)``; ``labels`` are the labels it can be asked for (conditional)."""

    kind = ""
    labels: list[int] = []
    fit_seconds: float = 0.0

    @property
    def conditional(self) -> bool:
        return bool(self.labels)

    def check_label(self, label: int | None) -> None:
        if label is None:
            return
        if not self.labels:
            raise ConfigError(f"prior {self.kind!r} was fitted without labels; fit it again with --conditional to ask "
                              "it for one")  # fmt: skip
        if label not in self.labels:
            raise ConfigError(f"label {label} is not one of the data's labels {self.labels}")

    def sample(self, n: int, seed: int = 0, label: int | None = None) -> torch.Tensor:
        raise NotImplementedError

    def summary(self) -> str:
        """What was fitted, in a few words (``aekit fit-prior`` prints it)."""
        return "N(0, I)"

    def state(self) -> tuple[dict, dict[str, torch.Tensor]]:
        """``(options, tensors)``: JSON-able options and the tensors that rebuild it (:func:`from_state`)."""
        raise NotImplementedError


class Normal(Prior):
    kind = "normal"

    def __init__(self, latent_dim: int):
        self.latent_dim = latent_dim

    def check_label(self, label):
        if label is not None:
            raise ConfigError("prior 'normal' knows no labels; ask a conditional prior for one (aekit fit-prior RUN "
                              "--prior gmm --conditional)")  # fmt: skip

    def sample(self, n, seed=0, label=None):
        self.check_label(label)
        return torch.randn(n, self.latent_dim, generator=_generator(seed))


class Mixture(Prior):
    """Full-covariance Gaussian components, each with a weight and (conditional) a label: ``gaussian`` is one
    component (one per label), ``gmm`` ``components`` of them (per label)."""

    def __init__(self, kind: str, weights, means, factors, component_labels=None, fit_seconds: float = 0.0):
        self.kind = kind
        self.weights = weights.double()  # (K,) summing to 1
        self.means = means.double()  # (K, d)
        self.factors = factors.double()  # (K, d, d) lower Cholesky factors of the covariances
        self.component_labels = component_labels  # (K,) int64, or None
        self.labels = [] if component_labels is None else sorted(set(component_labels.tolist()))
        self.fit_seconds = fit_seconds

    @classmethod
    def fit(cls, kind: str, codes: torch.Tensor, labels: torch.Tensor | None = None, components: int = 10,
            seed: int = 0) -> Mixture:  # fmt: skip
        start = time.perf_counter()
        codes = codes.double()
        groups = [(None, codes)] if labels is None else [(int(v), codes[labels == v]) for v in labels.unique()]
        parts = []
        for label, rows in groups:
            k = 1 if kind == "gaussian" else min(components, len(rows))
            weights, means, factors = _fit_gaussians(rows, k, seed)
            share = len(rows) / len(codes)
            parts.append((weights * share, means, factors, None if label is None else torch.full((k,), label)))
        weights, means, factors = (torch.cat([p[i] for p in parts]) for i in range(3))
        labelled = None if labels is None else torch.cat([p[3] for p in parts])
        return cls(kind, weights / weights.sum(), means, factors, labelled, time.perf_counter() - start)

    def sample(self, n, seed=0, label=None):
        self.check_label(label)
        generator = _generator(seed)
        weights = self.weights if label is None else self.weights * (self.component_labels == label)
        chosen = torch.multinomial(weights, n, replacement=True, generator=generator)  # (n,)
        noise = torch.randn(n, self.means.shape[1], generator=generator, dtype=torch.float64)
        return (self.means[chosen] + (self.factors[chosen] @ noise[:, :, None])[:, :, 0]).float()

    def summary(self):
        if not self.labels:
            return f"{len(self.weights)} full-covariance Gaussian component(s)"
        counts = sorted(set(torch.unique(self.component_labels, return_counts=True)[1].tolist()))  # components per label
        per = counts[0] if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
        return (f"{per} full-covariance Gaussian component(s) per label, for {len(self.labels)} labels "
                f"({len(self.weights)} in all)")  # fmt: skip

    def state(self):
        tensors = {"weights": self.weights, "means": self.means, "factors": self.factors}
        if self.component_labels is not None:
            tensors["component_labels"] = self.component_labels
        return {"components": len(self.weights)}, tensors

    @classmethod
    def load(cls, kind: str, meta: dict, tensors: dict, latent_dim: int, where: str) -> Mixture:
        check_code_size(tensors.get("means"), latent_dim, where)
        prior = cls(kind, tensors["weights"], tensors["means"], tensors["factors"], tensors.get("component_labels"),
                    float(meta.get("fit_seconds", 0)))  # fmt: skip
        if prior.factors.shape[1:] != (latent_dim, latent_dim) or len(prior.weights) != len(prior.means):
            raise ValueError("the components' shapes disagree")
        return prior


def _fit_gaussians(rows: torch.Tensor, k: int, seed: int):
    """``k`` full-covariance Gaussians fitted to ``rows`` (float64): weights, means, Cholesky factors."""
    d = rows.shape[1]
    if k == 1:
        cov = torch.cov(rows.T).reshape(d, d) if len(rows) > 1 else torch.zeros(d, d, dtype=torch.float64)
        cov = cov + (1e-6 * cov.diagonal().mean() + 1e-9) * torch.eye(d, dtype=torch.float64)
        return torch.ones(1, dtype=torch.float64), rows.mean(0, keepdim=True), torch.linalg.cholesky(cov)[None]
    from sklearn.mixture import GaussianMixture

    gmm = GaussianMixture(k, covariance_type="full", random_state=seed, reg_covar=1e-6, max_iter=200).fit(rows.numpy())
    covariances = torch.from_numpy(gmm.covariances_)
    return torch.from_numpy(gmm.weights_), torch.from_numpy(gmm.means_), torch.linalg.cholesky(covariances)


# ------------------------------------------------------------------------------------------ latent diffusion
def _alpha_bars(steps: int) -> torch.Tensor:
    """The cosine schedule's cumulative signal share at each step (Nichol & Dhariwal 2021), float64."""
    t = torch.arange(steps + 1, dtype=torch.float64) / steps
    f = torch.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    return (f[1:] / f[0]).clamp(min=1e-5, max=1.0)


class NoisePredictor(nn.Module):
    """v(x_t, t, label), the velocity sqrt(a) eps - sqrt(1 - a) x_0 (Salimans & Ho 2022), which keeps x_0 and eps
    bounded at every step (an eps-predictor's x_0 = (x_t - sqrt(1 - a) eps) / sqrt(a) explodes near t = T): an input layer, residual SiLU blocks, and time (and label) embeddings added in."""

    def __init__(self, dim: int, width: int, blocks: int, n_labels: int = 0):
        super().__init__()
        self.input = nn.Linear(dim, width)
        self.time = nn.Sequential(nn.Linear(64, width), nn.SiLU(), nn.Linear(width, width))
        self.label = nn.Embedding(n_labels + 1, width) if n_labels else None  # the last index: no label
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
            for _ in range(blocks)
        )  # fmt: skip
        self.output = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        half = 32
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
        angles = t.float()[:, None] * freqs[None]  # (N, 32)
        h = self.input(x) + self.time(torch.cat([angles.sin(), angles.cos()], 1))
        if self.label is not None:
            h = h + self.label(label)
        for block in self.blocks:
            h = h + block(h)
        return self.output(h)


class Diffusion(Prior):
    """A DDPM of the standardized codes; samples by DDIM from a seeded x_T, so the same seed gives the same codes."""

    kind = "diffusion"

    def __init__(self, config, net: NoisePredictor, mean, std, labels=(), fit_seconds=0.0,
                 final_loss=float("nan"), label_shares=None):  # fmt: skip
        self.config, self.net = config, net.eval()
        self.mean, self.std = mean.float(), std.float()  # (d,): the codes' standardization
        self.labels = list(labels)
        self.label_shares = label_shares  # (labels,) float64: how common each label was in training
        self.fit_seconds, self.final_loss = fit_seconds, final_loss

    @classmethod
    def fit(cls, codes: torch.Tensor, labels: torch.Tensor | None = None, config=None,
            seed: int = 0, progress=None) -> Diffusion:  # fmt: skip
        """Train on ``codes`` (and ``labels``); ``progress`` wraps the epoch range (a tqdm, say)."""
        config = config.validate()
        start = time.perf_counter()
        known = [] if labels is None else sorted(int(v) for v in labels.unique())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            mean, std = codes.float().mean(0), codes.float().std(0).clamp(min=1e-6)
            x0_all = (codes.float() - mean) / std
            index = None if labels is None else torch.searchsorted(torch.tensor(known), labels.long())
            net = NoisePredictor(codes.shape[1], config.width, config.blocks, len(known))
            ema = [p.detach().clone() for p in net.parameters()]
            optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=0.0)
            per_epoch = math.ceil(len(codes) / config.batch_size)
            schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=config.epochs * per_epoch,
                                                           pct_start=0.05, anneal_strategy="cos")  # fmt: skip
            alpha_bars = _alpha_bars(config.steps).float()
            root_bar, root_rest = alpha_bars.sqrt(), (1 - alpha_bars).sqrt()
            epochs = range(config.epochs) if progress is None else progress(range(config.epochs))
            total, step = 0.0, 0
            for _ in epochs:
                order, total = torch.randperm(len(codes)), 0.0
                for i in range(0, len(order), config.batch_size):
                    batch = order[i : i + config.batch_size]
                    x0 = x0_all[batch]
                    t = torch.randint(0, config.steps, (len(batch),))
                    eps = torch.randn_like(x0)
                    x_t = root_bar[t, None] * x0 + root_rest[t, None] * eps
                    label = None
                    if index is not None:
                        hide = torch.rand(len(batch)) < config.label_dropout
                        label = torch.where(hide, len(known), index[batch])
                    v = root_bar[t, None] * eps - root_rest[t, None] * x0  # the velocity target
                    loss = (net(x_t, t, label) - v).square().mean()
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    schedule.step()
                    step += 1
                    decay = min(config.ema, (1 + step) / (10 + step))  # warm-up: early weights are soon forgotten
                    with torch.no_grad():
                        for shadow, p in zip(ema, net.parameters()):
                            shadow.lerp_(p.detach(), 1 - decay)
                    total += float(loss.detach()) * len(batch)
            with torch.no_grad():
                for shadow, p in zip(ema, net.parameters()):
                    p.copy_(shadow)
        shares = None if index is None else torch.bincount(index, minlength=len(known)).double() / len(index)
        return cls(config, net, mean, std, known, time.perf_counter() - start, total / len(codes), shares)

    @torch.no_grad()
    def sample(self, n, seed=0, label=None, guidance: float | None = None):
        self.check_label(label)
        config = self.config
        guidance = config.guidance if guidance is None else guidance
        alpha_bars = _alpha_bars(config.steps)
        times = torch.linspace(config.steps - 1, 0, config.sample_steps).round().long().unique_consecutive()
        generator = _generator(seed)
        x = torch.randn(n, len(self.mean), generator=generator)
        cond = uncond = None  # one time step (and label) for every row: embedded once, broadcast
        if self.labels:
            uncond = torch.full((1,), len(self.labels))
            # without a label, each row's is drawn as common as it was in training: the label-free mode of the
            # network, trained on a tenth of the rows, samples worse than the conditional ones
            cond = (torch.multinomial(self.label_shares, n, replacement=True, generator=generator) if label is None
                    else torch.full((1,), self.labels.index(label)))  # fmt: skip
        for i, t in enumerate(times.tolist()):
            steps = torch.full((1,), t)
            v = self.net(x, steps, cond)
            if label is not None and guidance != 1.0:  # classifier-free guidance
                free = self.net(x, steps, uncond)
                v = free + guidance * (v - free)
            a_t = alpha_bars[t].float()
            a_next = alpha_bars[times[i + 1]].float() if i + 1 < len(times) else torch.tensor(1.0)
            x0 = a_t.sqrt() * x - (1 - a_t).sqrt() * v  # v-prediction: both stay bounded at every step
            eps = (1 - a_t).sqrt() * x + a_t.sqrt() * v
            x = a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps  # DDIM, eta = 0
        return x * self.std + self.mean

    def summary(self):
        per = f", conditioned on the labels {self.labels}" if self.labels else ""
        return f"{self.config.epochs} epochs, final loss {self.final_loss:.4f}{per}"

    @classmethod
    def load(cls, config, meta: dict, tensors: dict, latent_dim: int, where: str) -> Diffusion:
        check_code_size(tensors.get("mean"), latent_dim, where)
        labels = [int(v) for v in meta.get("labels", [])]
        net = NoisePredictor(latent_dim, config.width, config.blocks, len(labels))
        net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        return cls(config, net, tensors["mean"], tensors["std"], labels, float(meta.get("fit_seconds", 0)),
                   float(meta.get("final_loss", "nan")), tensors.get("label_shares"))  # fmt: skip

    def state(self):
        options = {f.name: getattr(self.config, f.name) for f in fields(self.config)}
        tensors = {"mean": self.mean, "std": self.std, **{f"net.{k}": v for k, v in self.net.state_dict().items()}}
        if self.label_shares is not None:
            tensors["label_shares"] = self.label_shares
        return {**options, "final_loss": self.final_loss}, tensors


# ------------------------------------------------------------------------------------------ storage
@dataclass
class Stored:
    """What a run directory holds of one prior: its JSON (``kind``, ``labels``, options, timings) and tensors."""

    meta: dict
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)


def to_stored(prior: Prior) -> Stored:
    options, tensors = prior.state()
    meta = {"kind": prior.kind, "labels": prior.labels, "fit_seconds": round(prior.fit_seconds, 3), **options}
    return Stored(meta, tensors)


def check_code_size(centre: torch.Tensor | None, latent_dim: int, where: str) -> None:
    """A stored prior's centre (its means) against the model's code size: a ConfigError if it was another's."""
    if centre is None or centre.shape[-1] != latent_dim:
        raise ConfigError(f"{where}: fitted to another code size than this model's {latent_dim}")
