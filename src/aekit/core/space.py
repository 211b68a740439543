"""Model space and data space: the one door between a user's rows and a model's inputs, both ways.

A :class:`Space` is what a fitted model knows about its data: the shape of one example, its table columns (names,
categories), whether it takes missing cells, and how values were scaled. Everything that maps rows into a model
or back goes through one: the CLI, :class:`aekit.Run`, the HTTP API, the explorer, the ONNX export and the
scikit-learn estimators. It is stored in every run (the shape and columns in ``config.json``, the scaler's
statistics in ``model.safetensors``).

Shapes. An image model (``(C, H, W)``) takes ``(N, C, H, W)`` arrays, flat ``(N, C*H*W)`` rows and, for one
channel, ``(N, H, W)``; every other model takes ``(N, *input_shape)`` and flat rows. What aekit writes (samples,
reconstructions, imputations) is ``(N, *input_shape)`` in a ``.npy`` and flat rows in a table, both of which go back in.

Two scalings, chosen from the training data (:func:`choose_scaling`):

- ``"unit"``: values in [0, 1] (pixels, or any data already bounded so): used as they are; the model ends in a
  sigmoid and BCE is allowed. Standardizing such data would blow up its near-constant features (MNIST's border
  pixels, almost always 0, would get a spread of a few thousandths).
- ``"standard"``: each feature standardized with the training rows' mean and std (:class:`Scaler`); the model
  has a linear output and :meth:`Space.to_data` maps its output back to the original units. A table's one-hot
  slots stay as they are.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..io.files import check_finite
from ..io import csvfile
from ..io.tables import decoded, one_hot_features

NEAR_CONSTANT = 1e-8  # a feature whose spread is below this is constant: it is centred, not divided


def is_image_data(shape: tuple[int, ...]) -> bool:
    """Whether examples of this shape are images: (C, H, W) with 1 or 3 channels."""
    return len(shape) == 3 and shape[0] in (1, 3)


@dataclass
class Scaler:
    """Per-feature standardization learned on the training split: ``(x - mean) / std``."""

    mean: torch.Tensor  # (*input_shape)
    std: torch.Tensor  # (*input_shape)

    @classmethod
    def from_moments(cls, mean: np.ndarray, std: np.ndarray, kept: np.ndarray | None = None) -> Scaler:
        """From each feature's mean and standard deviation (float64). The one place of the near-constant rule: a
        feature whose spread is below :data:`NEAR_CONSTANT` keeps std 1 (centred, not blown up); the features
        ``kept`` (a boolean mask: a table's one-hot slots) stay as they are (mean 0, std 1)."""
        mean, std = np.array(mean, dtype=np.float64), np.array(std, dtype=np.float64)
        std[~(std >= NEAR_CONSTANT)] = 1.0  # (a feature never observed has NaN moments: 0 and 1)
        mean[np.isnan(mean)] = 0.0
        if kept is not None:
            mean.reshape(-1)[kept], std.reshape(-1)[kept] = 0.0, 1.0
        return cls(torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32))

    @classmethod
    def fit(cls, x: np.ndarray, kept: np.ndarray | None = None) -> Scaler:
        """From the training rows ``x``, in float64, ignoring missing (NaN) cells."""
        x = np.asarray(x, dtype=np.float64)
        if np.isnan(x).any():
            seen = (~np.isnan(x)).sum(axis=0)
            mean = np.divide(np.nansum(x, axis=0), seen, out=np.full(x.shape[1:], np.nan), where=seen > 0)
            std = np.sqrt(np.divide(np.nansum((x - mean) ** 2, axis=0), seen, out=np.zeros(x.shape[1:]),
                                    where=seen > 0))  # fmt: skip
        else:
            mean, std = x.mean(axis=0), x.std(axis=0)
        return cls.from_moments(mean, std, kept)

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.device, x.dtype)) / self.std.to(x.device, x.dtype)

    def inverse_transform(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std.to(x.device, x.dtype) + self.mean.to(x.device, x.dtype)


def choose_scaling(x: np.ndarray) -> str:
    """``"unit"`` for uint8 data or data already in [0, 1] (missing cells skipped); ``"standard"`` otherwise."""
    if x.dtype == np.uint8 or (np.fmin.reduce(x, axis=None) >= 0 and np.fmax.reduce(x, axis=None) <= 1):
        return "unit"
    return "standard"


auto_scaling = choose_scaling  # the name earlier releases used


@dataclass
class Space:
    """The one door between a user's rows (data space: the units and layouts they come in) and a model's inputs
    (model space: float32 ``(N, *input_shape)``, scaled as in training).

    ``input_shape``: one example's shape; ``scaler``: the standardization (None: values used as they are, in
    [0, 1]); ``columns``: a table's columns (:class:`aekit.io.tables.Column`), ``()`` for arrays; ``missing``:
    whether missing cells (NaN) are taken (a model trained to fill them).
    """

    input_shape: tuple[int, ...]
    scaler: Scaler | None = None
    columns: tuple = field(default=())
    missing: bool = False

    @classmethod
    def fit(cls, x: np.ndarray, columns: tuple = (), scaling: str = "auto", kept: np.ndarray | None = None) -> Space:
        """The space of training rows ``x`` ``(N, *input_shape)``: ``scaling`` ``"auto"`` standardizes a table
        (``columns``) and any data outside [0, 1], and keeps data in [0, 1] as it is; ``"standard"`` or ``"unit"``
        force one (``"unit"`` needs values in [0, 1]); ``"none"`` keeps the values as they are, in [0, 1] or not (a
        scaler of mean 0 and std 1 then). ``kept``: features left unstandardized (default: a table's one-hot slots)."""
        if scaling not in ("auto", "standard", "unit", "none"):
            raise ConfigError(f"scaling {scaling!r} must be 'auto', 'standard', 'unit' or 'none'")
        if scaling == "none":
            if choose_scaling(x) == "unit":
                return cls(tuple(int(d) for d in x.shape[1:]), None, tuple(columns))
            same = np.zeros(x.shape[1:])
            return cls(tuple(int(d) for d in x.shape[1:]), Scaler.from_moments(same, same + 1), tuple(columns))
        if scaling == "auto":
            scaling = "standard" if columns else choose_scaling(x)
        if kept is None and columns:
            kept = one_hot_features(columns)
        scaler = Scaler.fit(x, kept) if scaling == "standard" else None
        space = cls(tuple(int(d) for d in x.shape[1:]), scaler, tuple(columns))
        if scaler is None:
            space.check_range(x)
        return space

    @classmethod
    def of_series(cls, x_train: np.ndarray, window: int, source: str = "the series") -> Space:
        """The space of windows ``(C, window)`` of a long series ``(T, C)``: each channel standardized with its
        training part's mean and standard deviation, the same at every step of a window. A constant channel is
        refused (it can tell nothing apart, and would be divided by nothing)."""
        mean, std = x_train.mean(0), x_train.std(0)
        flat = np.flatnonzero(~(std > 1e-12 * np.maximum(1.0, np.abs(mean))))
        if len(flat):
            raise DataError(f"{source}: channel {int(flat[0])} is constant over the training part (it can tell nothing "
                            "apart); drop it")  # fmt: skip
        spread = lambda v: np.repeat(v[:, None], window, 1)  # noqa: E731
        return cls((x_train.shape[1], window), Scaler.from_moments(spread(mean), spread(std)))

    @classmethod
    def from_statistics(cls, shape: tuple[int, ...], low: float, high: float, mean: np.ndarray, std: np.ndarray
                        ) -> Space:  # fmt: skip
        """The space of data known by its range and moments (a streamed source's one pass), chosen as :meth:`fit`
        chooses: values in [0, 1] as they are, anything else standardized."""
        if choose_scaling(np.array([[low, high]])) == "unit":
            return cls(tuple(shape))
        return cls(tuple(shape), Scaler.from_moments(np.reshape(mean, shape), np.reshape(std, shape)))

    # -- what it is
    @property
    def scaling(self) -> str:
        return "unit" if self.scaler is None else "standard"

    @property
    def unit(self) -> bool:
        """Whether model space is [0, 1] (pixels): a sigmoid output, BCE allowed."""
        return self.scaler is None

    @property
    def width(self) -> int:
        """Values per example."""
        return math.prod(self.input_shape)

    @property
    def is_image(self) -> bool:
        return is_image_data(self.input_shape)

    def taking_missing(self, missing: bool = True) -> Space:
        """This space, taking missing cells (NaN) or not."""
        return replace(self, missing=missing)

    def layouts(self) -> list[tuple[int, ...]]:
        """The shapes of one example this space takes: ``input_shape``, flat, and ``(H, W)`` for one-channel images."""
        shapes = [self.input_shape, (self.width,)]
        if self.is_image and self.input_shape[0] == 1:
            shapes.append(self.input_shape[1:])
        return list(dict.fromkeys(shapes))

    def table_rows(self, rows: list, source: str = "inputs") -> np.ndarray | None:
        """A table model's rows given in the table's own columns, as ``(N, width)`` float64 (numbers, categories
        one-hot, NaN where a cell is missing): each row a record ``{column: value}`` (other keys, such as the label
        column, ignored; a column left out is missing) or a list of one value per column, in order; a value ``None``
        is missing. None when ``rows`` are not such rows (already encoded: numbers as wide as the model's input)."""
        if not self.columns:
            return None
        names = [c.name for c in self.columns]
        text = lambda value: "" if value is None else str(value)  # noqa: E731  (the CSV reader's cells: "" is missing)
        if all(isinstance(row, dict) for row in rows):
            cells = {name: [text(row.get(name)) for row in rows] for name in names}
        elif all(isinstance(row, list) and len(row) == len(names) for row in rows) and (
                len(names) != self.width or any(isinstance(v, str) for row in rows for v in row)):  # fmt: skip
            cells = {name: [text(row[j]) for row in rows] for j, name in enumerate(names)}
        else:
            return None
        return csvfile.encode(cells, self.columns, False, source)

    def table_values(self, x: np.ndarray) -> list[list]:
        """Rows ``(N, width)`` in the data's units as lists of the table's own values (a categorical column's likeliest
        category), the columns in order."""
        columns = decoded(np.asarray(x, dtype=np.float64).reshape(len(x), -1), self.columns)
        values = [[float(v) if isinstance(v, (float, np.floating)) else v for v in columns[c.name]] for c in self.columns]
        return [list(row) for row in zip(*values)]

    def check_loss(self, loss: str) -> None:
        """BCE compares with targets in [0, 1]: only for unit data."""
        if loss == "bce" and not self.unit:
            raise ConfigError("loss 'bce' needs data in [0, 1]; this data is standardized, so use loss 'mse'")

    # -- into the model
    def shaped(self, x: np.ndarray, source: str = "input") -> np.ndarray:
        """``x`` in any layout of :meth:`layouts`, as ``(N, *input_shape)`` (a view where it can be)."""
        x = np.asarray(x)
        if tuple(x.shape[1:]) not in self.layouts():
            want = " or ".join("(N, " + ", ".join(map(str, s)) + ")" for s in self.layouts())
            raise DataError(f"{source}: shape {x.shape} does not match the model's input {want}")
        return x.reshape(len(x), *self.input_shape)

    def to_model(self, raw: np.ndarray, source: str = "input", missing: bool | None = None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:  # fmt: skip
        """Rows in the data's units and any accepted layout, checked (numbers, finite; NaN only where this space takes
        missing cells, or with ``missing``) and scaled as the training rows were: ``(N, *input_shape)`` of ``dtype``
        (float32; the estimators score in float64)."""
        allow = self.missing if missing is None else missing
        x = check_finite(raw, source, missing=True)
        if not allow and x.dtype.kind == "f" and np.isnan(x).any():
            bad = int(np.isnan(x).reshape(len(x), -1).any(axis=1).argmax())
            raise DataError(f"{source}: has missing cells (NaN, first in row {bad}); this model was trained without "
                            "them (only a model trained with --objective impute, or on data with holes, takes them)")
        return self.scale(self.shaped(x, source), source, dtype)

    def scale(self, x: np.ndarray, source: str = "input", dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Rows already checked and shaped ``(N, *input_shape)``, scaled into model space (float32, or ``dtype``)."""
        numpy_dtype = np.float32 if dtype == torch.float32 else np.float64
        if self.scaler is None:
            if x.dtype == np.uint8:  # one float copy, divided in place: no second full-size temporary
                return torch.from_numpy(x.astype(numpy_dtype)).div_(255)
            self.check_range(x)
            return torch.from_numpy(writable(x, numpy_dtype))
        out = self.scaler.transform(torch.from_numpy(writable(x, numpy_dtype)))
        if torch.isinf(out).any():  # finite inputs whose differences from the mean pass float32's range
            column = int(torch.isinf(out).reshape(len(out), -1).any(0).int().argmax())
            raise DataError(f"{source}: standardizing feature {column} overflows float32 (values up to "
                            f"{float(np.abs(x.reshape(len(x), -1)[:, column]).max()):.3g}, too far apart); the input "
                            "is the problem, not the training: rescale the data")  # fmt: skip
        return out

    def check_range(self, x: np.ndarray) -> None:
        """Unit data lies in [0, 1] (missing cells skipped)."""
        if x.dtype == np.uint8 or x.size == 0:
            return
        low, high = np.fmin.reduce(x, axis=None), np.fmax.reduce(x, axis=None)
        if low < 0 or high > 1:
            raise DataError(f"values must lie in [0, 1] for this model, got [{low:.3g}, {high:.3g}]")

    # -- out of the model
    def to_data(self, x: torch.Tensor) -> torch.Tensor:
        """Model-space values (reconstructions, decodings) in the data's own units, ``(N, *input_shape)``."""
        x = torch.as_tensor(x).reshape(-1, *self.input_shape)
        return self.scaler.inverse_transform(x) if self.scaler is not None else x

    def affine(self, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, std)`` with model space = ``(x - mean) / std`` (zeros and ones for unit data): what an exported
        graph folds in."""
        if self.scaler is None:
            return torch.zeros(self.input_shape, dtype=dtype), torch.ones(self.input_shape, dtype=dtype)
        return self.scaler.mean.reshape(self.input_shape).to(dtype), self.scaler.std.reshape(self.input_shape).to(dtype)


def writable(x: np.ndarray, dtype) -> np.ndarray:
    """``x`` as a contiguous array of ``dtype`` that torch may share: a copy only where it must be one (another dtype,
    or a read-only array such as a memory-mapped file's)."""
    out = np.ascontiguousarray(x, dtype=dtype)
    return out if out.flags.writeable else out.copy()


@dataclass
class Data:
    """A dataset ready for training: float32 tensors in model space, labels if any, and its :class:`Space`."""

    x_train: torch.Tensor  # (N, *input_shape)
    x_test: torch.Tensor  # (M, *input_shape)
    y_train: torch.Tensor | None = None  # (N,) int64
    y_test: torch.Tensor | None = None  # (M,) int64
    space: Space | None = None  # None: unit data of x_train's shape
    series: np.ndarray | None = None  # a long series' training part (T, C), its units: its step score's reference

    def __post_init__(self):
        if self.space is None:
            self.space = Space(tuple(self.x_train.shape[1:]))

    @property
    def scaling(self) -> str:
        return self.space.scaling

    @property
    def scaler(self) -> Scaler | None:
        return self.space.scaler

    @property
    def columns(self) -> tuple:
        return self.space.columns

    @functools.cached_property
    def fingerprint(self) -> str:
        """A digest of the rows and labels (BLAKE2b): what a cached analysis of this data is filed under."""
        digest = hashlib.blake2b(digest_size=16)
        for tensor in (self.x_train, self.x_test, self.y_train, self.y_test):
            if tensor is not None:
                array = np.ascontiguousarray(tensor.numpy())
                digest.update(f"{array.dtype}{array.shape}".encode())
                digest.update(memoryview(array).cast("B"))
        return digest.hexdigest()

    @property
    def has_missing(self) -> bool:
        """Whether the training or test rows have missing (NaN) cells."""
        return bool(torch.isnan(self.x_train).any() or torch.isnan(self.x_test).any())

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def to_model_space(self, x: np.ndarray, source: str = "input") -> torch.Tensor:
        """Check a raw array against this data's space and scale it as the training data was."""
        return self.space.to_model(x, source, missing=True)

    def to_data_space(self, x: torch.Tensor) -> torch.Tensor:
        """Map model-space values (e.g. reconstructions) back to the data's original units."""
        return self.space.to_data(x)
