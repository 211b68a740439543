"""Images: one PNG/JPEG file, or a folder of them (one subfolder per class gives labels, as torchvision's
ImageFolder): headers read first (sizes, modes, the pixel limit), pixels decoded as uint8 ``(N, C, H, W)``, a chunk
at a time for a folder."""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import DataError
from .files import MAX_IMAGE_PIXELS
from .format import Format, Rows, chunk_spans

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


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


class Image(Format):
    kind: ClassVar[str] = "image"
    help: ClassVar[str] = "one .png/.jpg image"
    suffixes: ClassVar[tuple[str, ...]] = IMAGE_SUFFIXES

    def read(self, path, label_column=None, image_size=None, columns=()):
        return read_images([path], image_size), None, ()


class ImageFolder(Format):
    kind: ClassVar[str] = "images"
    help: ClassVar[str] = "folder of .png/.jpg images (one subfolder per class gives labels; --image-size HxW)"

    def takes(self, path):
        return path.is_dir()

    def read(self, path, label_column=None, image_size=None, columns=()):
        return (*read_image_folder(path, image_size), ())

    def open(self, path, label_column=None, chunk_bytes=None, image_size=None):
        return open_images(path, image_size, chunk_bytes)
