"""What a data format is: a kind of file or folder aekit reads, each one module of this folder (npy, csvfile, parquet,
images, idx), each reading a file whole and, where it can, a chunk at a time as :class:`Rows`.
:data:`aekit.data.datasets.SOURCES` maps a kind to its format; loading, training, ``encode`` / ``reconstruct`` /
``score``, the server and ``aekit datasets`` all ask it which format takes a path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from .files import check_finite

CHUNK_BYTES = 16 * 2**20  # rows per chunk: about this many bytes as float32 (model space), whatever the source's dtype


@dataclass
class Rows:
    """A table (or image array) on disk, read by chunk: ``len(rows)``, ``rows.shape`` (one row's), ``rows.read(i)``
    -> ``(x, labels or None)`` of chunk ``i`` of ``rows.n_chunks``, values checked as for a whole file."""

    source: str
    shape: tuple[int, ...]  # of one row
    dtype: np.dtype
    spans: list[tuple[int, int]]  # (start, stop) of each chunk, in rows
    reader: object  # (i, start, stop) -> (x, labels or None): rows start:stop, all within chunk i
    gather: object = None  # sorted row indices -> rows, reading only those (memory-mapped sources)
    missing: bool = False  # whether NaN cells (missing values) pass the check: inputs of a model that fills them

    def __len__(self) -> int:
        return self.spans[-1][1] if self.spans else 0

    @property
    def n_chunks(self) -> int:
        return len(self.spans)

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        return self.read_span(i, *self.spans[i])

    def read_span(self, i: int, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Rows ``start:stop`` (within chunk ``i``), values checked."""
        x, y = self.reader(i, start, stop)
        return check_finite(x, self.source, first_row=start, missing=self.missing), y

    def chunks(self):
        for i in range(self.n_chunks):
            yield self.read(i)

    def whole(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Every chunk in one array (and the labels, if it has them)."""
        parts = list(self.chunks())
        x = np.concatenate([p[0] for p in parts])
        return x, np.concatenate([p[1] for p in parts]) if parts[0][1] is not None else None


def chunk_spans(n_rows: int, row_values: int, limit: int | None = None) -> list[tuple[int, int]]:
    rows = max(1, (limit or CHUNK_BYTES) // max(1, 4 * row_values))
    return [(start, min(start + rows, n_rows)) for start in range(0, n_rows, rows)]


class Format:
    """A kind of data file or folder. ``takes(path)``: whether this format reads it (by default, a file with one of
    its ``suffixes``); ``read(path, label_column, image_size, columns) -> (x, labels or None, columns)``: the whole of
    it (by default, every chunk of :meth:`open`), ``columns`` a table's (:class:`aekit.io.tables.Column`; given those
    a model was trained on, the file is read in them), ``()`` for an array; ``open(path, label_column, chunk_bytes,
    image_size) -> Rows``, or None for a file it reads only whole (the default)."""

    kind: ClassVar[str]
    help: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]] = ()

    def takes(self, path: Path) -> bool:
        return path.suffix.lower() in self.suffixes and not path.is_dir()

    def read(self, path: Path, label_column: str | None = None, image_size: tuple[int, int] | None = None,
             columns: tuple = ()) -> tuple[np.ndarray, np.ndarray | None, tuple]:  # fmt: skip
        return (*self.open(path, label_column, None, image_size).whole(), ())

    def open(self, path: Path, label_column: str | None = None, chunk_bytes: int | None = None,
             image_size: tuple[int, int] | None = None) -> Rows | None:  # fmt: skip
        return None
