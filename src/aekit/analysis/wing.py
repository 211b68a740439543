"""What a run shows of itself (``run.analysis``): the chapter's figures, the holes measure, random codes beside a
fitted Gaussian's, and a sparse autoencoder's features. Built from the fitted model and functions that read the run's
data, history and metrics once asked (matplotlib loads only where a figure is drawn)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..core.fitted import Fitted
from ..core.space import Data
from ..errors import ConfigError
from .evaluate import gaussian_like, holes


class Analysis:
    """Figures and measures of one fitted model on its data."""

    def __init__(self, fitted: Fitted, data: Callable[[], Data], history: Callable[[], list[dict]],
                 metrics: Callable[[], dict], name: str = "RUN"):  # fmt: skip
        self.fitted, self.data, self.history, self.metrics, self.name = fitted, data, history, metrics, name

    def kinds(self) -> list[str]:
        """The figures that apply to this model (``aekit plot``'s kinds for it)."""
        from . import plots

        return list(plots.figures_for(self.fitted.model.config))

    def plot(self, kind: str, path: Path | None = None):
        """The matplotlib Figure of ``kind`` (``aekit plot``'s kinds), also written to ``path`` (PNG and SVG) if
        given."""
        from . import plots

        data = self.data() if kind != "curves" else None
        return plots.draw(kind, self.fitted, data, self.history(), self.metrics(), path=path)

    def draw(self, kind: str, folder: Path):
        """Figure ``kind`` written into ``folder`` as ``KIND.png`` and ``KIND.svg``; returns the Figure."""
        return self.plot(kind, Path(folder) / kind)

    def reconstructions(self, n: int = 6):
        """``n`` test rows beside their reconstructions and PCA's (a notebook's view)."""
        from . import plots

        return plots.reconstructions(self.fitted.model, self.data(), n=n)

    def holes(self, x: torch.Tensor) -> dict[str, float]:
        """The holes measure of the codes of ``x`` (:func:`aekit.analysis.evaluate.holes`)."""
        return holes(self.fitted.model, x)

    def random_codes(self, n: int, seed: int, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` codes z ~ N(0, I) and, from the same noise, ``n`` from a Gaussian fitted to ``codes`` (float64)."""
        noise = torch.randn(n, codes.shape[1], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        return noise, gaussian_like(codes, noise)

    def features(self, top: int = 16) -> dict[str, np.ndarray]:
        """A sparse autoencoder's features, from its test rows: ``directions`` ``(L, *input_shape)``, each latent's
        decoder column in the data's units (unit norm), ``firing`` (the share of test rows it is active on),
        ``top`` (the indices of the ``top`` test rows it is most active on, ``(L, top)``, -1 where it fired on fewer),
        and ``activation`` (its mean activation where active)."""
        config = self.fitted.model.config
        if config.objective.wing != "features":
            raise ConfigError(f"{self.name} is not a sparse autoencoder (its objective is {config.objective.kind}); "
                              "train one with --model sae --k K")  # fmt: skip
        columns = self.fitted.model.decoder[0].weight.detach().cpu().double().T  # (L, D), model space
        _, std = self.fitted.space.affine(torch.float64)
        directions = columns * std.reshape(1, -1)  # a step along a column in model space, in the data's units
        directions = directions / directions.norm(dim=1, keepdim=True).clamp_min(1e-12)
        codes = self.fitted.encode(self.data().x_test).double()  # (N, L)
        active = codes > 0
        order = codes.argsort(0, descending=True)[:top].T  # (L, top)
        ranked = torch.gather(active.T, 1, order)
        return {"directions": directions.reshape(-1, *config.input_shape).numpy(),
                "firing": active.double().mean(0).numpy(), "top": torch.where(ranked, order, -1).numpy(),
                "activation": (codes.sum(0) / active.sum(0).clamp_min(1)).numpy()}  # fmt: skip
