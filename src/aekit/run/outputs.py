"""What commands write and read beside a run: rows in the data's units to any output format, compressed files'
bytes, image folders, a posted ``.npy``, and a file's missing cells filled by a run."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from ..data import datasets as data_mod
from ..data import stream
from ..errors import DataError
from ..io import tables
from ..io.csvfile import fill_text
from ..io.files import atomic_write_bytes, check_npy_header
from ..io.tables import Column
from .rundir import RunDir


def write_rows(x: torch.Tensor | np.ndarray, out: Path, columns: tuple[Column, ...] = (), exact: bool = False) -> Path:
    """Rows ``(N, *input_shape)`` in the data's units (samples, reconstructions, imputations) to ``out``: a grid of
    images for ``.png``; for a table (``columns``) as ``.csv`` or ``.parquet``, its own named columns with each
    categorical column's likeliest category; else a ``.npy`` array of ``x``'s shape (an image run's ``(N, C, H, W)``),
    or flat rows in a ``.csv`` or ``.parquet`` table. Every input of aekit takes each of these back. A table's numbers
    are written with float32's digits (the model's), or with ``exact`` as they are (an imputed table's observed
    cells). The same rows give the same bytes."""
    x = torch.as_tensor(x)
    if out.suffix.lower() == ".png":
        from ..analysis import plots

        return plots.write_grid(x, out)  # each pixel zoomed to be seen
    if columns and out.suffix.lower() in (".csv", ".parquet"):
        dtype = np.float64 if exact else np.float32
        tables.write_table(out, tables.decoded(x.reshape(len(x), -1).double().numpy(), columns, dtype))
        return out
    with stream.RowWriter(out, len(x), tuple(x.shape[1:])) as writer:
        writer.write(x.numpy())
    return out


def write_bytes(path: Path, payload: bytes) -> Path:
    """A file written atomically (a compressed file)."""
    atomic_write_bytes(Path(path), payload)
    return Path(path)


def read_bytes(path: Path, limit: int = 2**31) -> bytes:
    """A file's bytes (at most ``limit``), or one line saying why not."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {'not a regular file' if path.exists() else 'no such file'}")
    if path.stat().st_size > limit:
        raise DataError(f"{path}: {path.stat().st_size} bytes, more than the {limit} aekit reads at once")
    return path.read_bytes()


def write_image_folder(x: torch.Tensor, folder: Path) -> Path:
    """Images ``(N, C, H, W)`` in [0, 1] as ``folder/00000.png`` ... (the images' own pixels)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    digits = max(5, len(str(len(x) - 1)))
    for i in range(len(x)):
        from ..analysis import plots

        plots.write_grid(x[i : i + 1], folder / f"{i:0{digits}d}.png", ncol=1, zoom=1)
    return folder


def array_from_npy(payload: bytes) -> np.ndarray:
    """A ``.npy`` file's bytes as an array, its header checked against the payload before anything is allocated
    (no objects, no shape larger than the bytes that came); a DataError otherwise."""
    handle = io.BytesIO(payload)
    check_npy_header(handle, len(payload), "header", limit=None)  # the payload's own size bounds it
    handle.seek(0)
    try:
        return np.load(handle, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DataError(str(err)) from None


def holds_run(path: str | Path) -> bool:
    """Whether ``path`` is a folder that already holds something (a run, or anything)."""
    return RunDir(path).holds_run()


def mnist_location() -> str:
    """Where MNIST is found, or why it is not (for ``aekit datasets``)."""
    try:
        return f"MNIST found in {data_mod.find_mnist(download=False)}"
    except DataError as err:
        return f"MNIST: {err}"


def impute_file(run, source: str, out: Path) -> tuple[int, int]:
    """Fill the missing cells of a file with ``run`` (:meth:`aekit.run.runs.Run.impute`) and write it to ``out``
    (:func:`write_rows`'s formats); a CSV written from a CSV keeps every observed cell's text as it was, only the
    missing ones filled (a number with float32's shortest digits, a category's name). Returns ``(missing cells,
    rows)``: a table's cells counted per column, not per one-hot slot."""
    if source in data_mod.DATASETS:
        raise DataError(f"{source}: a built-in dataset has no missing cells; give a file with holes")
    columns = run.model_config.columns
    raw = data_mod.read_data(source, run.data_config.label_column, run.data_config.image_size, columns)[0]
    filled = run.impute(raw, source)
    holes = np.isnan(raw.reshape(len(raw), -1))
    if columns:  # a categorical cell is missing in all its slots: one cell
        holes = np.stack([holes[:, tables.column_of_feature(columns) == c].any(1) for c in range(len(columns))], 1)
    if str(source).lower().endswith(".csv") and out.suffix.lower() == ".csv":
        flat = filled.reshape(len(filled), -1)
        named = tables.decoded(flat, columns) if columns else {str(j): flat[:, j] for j in range(flat.shape[1])}
        fills = {name: [str(np.float32(v)) if not isinstance(v, str) else v for v in values]
                 for name, values in named.items()}  # fmt: skip
        atomic_write_bytes(out, fill_text(source, fills))
    else:
        write_rows(run.space.shaped(filled, source), out, columns, exact=True)
    return int(holes.sum()), len(raw)


def row_names(source: str | Path) -> list[str] | None:
    """One name per row of an input, where its rows are files: an image folder's image paths (relative to it, in the
    order they are read); None for any other input."""
    from ..io.images import image_files

    path = Path(source)
    if not path.is_dir() or (path / "config.json").is_file():
        return None
    try:
        files, _ = image_files(path)
    except DataError:
        return None
    return [str(p.relative_to(path)) for p in files]
