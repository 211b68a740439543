"""One fitted model: a trained :class:`~aekit.AutoEncoder`, its :class:`~aekit.core.space.Space` and its anomaly score.

:class:`Fitted` is what every face of aekit holds for a trained model (:class:`aekit.Run` for the CLI, the HTTP API,
the report and notebooks; the scikit-learn estimators), so each computes the same codes, reconstructions,
imputations and scores. Inputs ``x`` are in model space (``Fitted.space.to_model`` brings rows there); outputs
that are data (decodings, reconstructions, imputations) come back in the data's own units.

The anomaly score is one torch module, :class:`ScoreGraph`, used as it is for scoring and for the ONNX export; its
options and fitted statistics are a :class:`ScoreSpec`, stored in a run as ``score.safetensors``:

- the reconstruction error: the squared error per feature over the number of features, summed (the mean squared
  error; missing cells add nothing); with ``blur`` (an odd window, images only) of the residual averaged over each
  pixel's window first, so a stroke drawn a pixel aside counts less than a missing one;
- with ``latent`` the code's distance to the training codes is added, both parts standardized by their mean and
  standard deviation over the training rows: the squared Mahalanobis distance to a Gaussian fitted to the training
  codes, or with ``neighbors = k`` the mean distance to the k nearest training codes (whitened by that Gaussian).
  A row the decoder rebuilds well but whose code lies where no training code was scores abnormal too.
"""

from __future__ import annotations

import copy
import math
import numbers
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..model.autoencoder import AutoEncoder
from .space import Space

NEIGHBOR_CELLS = 2**22  # rows x training codes per block of the nearest-code distances (32 MB of float64)


# ------------------------------------------------------------------------------------------ batched inference
@torch.no_grad()
def batched(fn, model: nn.Module, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """``fn`` (a method of ``model``) applied to ``x`` in batches, in eval mode (the model's mode is restored after), on
    the model's device, in the model's dtype; returned on the CPU."""
    was_training = model.training
    model.eval()
    weight = next(model.parameters())
    out = [fn(x[i : i + batch_size].to(weight.device, weight.dtype)).cpu() for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def reconstruct(model: AutoEncoder, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Reconstructions of ``x`` in model space, batched, in eval mode, returned on the CPU."""
    return batched(model, model, x, batch_size)


def encode(model: AutoEncoder, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Codes ``(N, latent_dim)`` of ``x``, batched, in eval mode, returned on the CPU."""
    return batched(model.encode, model, x, batch_size)


def sample_codes(model: AutoEncoder, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Codes as the decoder sees them in training (:meth:`AutoEncoder.sample_codes`), on the CPU."""
    return batched(model.sample_codes, model, x, batch_size)


@torch.no_grad()
def fill_missing(model: AutoEncoder, x: torch.Tensor, refinements: int = 1, batch_size: int = 4096) -> torch.Tensor:
    """Model-space rows ``x`` with their missing cells (NaN) filled: a hole starts at 0 (as the impute objective
    trains: a standardized feature's mean) and each of ``refinements`` passes sets it to the model's reconstruction
    of the row so far; observed cells are kept as they are."""
    hole = torch.isnan(x)
    filled = torch.where(hole, 0.0, x)
    for _ in range(refinements):
        filled = torch.where(hole, batched(model, model, filled, batch_size).reshape(x.shape).to(x.dtype), x)
    return filled


# ------------------------------------------------------------------------------------------ the anomaly score
@dataclass(eq=False)
class ScoreSpec:
    """How a fitted model scores a row (see the module's text): the options ``blur``, ``latent`` and ``neighbors``,
    and what was fitted on the training rows (float64): the codes' mean and (ridged) precision, the training
    rows' mean and std of the error and of the distance (``stats``), and for ``neighbors`` the whitened training
    codes. ``ScoreSpec()`` is the plain mean squared reconstruction error."""

    blur: int = 1  # odd window over which the residual is averaged (1: none); images only
    latent: bool = False  # add the code's distance to the training codes
    neighbors: int = 0  # k: that distance is the mean distance to the k nearest training codes (0: the Gaussian's)
    code_mean: torch.Tensor | None = None  # (k,)
    precision: torch.Tensor | None = None  # (k, k)
    stats: torch.Tensor | None = None  # (4,): mean and std of the training errors, then of their distances
    neighbor_codes: torch.Tensor | None = field(default=None, repr=False)  # (M, k) whitened training codes

    def check(self, input_shape: tuple[int, ...]) -> ScoreSpec:
        """Refuse options that do not go together or with this input, naming the value; returns self."""
        integer = lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool)  # noqa: E731
        if not integer(self.blur) or self.blur < 1 or self.blur % 2 == 0:
            raise ConfigError(f"error_blur={self.blur!r} must be an odd positive integer (1: no blur)")
        if self.blur > 1 and len(input_shape) != 3:
            raise ConfigError(f"error_blur={self.blur} needs image rows (C, H, W); this input is {tuple(input_shape)}")
        if not integer(self.neighbors) or self.neighbors < 0:
            raise ConfigError(f"code_neighbors={self.neighbors!r} must be a non-negative integer (0: the Gaussian's "
                              "distance)")  # fmt: skip
        if self.neighbors and not self.latent:
            raise ConfigError(f"code_neighbors={self.neighbors} is a kind of latent distance: it needs the latent "
                              "distance on")  # fmt: skip
        self.blur, self.neighbors = int(self.blur), int(self.neighbors)
        return self

    @property
    def plain(self) -> bool:
        """Whether this is the plain mean squared reconstruction error (nothing to store)."""
        return self.blur == 1 and not self.latent

    @property
    def fitted(self) -> bool:
        return not self.latent or self.stats is not None

    def describe(self) -> str:
        error = "mean squared reconstruction error" + (f" of the residual blurred over {self.blur}x{self.blur}"
                                                       if self.blur > 1 else "")  # fmt: skip
        if not self.latent:
            return error
        distance = (f"mean distance to the {self.neighbors} nearest training codes" if self.neighbors else
                    "squared Mahalanobis distance of the code")  # fmt: skip
        return f"standardized {error} plus standardized {distance}"

    @classmethod
    def fit(cls, errors: torch.Tensor, codes: torch.Tensor | None, blur: int = 1, latent: bool = False,
            neighbors: int = 0) -> tuple[ScoreSpec, torch.Tensor]:  # fmt: skip
        """From the training rows' reconstruction errors ``(N,)`` and codes ``(N, k)``: the spec, and the training
        rows' own scores (each row's nearest codes leave itself out)."""
        spec = cls(blur, latent, neighbors)
        errors = errors.double()
        if not latent:
            return spec, errors
        codes = codes.double()
        width = codes.shape[1]  # (one row has no spread: a zero covariance, then the ridge)
        covariance = (torch.cov(codes.T).reshape(width, width) if len(codes) > 1 else
                      torch.zeros(width, width, dtype=torch.float64))  # fmt: skip
        ridge = 1e-6 * max(float(covariance.trace()) / width, 1e-12)
        spec.code_mean = codes.mean(0)
        spec.precision = torch.linalg.pinv(covariance + ridge * torch.eye(width, dtype=torch.float64))
        if neighbors:
            spec.neighbors = min(neighbors, len(codes) - 1) or 1
            spec.neighbor_codes = spec.whitened(codes)
        distances = spec.distances(codes, leave_one_out=True)
        spread = lambda v: float(v.std(unbiased=False)) or 1.0  # noqa: E731  (no spread: 1)
        spec.stats = torch.tensor([float(errors.mean()), spread(errors), float(distances.mean()), spread(distances)],
                                  dtype=torch.float64)  # fmt: skip
        return spec, spec.combine(errors, distances)

    def root(self) -> torch.Tensor:
        """The whitening matrix: ``(codes - code_mean) @ root`` makes the training codes' Gaussian standard."""
        return torch.linalg.cholesky((self.precision + self.precision.T) / 2)

    def whitened(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes where the training codes' Gaussian is standard: Euclidean distance there is Mahalanobis distance."""
        return (codes - self.code_mean.to(codes.dtype)) @ self.root().to(codes.dtype)

    def distances(self, codes: torch.Tensor, leave_one_out: bool = False) -> torch.Tensor:
        """The code part of the score, ``(N,)`` (:func:`code_distances`); ``leave_one_out``: ``codes`` are the
        training codes themselves, and each leaves itself out of its nearest ones."""
        root = self.root() if self.neighbors else None
        rows = max(1, NEIGHBOR_CELLS // len(self.neighbor_codes)) if self.neighbors else max(len(codes), 1)
        return torch.cat([code_distances(codes[i : i + rows], self.code_mean, self.precision, root, self.neighbor_codes,
                                         self.neighbors, leave_one_out) for i in range(0, len(codes), rows)])  # fmt: skip

    def combine(self, errors: torch.Tensor, distances: torch.Tensor) -> torch.Tensor:
        """The score from the error part and the distance part, each standardized on the training rows."""
        mean_e, std_e, mean_d, std_d = self.stats.to(errors.dtype)
        return (errors - mean_e) / std_e + (distances.to(errors.dtype) - mean_d) / std_d

    # -- storage (score.safetensors): tensors and string metadata
    def tensors(self) -> dict[str, torch.Tensor]:
        names = ("code_mean", "precision", "stats", "neighbor_codes")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}

    def metadata(self) -> dict[str, str]:
        return {"kind": "latent_distance" if self.latent else "error", "blur": str(self.blur),
                "neighbors": str(self.neighbors)}  # fmt: skip


def code_distances(codes: torch.Tensor, mean: torch.Tensor, precision: torch.Tensor, root: torch.Tensor | None,
                   reference: torch.Tensor | None, k: int, leave_one_out: bool = False) -> torch.Tensor:  # fmt: skip
    """The code part of the score, ``(N,)``, in ``codes``' dtype: the squared Mahalanobis distance to the Gaussian
    (``mean``, ``precision``), or with ``k`` the mean Euclidean distance of the whitened code (``@ root``) to its ``k``
    nearest whitened training codes ``reference`` (``leave_one_out``: the nearest, itself, is skipped). Written with
    products and ``topk``, so the ONNX graph computes it the same way; the caller keeps ``len(codes) * len(reference)``
    within reason (:data:`NEIGHBOR_CELLS`)."""
    centred = codes - mean.to(codes.dtype)
    if not k:
        return ((centred @ precision.to(codes.dtype)) * centred).sum(1)
    white, reference = centred @ root.to(codes.dtype), reference.to(codes.dtype)
    squared = (white * white).sum(1, keepdim=True) - 2 * white @ reference.T + (reference * reference).sum(1)
    nearest = torch.topk(squared.clamp_min(0), k + int(leave_one_out), dim=1, largest=False).values
    return nearest[:, int(leave_one_out) :].sqrt().mean(1)


class ScoreGraph(nn.Module):
    """A model and its :class:`ScoreSpec` as one module: model-space rows ``(N, ...)`` -> ``(N,)`` scores, or with
    :meth:`parts` each part. The one implementation of the score: :meth:`Fitted.score` runs it, the ONNX ``score``
    graph is it. The score's arithmetic after the model (the sum of the errors, the distance, the standardization) is
    float64 whatever the model's dtype."""

    def __init__(self, model: AutoEncoder, spec: ScoreSpec):
        super().__init__()
        self.model, self.blur, self.latent, self.k = model, spec.blur, spec.latent, spec.neighbors
        self.width = math.prod(model.input_shape)
        if spec.latent:  # buffers, so that an exported graph holds them
            self.register_buffer("code_mean", spec.code_mean)
            self.register_buffer("precision", spec.precision)
            self.register_buffer("stats", spec.stats)
            if spec.neighbors:
                self.register_buffer("root", spec.root())
                self.register_buffer("reference", spec.neighbor_codes)

    def feature_errors(self, x: torch.Tensor) -> torch.Tensor:
        """Squared error per feature over the number of features ``(N, D)`` (blurred residual with ``blur``)."""
        residual = self.model(x) - x
        residual = torch.where(torch.isnan(residual), 0.0, residual)  # a missing cell adds no error
        if self.blur > 1:
            residual = F.avg_pool2d(residual.reshape(-1, *self.model.input_shape), self.blur, 1, self.blur // 2,
                                    count_include_pad=False)  # fmt: skip
        return residual.flatten(1).square() / self.width  # (flatten: reshape(len(x), -1) would fix an export's batch)

    def parts(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.feature_errors(x)
        errors = features.sum(1, dtype=torch.float64)
        out = {"score": errors, "reconstruction_error": errors, "feature_errors": features}
        if self.latent:
            codes = self.model.encode(x).to(errors.dtype)
            distances = code_distances(codes, self.code_mean, self.precision, getattr(self, "root", None),
                                       getattr(self, "reference", None), self.k)  # fmt: skip
            mean_e, std_e, mean_d, std_d = self.stats.to(errors.dtype)
            out["score"] = (errors - mean_e) / std_e + (distances - mean_d) / std_d
            out["latent_distance"] = distances
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.parts(x)["score"]


# ------------------------------------------------------------------------------------------ the fitted model
@dataclass
class Fitted:
    """A trained model, the :class:`Space` of its data and its :class:`ScoreSpec`: encode, decode, reconstruct,
    impute and score. Model-space inputs, computed in batches on the model's device and dtype, results on the CPU."""

    model: AutoEncoder
    space: Space
    score_spec: ScoreSpec = field(default_factory=ScoreSpec)
    _exact: AutoEncoder | None = field(default=None, init=False, repr=False, compare=False)  # float64 copy, made once

    def __post_init__(self):
        self.model.eval()

    @property
    def config(self):
        return self.model.config

    def double(self) -> Fitted:
        """A float64 copy (the estimators' choice: a row's score must not depend on the batch it came in)."""
        return replace(self, model=copy.deepcopy(self.model).double())

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(x).to(next(self.model.parameters()).dtype)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes ``(N, latent_dim)``: a VAE's posterior mean, a VQ model's quantized code."""
        return encode(self.model, self._rows(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decodings of codes ``(N, latent_dim)``, in the data's own units."""
        return self.space.to_data(batched(self.model.decode, self.model, self._rows(z)))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstructions of ``x``, in the data's own units."""
        return self.space.to_data(reconstruct(self.model, self._rows(x)))

    def fill(self, x: torch.Tensor, refinements: int = 1) -> torch.Tensor:
        """Model-space rows with their missing cells (NaN) filled (:func:`fill_missing`), in model space."""
        return fill_missing(self.model, self._rows(x), refinements)

    def impute(self, raw: np.ndarray, source: str = "input", refinements: int = 1) -> np.ndarray:
        """Raw rows (the data's own units and layout, NaN where missing) with their holes filled; every observed cell
        comes back exactly as it was given."""
        raw = np.asarray(raw)
        filled = self.space.to_data(self.fill(self.space.to_model(raw, source, missing=True), refinements))
        holes, filled = np.isnan(raw), filled.numpy().reshape(raw.shape)
        return np.where(holes, filled.astype(raw.dtype) if raw.dtype.kind == "f" else filled, raw)

    # -- the score
    def scorer(self, spec: ScoreSpec | None = None) -> ScoreGraph:
        """The score (``spec``, default the fitted one) as a module, on a float64 copy of the model: a row's score then
        does not depend on the batch it came in, and the CLI, the HTTP API, the report and the estimators give the
        same numbers."""
        spec = spec or self.score_spec
        if not spec.fitted:
            raise ConfigError("the latent-distance score is not fitted yet: fit it on the training rows first")
        if self._exact is None:
            exact = next(self.model.parameters()).dtype == torch.float64
            self._exact = self.model if exact else copy.deepcopy(self.model).double()
        return ScoreGraph(self._exact, spec)

    @torch.no_grad()
    def parts(self, x: torch.Tensor, spec: ScoreSpec | None = None) -> dict[str, np.ndarray]:
        """Each row's score and its parts (``score``, ``reconstruction_error``, ``feature_errors``, and with the
        latent distance ``latent_distance``), float64 NumPy arrays, computed a block of rows at a time."""
        spec = spec or self.score_spec
        graph, x = self.scorer(spec), torch.as_tensor(x).double()
        batch_size = min(4096, max(1, NEIGHBOR_CELLS // len(spec.neighbor_codes))) if spec.neighbors else 4096
        weight = next(self.model.parameters())
        pieces = [{name: value.cpu() for name, value in graph.parts(x[i : i + batch_size].to(weight.device)).items()}
                  for i in range(0, len(x), batch_size)] or [graph.parts(x.to(weight.device))]  # fmt: skip
        return {name: torch.cat([p[name] for p in pieces]).double().numpy() for name in pieces[0]}

    def score(self, x: torch.Tensor) -> np.ndarray:
        """Each row's anomaly score ``(N,)`` float64, higher is more abnormal (:class:`ScoreSpec`)."""
        return self.parts(x)["score"]

    def feature_errors(self, x: torch.Tensor) -> np.ndarray:
        """Each row's squared reconstruction error per feature over the number of features ``(N, features)``, in model
        space: a row's values sum to the reconstruction part of its score."""
        return self.parts(x)["feature_errors"]

    def fit_score(self, x_train: torch.Tensor, blur: int = 1, latent: bool = True, neighbors: int = 0) -> np.ndarray:
        """Fit the score on the training rows (sets :attr:`score_spec`); returns their own scores."""
        spec = ScoreSpec(blur, latent, neighbors).check(self.space.input_shape)
        errors = torch.from_numpy(self.parts(x_train, ScoreSpec(blur))["reconstruction_error"])
        codes = encode(self.scorer(ScoreSpec()).model, torch.as_tensor(x_train).double()) if latent else None
        self.score_spec, scores = ScoreSpec.fit(errors, codes, spec.blur, spec.latent, spec.neighbors)
        return scores.numpy()

    def threshold(self, scores: np.ndarray, contamination: float) -> float:
        """The score above which ``contamination`` (a share below 1) of ``scores`` (the training rows') lie."""
        if not 0 < contamination < 1:
            raise ConfigError(f"contamination {contamination:g} must be a share below 1, e.g. 0.05")
        return float(np.quantile(scores, 1 - contamination))
