"""Model space and data space: the in-memory dataset a model trains on, and the scaling between the two.

Two scalings:

- ``"unit"``: values in [0, 1] (pixels); the model ends in a sigmoid and BCE is allowed.
- ``"standard"``: each feature standardized with the training split's mean and std (tabular data); the model
  has a linear output and :class:`Scaler` maps its output back to the original units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .errors import DataError
from .files import check_finite


def is_image_data(shape: tuple[int, ...]) -> bool:
    """Whether examples of this shape are images: (C, H, W) with 1 or 3 channels."""
    return len(shape) == 3 and shape[0] in (1, 3)


@dataclass
class Scaler:
    """Per-feature standardization learned on the training split: ``(x - mean) / std``."""

    mean: torch.Tensor  # (*input_shape)
    std: torch.Tensor  # (*input_shape)

    @classmethod
    def fit(cls, x: np.ndarray, kept: np.ndarray | None = None) -> Scaler:
        """From the training rows ``x``, ignoring missing (NaN) cells; the features ``kept`` (a boolean mask: a
        table's one-hot slots) stay as they are (mean 0, std 1)."""
        if np.isnan(x).any():
            seen = (~np.isnan(x)).sum(axis=0)
            mean = np.divide(np.nansum(x, axis=0), seen, out=np.zeros(x.shape[1:]), where=seen > 0)
            std = np.sqrt(np.divide(np.nansum((x - mean) ** 2, axis=0), seen, out=np.zeros(x.shape[1:]), where=seen > 0))
        else:
            mean, std = x.mean(axis=0), x.std(axis=0)
        std[std < 1e-8] = 1.0  # a constant feature stays at 0 rather than blowing up
        if kept is not None:
            mean[kept], std[kept] = 0.0, 1.0
        return cls(torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32))

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def inverse_transform(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean


@dataclass
class Data:
    """A dataset ready for training: float32 tensors in model space, labels if any, and how it was scaled."""

    x_train: torch.Tensor  # (N, *input_shape)
    x_test: torch.Tensor  # (M, *input_shape)
    y_train: torch.Tensor | None = None  # (N,) int64
    y_test: torch.Tensor | None = None  # (M,) int64
    scaling: str = "unit"  # "unit": values in [0, 1]; "standard": standardized by `scaler`
    scaler: Scaler | None = None
    columns: tuple = ()  # a table's columns (aekit.tables.Column): names, kinds, categories; () for arrays

    @property
    def has_missing(self) -> bool:
        """Whether the training or test rows have missing (NaN) cells."""
        return bool(torch.isnan(self.x_train).any() or torch.isnan(self.x_test).any())

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def to_model_space(self, x: np.ndarray, source: str = "input") -> torch.Tensor:
        """Check a raw array against this data's shape and scale it as the training data was."""
        return to_model_space(x, self.input_shape, self.scaling, self.scaler, source)

    def to_data_space(self, x: torch.Tensor) -> torch.Tensor:
        """Map model-space values (e.g. reconstructions) back to the data's original units."""
        return to_data_space(x, self.scaler)


def to_data_space(x: torch.Tensor, scaler: Scaler | None) -> torch.Tensor:
    """Undo the standardization of ``scaler`` (``None``: data used as is)."""
    return scaler.inverse_transform(x) if scaler is not None else x


def to_model_space(x: np.ndarray, input_shape: tuple[int, ...], scaling: str, scaler: Scaler | None,
                   source: str = "input", missing: bool = False) -> torch.Tensor:  # fmt: skip
    """Check a raw array (values, shape) against a model's input and scale it as its training data was (NaN cells,
    missing values, allowed with ``missing``)."""
    x = check_finite(x, source, missing=missing)
    if tuple(x.shape[1:]) != tuple(input_shape):
        want = "(N, " + ", ".join(map(str, input_shape)) + ")"
        raise DataError(f"{source}: shape {x.shape} does not match the model's input {want}")
    return scale(x, scaling, scaler, source)[0]


def scale(x: np.ndarray, scaling: str, scaler: Scaler | None = None, source: str = "input"
          ) -> tuple[torch.Tensor, Scaler | None]:  # fmt: skip
    """Bring a raw array into model space; fits a :class:`Scaler` for ``"standard"`` if none is given."""
    if scaling == "unit":
        if x.dtype == np.uint8:  # one float32 copy, divided in place: no second full-size temporary
            return torch.from_numpy(x.astype(np.float32)).div_(255), None
        low, high = np.fmin.reduce(x, axis=None), np.fmax.reduce(x, axis=None)  # (missing cells skipped)
        if low < 0 or high > 1:
            raise DataError(f"values must lie in [0, 1] for this model, got [{low:.3g}, {high:.3g}]")
        return torch.from_numpy(x.astype(np.float32)), None
    scaler = scaler or Scaler.fit(x.astype(np.float64))
    out = scaler.transform(torch.from_numpy(x.astype(np.float32)))
    if torch.isinf(out).any():  # finite inputs whose differences from the mean pass float32's range
        column = int(torch.isinf(out).reshape(len(out), -1).any(0).int().argmax())
        raise DataError(f"{source}: standardizing feature {column} overflows float32 (values up to "
                        f"{float(np.abs(x.reshape(len(x), -1)[:, column]).max()):.3g}, too far apart); the input is "
                        "the problem, not the training: rescale the data")  # fmt: skip
    return out, scaler


def auto_scaling(x: np.ndarray) -> str:
    """``"unit"`` for uint8 data or data already in [0, 1]; ``"standard"`` for anything else."""
    if x.dtype == np.uint8 or (np.fmin.reduce(x, axis=None) >= 0 and np.fmax.reduce(x, axis=None) <= 1):
        return "unit"
    return "standard"
