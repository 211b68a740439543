"""Anomaly detection in a long series, one score per time step, in scikit-learn's manner (PyOD's names beside).

:class:`SeriesOutlierDetector` learns windows of the series it is fitted on (:mod:`aekit.core.series`: cut, each
channel standardized, an autoencoder of the windows) and scores every step of a series by its reconstruction error,
averaged over the windows that cover it. Saved, it is an ``aekit train --series`` run: ``aekit score``, ``serve``,
``export`` and ``report`` read it and give the same scores.
"""

from __future__ import annotations

import numbers
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ..configs import DataConfig, TrainConfig
from ..core.fitted import Fitted
from ..core.series import as_series, channel_errors, channel_moments, most_abnormal, step_scores
from ..core.space import Data
from ..data.series import training_windows, window_space
from ..model.autoencoder import build_model
from ..model.config import ModelConfig, make_config
from ..model.parts import MLPBody
from ..run.format import write_json
from ..run.rundir import RunDir
from ..training.loop import train

SERIES_FILE = "series.npy"  # the series a detector was fitted on, kept in the run directory its save() writes
SERIES_BASE = ModelConfig(body=MLPBody(hidden=(128,)), output="linear")


class SeriesOutlierDetector(BaseEstimator):
    """Anomalies in a long series (``(T,)`` or ``(T, C)``, rows time steps), one score per step.

    Parameters
    ----------
    window : int or "auto", default "auto"
        Steps per window; "auto": the series' dominant period (the highest peak of its autocorrelation) within
        8..512, 100 when it has none.
    contamination : float, default 0.01
        The expected share of anomalous steps in the fitted series: sets ``threshold_``.
    n_components : int, default 8
        Code size of the window autoencoder.
    body : str, default "mlp"
        The encoder/decoder: "mlp" (flattened windows), "tcn" (dilated 1-D convolutions) or "gru" (recurrent).
    objective : str, default "plain"
        What training minimises: "plain", "denoising", "vae", ... (:data:`aekit.OBJECTIVES`).
    max_epochs, batch_size, lr : training settings (30, 128, 1e-3).
    random_state : int or None
        Seeds the weights and the batches.

    Attributes
    ----------
    window_ : int
        The window used.
    fitted_ : aekit.core.fitted.Fitted
        The window model and its space (per-channel standardization).
    moments_ : ndarray (2, C)
        Each channel's per-step error mean and standard deviation on the fitted series: a step's score is its
        largest channel error standardized by them (:func:`aekit.core.series.step_scores`).
    decision_scores_ : ndarray (T,)
        The fitted series' per-step anomaly scores (higher is more abnormal, PyOD's name).
    threshold_ : float
        Steps scoring above it are anomalies (the ``1 - contamination`` quantile of ``decision_scores_``);
        ``offset_`` is minus it.
    labels_ : ndarray (T,)
        1 for the fitted series' steps above ``threshold_``, else 0.
    """

    def __init__(self, window="auto", contamination=0.01, n_components=8, body="mlp", objective="plain",
                 max_epochs=30, batch_size=128, lr=1e-3, device="auto", random_state=None, verbose=0):  # fmt: skip
        self.window, self.contamination, self.n_components = window, contamination, n_components
        self.body, self.objective, self.max_epochs, self.batch_size, self.lr = body, objective, max_epochs, batch_size, lr
        self.device, self.random_state, self.verbose = device, random_state, verbose

    def _check(self) -> None:
        if not (self.window == "auto" or (isinstance(self.window, numbers.Integral) and self.window >= 2)):
            raise ValueError(f"window={self.window!r} must be 'auto' or an integer of at least 2")
        if not (isinstance(self.contamination, numbers.Real) and 0 < self.contamination < 0.5):
            raise ValueError(f"contamination={self.contamination!r} must be in (0, 0.5)")
        for name in ("n_components", "max_epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer")

    def _series(self, series, source: str = "series") -> np.ndarray:
        """``(T,)`` or ``(T, C)`` as ``(T, C)``; anything else a ValueError (aekit's DataError) naming the problem."""
        return as_series(np.asarray(series), source)

    def fit(self, series, y=None):
        """Learn the windows of ``series`` (mostly normal), then set ``threshold_`` from its own scores."""
        self._check()
        x = self._series(series)
        if not np.isfinite(x).all():
            raise ValueError("series: has missing or infinite values; fill the gaps first")
        space = window_space(x, None if self.window == "auto" else int(self.window), "series", "window")
        window = space.input_shape[1]
        windows = space.scale(training_windows(x, window))
        config = make_config(None, body=self.body, objective=self.objective, base=SERIES_BASE,
                             input_shape=space.input_shape, latent_dim=self.n_components)  # fmt: skip
        seed = check_random_state(self.random_state).randint(2**31 - 1)
        self.train_config_ = TrainConfig(epochs=self.max_epochs, batch_size=self.batch_size, lr=self.lr, seed=seed,
                                         device=self.device)  # fmt: skip
        with torch.random.fork_rng(devices=[]):  # leave the caller's global torch RNG as it was
            torch.manual_seed(seed)
            model = build_model(config)
            history = train(model, Data(windows, windows[:0], space=space), self.train_config_,
                            progress=self.verbose > 0)  # fmt: skip
        self.history_ = [{"epoch": r["epoch"], "train_loss": r["train_loss"], "seconds": r["seconds"]} for r in history]
        self.window_, self.n_features_in_, self._series_fitted = window, x.shape[1], x
        self.fitted_ = Fitted(model.cpu().eval(), space)
        errors = channel_errors(self.fitted_, x, "series")  # once: the moments and the fitted series' own scores
        self.moments_ = channel_moments(errors)
        self.decision_scores_ = most_abnormal(errors, self.moments_)
        self.threshold_ = self.fitted_.threshold(self.decision_scores_, self.contamination)
        self.offset_ = -self.threshold_
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(np.int64)
        return self

    def _scores(self, series) -> np.ndarray:
        check_is_fitted(self, "fitted_")
        return step_scores(self.fitted_, self._series(series), "series", self.moments_)["score"]

    def explain(self, series) -> dict:
        """``{"score": (T,), "channels": (T, C)}``: each step's anomaly score and each channel's error there."""
        check_is_fitted(self, "fitted_")
        return step_scores(self.fitted_, self._series(series), "series", self.moments_)

    def score_samples(self, series) -> np.ndarray:
        """Minus each step's anomaly score ``(T,)``: higher is more normal (scikit-learn)."""
        return -self._scores(series)

    def decision_function(self, series) -> np.ndarray:
        """``score_samples - offset_``: negative at anomalous steps."""
        return self.score_samples(series) - self.offset_

    def predict(self, series) -> np.ndarray:
        """1 for each anomalous step (score above ``threshold_``), else 0 (PyOD's labels), shape (T,)."""
        return (self._scores(series) > self.threshold_).astype(np.int64)

    def save(self, path, overwrite: bool = False) -> Path:
        """Write the fitted detector as an ``aekit train --series`` run directory (its model, the series it was fitted
        on as ``series.npy``, its history, and metrics beside PCA): ``aekit score RUN --input SERIES`` gives the same
        per-step scores as :meth:`explain`. A folder that already holds something is refused unless ``overwrite``
        (then its run is replaced once the new one is written)."""
        check_is_fitted(self, "fitted_")
        with RunDir(path).saving(overwrite) as rundir:
            model = self.fitted_.model
            np.save(rundir / SERIES_FILE, self._series_fitted)
            data = DataConfig(name=SERIES_FILE, series=True, window=self.window_)
            rundir.write_config({"model": model.config, "data": data, "train": self.train_config_})
            rundir.save_model(model, self.fitted_.space.scaler, len(self.history_))
            rundir.write_history(self.history_)
            rundir.save_series(self.moments_)
            write_json(rundir / "estimator.json", {"class": type(self).__name__, "params": {
                k: v for k, v in self.get_params().items() if isinstance(v, (int, float, str, bool, type(None)))}})
        from ..run.runs import load_run  # (the run layer, above this one's training)

        load_run(path).evaluate()
        return Path(path)
