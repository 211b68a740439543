"""A series run's capability (``run.series``): one anomaly score per time step of a long series, its threshold from
the training part, and which channel is abnormal where. Built from the fitted window model (``input_shape`` ``(C, W)``,
:mod:`aekit.core.series`) and the training series it was fitted on (read again when a threshold is asked for)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..core.fitted import Fitted
from ..core.series import step_scores
from ..errors import ConfigError


class Series:
    """Scores per time step of a window model's series: :meth:`score` ``(T,)``, :meth:`channels` ``(T, C)``,
    :meth:`threshold` from the training part's own scores, :meth:`predict` 0/1 per step."""

    def __init__(self, fitted: Fitted, training: Callable[[], np.ndarray], read: Callable[[str], np.ndarray]):
        """``training``: gives the training part of the series, ``(T, C)`` in the data's units; ``read``: a file of a
        series as ``(T, C)``, read as the training one was (:meth:`read`)."""
        if len(fitted.space.input_shape) != 2:
            raise ConfigError(f"not a series model: its input is {fitted.space.input_shape}, not windows (C, W)")
        self.fitted, self._training, self.read = fitted, training, read
        self._training_scores: np.ndarray | None = None

    @property
    def window(self) -> int:
        return self.fitted.space.input_shape[1]

    @property
    def channels_count(self) -> int:
        return self.fitted.space.input_shape[0]

    def scored(self, series: np.ndarray, source: str = "input") -> dict[str, np.ndarray]:
        """``{"score": (T,), "channels": (T, C)}``: :meth:`score` and :meth:`channels` in one pass."""
        return step_scores(self.fitted, series, source)

    def score(self, series: np.ndarray, source: str = "input") -> np.ndarray:
        """One score per step ``(T,)``: the squared error there, averaged over channels and over the windows that
        cover it (higher is more abnormal)."""
        return step_scores(self.fitted, series, source)["score"]

    def channels(self, series: np.ndarray, source: str = "input") -> np.ndarray:
        """Each channel's squared error per step ``(T, C)`` (their mean is :meth:`score`): which channel is off."""
        return step_scores(self.fitted, series, source)["channels"]

    def training_scores(self) -> np.ndarray:
        """The per-step scores of the training part (computed once)."""
        if self._training_scores is None:
            self._training_scores = self.score(self._training(), "the training series")
        return self._training_scores

    def threshold(self, contamination: float) -> float:
        """The score above which ``contamination`` (a share below 1) of the training part's steps lie."""
        return self.fitted.threshold(self.training_scores(), contamination)

    def predict(self, series: np.ndarray, contamination: float, source: str = "input") -> np.ndarray:
        """1 for each step scoring above :meth:`threshold`, else 0."""
        return (self.score(series, source) > self.threshold(contamination)).astype(np.int64)
