"""Data bigger than memory: rows read chunk by chunk from disk, and outputs written as they are computed.

Sources read in chunks, never whole (``aekit.data.datasets.SOURCES`` says which opener takes which path):

- a ``.npy`` file, memory-mapped (``np.load(mmap_mode="r")``): a chunk is a contiguous slice of rows;
- a folder of ``.npy`` shards (every file the same row shape and dtype), in name order, as one table;
- a Parquet file (``pyarrow``, the ``parquet`` extra): a chunk is a row group; numeric columns only, a label
  column left out as for CSV;
- a folder of images (PNG/JPEG, one subfolder per class optional): headers are read when it is opened, a chunk's
  images decoded when it is read.

A chunk is about :data:`CHUNK_BYTES` of rows as float32 (a Parquet row group is what its writer made it). Outputs
(``.npy`` through an open memmap, ``.csv`` appended, ``.parquet`` row group by row group) go to a temporary
sibling that replaces the target only once complete, so a crash leaves no half-written file.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.space import Data, Scaler, Space
from ..errors import DataError
from ..io.files import (OUTPUT_SUFFIXES, check_finite, check_npy_header, decode_images, image_files, image_layout,
                        label_name)  # fmt: skip

log = logging.getLogger(__name__)

CHUNK_BYTES = 16 * 2**20  # rows per chunk: about this many bytes as float32 (model space), whatever the source's dtype


def keep_heap_small(threshold: int = 2**20) -> None:
    """On glibc, serve every allocation over ``threshold`` bytes by ``mmap``, given back to the system when freed.

    glibc otherwise raises that threshold to the largest block freed so far (up to 32 MB), so chunk after chunk of
    large temporaries lands on the heap and fragments it: ``aekit score`` over 6 M Parquet rows grew from 497 to
    734 MB of anonymous memory that way, and stays at about 535 MB with this. Elsewhere (not glibc): nothing.
    """
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, threshold)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def needs_pyarrow(what: str):
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{what}: Parquet needs the 'parquet' extra: pip install 'aekit[parquet]'") from None
    return pq


def is_shard_folder(path: Path) -> bool:
    """A folder whose files are all ``.npy`` (at least one): shards of one table, not a folder of images."""
    if not path.is_dir():
        return False
    entries = [p for p in path.iterdir() if not p.name.startswith(".")]
    return bool(entries) and all(p.is_file() and p.suffix.lower() == ".npy" for p in entries)


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


def chunk_spans(n_rows: int, row_values: int, limit: int | None = None) -> list[tuple[int, int]]:
    rows = max(1, (limit or CHUNK_BYTES) // max(1, 4 * row_values))
    return [(start, min(start + rows, n_rows)) for start in range(0, n_rows, rows)]


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


def parquet_is_numeric(path: Path, label_column: str | None = None) -> bool:
    """Whether every feature column of a Parquet file is numbers (read by row groups), from its schema alone; a text,
    dictionary or boolean column makes it a table of categories (:mod:`aekit.tables`)."""
    pq = needs_pyarrow(str(path))
    import pyarrow.types as pat

    try:
        schema = pq.read_schema(path)
    except Exception as err:  # pyarrow raises its own ArrowInvalid / OSError kinds
        raise DataError(f"{path}: not a readable Parquet file ({err})") from None
    label = None if label_column is None else label_name(schema.names, label_column, path)
    return all(pat.is_integer(schema.field(n).type) or pat.is_floating(schema.field(n).type)
               for n in schema.names if n != label)  # fmt: skip


def open_parquet(path: Path, label_column: str | None = None) -> Rows:
    """A Parquet file as :class:`Rows`, one chunk per row group; numeric columns are the features."""
    pq = needs_pyarrow(str(path))
    import pyarrow.types as pat

    try:
        file = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises its own ArrowInvalid / OSError kinds
        raise DataError(f"{path}: not a readable Parquet file ({err})") from None
    schema = file.schema_arrow
    names = schema.names
    label = None if label_column is None else label_name(names, label_column, path)
    features = [n for n in names if n != label]
    bad = [n for n in features if not (pat.is_integer(schema.field(n).type) or pat.is_floating(schema.field(n).type))]
    if bad:  # (aekit.data reads such a file as a table: parquet_is_numeric says which to open)
        raise DataError(f"{path}: column(s) {bad[:5]} are not numeric; give the label with --label-column or drop them")
    if not features:
        raise DataError(f"{path}: no feature columns")
    meta = file.metadata
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    offsets = np.cumsum([0] + sizes)
    spans = [(int(offsets[i]), int(offsets[i + 1])) for i in range(len(sizes)) if sizes[i]]
    groups = [i for i in range(len(sizes)) if sizes[i]]
    if not spans:
        raise DataError(f"{path}: holds no rows")

    # uint8 columns stay uint8 (pixels: scaled to [0, 1] as a .npy of uint8 would be); anything else is float32
    dtype = np.dtype(np.uint8) if all(pat.is_uint8(schema.field(n).type) for n in features) else np.dtype(np.float32)

    last = [None]  # (i, x, y) of the row group read last: the lanes of one chunk are read from one decoding

    def reader(i, start, stop):
        if last[0] is not None and last[0][0] == i:
            _, x, y = last[0]
        else:
            last[0] = None  # let the previous group go before decoding this one
            table = file.read_row_group(groups[i], columns=features + ([label] if label else []))
            x = np.empty((table.num_rows, len(features)), dtype)  # filled column by column: no second copy
            for j, name in enumerate(features):
                x[:, j] = table.column(name).to_numpy(zero_copy_only=False)
            y = table.column(label).to_numpy(zero_copy_only=False).astype(np.int64) if label else None
            if (start, stop) != spans[i]:  # a part: the next read is likely another part of this group
                last[0] = (i, x, y)
        a, b = start - spans[i][0], stop - spans[i][0]
        return x[a:b], None if y is None else y[a:b]

    return Rows(str(path), (len(features),), dtype, spans, reader)


def open_images(root: Path, image_size: tuple[int, int] | None = None, chunk_bytes: int | None = None) -> Rows:
    """A folder of images as :class:`Rows` of uint8 ``(C, H, W)``: only the headers are read here (sizes, modes);
    a chunk's images are decoded when it is read. Labels come from one subfolder per class, as for small folders."""
    files, labels = image_files(root)
    mode, shape = image_layout(files, image_size)

    def reader(i, start, stop):
        return decode_images(files[start:stop], mode, shape[1:]), None if labels is None else labels[start:stop]

    def gather(index):
        return decode_images([files[k] for k in index], mode, shape[1:])

    return Rows(str(root), shape, np.dtype(np.uint8), chunk_spans(len(files), math.prod(shape), chunk_bytes), reader,
                gather)  # fmt: skip


class RowWriter:
    """Writes rows as they come to ``.npy`` (an open memmap of ``n_rows``), ``.csv`` or ``.parquet``; the file
    appears under its name only when :meth:`close` is reached without an error (use it as a context manager)."""

    SUFFIXES = OUTPUT_SUFFIXES

    def __init__(self, path: str | Path, n_rows: int, row_shape: tuple[int, ...], header: list[str] | None = None):
        self.path = Path(path)
        self.suffix = self.path.suffix.lower()
        if self.suffix not in self.SUFFIXES:
            raise DataError(f"{self.path}: unsupported output type {self.suffix or '(none)'!r}; use "
                            f"{', '.join(self.SUFFIXES)}")  # fmt: skip
        if self.suffix == ".parquet":
            needs_pyarrow(str(self.path))
        self.n_rows, self.row_shape, self.written = n_rows, tuple(row_shape), 0
        width = math.prod(self.row_shape)
        self.header = header or [f"{i}" for i in range(width)]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.aekit-partial")
        self.parquet = None
        if self.suffix == ".npy":
            shape = (n_rows, *self.row_shape)
            self.memmap = np.lib.format.open_memmap(self.tmp, mode="w+", dtype=np.float32, shape=shape)
        elif self.suffix == ".csv":
            self.handle = open(self.tmp, "w", newline="")
            if header:  # CSV of codes or reconstructions: bare rows, as before; of scores: named columns
                self.handle.write(",".join(header) + "\n")

    def write(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.float32)
        n = len(rows)
        if self.suffix == ".npy":
            self.memmap[self.written : self.written + n] = rows.reshape(n, *self.row_shape)
        elif self.suffix == ".csv":
            np.savetxt(self.handle, rows.reshape(n, -1), delimiter=",", fmt="%.8g")
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            flat = rows.reshape(n, -1)
            table = pa.table({name: flat[:, j] for j, name in enumerate(self.header)})
            if self.parquet is None:
                self.parquet = pq.ParquetWriter(self.tmp, table.schema)
            self.parquet.write_table(table)
        self.written += n

    def __enter__(self):
        return self

    def __exit__(self, kind, error, trace):
        if self.suffix == ".npy":
            self.memmap.flush()
            del self.memmap
        elif self.suffix == ".csv":
            self.handle.close()
        elif self.parquet is not None:
            self.parquet.close()
        if kind is None and self.written != self.n_rows:
            kind = DataError  # fewer rows than announced: not a complete output
        if kind is None:
            if self.suffix == ".parquet" and self.parquet is None:  # no rows: an empty table with the columns
                import pyarrow as pa
                import pyarrow.parquet as pq

                pq.write_table(pa.table({name: pa.array([], pa.float32()) for name in self.header}), self.tmp)
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)
        return False


# ------------------------------------------------------------------------------------------ streamed training data
STREAM_THRESHOLD_BYTES = 2 * 2**30  # a .npy, Parquet, shard or image folder larger than this (as float32) streams
MAX_TEST_ROWS = 10_000  # a streamed source holds out at most this many rows for testing
SAMPLE_ROWS = 50_000  # training rows kept in memory for PCA and the analyses of a streamed run
PREFETCH_CHUNKS = 2  # chunks read ahead by the background reader


def float32_bytes(rows: Rows) -> int:
    return len(rows) * math.prod(rows.shape) * 4


LANES = 8  # a streamed chunk is cut into this many lanes; a batch takes the same number of rows from each


def lanes_for(batch_size: int, world: int) -> int:
    """Lanes per chunk for a global batch of ``batch_size`` over ``world`` processes: ``gcd(batch_size, LANES)``,
    the same for any ``world`` that divides it (so 1, 2, 4 or 8 processes draw the very same batches), else
    ``world`` (then the batches differ from one process's)."""
    lanes = math.gcd(batch_size, LANES)
    return lanes if lanes % world == 0 else world


class Streamed:
    """Training data read from disk chunk by chunk each epoch, with a held-out test split and a training sample
    in memory (``x_test``, ``x_sample``: at most :data:`MAX_TEST_ROWS` and :data:`SAMPLE_ROWS` rows, model space).

    Not a :class:`aekit.core.space.Data`, whose ``x_train`` is all of the training data: :meth:`in_memory` is the sample
    as one (what the end-of-run metrics, PCA and the analyses use, said so in metrics.json).

    Each epoch visits the chunks (~16 MB of rows) in a seeded random order. A chunk's training rows are cut into
    ``lanes`` contiguous lanes of equal size (:func:`lanes_for`, 8 for most batch sizes) at a seeded random offset,
    dropping the fewer than ``lanes`` rows left over (different ones each epoch); each lane's rows are shuffled,
    and every batch takes ``batch_size / lanes`` rows from each lane. So a batch mixes rows from all over one
    chunk (the shuffle is exact within a lane, coarse across chunks), and all randomness is seeded by
    ``(seed, epoch, chunk)``. Under torchrun, process ``rank`` reads only lanes ``rank, rank + world, ...`` of every
    chunk: the processes read disjoint rows and, together, make exactly the batches one process makes. A
    background thread reads the next :data:`PREFETCH_CHUNKS` chunks while the model trains on the current one.
    """

    columns = ()  # a streamed source is an array: no named columns
    has_missing = False  # and its chunks are checked finite: no missing cells

    def __init__(self, rows: Rows, space: Space, is_test: np.ndarray, x_test, x_sample):
        self.rows, self.space = rows, space
        self.x_test, self.x_sample = x_test, x_sample  # (M, *shape), (S, *shape): model space
        self.y_test = None
        self.is_test = is_test  # (N,) bool: held out
        self.n_train = len(rows) - int(is_test.sum())

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_test.shape[1:])

    @property
    def scaling(self) -> str:
        return self.space.scaling

    @property
    def scaler(self) -> Scaler | None:
        return self.space.scaler

    def in_memory(self) -> Data:
        """The training sample and the test split as in-memory :class:`Data` (for evaluation and analyses)."""
        return Data(self.x_sample, self.x_test, None, None, self.space)

    def to_model(self, raw: np.ndarray):
        return self.space.scale(np.ascontiguousarray(raw), self.rows.source)

    def chunk_order(self, seed: int, epoch: int) -> list[int]:
        return [int(i) for i in np.random.default_rng([seed, epoch]).permutation(self.rows.n_chunks)]

    def lane_spans(self, seed: int, epoch: int, i: int, lanes: int) -> list[tuple[int, int]]:
        """``(start, stop)`` of each lane of chunk ``i`` in ``epoch``: each holds the same number of training rows."""
        start, stop = self.rows.spans[i]
        train = np.flatnonzero(~self.is_test[start:stop]) + start
        size = len(train) // lanes
        if size == 0:
            return []
        offset = int(np.random.default_rng([seed, epoch, i]).integers(len(train) - size * lanes + 1))
        return [(int(train[offset + j * size]), int(train[offset + (j + 1) * size - 1]) + 1) for j in range(lanes)]

    def steps_per_epoch(self, batch_size: int, world: int) -> int:
        """Full batches of ``batch_size`` (all processes together) in every epoch."""
        lanes = lanes_for(batch_size, world)
        counts = [np.count_nonzero(~self.is_test[s:e]) // lanes for s, e in self.rows.spans]
        return sum(counts) // (batch_size // lanes)

    def batches(self, seed: int, epoch: int, batch: int, rank: int, world: int, device):
        """This process's batches of ``epoch`` (``batch`` rows each: its share of the global batch; model space,
        on ``device``), read ahead in a background thread."""
        from concurrent.futures import ThreadPoolExecutor

        lanes = lanes_for(batch * world, world)
        mine, per_lane = range(rank, lanes, world), batch * world // lanes
        plan = [(i, spans) for i in self.chunk_order(seed, epoch) if (spans := self.lane_spans(seed, epoch, i, lanes))]

        def load(i: int, spans: list[tuple[int, int]]) -> np.ndarray:  # in the background: my lanes of chunk i
            parts = []
            for j in mine:
                raw, _ = self.rows.read_span(i, *spans[j])
                keep = raw[~self.is_test[spans[j][0] : spans[j][1]]]
                parts.append(keep[np.random.default_rng([seed, epoch, i, j]).permutation(len(keep))])
            return np.stack(parts)  # (my lanes, rows per lane, *row shape), the source's dtype

        # Each batch is scaled to float32 here, as it is used: the reader thread only copies bytes, so it does not
        # compete with the training step for the cores (scaling whole chunks there cost a third of the speed).
        carry = None  # per lane, the rows of the previous chunk that did not fill a batch
        with ThreadPoolExecutor(1, thread_name_prefix="aekit-prefetch") as pool:
            pending = [pool.submit(load, *entry) for entry in plan[:PREFETCH_CHUNKS]]
            for k in range(len(plan)):
                x = pending.pop(0).result()
                if k + PREFETCH_CHUNKS < len(plan):
                    pending.append(pool.submit(load, *plan[k + PREFETCH_CHUNKS]))
                if carry is not None and carry.shape[1]:
                    x = np.concatenate([carry, x], axis=1)
                n = x.shape[1] // per_lane * per_lane
                for start in range(0, n, per_lane):
                    yield self.to_model(x[:, start : start + per_lane].reshape(-1, *x.shape[2:])).to(device,
                                                                                                     non_blocking=True)
                carry = x[:, n:]


def stream_stats(rows: Rows) -> tuple[float, float, np.ndarray, np.ndarray]:
    """One pass: min, max, mean and std (float64 sums) of every feature."""
    total = total_sq = None
    low, high, n = math.inf, -math.inf, 0
    for x, _ in rows.chunks():
        flat = x.reshape(len(x), -1).astype(np.float64)
        low, high = min(low, float(flat.min())), max(high, float(flat.max()))
        s, sq = flat.sum(0), np.square(flat).sum(0)
        total, total_sq = (s, sq) if total is None else (total + s, total_sq + sq)
        n += len(x)
    mean = total / n
    std = np.sqrt(np.maximum(total_sq / n - mean**2, 0))
    return low, high, mean, std


def take(rows: Rows, index: np.ndarray) -> np.ndarray:
    """The rows at sorted ``index``, reading only those rows (memory-mapped) or the chunks that hold them."""
    if rows.gather is not None:
        return check_finite(rows.gather(index), rows.source)
    out, starts = [], np.array([s for s, _ in rows.spans])
    which = np.searchsorted(starts, index, side="right") - 1
    for i in np.unique(which):
        x, _ = rows.read(int(i))
        out.append(x[index[which == i] - rows.spans[i][0]])
    return np.concatenate(out)


def streamed_space(rows: Rows) -> Space:
    """The space of a large source, from one streaming pass: its range decides the scaling and, for standardized
    data, gives the statistics (as :meth:`aekit.core.space.Space.fit` decides for data in memory)."""
    return Space.from_statistics(rows.shape, *stream_stats(rows))


def load_streamed(rows: Rows, config, space: Space | None = None) -> Streamed:
    """Split, scale and sample a large source for streamed training (see :class:`Streamed`); ``space``: a trained
    model's, else chosen from the data (:func:`streamed_space`)."""
    n = len(rows)
    n_test = min(MAX_TEST_ROWS, max(1, round(n * config.test_fraction)))
    rng = np.random.default_rng(config.split_seed)
    test_index = np.sort(rng.choice(n, n_test, replace=False))
    is_test = np.zeros(n, dtype=bool)
    is_test[test_index] = True
    # the sample: random training rows, drawn without an index of all N rows (256 MB at 32 M rows)
    drawn = rng.choice(n, min(n, SAMPLE_ROWS + n_test), replace=False)
    sample_index = np.sort(drawn[~is_test[drawn]][:SAMPLE_ROWS])
    if space is None:
        space = Space(rows.shape) if rows.dtype == np.uint8 else streamed_space(rows)
    x_test = space.scale(take(rows, test_index), rows.source)
    x_sample = space.scale(take(rows, sample_index), rows.source)
    log.info("streaming %s: %d rows (%.1f GB as float32, over the %.0f GB in-memory threshold) in %d chunks; %d rows "
             "held out for testing; PCA and the analyses use a %d-row training sample", rows.source, n,
             float32_bytes(rows) / 1e9, STREAM_THRESHOLD_BYTES / 1e9, rows.n_chunks, n_test, len(sample_index))
    return Streamed(rows, space, is_test, x_test, x_sample)
