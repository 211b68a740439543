"""Data bigger than memory: a source's chunks (:class:`aekit.io.format.Rows`, opened by the format that takes the
path: ``.npy`` files and shard folders memory-mapped, Parquet by row groups, image folders decoded a chunk at a
time) trained on as a stream, and outputs written as they are computed.

Outputs (``.npy`` through an open memmap, ``.csv`` appended, ``.parquet`` row group by row group) go to a temporary
sibling that replaces the target only once complete, so a crash leaves no half-written file.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from pathlib import Path

import numpy as np

from ..core.space import Data, Scaler, Space
from ..errors import DataError
from ..io.files import OUTPUT_SUFFIXES, check_finite
from ..io.format import Rows
from ..io.parquet import needs_pyarrow

log = logging.getLogger(__name__)



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


FILE_COLUMN = "file"  # beside rows of an image folder, in a CSV or Parquet output: each row's image (read back: left out)


class RowWriter:
    """Writes rows as they come to ``.npy`` (an open memmap of ``n_rows``), ``.csv`` or ``.parquet``; the file
    appears under its name only when :meth:`close` is reached without an error (use it as a context manager)."""

    SUFFIXES = OUTPUT_SUFFIXES

    def __init__(self, path: str | Path, n_rows: int, row_shape: tuple[int, ...], header: list[str] | None = None,
                 names: list[str] | None = None):  # fmt: skip
        """``names``: one text per row (an image folder's file paths), written first as a ``file`` column in a
        ``.csv`` or ``.parquet`` (a ``.npy`` holds numbers only)."""
        self.path = Path(path)
        self.suffix = self.path.suffix.lower()
        if self.suffix not in self.SUFFIXES:
            raise DataError(f"{self.path}: unsupported output type {self.suffix or '(none)'!r}; use "
                            f"{', '.join(self.SUFFIXES)}")  # fmt: skip
        if self.suffix == ".parquet":
            needs_pyarrow(str(self.path))
        self.n_rows, self.row_shape, self.written = n_rows, tuple(row_shape), 0
        width = math.prod(self.row_shape)
        # unnamed values: bare rows in a CSV, "0", "1", ... in Parquet; beside file names, "x0", "x1", ... (a CSV header
        # of text, so that it reads back as one)
        self.header = header or [f"{'x' if names is not None else ''}{i}" for i in range(width)]
        self.names = names if self.suffix in (".csv", ".parquet") else None
        if self.names is not None and len(self.names) != n_rows:
            raise DataError(f"{self.path}: {len(self.names)} names for {n_rows} rows")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.aekit-partial")
        self.parquet = None
        if self.suffix == ".npy":
            shape = (n_rows, *self.row_shape)
            self.memmap = np.lib.format.open_memmap(self.tmp, mode="w+", dtype=np.float32, shape=shape)
        elif self.suffix == ".csv":
            self.handle = open(self.tmp, "w", newline="")
            if header or self.names is not None:  # codes or reconstructions: bare rows, as before; scores (or rows
                self.handle.write(",".join([FILE_COLUMN] * (self.names is not None) + self.header) + "\n")  # of files): named

    def write(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.float32)
        n = len(rows)
        if self.suffix == ".npy":
            self.memmap[self.written : self.written + n] = rows.reshape(n, *self.row_shape)
        elif self.suffix == ".csv":
            if self.names is None:
                np.savetxt(self.handle, rows.reshape(n, -1), delimiter=",", fmt="%.8g")
            else:
                writer = csv.writer(self.handle, lineterminator="\n")
                for name, row in zip(self.names[self.written : self.written + n], rows.reshape(n, -1)):
                    writer.writerow([name, *(f"{v:.8g}" for v in row)])
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            flat = rows.reshape(n, -1)
            columns = {} if self.names is None else {FILE_COLUMN: pa.array(self.names[self.written : self.written + n])}
            table = pa.table({**columns, **{name: flat[:, j] for j, name in enumerate(self.header)}})
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

                empty = {} if self.names is None else {FILE_COLUMN: pa.array([], pa.string())}
                pq.write_table(pa.table({**empty, **{name: pa.array([], pa.float32()) for name in self.header}}), self.tmp)
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
