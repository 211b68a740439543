"""NumPy's files: a ``.npy`` array (memory-mapped, read by slices), a ``.npz`` archive, and a folder of ``.npy``
shards read as one table in name order. Every header is checked before anything is allocated: no objects, no more
than the file holds."""

from __future__ import annotations

import io
import math
import zipfile
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import DataError
from .files import check_npy_header
from .format import Format, Rows, chunk_spans


def read_npy(path: Path) -> np.ndarray:
    """A whole .npy array (its header checked first: no objects, at most MAX_ARRAY_BYTES, no more than the file)."""
    with open(path, "rb") as handle:
        check_npy_header(handle, path.stat().st_size, str(path))
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as err:  # object arrays need pickle, which we never load
        raise DataError(f"{path}: cannot load ({err})") from None
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: not a valid NumPy file ({err})") from None


def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """The data array of a .npz archive (``x``, ``X``, ``data``, ``images`` or its only array) and its labels if any."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = {Path(info.filename).stem: info for info in archive.infolist() if info.filename.endswith(".npy")}
            if not members:
                raise DataError(f"{path}: holds no arrays")
            keys = list(members)
            x_key = next((k for k in ("x", "X", "data", "images") if k in keys), keys[0] if len(keys) == 1 else None)
            if x_key is None:
                raise DataError(f"{path}: cannot tell which array holds the data among {keys}; name it 'x'")
            y_key = next((k for k in ("y", "labels", "targets") if k in keys), None)
            arrays = []
            for key in (x_key, y_key):
                if key is None:
                    arrays.append(None)
                    continue
                with archive.open(members[key]) as handle:
                    check_npy_header(handle, members[key].file_size, f"{path}:{key}")
                with archive.open(members[key]) as handle:
                    arrays.append(np.load(io.BytesIO(handle.read()), allow_pickle=False))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as err:
        raise DataError(f"{path}: not a valid .npz archive ({err})") from None
    x, y = arrays
    return x, None if y is None else np.asarray(y).astype(np.int64)


def is_shard_folder(path: Path) -> bool:
    """A folder whose files are all ``.npy`` (at least one): shards of one table, not a folder of images."""
    if not path.is_dir():
        return False
    entries = [p for p in path.iterdir() if not p.name.startswith(".")]
    return bool(entries) and all(p.is_file() and p.suffix.lower() == ".npy" for p in entries)


def _mmap(path: Path) -> np.ndarray:
    with open(path, "rb") as handle:
        check_npy_header(handle, path.stat().st_size, str(path), limit=None)  # read by chunks, never whole
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"{path}: not a valid NumPy file ({err})") from None
    if array.ndim < 2 or len(array) == 0:
        raise DataError(f"{path}: shape {array.shape}; need rows of features (N, D) or images (N, C, H, W)")
    return array


def open_npy(path: Path, chunk_bytes: int | None = None) -> Rows:
    """A ``.npy`` file or a folder of ``.npy`` shards as :class:`Rows` (memory-mapped, read by slices)."""
    files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".npy") if path.is_dir() else [path]
    arrays = [_mmap(f) for f in files]
    first = arrays[0]
    for f, a in zip(files, arrays):
        if a.shape[1:] != first.shape[1:] or a.dtype != first.dtype:
            raise DataError(f"{f}: shard of shape {a.shape} ({a.dtype}) does not match {files[0].name}'s rows "
                            f"{first.shape[1:]} ({first.dtype})")  # fmt: skip
    offsets = np.cumsum([0] + [len(a) for a in arrays])

    def reader(i, start, stop):
        parts = []
        for a, lo in zip(arrays, offsets[:-1]):
            s, e = max(start - lo, 0), min(stop - lo, len(a))
            if s < e:
                parts.append(np.asarray(a[s:e]))
        return (parts[0] if len(parts) == 1 else np.concatenate(parts)), None

    def gather(index):
        parts = []
        for a, lo in zip(arrays, offsets[:-1]):
            parts.append(np.asarray(a[index[(index >= lo) & (index < lo + len(a))] - lo]))
        return np.concatenate(parts)

    spans = chunk_spans(int(offsets[-1]), math.prod(first.shape[1:]), chunk_bytes)
    return Rows(str(path), tuple(first.shape[1:]), first.dtype, spans, reader, gather)


class Npy(Format):
    kind: ClassVar[str] = "npy"
    help: ClassVar[str] = ".npy array (N, D) or (N, C, H, W); memory-mapped, read by chunks"
    suffixes: ClassVar[tuple[str, ...]] = (".npy",)

    def read(self, path, label_column=None, image_size=None, columns=()):
        return read_npy(path), None, ()

    def open(self, path, label_column=None, chunk_bytes=None, image_size=None):
        return open_npy(path, chunk_bytes)


class Npz(Format):
    kind: ClassVar[str] = "npz"
    help: ClassVar[str] = ".npz archive (array 'x', labels 'y')"
    suffixes: ClassVar[tuple[str, ...]] = (".npz",)

    def read(self, path, label_column=None, image_size=None, columns=()):
        return (*read_npz(path), ())


class Shards(Format):
    kind: ClassVar[str] = "shards"
    help: ClassVar[str] = "folder of .npy shards, one table in name order"

    def takes(self, path):
        return is_shard_folder(path)

    def open(self, path, label_column=None, chunk_bytes=None, image_size=None):
        return open_npy(path, chunk_bytes)
