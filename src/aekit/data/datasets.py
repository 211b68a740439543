"""Datasets as tensors: MNIST (bundled and checked), scikit-learn's digits, and the user's own files.

Everything ends up as one float32 tensor per split, held in memory and batched by slicing. Two scalings:

- ``"unit"``: values in [0, 1] (pixels); the model ends in a sigmoid and BCE is allowed.
- ``"standard"``: each feature standardized with the training split's mean and std (tabular data); the model
  has a linear output and :class:`Scaler` maps its output back to the original units.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import torch

from ..configs import DataConfig
from ..core.space import Data, Space
from ..errors import DataError
from ..io import tables
from ..io.csvfile import Csv, first_record
from ..io.idx import Idx
from ..io.images import Image, ImageFolder
from ..io.npy import Npy, Npz, Shards
from ..io.parquet import Parquet
from ..io.files import atomic_write_bytes, check_finite
from ..io.format import Format, Rows
from ..io.idx import read_idx_gz
from . import series, stream

log = logging.getLogger(__name__)

# SHA-256 of the *decompressed* IDX bytes: the same for every mirror, whatever gzip wrapper it serves.
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte.gz": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte.gz": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte.gz": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
BUNDLED_MNIST = Path(__file__).parent / "mnist"

def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "aekit" / "mnist"


def mnist_search_path(data_dir: str | Path | None = None) -> list[Path]:
    """The folders searched for MNIST, in order: ``data_dir``, ``$AEKIT_DATA``, the bundled copy, the cache."""
    dirs = [Path(data_dir)] if data_dir else []
    if os.environ.get("AEKIT_DATA"):
        dirs.append(Path(os.environ["AEKIT_DATA"]))
    return dirs + [BUNDLED_MNIST, _cache_dir()]


def find_mnist(data_dir: str | Path | None = None, download: bool = True) -> Path:
    """Return the first folder on :func:`mnist_search_path` holding all four MNIST files.

    If none does and ``download`` is true, download them (checked, written atomically) into ``data_dir`` or,
    without one, the user cache folder.
    """
    searched = mnist_search_path(data_dir)
    for folder in searched:
        if all((folder / name).is_file() for name in MNIST_SHA256):
            return folder
    target = Path(data_dir) if data_dir else _cache_dir()
    where = ", ".join(str(p) for p in searched)
    if not download:
        raise DataError(f"MNIST not found in {where}; put the four .gz files in one of them or set AEKIT_DATA")
    try:
        download_mnist(target)
    except OSError as err:
        raise DataError(
            f"MNIST not found in {where} and the download failed ({err}); put the four files "
            f"{', '.join(MNIST_SHA256)} in {target} (or set AEKIT_DATA to their folder)"
        ) from None
    return target


def download_mnist(target: Path) -> None:
    """Download the missing MNIST files into ``target``, verifying each before it is atomically renamed."""
    target.mkdir(parents=True, exist_ok=True)
    for name, sha in MNIST_SHA256.items():
        if (target / name).is_file():
            continue
        last_error: Exception | None = None
        for mirror in MNIST_MIRRORS:
            log.info("downloading %s%s", mirror, name)
            try:
                with urllib.request.urlopen(mirror + name, timeout=30) as response:
                    payload = response.read()
                if hashlib.sha256(gzip.decompress(payload)).hexdigest() != sha:
                    raise OSError(f"{mirror}{name}: checksum mismatch")
            except (OSError, EOFError, zlib.error) as err:
                last_error = err
                continue
            atomic_write_bytes(target / name, payload)
            break
        else:
            raise OSError(str(last_error))


def load_mnist_arrays(root: str | Path | None = None, train: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """MNIST images ``(N, 28, 28)`` uint8 and labels ``(N,)`` int64, checked by SHA-256."""
    folder = find_mnist(root)
    prefix = "train" if train else "t10k"
    images = read_idx_gz(folder / f"{prefix}-images-idx3-ubyte.gz", MNIST_SHA256[f"{prefix}-images-idx3-ubyte.gz"])
    labels = read_idx_gz(folder / f"{prefix}-labels-idx1-ubyte.gz", MNIST_SHA256[f"{prefix}-labels-idx1-ubyte.gz"])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{folder}: MNIST images {images.shape} and labels {labels.shape} do not match")
    return images, labels.astype(np.int64)


class MNIST(torch.utils.data.Dataset):
    """MNIST with torchvision's contract (``datasets.MNIST`` + ``ToImage()`` + ``ToDtype(float32, scale=True)``).

    Items are ``(image, label)`` with ``image`` a float32 tensor ``(1, 28, 28)`` in [0, 1]; ``.data`` holds the
    uint8 images ``(N, 28, 28)`` and ``.targets`` the int64 labels, as in torchvision. Nothing is downloaded
    when the files are bundled or found (see :func:`mnist_search_path`).

    Parameters
    ----------
    root : str or Path, optional
        A folder holding the four ``.gz`` files; searched first.
    train : bool, default True
        The 60,000 training images, or the 10,000 test images.
    """

    classes = ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four",
               "5 - five", "6 - six", "7 - seven", "8 - eight", "9 - nine"]  # fmt: skip

    def __init__(self, root: str | Path | None = None, train: bool = True):
        images, labels = load_mnist_arrays(root, train)
        self.train = train
        self.data = torch.from_numpy(images.copy())
        self.targets = torch.from_numpy(labels)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.data[index].unsqueeze(0).float().div_(255), int(self.targets[index])


# ------------------------------------------------------------------------------------------ the data contract
# ------------------------------------------------------------------------------------------ loading
def _mnist(config: DataConfig) -> tuple[np.ndarray, ...]:
    x_train, y_train = load_mnist_arrays(config.data_dir, train=True)
    x_test, y_test = load_mnist_arrays(config.data_dir, train=False)
    return x_train[:, None], y_train, x_test[:, None], y_test  # (N, 1, 28, 28) uint8


def _digits(config: DataConfig) -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None]  # (1797, 1, 8, 8) in [0, 1]
    return split(x, bunch.target.astype(np.int64), config)


DATASETS = {
    "mnist": (_mnist, "MNIST handwritten digits, 60,000 train / 10,000 test, 1x28x28 (bundled)"),
    "digits": (_digits, "scikit-learn's 8x8 digits, 1,797 images, 1x8x8 (bundled with scikit-learn)"),
}


def split(x: np.ndarray, y: np.ndarray | None, config: DataConfig) -> tuple[np.ndarray, ...]:
    """Seeded train/test split for data without a test split of its own."""
    if not 0 < config.test_fraction < 1:
        raise DataError(f"test_fraction={config.test_fraction} must be between 0 and 1")
    n_test = max(1, round(len(x) * config.test_fraction))
    if len(x) - n_test < 1:
        raise DataError(f"{config.name}: {len(x)} rows are too few to hold out a test split")
    order = np.random.default_rng(config.split_seed).permutation(len(x))
    test, train = order[:n_test], order[n_test:]
    return x[train], None if y is None else y[train], x[test], None if y is None else y[test]


# ------------------------------------------------------------------------------------------ sources: one registry
# A kind of file is one module of aekit.io (a Format: which paths it takes, reading one whole and, if it can, by
# chunks) and one line here: loading, training, encode, reconstruct, score, serve and `aekit datasets` all read this
# registry. The first format that takes a path reads it (a folder of images takes any folder: it comes last).
SOURCES: dict[str, Format] = {
    "npy": Npy(),
    "npz": Npz(),
    "csv": Csv(),
    "parquet": Parquet(),
    "idx": Idx(),
    "image": Image(),
    "shards": Shards(),
    "images": ImageFolder(),
}


def source_for(path: str | Path) -> Format:
    """The :class:`aekit.io.format.Format` that reads ``path``; a path no source takes, or that does not exist, is refused."""
    path = Path(path)
    if path.exists() and not path.is_dir() and not path.is_file():  # a FIFO would block forever, a device never end
        raise DataError(f"{path}: not a regular file or folder (only regular files are read as data)")
    source = next((s for s in SOURCES.values() if s.takes(path)), None)
    if source is None:
        if not path.exists():
            raise DataError(f"unknown dataset {str(path)!r}; choose one of {sorted(DATASETS)} or give a path to a "
                            f"{', '.join(SOURCES)} source (aekit datasets lists them)")  # fmt: skip
        raise DataError(f"{path}: unsupported file type; use one of {', '.join(SOURCES)} "
                        "(aekit datasets describes each)")  # fmt: skip
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    return source


def read_file(path: str | Path, label_column: str | None = None, image_size: tuple[int, int] | None = None
              ) -> tuple[np.ndarray, np.ndarray | None]:  # fmt: skip
    """Read a user's data file or folder whole into ``(x, labels or None)`` (:func:`read_data` without the columns)."""
    return read_data(path, label_column, image_size)[:2]


def read_data(path: str | Path, label_column: str | None = None, image_size: tuple[int, int] | None = None,
              columns: tuple[tables.Column, ...] = ()) -> tuple[np.ndarray, np.ndarray | None, tuple]:  # fmt: skip
    """A user's data file or folder whole, by the format that takes it (:data:`SOURCES`): ``(x, labels or None, columns)``,
    checked for shape and values (missing cells allowed); ``columns`` inferred for a table (``()`` for an array).
    Given the ``columns`` a model was trained on, a table is read in those (same slots, its categories checked)."""
    path = Path(path)
    x, y, columns = source_for(path).read(path, label_column, image_size, columns)
    if y is not None and len(y) != len(x):
        raise DataError(f"{path}: {len(y)} labels for {len(x)} rows")
    return check_finite(x, str(path), missing=True), y, columns


def read_series(path: str | Path, label_column: str | None = None, names: bool = False):
    """A user's file as one long series ``(T, C)`` float64, rows time steps (:func:`aekit.data.series.checked_series`:
    numbers only, no gaps); with ``names``, also its channels' names (the file's columns; None for a ``.npy``)."""
    if Path(path).suffix.lower() == ".npy" and Path(path).is_file():  # (T,) is a series too, not only (T, C)
        try:
            x, columns = np.load(path, allow_pickle=False), ()
        except (ValueError, OSError) as err:
            raise DataError(f"{path}: not a readable .npy file ({err})") from None
    else:
        stamps = time_column(path) if label_column is None else None
        if stamps is not None:
            log.info("%s: column %r holds time stamps: left out of the channels (the rows are taken in the file's "
                     "order)", path, stamps)  # fmt: skip
        label_column = label_column if stamps is None else stamps
        x, _, columns = read_data(path, label_column)
        if not columns and isinstance(source_for(path), Parquet):  # numbers only: read without Column objects
            named = tuple(tables.Column(n) for n in tables.parquet_columns(Path(path)) if n != label_column)
            columns = named if len(named) == x.shape[-1] else ()  # (a label given by its index: names unsure)
    x = series.checked_series(x, columns, str(path))
    return (x, tuple(c.name for c in columns) or None) if names else x


def left_out_column(path: str | Path, label: str | None, named: bool) -> str | None:
    """The column of a file of new rows to leave out of their features, told from its header alone (a CSV's first
    lines, a Parquet file's schema): the run's ``label`` where the file has it (new rows need no label); for a model
    of unnamed features (not ``named`` columns), the ``file`` column aekit writes beside an image folder's rows."""
    path = Path(path)
    names = None
    if path.is_file() and isinstance(source_for(path), (Csv, Parquet)):
        names = list(first_record(path) or {}) if isinstance(source_for(path), Csv) else list(tables.parquet_columns(path))
    if label is not None:  # without a header to tell by, its reader takes the label by index, or says
        return label if not names or label in names or (label.isdigit() and int(label) < len(names)) else None
    return stream.FILE_COLUMN if names and stream.FILE_COLUMN in names and not named else None


def time_column(path: str | Path) -> str | None:
    """A long series' time-stamp column, which is not a channel: the first Parquet column of a date or time type, or
    the first CSV column whose first value is an ISO 8601 date or time (2026-01-01, 2026-01-01T08:30:00,
    2026-01-01 08:30:00+01:00)."""
    path = Path(path)
    if isinstance(source_for(path), Parquet) and path.is_file():
        return next((name for name, kind in tables.parquet_columns(path).items() if kind == "time"), None)
    if isinstance(source_for(path), Csv) and path.is_file():
        record = first_record(path) or {}
        return next((name for name, cell in record.items() if series.is_time_stamp(cell)), None)
    return None


def open_rows(path: str | Path, label_column: str | None = None, chunk_bytes: int | None = None,
              image_size: tuple[int, int] | None = None) -> Rows | None:  # fmt: skip
    """``path`` as :class:`aekit.io.format.Rows`, read a chunk at a time; None for a source read only whole (CSV, a
    Parquet table with text columns)."""
    path = Path(path)
    source = source_for(path)
    return None if source.open is None else source.open(path, label_column, chunk_bytes, image_size)


def load(config: DataConfig, space: Space | None = None) -> Data | stream.Streamed:
    """Load the dataset a :class:`DataConfig` names, split it and scale it into model space: in memory (:class:`Data`),
    or, for a chunked source over ``stream.STREAM_THRESHOLD_BYTES`` as float32, streamed (:class:`aekit.data.stream.Streamed`).
    The scaling is chosen from the training split (:meth:`aekit.core.space.Space.fit`), or is ``space``'s: a trained
    model's (its data loaded again for evaluation, analyses and figures)."""
    if config.window is not None and not config.series:
        raise DataError(f"--window {config.window} applies to a long series: give --series too")
    if config.name in DATASETS:
        if config.series:
            raise DataError(f"--series: {config.name} is a dataset of images, not a series; give a file of one")
        return _finish(config, *DATASETS[config.name][0](config), space=space)
    if config.series:  # one long series, cut into windows
        return series.load_series(read_series(config.name, config.label_column), config, space)
    columns = space.columns if space is not None else ()
    rows = None
    if config.limit is None and not columns:
        rows = open_rows(config.name, config.label_column, image_size=config.image_size)
    if rows is None:
        x, y, columns = read_data(config.name, config.label_column, config.image_size, columns)
    elif stream.float32_bytes(rows) > stream.STREAM_THRESHOLD_BYTES:
        return stream.load_streamed(rows, config, space)
    else:  # small: in memory, from the chunks already opened; missing cells (NaN) allowed (streamed: not)
        if space is None:  # training (a trained run's data loaded again is not news)
            log.info("reading %s into memory: %d rows, %.1f MB as float32 (sources over %.0f GiB are streamed)",
                     rows.source, len(rows), stream.float32_bytes(rows) / 1e6, stream.STREAM_THRESHOLD_BYTES / 2**30)
        rows.missing = True
        x, y = rows.whole()
    return _finish(config, *split(x, y, config), columns, space=space)


def refuse_unobserved(x_train: np.ndarray, columns: tuple, source: str) -> None:
    """A feature (a table's column) with no observed value in the training rows is refused in one line: a model can
    learn nothing of it, and filling it would be inventing numbers."""
    if x_train.dtype.kind != "f" or not len(x_train):
        return
    flat = x_train.reshape(len(x_train), -1)
    empty = np.isnan(flat).all(0)
    if not empty.any():
        return
    feature = int(np.flatnonzero(empty)[0])
    name = columns[tables.column_of_feature(columns)[feature]].name if columns else None
    what = f"column {name!r}" if name is not None else f"feature {feature}"
    raise DataError(f"{source}: {what} has no observed value in the {len(flat)} training rows (every cell empty); "
                    "drop it")  # fmt: skip


def _finish(config: DataConfig, x_train, y_train, x_test, y_test, columns: tuple = (), space: Space | None = None
            ) -> Data:  # fmt: skip
    """Apply ``limit``, choose the space from the training split (or take ``space``) and scale both splits into
    model space. A table's (``columns``) numeric columns are standardized, its one-hot slots kept as they are."""
    if config.limit is not None:
        if config.limit < 1:
            raise DataError(f"limit={config.limit} must be a positive number of training examples")
        x_train = x_train[: config.limit]
        y_train = None if y_train is None else y_train[: config.limit]
    if space is None:
        refuse_unobserved(x_train, columns, config.name)
        space = Space.fit(x_train, columns)
    train, test = (space.scale(space.shaped(x, config.name), config.name) for x in (x_train, x_test))
    as_labels = lambda y: None if y is None else torch.from_numpy(np.asarray(y, dtype=np.int64))  # noqa: E731
    return Data(train, test, as_labels(y_train), as_labels(y_test), space)
