"""A long series as a dataset (``aekit train --series``): read whole, split in time, scaled per channel, cut into
windows (:mod:`aekit.core.series`).

The first ``1 - test_fraction`` of the steps is the training part and the rest the test part: a random split of
overlapping windows would put the same steps on both sides. Each channel is standardized with the training part's
mean and standard deviation (a constant channel is refused). Training windows are cut every ``stride`` steps, the
stride chosen so that at most :data:`MAX_TRAIN_WINDOWS` are kept; test windows alike.
"""

from __future__ import annotations

import logging
from datetime import datetime

import numpy as np

from ..configs import DataConfig
from ..core.series import as_series, auto_window, cut
from ..core.space import Data, Space
from ..errors import DataError

log = logging.getLogger(__name__)

MAX_TRAIN_WINDOWS = 20_000
MAX_TEST_WINDOWS = 5_000


def checked_series(x: np.ndarray, columns: tuple, source: str) -> np.ndarray:
    """A file's rows (:func:`aekit.data.datasets.read_data`) as a long series ``(T, C)`` float64: numeric columns
    only, no gaps (one line otherwise)."""
    text = [c.name for c in columns if c.kind != "numeric"]
    if text:
        raise DataError(f"{source}: column {text[0]!r} is not numbers; a series' channels are numeric (give a label or "
                        "time-stamp column with --label-column, or drop it)")  # fmt: skip
    x = as_series(x, source)
    warn_if_clock(x, [c.name for c in columns], source)
    if np.isnan(x).any():
        row, column = map(int, np.argwhere(np.isnan(x))[0])
        raise DataError(f"{source}: a gap (missing value) at row {row}, channel {column}; fill or drop the gaps first "
                        "(a series is read without missing values)")  # fmt: skip
    return x


def is_time_stamp(cell: str) -> bool:
    """Whether a cell is an ISO 8601 date or date and time (not a number: 20260101 is a number)."""
    cell = cell.strip()
    if not cell or cell[0] in "+-" or cell.replace(".", "", 1).isdigit():
        return False
    try:
        datetime.fromisoformat(cell.replace("Z", "+00:00") if cell.endswith("Z") else cell)
    except ValueError:
        return False
    return True


def warn_if_clock(x: np.ndarray, names: list[str], source: str) -> None:
    """Warn of a channel that rises by the same amount at every step, as a clock or a row number does: it never
    repeats, so every new step would look abnormal (it belongs out of the channels, as --label-column)."""
    if len(x) < 3:
        return
    steps = np.diff(x, axis=0)
    for j in np.flatnonzero((steps[0] > 0) & (np.ptp(steps, axis=0) <= 1e-9 * np.abs(steps[0]))):
        name = repr(names[j]) if j < len(names) else str(int(j))
        log.warning("warning: %s: channel %s rises by %g at every step, like a clock or a row number: it never "
                    "repeats, so every new step would look abnormal; leave it out (give it as --label-column)", source,
                    name, steps[0, j])  # fmt: skip


def stride_for(length: int, window: int, most: int) -> int:
    """The step between windows that keeps at most ``most`` of them."""
    return max(1, -(-(length - window + 1) // most))


def training_steps(length: int, config: DataConfig) -> int:
    """How many of a series' first steps are its training part (the rest is held out for testing)."""
    return int(round(length * (1 - config.test_fraction)))


def window_space(train: np.ndarray, window: int | None, source: str, option: str = "--window") -> Space:
    """The space of a series' windows fitted to its training part ``train`` ``(T, C)``: ``window`` steps (None: the
    part's dominant period, :func:`aekit.core.series.auto_window`), refused unless two fit in the part, each channel
    standardized on it (:meth:`aekit.core.space.Space.of_series`)."""
    window = window or auto_window(train)
    if len(train) < 2 * window:
        raise DataError(f"{source}: {len(train)} steps to train on, fewer than two windows of {window}; give a longer "
                        f"series or a smaller {option}")  # fmt: skip
    return Space.of_series(train, window, source)


def training_windows(train: np.ndarray, window: int) -> np.ndarray:
    """The windows a series model learns from its training part, unscaled: every step, or evenly strided so that at
    most :data:`MAX_TRAIN_WINDOWS` are kept."""
    return cut(train, window, stride_for(len(train), window, MAX_TRAIN_WINDOWS))


def load_series(x: np.ndarray, config: DataConfig, space: Space | None = None) -> Data:
    """The dataset of long series ``x`` (``(T, C)``, :func:`checked_series`): windows of its training and test parts
    in model space, of ``config.window`` steps, or the model's (``space``), or chosen from the training part."""
    n_train = training_steps(len(x), config)
    train, test = x[:n_train], x[n_train:]
    space = window_space(train, config.window, config.name) if space is None else space
    window = space.input_shape[-1]
    if space.input_shape[0] != x.shape[1]:
        raise DataError(f"{config.name}: {x.shape[1]} channel(s); the model was trained on {space.input_shape[0]}")
    if len(test) < window:  # a short test part: its last window reaches back into the training part
        test = x[len(x) - window :]
    train_windows = training_windows(train, window)
    test_windows = cut(test, window, stride_for(len(test), window, MAX_TEST_WINDOWS))
    log.info("series %s: %d steps x %d channel(s); windows of %d steps: %d for training (first %d steps), %d for "
             "testing", config.name, len(x), x.shape[1], window, len(train_windows), len(train), len(test_windows))
    to_model = lambda w: space.scale(w, config.name)  # noqa: E731
    return Data(to_model(train_windows), to_model(test_windows), space=space, series=train)
