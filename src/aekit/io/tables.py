"""Tables with named columns of two kinds, numeric and categorical, and missing cells; encoded for a model.

A numeric column is one feature. A categorical column (strings in a CSV; string, dictionary or boolean columns
in Parquet) is a one-hot block with a slot per category seen in training; the model gives it a softmax head
and a cross-entropy loss (:mod:`aekit.models`). A missing cell (empty, ``NA``, ``NaN``, ``null``; in a
categorical column, in each slot of its block) is NaN. The :class:`Column` list is stored with the model
(``config.json``), so reconstructions and imputations go back out as the table they came from: the same column
names, numbers and category names.

Parquet tables are read by pyarrow (the ``parquet`` extra), which reads Parquet's dictionary columns too; CSV files
are read by :mod:`aekit.csvfile` (no extra needed) into the same :class:`Column` list.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from .files import atomic_write_bytes

KINDS = ("numeric", "categorical")
MISSING = ("", "NA", "N/A", "NaN", "nan", "null", "NULL", "None")  # the cell texts read as missing
log = logging.getLogger(__name__)

MAX_CATEGORIES = 1000  # a string column with more distinct values is an identifier or free text, not a category


@dataclass(frozen=True)
class Column:
    """One column of a table: its name, its kind and, for a categorical one, its categories in slot order."""

    name: str
    kind: str = "numeric"  # "numeric" or "categorical"
    categories: tuple[str, ...] = ()

    @property
    def width(self) -> int:
        """Features it takes in the model's input: 1, or one per category."""
        return len(self.categories) if self.kind == "categorical" else 1


def width(columns: tuple[Column, ...]) -> int:
    return sum(c.width for c in columns)


def category_blocks(columns: tuple[Column, ...]) -> list[tuple[int, int]]:
    """``(start, stop)`` of each categorical column's one-hot block in the encoded row."""
    blocks, start = [], 0
    for column in columns:
        if column.kind == "categorical":
            blocks.append((start, start + column.width))
        start += column.width
    return blocks


def one_hot_features(columns: tuple[Column, ...]) -> np.ndarray:
    """Which encoded features are one-hot slots (left unstandardized), ``(width,)`` bool."""
    return np.repeat([c.kind == "categorical" for c in columns], [c.width for c in columns]).astype(bool)


def column_of_feature(columns: tuple[Column, ...]) -> np.ndarray:
    """For each encoded feature, the index of the column it belongs to, ``(width,)``."""
    return np.repeat(np.arange(len(columns)), [c.width for c in columns])


def check_columns(columns: tuple[Column, ...]) -> None:
    """Refuse a column list that could not have come from a table (a config edited by hand)."""
    names = [c.name for c in columns]
    if len(set(names)) != len(names):
        raise DataError(f"column names repeat: {sorted({n for n in names if names.count(n) > 1})}")
    for c in columns:
        if c.kind not in KINDS:
            raise DataError(f"column {c.name!r}: kind {c.kind!r} is not one of {list(KINDS)}")
        if c.kind == "categorical" and (len(c.categories) < 1 or len(set(c.categories)) != len(c.categories)):
            raise DataError(f"column {c.name!r}: a categorical column needs distinct categories, got {c.categories}")
        if c.kind == "numeric" and c.categories:
            raise DataError(f"column {c.name!r}: a numeric column has no categories")


# ------------------------------------------------------------------------------------------ reading
def pyarrow_for(what: str):
    """pyarrow, or the one-line message naming the extra that brings it."""
    try:
        import pyarrow
    except ImportError:
        raise DataError(f"{what}: Parquet files are read and written by pyarrow, the 'parquet' extra: pip install "
                        "'aekit[parquet]'") from None  # fmt: skip
    return pyarrow


def read_arrow(path: Path):
    """A Parquet file as a pyarrow Table, missing cells as nulls."""
    pa = pyarrow_for(str(path))
    try:
        import pyarrow.parquet as pq

        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a readable table ({str(err).splitlines()[0]})") from None


def parquet_columns(path: Path) -> dict[str, str]:
    """A Parquet file's columns and their kinds, "time" for a date or time type (only its schema is read; ``{}`` for
    a file that does not read: :func:`read_arrow` says why when it reads it)."""
    pa = pyarrow_for(str(path))
    import pyarrow.parquet as pq
    import pyarrow.types as pat

    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError):
        return {}
    timed = lambda t: pat.is_timestamp(t) or pat.is_date(t) or pat.is_time(t)  # noqa: E731
    return {f.name: "time" if timed(f.type) else str(_kind(f)) for f in schema}


def _kind(field) -> str | None:
    import pyarrow.types as pat

    t = field.type.value_type if pat.is_dictionary(field.type) else field.type
    if pat.is_integer(t) or pat.is_floating(t) or pat.is_null(t):
        return "numeric"
    if pat.is_string(t) or pat.is_large_string(t) or pat.is_boolean(t) or pat.is_dictionary(field.type):
        return "categorical"
    return None


def _texts(array) -> list[str | None]:
    """A column's cells as text (None where missing): the category names."""
    import pyarrow as pa

    array = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    return [None if v is None else str(v) for v in array.cast(pa.string()).to_pylist()]


def warn_if_identifier(name: str, distinct: int, rows: int, source) -> None:
    """Warn (one line) of a text column whose values are mostly unique, as an identifier's or free text's are: it
    becomes as many one-hot slots, and a model learns nothing from it."""
    if distinct > 20 and distinct > 0.5 * rows:
        log.warning("warning: %s: column %r has %d distinct values in %d rows, mostly unique like an identifier's: it "
                    "becomes %d one-hot slots; drop it, or give it as --label-column", source, name, distinct, rows,
                    distinct)  # fmt: skip


def infer_columns(table, label: str | None, source: str) -> tuple[Column, ...]:
    """The columns of a training table (all but ``label``): each numeric or categorical, categories sorted."""
    columns = []
    for field in table.schema:
        if field.name == label:
            continue
        kind = _kind(field)
        if kind is None:
            raise DataError(f"{source}: column {field.name!r} has type {field.type}, neither numbers nor categories")
        if kind == "numeric":
            columns.append(Column(str(field.name)))
            continue
        categories = sorted({v for v in _texts(table.column(field.name)) if v is not None})
        if not categories:
            raise DataError(f"{source}: column {field.name!r} holds no values at all")
        if len(categories) > MAX_CATEGORIES:
            raise DataError(f"{source}: column {field.name!r} has {len(categories)} distinct values, more than the "
                            f"{MAX_CATEGORIES} categories aekit takes; drop it or give it as --label-column")  # fmt: skip
        warn_if_identifier(str(field.name), len(categories), table.num_rows, source)
        columns.append(Column(str(field.name), "categorical", tuple(categories)))
    if not columns:
        raise DataError(f"{source}: no feature columns left besides the label column")
    return tuple(columns)


def encode(table, columns: tuple[Column, ...], source: str) -> np.ndarray:
    """The table's rows encoded as ``(N, width)`` float64: numeric columns as numbers, categorical ones one-hot,
    missing cells NaN. A column the table lacks, or a category training never saw, is refused, naming it."""
    names = set(table.schema.names)
    lacking = [c.name for c in columns if c.name not in names]
    if lacking:
        raise DataError(f"{source}: lacks the column(s) {lacking[:5]} the model was trained on")
    out = np.empty((table.num_rows, width(columns)), dtype=np.float64)
    start = 0
    for column in columns:
        cells = table.column(column.name)
        if column.kind == "numeric":
            if _kind(table.schema.field(column.name)) != "numeric":
                raise DataError(f"{source}: column {column.name!r} must be numeric, as in training "
                                f"(got {table.schema.field(column.name).type})")  # fmt: skip
            import pyarrow as pa

            out[:, start] = cells.cast(pa.float64()).to_numpy(zero_copy_only=False)
        else:
            out[:, start : start + column.width] = one_hot(_texts(cells), column, source)
        start += column.width
    return out


def one_hot(values, column: Column, source) -> np.ndarray:
    """A categorical column's cells (text, None where missing) as ``(N, categories)``: one 1 per row, a missing
    row all NaN; a category training never saw is refused, naming its row."""
    values = list(values)
    slot = {name: i for i, name in enumerate(column.categories)}
    block = np.zeros((len(values), column.width))
    for row, value in enumerate(values):
        if value is None:
            block[row] = np.nan
        elif value in slot:
            block[row, slot[value]] = 1.0
        else:
            raise DataError(f"{source}: column {column.name!r}, row {row + 1}: category {value!r} was not "
                            f"seen in training (it knows {list(column.categories)[:10]})")  # fmt: skip
    return block


def labels_of(table, label: str, source: str) -> np.ndarray:
    """The label column as int64 class indices (numbers as they are, text by sorted name)."""
    return class_indices(_texts(table.column(label)), label, source)


def class_indices(texts, label: str, source) -> np.ndarray:
    """A label column's cells (text, None where empty) as int64 class indices: numbers as they are, text by sorted
    name; an empty cell is refused."""
    texts = list(texts)
    if any(v is None for v in texts):
        raise DataError(f"{source}: the label column {label!r} has empty cells")
    try:
        return np.array([float(v) for v in texts]).astype(np.int64)
    except ValueError:
        return np.unique(texts, return_inverse=True)[1].astype(np.int64)


# ------------------------------------------------------------------------------------------ writing
def decoded(x: np.ndarray, columns: tuple[Column, ...], dtype=np.float64) -> dict[str, list | np.ndarray]:
    """Encoded rows ``(N, width)`` in the data's units back as named columns: numbers (as ``dtype``: float32 for a
    model's outputs, written with float32's digits), and for a categorical column the category of its largest slot
    (a one-hot row gives its own category back)."""
    out, start = {}, 0
    for column in columns:
        block = x[:, start : start + column.width]
        if column.kind == "numeric":
            out[column.name] = block[:, 0].astype(dtype)
        else:
            out[column.name] = [column.categories[i] for i in block.argmax(1)]
        start += column.width
    return out


def write_table(path: Path, table: dict[str, list | np.ndarray]) -> None:
    """Named columns to a ``.csv`` (a header row; Python's ``csv``, quotes only where a cell needs them, numbers with
    their dtype's shortest digits) or ``.parquet`` (pyarrow) file, written whole and renamed into place
    (:func:`aekit.io.files.atomic_write_bytes`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        text = lambda v: v if isinstance(v, str) else str(v) if isinstance(v, np.floating) else repr(float(v))  # noqa: E731
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(table)
        writer.writerows(zip(*([text(v) for v in values] for values in table.values())))
        atomic_write_bytes(path, buffer.getvalue().encode())
        return
    pa = pyarrow_for(str(path))
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.table(table), buffer)
    atomic_write_bytes(path, buffer.getvalue())
