"""A long series (rows are time steps, columns channels) cut into windows, and each window's per-step errors added
back to the steps it covers: one score per time step.

A series model is an autoencoder of windows: its ``input_shape`` is ``(C, W)``, ``C`` channels by ``W`` steps (two
numbers: a sequence; three would be an image). Training cuts windows from the training part of the series
(:func:`cut`); scoring cuts every window of the new series (stride 1), takes each window's error in each channel
(the one score's per-feature errors, :meth:`aekit.core.fitted.Fitted.parts`), gives each time step the mean over
the windows that cover it (overlap-add), and scores the step by its most abnormal channel, each channel's error
standardized on the training part (:func:`step_scores`). The window length, when not given, is the
series' dominant period (:func:`dominant_period`: the highest peak of the autocorrelation, as TSB-AD picks one).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError

MIN_WINDOW = 8
MAX_WINDOW = 512
DEFAULT_WINDOW = 100  # when the series shows no period (the window of the UCR/TSB-AD benchmarks' detectors)
PERIOD_LAGS = 1000  # the autocorrelation is searched up to this lag (and a third of the series)
SCORE_CHUNK_WINDOWS = 4096  # windows scored at a time: memory stays bounded by a chunk for any length


def as_series(x: np.ndarray, source: str = "input") -> np.ndarray:
    """A long series as ``(T, C)`` float64: ``(T,)`` is one channel. A collection of series (3-D) or a table with more
    columns than rows (its rows are likely whole series) is refused in one line."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise DataError(f"{source}: a series holds numbers, not {x.dtype}")
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise DataError(f"{source}: shape {x.shape} is a collection of series; a long series is (T,) or (T, C), one "
                        "row per time step (whole series of one length train without --series, input_shape (C, L))")  # fmt: skip
    if x.shape[1] > x.shape[0]:
        raise DataError(f"{source}: {x.shape[0]} rows of {x.shape[1]} columns: a long series has one row per time step "
                        "and one column per channel (rows that are whole series train without --series)")  # fmt: skip
    return x.astype(np.float64, copy=False)


def dominant_period(x: np.ndarray, max_lag: int = PERIOD_LAGS) -> int | None:
    """The lag of the highest local peak of the series' autocorrelation (the channels' standardized autocorrelations
    averaged), from lag 3 up to ``max_lag`` and a third of the series; None when it has no peak."""
    x = as_series(x)[: 20 * max_lag]
    centred = x - x.mean(0)
    spread = centred.std(0)
    centred = centred[:, spread > 0] / spread[spread > 0]
    if centred.shape[1] == 0:
        return None
    n = len(centred)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    power = np.abs(np.fft.rfft(centred, size, axis=0)) ** 2
    acf = np.fft.irfft(power, size, axis=0)[:n].mean(1)
    acf = acf / acf[0]
    last = min(max_lag, n // 3)
    if last < 5:
        return None
    inner = acf[3:last]
    peaks = np.flatnonzero((inner[1:-1] > inner[:-2]) & (inner[1:-1] > inner[2:])) + 1
    if len(peaks) == 0:
        return None
    return int(peaks[np.argmax(inner[peaks])] + 3)


def auto_window(x: np.ndarray) -> int:
    """The window for a series: its dominant period within [MIN_WINDOW, MAX_WINDOW], else :data:`DEFAULT_WINDOW`."""
    period = dominant_period(x)
    if period is None:
        return min(DEFAULT_WINDOW, max(MIN_WINDOW, len(x) // 4))
    return int(np.clip(period, MIN_WINDOW, MAX_WINDOW))


def starts(length: int, window: int, stride: int = 1) -> np.ndarray:
    """The first step of each window: every ``stride`` steps, and the last window ending at the series' end."""
    if length < window:
        raise DataError(f"the series has {length} steps, fewer than the window of {window}")
    first = np.arange(0, length - window + 1, stride)
    return first if first[-1] == length - window else np.append(first, length - window)


def cut(x: np.ndarray, window: int, stride: int = 1, at: np.ndarray | None = None) -> np.ndarray:
    """Windows ``(N, C, W)`` of a series ``(T, C)`` (a copy), starting at ``at`` (default :func:`starts`)."""
    at = starts(len(x), window, stride) if at is None else at
    view = np.lib.stride_tricks.sliding_window_view(x, window, axis=0)  # (T - W + 1, C, W), no copy
    return np.ascontiguousarray(view[at])


def model_windows(fitted, series: np.ndarray, source: str = "input", dtype: torch.dtype = torch.float32):
    """The windows of ``series`` (``(T,)`` or ``(T, C)``, the data's units) starting at every step, in model space,
    a chunk of at most :data:`SCORE_CHUNK_WINDOWS` at a time; a series of other channels, or with gaps, refused in
    one line."""
    channels, window = fitted.space.input_shape
    x = as_series(series, source)
    if x.shape[1] != channels:
        raise DataError(f"{source}: {x.shape[1]} channel(s); the model was trained on {channels}")
    if not np.isfinite(x).all():
        row = int((~np.isfinite(x)).any(1).argmax())
        raise DataError(f"{source}: has missing or infinite values (first at step {row}); fill the gaps first")
    at = starts(len(x), window)  # every step: stride 1
    for i in range(0, len(at), SCORE_CHUNK_WINDOWS):
        yield fitted.space.to_model(cut(x, window, at=at[i : i + SCORE_CHUNK_WINDOWS]), source, dtype=dtype)


@torch.no_grad()
def window_errors(fitted, series: np.ndarray, source: str = "input") -> np.ndarray:
    """Each window's mean squared error in each channel ``(T - W + 1, C)``, for the windows starting at every step
    (the one score's per-feature errors, :meth:`~aekit.core.fitted.Fitted.parts`). Float64, the same whatever the
    batching."""
    channels, window = fitted.space.input_shape
    errors = [fitted.parts(rows)["feature_errors"].reshape(len(rows), channels, window).sum(2) * channels
              for rows in model_windows(fitted, series, source, torch.float64)]  # squared / (C * W), summed over W
    return np.concatenate(errors)


def channel_errors(fitted, series: np.ndarray, source: str = "input") -> np.ndarray:
    """Each channel's error at each time step ``(T, C)``: the mean over the windows that cover the step of the
    window's mean squared error in that channel (:func:`window_errors`, :func:`overlap_mean`)."""
    return overlap_mean(torch.from_numpy(window_errors(fitted, series, source)), fitted.space.input_shape[1]).numpy()


def channel_moments(errors: np.ndarray) -> np.ndarray:
    """``(2, C)``: the mean and standard deviation of each channel's per-step errors (:func:`channel_errors`) on the
    training part: what :func:`step_scores` standardizes by."""
    return np.stack([errors.mean(0), np.maximum(errors.std(0), 1e-12 * np.maximum(errors.mean(0), 1e-300))])


def step_scores(fitted, series: np.ndarray, source: str = "input", moments: np.ndarray | None = None
                ) -> dict[str, np.ndarray]:  # fmt: skip
    """One anomaly score per time step of ``series`` (``(T,)`` or ``(T, C)``, the data's units) from a fitted window
    model (``input_shape`` ``(C, W)``): ``channels`` ``(T, C)`` is :func:`channel_errors` (which channel is off
    there); ``score`` ``(T,)`` the largest of the channels' errors, each standardized by its ``moments`` on the
    training part (:func:`channel_moments`; without them, the channels' mean error).

    Two measured choices (``benchmarks/series.py``): a step takes the errors of whole windows rather than its own
    position's in them (KDD-TSAD 135: VUS-PR 0.968 against 0.152: an anomaly is a shape that no window containing
    it rebuilds, more than one value); and the largest standardized channel rather than the channels' mean (Daphnet
    with injected anomalies: 0.79 against 0.60: an anomaly in one sensor of nine is not averaged away)."""
    return steps_from_windows(window_errors(fitted, series, source), fitted.space.input_shape[1], moments)


def steps_from_windows(per_window: np.ndarray, window: int, moments: np.ndarray | None = None
                       ) -> dict[str, np.ndarray]:  # fmt: skip
    """:func:`step_scores` from the windows' errors already computed (:func:`window_errors`)."""
    errors = overlap_mean(torch.from_numpy(per_window), window).numpy()
    return {"score": most_abnormal(errors, moments), "channels": errors}


# The step rule, once, in torch: NumPy arrays pass through it (float64) and the ONNX score graph traces it
# (aekit.core.export.SeriesScore), so Python, HTTP and ONNX cannot come apart.
def overlap_mean(per_window: torch.Tensor, window: int) -> torch.Tensor:
    """Per-window values ``(N, C)`` of the windows starting at steps 0 .. N - 1 as per-step means over the windows
    that cover each step ``(N + W - 1, C)``: a grouped transposed convolution with kernels of ones sums them (window
    n adds to steps n .. n + W - 1), and counts them. Exact sums of W values, at any length, in float32 too."""
    channels = per_window.shape[1]
    ones = torch.ones(channels, 1, window, dtype=per_window.dtype, device=per_window.device)
    total = F.conv_transpose1d(per_window.transpose(0, 1).unsqueeze(0), ones, groups=channels)[0]  # (C, T)
    covered = F.conv_transpose1d(torch.ones_like(per_window[:, :1]).transpose(0, 1).unsqueeze(0), ones[:1])[0]
    return (total / covered).transpose(0, 1)


def most_abnormal(errors, moments=None):
    """Each step's score ``(T,)`` from its channels' errors ``(T, C)``: the largest standardized by ``moments``
    ``(2, C)``, or without them the channels' mean. Tensors give a tensor; NumPy arrays an array (float64)."""
    if isinstance(errors, np.ndarray):
        return most_abnormal(torch.from_numpy(errors), None if moments is None else torch.as_tensor(moments)).numpy()
    return errors.mean(1) if moments is None else ((errors - moments[0]) / moments[1]).amax(1)
