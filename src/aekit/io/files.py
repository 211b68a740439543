"""The user's own data files as arrays: .npy, .npz, and PNG/JPEG images or folders of them (CSV: :mod:`aekit.csvfile`).

Every reader checks what it returns: numeric, non-empty, finite, labels matching rows; each problem is one
:class:`~aekit.errors.DataError` naming the file.
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
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


def label_name(names: list[str], label_column: str, path) -> str:
    """The column ``label_column`` names among ``names``: a column name, else a 0-based index."""
    if label_column in names:
        return label_column
    if label_column.isdigit() and int(label_column) < len(names):
        return names[int(label_column)]
    raise DataError(f"{path}: no column {label_column!r}; columns are {names[:20]}")


def image_files(root: Path) -> tuple[list[Path], np.ndarray | None]:
    """The images under ``root`` in name order, and their labels if they sit in one subfolder per class (as
    torchvision's ImageFolder), else None."""
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"{root}: no .png or .jpg images in this folder")
    classes = sorted({p.parent for p in files})
    labels = None
    if len(classes) > 1 or classes[0] != root:
        labels = np.array([classes.index(p.parent) for p in files], dtype=np.int64)
    return files, labels


@contextmanager
def open_image(path: Path):
    """``with open_image(path) as image``: PIL's lazy image (header read, pixels not yet), checked against the pixel
    limit; any failure to read or decode inside the block becomes one :class:`DataError` naming the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.width * image.height > MAX_IMAGE_PIXELS:  # from the header, before decoding
                    raise DataError(f"{path}: {image.width}x{image.height} pixels, more than the "
                                    f"{MAX_IMAGE_PIXELS:,} aekit decodes per image")  # fmt: skip
                yield image
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, Image.DecompressionBombWarning,
            SyntaxError, ValueError) as err:  # fmt: skip
        raise DataError(f"{path}: not a readable image ({err})") from None


def image_layout(files: list[Path], image_size) -> tuple[str, tuple[int, int, int]]:
    """From the headers alone (no pixels decoded): the mode every image is converted to ("L" if all are
    greyscale, else "RGB") and the shape ``(C, H, W)`` of each, checking sizes and the pixel limit."""
    modes, sizes = set(), set()
    for path in files:
        with open_image(path) as image:
            modes.add(image.mode)
            sizes.add(image.size)
    mode = "L" if modes <= {"1", "L", "LA", "I", "I;16"} else "RGB"
    if image_size is None and len(sizes) > 1:
        (w1, h1), (w2, h2) = sorted(sizes)[:2]
        raise DataError(f"images have different sizes ({h1}x{w1} and {h2}x{w2}); pass --image-size HxW to resize them")
    h, w = image_size if image_size is not None else next(iter(sizes))[::-1]
    return mode, (1 if mode == "L" else 3, h, w)


def decode_images(files: list[Path], mode: str, size: tuple[int, int]) -> np.ndarray:
    """Pixels of ``files`` as uint8 ``(N, C, H, W)``, each converted to ``mode`` and resized to ``size`` (H, W)
    if it differs (bilinear)."""
    from PIL import Image

    h, w = size
    out = np.empty((len(files), 1 if mode == "L" else 3, h, w), dtype=np.uint8)
    for k, path in enumerate(files):
        with open_image(path) as image:
            image = image.convert(mode)
            pixels = np.asarray(image if image.size == (w, h) else image.resize((w, h), Image.BILINEAR), np.uint8)
        out[k] = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    return out


def read_image_folder(root: Path, image_size) -> tuple[np.ndarray, np.ndarray | None]:
    """Every image under ``root`` as uint8 ``(N, C, H, W)``, and labels from one subfolder per class if so."""
    files, labels = image_files(root)
    return read_images(files, image_size), labels


def read_images(files: list[Path], image_size) -> np.ndarray:
    """Images as uint8 ``(N, C, H, W)``, all of one size (``image_size`` (H, W) resizes them)."""
    mode, shape = image_layout(files, image_size)
    return decode_images(files, mode, shape[1:])
