"""A series run's capability (``run.series``): one anomaly score per time step of a long series, its threshold from
the training part, and which channel is abnormal where. Built from the fitted window model (``input_shape`` ``(C, W)``,
:mod:`aekit.core.series`) and the series it was fitted on (its file read once, when first needed: the held-out part,
the threshold, the channels' names)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from ..core.fitted import Fitted
from ..core.series import as_series, model_windows, most_abnormal, step_scores, steps_from_windows, window_errors
from ..errors import ConfigError


class Series:
    """Scores per time step of a window model's series: :meth:`score` ``(T,)``, :meth:`channels` ``(T, C)``,
    :meth:`threshold` from the training part's own scores, :meth:`predict` 0/1 per step."""

    def __init__(self, fitted: Fitted, series: Callable[[], tuple[np.ndarray, int, tuple[str, ...] | None]],
                 read: Callable[[str], tuple[np.ndarray, tuple[str, ...] | None]],
                 moments: np.ndarray | None = None):  # fmt: skip
        """``series``: gives the run's series ``(T, C)`` in the data's units, how many of its first steps trained
        the model (the rest was held out) and its channels' names (None: a file without them, a ``.npy``); ``read``:
        a file of a series as ``(T, C)`` and its channels' names, read as the run's was;
        ``moments``: each channel's error mean and spread on the training part (:func:`~aekit.core.series.step_scores`;
        None: the score is the channels' mean error)."""
        if len(fitted.space.input_shape) != 2:
            raise ConfigError(f"not a series model: its input is {fitted.space.input_shape}, not windows (C, W)")
        self.fitted, self._series, self.read, self.moments = fitted, series, read, moments
        self._training_scores: np.ndarray | None = None

    @functools.cached_property
    def _whole(self) -> tuple[np.ndarray, int, tuple[str, ...] | None]:
        return self._series()  # the run's file, read once

    def _training(self) -> np.ndarray:
        x, n_train, _ = self._whole
        return x[:n_train]

    def held_out(self) -> np.ndarray:
        """The steps of the run's series held out from training (its test part)."""
        x, n_train, _ = self._whole
        return x[n_train:] if len(x) - n_train >= self.window else x[len(x) - self.window :]

    @property
    def names(self) -> tuple[str, ...]:
        """The channels' names: the run's file's columns, else ``channel 0``, ``channel 1``, ..."""
        names = self._whole[2]
        return tuple(names) if names else tuple(f"channel {c}" for c in range(self.channels_count))

    @property
    def window(self) -> int:
        return self.fitted.space.input_shape[1]

    @property
    def channels_count(self) -> int:
        return self.fitted.space.input_shape[0]

    def scored(self, series: np.ndarray, source: str = "input") -> dict[str, np.ndarray]:
        """``{"score": (T,), "channels": (T, C)}``: :meth:`score` and :meth:`channels` in one pass."""
        return step_scores(self.fitted, series, source, self.moments)

    def score(self, series: np.ndarray, source: str = "input") -> np.ndarray:
        """One score per step ``(T,)``: its most abnormal channel's error, averaged over the windows that cover the
        step and standardized on the training part (higher is more abnormal; :func:`~aekit.core.series.step_scores`)."""
        return step_scores(self.fitted, series, source, self.moments)["score"]

    def channels(self, series: np.ndarray, source: str = "input") -> np.ndarray:
        """Each channel's error per step ``(T, C)``, before standardizing: which channel is off where."""
        return step_scores(self.fitted, series, source, self.moments)["channels"]

    def encode(self, series: np.ndarray, source: str = "input") -> np.ndarray:
        """The code of each window ``(T - W + 1, latent_dim)``: row ``n`` the window starting at step ``n``."""
        return np.concatenate([self.fitted.encode(rows).numpy() for rows in model_windows(self.fitted, series, source)])

    def reconstruct(self, series: np.ndarray, source: str = "input") -> np.ndarray:
        """The series as the model rebuilds it ``(T, C)``, in the data's units: each step the mean of its value in
        the reconstructions of the windows that cover it (overlap-add)."""
        x = as_series(series, source)
        total, done = np.zeros_like(x), 0
        for rows in model_windows(self.fitted, x, source):
            rebuilt = self.fitted.reconstruct(rows).double().numpy()  # (n, C, W): windows done .. done + n - 1
            for offset in range(self.window):  # window i's step ``offset`` is the series' step i + offset
                total[done + offset : done + offset + len(rebuilt)] += rebuilt[:, :, offset]
            done += len(rebuilt)
        # windows covering step t: t + 1 near the start, T - t near the end, else W (or all N = T - W + 1 of them)
        covered = np.minimum.reduce([np.arange(1, len(x) + 1), np.arange(len(x), 0, -1),
                                     np.full(len(x), min(self.window, len(x) - self.window + 1))])  # fmt: skip
        return total / covered[:, None]

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

    def worst(self, series: np.ndarray, k: int = 3) -> list[tuple[int, np.ndarray, np.ndarray, int]]:
        """The ``k`` most abnormal windows of ``series``, apart from each other, by the step rule's measure (each
        window's most abnormal channel, its error standardized on the training part): ``(start, window,
        reconstruction, channel)``, the windows ``(C, W)`` in the data's units, ``channel`` the most abnormal one."""
        x = as_series(series)
        return self._worst(x, window_errors(self.fitted, x), k)

    def _worst(self, x: np.ndarray, per_channel: np.ndarray, k: int) -> list[tuple[int, np.ndarray, np.ndarray, int]]:
        """:meth:`worst` from the windows' errors already computed ``(N, C)``, the windows starting at every step."""
        standardized = per_channel if self.moments is None else (per_channel - self.moments[0]) / self.moments[1]
        errors = most_abnormal(per_channel, self.moments)
        chosen: list[int] = []
        for i in np.argsort(-errors, kind="stable"):
            if all(abs(int(i) - j) >= self.window for j in chosen):
                chosen.append(int(i))
            if len(chosen) == k:
                break
        windows = np.stack([x[i : i + self.window].T for i in chosen])
        rebuilt = self.fitted.reconstruct(self.fitted.space.to_model(windows)).numpy()
        return [(i, windows[n], rebuilt[n], int(standardized[i].argmax())) for n, i in enumerate(chosen)]

    def draw(self, path=None, series: np.ndarray | None = None, contamination: float = 0.01):
        """The series (default: the run's held-out part) with its score per step, the threshold (the training part's
        ``1 - contamination`` quantile) and the three worst windows beside their reconstructions, each in its most
        abnormal channel; the channels named as the run's file names them."""
        from ..analysis import plots

        x = as_series(self.held_out() if series is None else series)
        per_window = window_errors(self.fitted, x)  # once, for the scores and the worst windows
        scores = steps_from_windows(per_window, self.window, self.moments)["score"]
        return plots.series_scores(x, scores, self.threshold(contamination), self._worst(x, per_window, 3), path,
                                   self.names)  # fmt: skip
