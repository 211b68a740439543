"""Parquet (the ``parquet`` extra, pyarrow): a file of numeric columns read by row groups, one with text,
dictionary or boolean columns (or read in a model's columns) as a table of categories (:mod:`aekit.io.tables`)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import DataError
from . import tables
from .files import label_name
from .format import Format, Rows


def needs_pyarrow(what: str):
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{what}: Parquet needs the 'parquet' extra: pip install 'aekit[parquet]'") from None
    return pq


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

    numeric_label = label is None or pat.is_integer(schema.field(label).type) or pat.is_floating(schema.field(label).type)
    # a text (or dictionary, boolean) label: its classes numbered over the whole column once, as a CSV's are
    labels = None if numeric_label else tables.labels_of(file.read(columns=[label]), label, path)  # text, dates too

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
            y = table.column(label).to_numpy(zero_copy_only=False).astype(np.int64) if label and numeric_label else None
            if (start, stop) != spans[i]:  # a part: the next read is likely another part of this group
                last[0] = (i, x, y)
        a, b = start - spans[i][0], stop - spans[i][0]
        if labels is not None:
            return x[a:b], labels[start:stop]
        return x[a:b], None if y is None else y[a:b]

    return Rows(str(path), (len(features),), dtype, spans, reader)


class Parquet(Format):
    kind: ClassVar[str] = "parquet"
    help: ClassVar[str] = (".parquet table (--label-column; the 'parquet' extra), numeric ones read by row groups, "
                           "string or dictionary columns as categories")  # fmt: skip
    suffixes: ClassVar[tuple[str, ...]] = (".parquet",)

    def read(self, path, label_column=None, image_size=None, columns=()):
        """Numbers by row groups; with text, dictionary or boolean columns (or a model's columns), a table."""
        if not columns and parquet_is_numeric(path, label_column):
            return (*open_parquet(path, label_column).whole(), ())
        table = tables.read_arrow(path)
        label = None if label_column is None else label_name(table.schema.names, label_column, path)
        columns = columns or tables.infer_columns(table, label, str(path))
        x = tables.encode(table, columns, str(path))
        if not len(x):
            raise DataError(f"{path}: no data rows")
        return x, None if label is None else tables.labels_of(table, label, str(path)), columns

    def open(self, path, label_column=None, chunk_bytes=None, image_size=None):
        return open_parquet(path, label_column) if parquet_is_numeric(path, label_column) else None
