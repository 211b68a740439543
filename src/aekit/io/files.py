"""What every format shares: atomic writes, the finiteness check, a ``.npy`` header checked before anything is
allocated, a label column found by name or index, and the limits on what aekit reads. Each format is a module of its
own beside this one (:mod:`aekit.io.format`); every reader checks what it returns, each problem one
:class:`~aekit.errors.DataError` naming the file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from ..errors import DataError

OUTPUT_SUFFIXES = (".npy", ".csv", ".parquet")  # what encode, reconstruct and score write, by the --out suffix
# Limits on what a file may make aekit do; each refusal names the file and the limit.
MAX_ARRAY_BYTES = 8 * 2**30  # a .npy/.npz array declaring more than this (8 GiB) is refused before it is read
MAX_IMAGE_PIXELS = 40_000_000  # per image (PIL's own decompression-bomb guard starts at 89 million)
FLOAT32_MAX = float(np.finfo(np.float32).max)  # aekit computes in float32: larger finite values would become inf


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to a temporary file beside ``path``, flush it to disk, then rename it into place.

    If anything fails (a full disk, a quota, a read-only file system), the temporary file is removed, the file
    that was at ``path`` stays as it was, and the ``OSError`` names ``path``."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise named(err, path) from None
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise named(err, path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def named(err: OSError, path: Path) -> OSError:
    """``err`` naming ``path`` if it names no file (a write's ENOSPC does not)."""
    if err.filename is not None or err.errno is None:  # it names its file, or it is no system error to rebuild
        return err
    return OSError(err.errno, err.strerror, str(path))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_finite(x: np.ndarray, source: str, first_row: int = 0, missing: bool = False) -> np.ndarray:
    """Reject empty, non-numeric or non-finite arrays with a message naming ``source`` (rows counted from
    ``first_row``: a chunk's place in its file). With ``missing``, NaN cells are allowed (missing values);
    infinite ones never are."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise DataError(f"{source}: values must be numeric, got dtype {x.dtype}")
    if x.ndim < 2 or len(x) == 0 or x[0].size == 0:
        raise DataError(f"{source}: need a non-empty array of shape (N, features...), got {x.shape}")
    bad_cells = (np.isinf(x) if missing else ~np.isfinite(x)) if x.dtype.kind == "f" else None
    if bad_cells is not None and bad_cells.any():
        bad = first_row + int(bad_cells.reshape(len(x), -1).any(axis=1).argmax())
        raise DataError(f"{source}: contains {'infinite' if missing else 'NaN or infinite'} values (first in row {bad})")
    if x.dtype.kind == "f" and x.dtype.itemsize > 4 and float(np.fmax.reduce(np.abs(x), axis=None)) > FLOAT32_MAX:
        bad = first_row + int((np.abs(x) > FLOAT32_MAX).reshape(len(x), -1).any(axis=1).argmax())
        raise DataError(f"{source}: values beyond float32's range (|x| > {FLOAT32_MAX:.3g}, first in row {bad}); "
                        "aekit computes in float32, so rescale the data")  # fmt: skip
    return x


def check_npy_header(handle, size: int, source: str, limit: int | None = MAX_ARRAY_BYTES) -> None:
    """Read a .npy header and refuse object arrays and declared sizes above ``limit`` (None: no limit, for a
    memory-mapped file that is never loaded whole) or beyond the file."""
    try:
        version = np.lib.format.read_magic(handle)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(handle)
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"{source}: not a valid NumPy file ({err})") from None
    if dtype.hasobject:
        raise DataError(f"{source}: holds Python objects (dtype {dtype}), which would need pickle; aekit never loads those")
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if limit is not None and declared > limit:
        raise DataError(f"{source}: its header declares {declared:.3g} bytes {tuple(shape)}, more than the "
                        f"{MAX_ARRAY_BYTES / 2**30:g} GiB aekit reads")  # fmt: skip
    if declared > size - handle.tell():
        raise DataError(f"{source}: its header declares {declared} bytes {tuple(shape)} but the file holds "
                        f"{size - handle.tell()}")  # fmt: skip


def label_name(names: list[str], label_column: str, path) -> str:
    """The column ``label_column`` names among ``names``: a column name, else a 0-based index."""
    if label_column in names:
        return label_column
    if label_column.isdigit() and int(label_column) < len(names):
        return names[int(label_column)]
    raise MissingLabel(f"{path}: no column {label_column!r}; columns are {names[:20]}")


class MissingLabel(DataError):
    """A file lacks the label column it was asked for: an error when training, not when scoring new rows."""


