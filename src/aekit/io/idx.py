"""IDX, MNIST's own format (http://yann.lecun.com/exdb/mnist/): a header of dimensions and a big-endian payload,
usually gzip-compressed. The bundled MNIST is read with it (its SHA-256 checked); a user's IDX file of images or rows
is read whole as an array."""

from __future__ import annotations

import gzip
import hashlib
import math
import zlib
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import DataError
from .format import Format

# IDX type codes (http://yann.lecun.com/exdb/mnist/): code -> big-endian numpy dtype.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse the bytes of an (uncompressed) IDX file into an array, checking its header against its payload.

    Raises
    ------
    DataError
        If the magic number, the type code, the dimensions or the payload length is wrong; the message names
        ``name``.
    """
    if len(raw) < 4:
        raise DataError(f"{name}: not an IDX file (only {len(raw)} bytes)")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise DataError(f"{name}: not an IDX file (bad magic number 0x{raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{name}: IDX header declares {ndim} dimensions but the file ends after {len(raw)} bytes")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if 0 in dims:  # an empty dataset is of no use, and numpy refuses shapes like (0, 2**30, 2**30) anyway
        raise DataError(f"{name}: IDX dimensions {dims} hold no values")
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = math.prod(dims) * dtype.itemsize  # Python ints: no overflow on hostile headers
    if len(raw) - header != expected:
        raise DataError(
            f"{name}: IDX dimensions {dims} need {expected} payload bytes but the file has {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def read_idx_gz(path: Path, sha256: str | None = None) -> np.ndarray:
    """Read a gzip-compressed IDX file; if ``sha256`` is given, check the decompressed bytes against it."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes())
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: not a valid gzip file ({err})") from None
    array = parse_idx(raw, str(path))
    if sha256 is not None:
        digest = hashlib.sha256(raw).hexdigest()
        if digest != sha256:
            raise DataError(
                f"{path}: SHA-256 mismatch (got {digest[:12]}..., expected {sha256[:12]}...): "
                "the file is corrupt or not the canonical MNIST; delete it and try again"
            )
    return array


class Idx(Format):
    kind: ClassVar[str] = "idx"
    help: ClassVar[str] = "IDX file (MNIST's format, gzip-compressed or not): images (N, H, W) or rows (N, D), no labels"

    def takes(self, path):
        name = path.name.lower().removesuffix(".gz")
        return (name.endswith(".idx") or name.endswith("-ubyte")) and not path.is_dir()

    def read(self, path, label_column=None, image_size=None, columns=()):
        x = read_idx_gz(path) if path.name.lower().endswith(".gz") else parse_idx(path.read_bytes(), str(path))
        return (x[:, None] if x.ndim == 3 else x), None, ()  # (N, H, W): greyscale images, (N, 1, H, W)
