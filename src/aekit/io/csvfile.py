"""CSV files, read whole: the delimiter and the header found, each column numeric or categorical, missing cells.

The one reader of CSV (no extra needed): Python's ``csv`` module parses (quoted fields, a delimiter inside quotes,
line breaks inside quotes); this module decides what the text means, and says so when it cannot:

- the delimiter: comma, semicolon or tab, the one that splits the first lines into the same number of fields and
  the most numbers (in a semicolon file, ``1,5`` is the decimal 1.5); a file whose lines none of them splits, but
  that holds another likely separator (``|``, spaces between numbers), is refused naming what was seen;
- the header: a first row is a header when it has text where the rest of its column has numbers, or when it is all
  text none of which comes back below it; a first row of numbers is data, and the columns are then named 0, 1, ...;
  repeated names are refused;
- each column: numbers (empty, ``NA``, ``NaN``, ``null`` ... are missing cells), or categories (text); a column of
  numbers with a stray word in it (at least 90% numbers) is refused naming the row and the column, rather than
  turned into hundreds of categories;
- a byte-order mark is dropped; a file that is not UTF-8 text, or holds control characters, is refused.

A headerless table of numbers without missing cells is a plain array (no columns kept); anything else is a table
whose :class:`aekit.io.tables.Column` list is stored with the model, so its outputs go back out in its own named
columns (and the explorer names its bars).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import DataError
from .files import label_name
from .format import Format
from .tables import MAX_CATEGORIES, MISSING, Column, class_indices, one_hot, warn_if_identifier, width

DELIMITERS = (",", ";", "\t")
SNIFF_LINES = 50  # lines read to choose the delimiter
NUMERIC_SHARE = 0.9  # a column at least this much numbers is numeric: its text cells are mistakes, not categories
NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}
OTHER_SEPARATORS = ("|", ":", " ")


def _number(cell: str, decimal_comma: bool) -> float | None:
    """The cell's number, NaN for a missing cell, or None for text."""
    if cell in MISSING:
        return np.nan
    try:
        return float(cell)
    except ValueError:
        if decimal_comma and cell.count(",") == 1:
            try:
                return float(cell.replace(",", "."))
            except ValueError:
                return None
        return None


def _rows(text: str, delimiter: str, strip: bool = True) -> list[list[str]]:
    rows = [row for row in csv.reader(io.StringIO(text), delimiter=delimiter) if row]
    return [[cell.strip() for cell in row] for row in rows] if strip else rows


def sniff(text: str, path) -> str:
    """The delimiter: of comma, semicolon and tab, one that splits the first lines into one number of fields (more
    than one), the most of them numbers; comma for a one-column file. Refuses a file split by something else."""
    head = "\n".join(text.splitlines()[:SNIFF_LINES])
    best, best_key = None, None
    for delimiter in DELIMITERS:
        try:
            rows = _rows(head, delimiter)
        except csv.Error:
            continue
        counts = {len(row) for row in rows}
        if len(counts) != 1 or counts == {1}:
            continue
        cells = [cell for row in rows[1:] or rows for cell in row]
        numbers = sum(_number(cell, delimiter == ";") is not None for cell in cells)
        key = (numbers / max(len(cells), 1), len(rows[0]))
        if best_key is None or key > best_key:
            best, best_key = delimiter, key
    if best is not None:
        return best
    lines = [line for line in head.splitlines() if line.strip()]
    seen = [s for s in OTHER_SEPARATORS if lines and all(s in line.strip() for line in lines)]
    if seen:
        shown = "space" if seen[0] == " " else repr(seen[0])
        raise DataError(f"{path}: cannot tell the delimiter: every line holds {shown}, not a comma, semicolon or tab "
                        "between its fields; save it as CSV (comma, semicolon or tab separated)")  # fmt: skip
    return ","


def _is_header(rows: list[list[str]], decimal_comma: bool) -> bool:
    first, rest = rows[0], rows[1:]
    texts = [j for j, cell in enumerate(first) if _number(cell, decimal_comma) is None]
    if not texts:
        return False
    for j in texts:  # text above numbers
        below = [row[j] for row in rest if j < len(row)]
        if below and all(_number(cell, decimal_comma) is not None for cell in below):
            return True
    if len(texts) == len(first):  # all text: a header unless its words come back as values below
        return not any(first[j] in {row[j] for row in rest if j < len(row)} for j in texts)
    return False


def first_record(path: str | Path) -> dict[str, str] | None:
    """A CSV file's header and first row, from its first lines only: ``{name: cell}``; None for a file without a
    header (or not a CSV table: :func:`read_csv` says why when it reads it)."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as handle:
            head = handle.read(64 * 1024)
        delimiter = sniff(head, path)
        rows = _rows(head, delimiter)[:SNIFF_LINES]
    except (csv.Error, DataError, OSError):
        return None
    if len(rows) < 2 or not _is_header(rows, delimiter == ";"):
        return None
    return dict(zip(rows[0], rows[1]))


def read_csv(path: str | Path, label_column: str | None = None, columns: tuple[Column, ...] = ()
             ) -> tuple[np.ndarray, np.ndarray | None, tuple[Column, ...]]:  # fmt: skip
    """A CSV file as ``(x, labels or None, columns)``: ``x`` float64 ``(N, features)`` with a table's categorical
    columns one-hot and missing cells NaN, ``columns`` ``()`` for a plain table of numbers. Given the ``columns`` a
    model was trained on, the file is read in those (by name: each must be there, each category known)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is dropped, not read into the first name
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); save the table as a UTF-8 "
                        "CSV file") from None
    if any(ch in text for ch in "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f\x1a\x1b"):
        raise DataError(f"{path}: holds control characters; not a text table")
    delimiter = sniff(text, path)
    try:
        rows = _rows(text, delimiter)
    except csv.Error as err:
        raise DataError(f"{path}: not a CSV table ({err})") from None
    if not rows:
        raise DataError(f"{path}: the file is empty")
    decimal_comma = delimiter == ";"
    header = _is_header(rows, decimal_comma)
    names = [name or str(j) for j, name in enumerate(rows[0])] if header else [str(j) for j in range(len(rows[0]))]
    body = rows[1:] if header else rows
    if not body:
        raise DataError(f"{path}: no data rows below the header")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(f"{path}: column names repeat: {repeated[:5]}; give each column its own name")
    for i, row in enumerate(body):
        if len(row) != len(names):
            raise DataError(f"{path}: row {i + 1} has {len(row)} fields, expected {len(names)} ({NAMES[delimiter]} "
                            "separated)")  # fmt: skip
    cells = dict(zip(names, map(list, zip(*body))))
    label = None if label_column is None else label_name(names, label_column, path)
    labels = None if label is None else _labels(cells.pop(label), label, path)
    if columns:
        return encode(cells, columns, decimal_comma, path), labels, columns
    inferred = tuple(_column(name, values, decimal_comma, path) for name, values in cells.items())
    if not inferred:
        raise DataError(f"{path}: no feature columns left besides the label column")
    x = encode(cells, inferred, decimal_comma, path)
    plain = not header and all(c.kind == "numeric" for c in inferred) and not np.isnan(x).any()
    return x, labels, () if plain else inferred


def fill_text(path: str | Path, fills: dict[str, list[str]]) -> bytes:
    """The CSV file at ``path`` as text with its missing cells replaced by ``fills`` (column name -> each row's text)
    and every other cell exactly as it was (the same characters; the same delimiter; quotes where a cell needs
    them): what ``aekit impute`` writes for a CSV."""
    text = Path(path).read_text(encoding="utf-8-sig")
    delimiter = sniff(text, path)
    raw = _rows(text, delimiter, strip=False)
    header = _is_header(_rows(text, delimiter), delimiter == ";")
    names = [name.strip() or str(j) for j, name in enumerate(raw[0])] if header else [str(j) for j in range(len(raw[0]))]
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    if header:
        writer.writerow(raw[0])
    for i, row in enumerate(raw[1:] if header else raw):
        writer.writerow([fills[names[j]][i] if cell.strip() in MISSING and names[j] in fills else cell
                         for j, cell in enumerate(row)])  # fmt: skip
    return buffer.getvalue().encode()


def _labels(values: list[str], name: str, path) -> np.ndarray:
    return class_indices((None if v in MISSING else v for v in values), name, path)


def _column(name: str, values: list[str], decimal_comma: bool, path) -> Column:
    """A column's kind from its cells: numbers (and missing cells), or categories."""
    present = [v for v in values if v not in MISSING]
    if not present:
        return Column(name)  # every cell missing: a numeric column the model fills with its mean
    words = [(i, v) for i, v in enumerate(values) if v not in MISSING and _number(v, decimal_comma) is None]
    if not words:
        return Column(name)
    if 1 - len(words) / len(present) >= NUMERIC_SHARE:
        row, word = words[0]
        more = f" (and {len(words) - 1} more)" if len(words) > 1 else ""
        raise DataError(f"{path}: column {name!r}, row {row + 1}: {word!r} is text in a column of numbers{more}; "
                        "correct it, or empty the cell to make it missing")  # fmt: skip
    categories = sorted(set(present))
    warn_if_identifier(name, len(categories), len(values), path)
    if len(categories) > MAX_CATEGORIES:
        raise DataError(f"{path}: column {name!r} has {len(categories)} distinct values, more than the "
                        f"{MAX_CATEGORIES} categories aekit takes; drop it or give it as --label-column")  # fmt: skip
    return Column(name, "categorical", tuple(categories))


def encode(cells: dict[str, list[str]], columns: tuple[Column, ...], decimal_comma: bool, path) -> np.ndarray:
    """The cells in ``columns`` as ``(N, width)`` float64: numbers, categories one-hot, missing cells NaN."""
    lacking = [c.name for c in columns if c.name not in cells]
    if lacking:
        raise DataError(f"{path}: lacks the column(s) {lacking[:5]} the model was trained on")
    n = len(next(iter(cells.values()))) if cells else 0
    out, start = np.empty((n, width(columns)), dtype=np.float64), 0
    for column in columns:
        values = cells[column.name]
        if column.kind == "numeric":
            numbers = [_number(v, decimal_comma) for v in values]
            bad = next((i for i, v in enumerate(numbers) if v is None), None)
            if bad is not None:
                raise DataError(f"{path}: column {column.name!r}, row {bad + 1}: {values[bad]!r} is not a number, "
                                "and the model has numbers there")  # fmt: skip
            out[:, start] = numbers
        else:
            out[:, start : start + column.width] = one_hot((None if v in MISSING else v for v in values), column, path)
        start += column.width
    return out


class Csv(Format):
    kind: ClassVar[str] = "csv"
    help: ClassVar[str] = (".csv table: comma, semicolon or tab separated, header optional (--label-column); text "
                           "columns are categories, empty or NA cells missing")  # fmt: skip
    suffixes: ClassVar[tuple[str, ...]] = (".csv",)

    def read(self, path, label_column=None, image_size=None, columns=()):
        return read_csv(path, label_column, columns)
