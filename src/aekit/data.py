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
import math
import os
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import DataError
from .files import ARRAY_SUFFIXES, IMAGE_SUFFIXES, check_finite, read_file

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
BUNDLED_MNIST = Path(__file__).parent / "datasets" / "mnist"

# IDX type codes (http://yann.lecun.com/exdb/mnist/): code -> big-endian numpy dtype.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# --------------------------------------------------------------------------------------------- IDX / MNIST
def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse the bytes of an (uncompressed) IDX file into an array, checking its header against its payload.

    Raises
    ------
    DataError
        If the magic number, the type code, the dimensions or the payload length is wrong; the message names
        ``name``.
    """
    if len(raw) < 4:
        raise DataError(f"{name}: not an IDX file (only {len(raw)} bytes)")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise DataError(f"{name}: not an IDX file (bad magic number 0x{raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{name}: IDX header declares {ndim} dimensions but the file ends after {len(raw)} bytes")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if 0 in dims:  # an empty dataset is of no use, and numpy refuses shapes like (0, 2**30, 2**30) anyway
        raise DataError(f"{name}: IDX dimensions {dims} hold no values")
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = math.prod(dims) * dtype.itemsize  # Python ints: no overflow on hostile headers
    if len(raw) - header != expected:
        raise DataError(
            f"{name}: IDX dimensions {dims} need {expected} payload bytes but the file has {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def read_idx_gz(path: Path, sha256: str | None = None) -> np.ndarray:
    """Read a gzip-compressed IDX file; if ``sha256`` is given, check the decompressed bytes against it."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes())
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: not a valid gzip file ({err})") from None
    array = parse_idx(raw, str(path))
    if sha256 is not None:
        digest = hashlib.sha256(raw).hexdigest()
        if digest != sha256:
            raise DataError(
                f"{path}: SHA-256 mismatch (got {digest[:12]}..., expected {sha256[:12]}...): "
                "the file is corrupt or not the canonical MNIST; delete it and try again"
            )
    return array


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


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to a temporary file beside ``path``, flush it to disk, then rename it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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
@dataclass
class DataConfig:
    """Which data to train on; stored in every run so the same data can be loaded again."""

    name: str = "mnist"  # "mnist", "digits", or a path to a .npy/.npz/.csv file or a folder of images
    data_dir: str | None = None  # folder searched first for the MNIST files
    test_fraction: float = 0.2  # share held out for testing when the data has no test split of its own
    split_seed: int = 0  # seed of that split (fixed, so runs with other training seeds share a test set)
    label_column: str | None = None  # CSV column with labels (name or 0-based index), left out of the features
    image_size: tuple[int, int] | None = None  # resize a folder's images to (H, W); needed if their sizes differ
    limit: int | None = None  # keep only the first N training examples (quick experiments, tests)


@dataclass
class Scaler:
    """Per-feature standardization learned on the training split: ``(x - mean) / std``."""

    mean: torch.Tensor  # (*input_shape)
    std: torch.Tensor  # (*input_shape)

    @classmethod
    def fit(cls, x: np.ndarray) -> Scaler:
        mean = x.mean(axis=0)
        std = x.std(axis=0)
        std[std < 1e-8] = 1.0  # a constant feature stays at 0 rather than blowing up
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
                   source: str = "input") -> torch.Tensor:  # fmt: skip
    """Check a raw array (values, shape) against a model's input and scale it as its training data was."""
    x = check_finite(x, source)
    if tuple(x.shape[1:]) != tuple(input_shape):
        want = "(N, " + ", ".join(map(str, input_shape)) + ")"
        raise DataError(f"{source}: shape {x.shape} does not match the model's input {want}")
    return scale(x, scaling, scaler)[0]


def scale(x: np.ndarray, scaling: str, scaler: Scaler | None = None) -> tuple[torch.Tensor, Scaler | None]:
    """Bring a raw array into model space; fits a :class:`Scaler` for ``"standard"`` if none is given."""
    if scaling == "unit":
        if x.dtype == np.uint8:  # one float32 copy, divided in place: no second full-size temporary
            return torch.from_numpy(x.astype(np.float32)).div_(255), None
        if x.min() < 0 or x.max() > 1:
            raise DataError(f"values must lie in [0, 1] for this model, got [{x.min():.3g}, {x.max():.3g}]")
        return torch.from_numpy(x.astype(np.float32)), None
    scaler = scaler or Scaler.fit(x.astype(np.float64))
    return scaler.transform(torch.from_numpy(x.astype(np.float32))), scaler


def auto_scaling(x: np.ndarray) -> str:
    """``"unit"`` for uint8 data or data already in [0, 1]; ``"standard"`` for anything else."""
    if x.dtype == np.uint8 or (x.min() >= 0 and x.max() <= 1):
        return "unit"
    return "standard"


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


def load(config: DataConfig) -> Data:
    """Load the dataset a :class:`DataConfig` names, split it and scale it into model space."""
    if config.name not in DATASETS and config.limit is None:
        from . import stream  # large .npy, Parquet, shard and image folders: read chunk by chunk, never whole

        if stream.streamable(config.name):
            rows = stream.open_rows(config.name, config.label_column, image_size=config.image_size)
            if stream.float32_bytes(rows) > stream.STREAM_THRESHOLD_BYTES:
                return stream.load_streamed(rows, config)
            if Path(config.name).suffix.lower() == ".parquet" or Path(config.name).is_dir():  # small: in memory
                parts = list(rows.chunks())
                x = np.concatenate([p[0] for p in parts])
                y = np.concatenate([p[1] for p in parts]) if parts[0][1] is not None else None
                return _finish(config, *split(x, y, config))
    if config.name in DATASETS:
        x_train, y_train, x_test, y_test = DATASETS[config.name][0](config)
    elif Path(config.name).suffix.lower() in ARRAY_SUFFIXES + IMAGE_SUFFIXES or Path(config.name).is_dir():
        x, y = read_file(config.name, config.label_column, config.image_size)
        x_train, y_train, x_test, y_test = split(x, y, config)
    else:
        raise DataError(
            f"unknown dataset {config.name!r}; choose one of {sorted(DATASETS)} or give a path to a "
            ".npy, .npz, .csv file or a folder of images"
        )
    return _finish(config, x_train, y_train, x_test, y_test)


def _finish(config: DataConfig, x_train, y_train, x_test, y_test) -> Data:
    """Apply ``limit``, choose the scaling from the training split and scale both splits into model space."""
    if config.limit is not None:
        if config.limit < 1:
            raise DataError(f"limit={config.limit} must be a positive number of training examples")
        x_train = x_train[: config.limit]
        y_train = None if y_train is None else y_train[: config.limit]
    scaling = auto_scaling(x_train)
    train, scaler = scale(x_train, scaling)
    test, _ = scale(x_test, scaling, scaler)
    as_labels = lambda y: None if y is None else torch.from_numpy(np.asarray(y, dtype=np.int64))  # noqa: E731
    return Data(train, test, as_labels(y_train), as_labels(y_test), scaling, scaler)
