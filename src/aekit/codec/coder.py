"""The autoencoder as a codec: integer codes, frozen probability tables, a real entropy coder, a checked container.

A model trained with the ``rate`` objective (:class:`aekit.model.parts.Rate`) codes each example as integers under a
learned density per code channel. When training ends, each channel's density is frozen to an integer table
(:class:`Tables`: frequencies summing to ``2**24``, each symbol at least 1), stored in the run (``codec.safetensors``).
From then on neither side computes a probability in floating point: ``constriction``'s ANS coder (the ``codec``
extra) is given each table as exact dyadic numbers ``f / 2**24``, which its 24-bit fixed point takes back as the same
integers, so a file decodes to the same codes on any machine, thread count or process.

A file (``.aek``), little-endian::

    magic "AEKC" | format u16 | SHA-256 of the model and its tables (32 bytes) | items u32 | code size u16 |
    ndim u8 | input shape u32 x ndim | streams u32 | words per stream (LEB128 varints) | the streams' 32-bit
    words | CRC-32 of everything before it (u32)

One stream holds every item (what ``aekit compress`` writes), or one per item (each then decodes alone; the
benchmark measures both). A file from another model, a newer format, with a flipped byte or cut short is refused
in one line.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import DataError

MAGIC = b"AEKC"
FORMAT = 1
PRECISION = 24  # constriction's default ANS coder: 32-bit words, 24-bit probabilities
TOTAL = 1 << PRECISION
TAIL = 1e-9  # a table covers the symbols the density gives more than this mass (and every training code)
MAX_SYMBOLS = 1 << 14  # symbols per channel's table, at most
HEAD = struct.Struct("<4sH32sIHB")  # magic, format, sha, items, code size, ndim


def coder():
    """constriction, or the one-line message naming the extra that brings it."""
    try:
        import constriction
    except ImportError:
        raise DataError("compressing needs constriction, the 'codec' extra: pip install 'aekit[codec]'") from None
    return constriction


@dataclass
class Tables:
    """Each code channel's frozen probability table: its smallest symbol (``offsets``) and the integer frequencies
    of it and the symbols after it, summing to :data:`TOTAL`."""

    offsets: np.ndarray  # (C,) int64
    frequencies: list[np.ndarray]  # C arrays of int64, each summing to TOTAL, each entry >= 1

    @classmethod
    def freeze(cls, likelihood, codes: np.ndarray) -> Tables:
        """From a density (``likelihood(y (N, C)) -> (N, C)`` masses of each integer's bin) and the training rows'
        integer codes ``(N, C)``: each channel's table covers its training codes and wherever the density puts more
        than :data:`TAIL`; the masses are computed once, in float64, here, and kept as integers."""
        channels = codes.shape[1]
        reach = max(int(np.abs(codes).max(initial=0)) * 2 + 64, 64)
        grid = torch.arange(-reach, reach + 1, dtype=torch.float64)
        with torch.no_grad():
            mass = likelihood(grid[:, None].expand(-1, channels)).double().numpy()  # (symbols, C)
        offsets, frequencies = np.empty(channels, np.int64), []
        for c in range(channels):
            inside = np.flatnonzero(mass[:, c] > TAIL)
            low = min(int(grid[inside[0]]) if len(inside) else 0, int(codes[:, c].min(initial=0)))
            high = max(int(grid[inside[-1]]) if len(inside) else 0, int(codes[:, c].max(initial=0)))
            if high - low + 1 > MAX_SYMBOLS:  # a channel the training spread that far: the middle of it
                middle = (low + high) // 2
                low, high = middle - MAX_SYMBOLS // 2, middle + MAX_SYMBOLS // 2 - 1
            p = mass[low + reach : high + reach + 1, c]
            offsets[c] = low
            frequencies.append(quantized(p / p.sum()))
        return cls(offsets, frequencies)

    def clip(self, codes: np.ndarray) -> tuple[np.ndarray, int]:
        """Codes ``(N, C)`` as symbols of the tables (a code outside its channel's table takes its nearest end), and
        how many were moved."""
        low = self.offsets[None, :]
        high = low + np.array([len(f) for f in self.frequencies])[None, :] - 1
        inside = np.clip(codes, low, high)
        return (inside - low).astype(np.int32), int((inside != codes).sum())

    def bits(self, codes: np.ndarray) -> np.ndarray:
        """Each row's ideal cost in bits under the tables, ``(N,)``: what the coder's output approaches."""
        symbols, _ = self.clip(codes)
        out = np.zeros(len(codes))
        for c, f in enumerate(self.frequencies):
            out += PRECISION - np.log2(f[symbols[:, c]])
        return out

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {"offsets": torch.from_numpy(self.offsets)}
        out |= {f"frequencies.{c}": torch.from_numpy(f) for c, f in enumerate(self.frequencies)}
        return out

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], channels: int, where: str) -> Tables:
        try:
            offsets = tensors["offsets"].numpy()
            frequencies = [tensors[f"frequencies.{c}"].numpy() for c in range(channels)]
        except KeyError:
            raise DataError(f"{where}: not the probability tables of a {channels}-channel code") from None
        if offsets.shape != (channels,) or any(f.ndim != 1 or f.min() < 1 or int(f.sum()) != TOTAL
                                               for f in frequencies):  # fmt: skip
            raise DataError(f"{where}: its probability tables do not each sum to 2**{PRECISION}")
        return cls(offsets.astype(np.int64), [f.astype(np.int64) for f in frequencies])

    def digest(self) -> bytes:
        """SHA-256 input of the tables: what a file's header names beside the model's weights."""
        return self.offsets.astype("<i8").tobytes() + b"".join(f.astype("<i8").tobytes() for f in self.frequencies)


def quantized(p: np.ndarray) -> np.ndarray:
    """Probabilities as integer frequencies summing to :data:`TOTAL`, each at least 1 (largest remainders)."""
    free = TOTAL - len(p)
    exact = p * free
    out = np.floor(exact).astype(np.int64)
    short = free - int(out.sum())
    out[np.argsort(out - exact, kind="stable")[:short]] += 1  # the largest remainders get the units left
    return out + 1


def _models(tables: Tables):
    categorical = coder().stream.model.Categorical
    return [categorical(f.astype(np.float64) / TOTAL, perfect=False) for f in tables.frequencies]


def encode_streams(codes: np.ndarray, tables: Tables, per_item: bool = False) -> tuple[list[np.ndarray], int]:
    """Integer codes ``(N, C)`` as ANS streams of 32-bit words: one for all rows, or (``per_item``) one per row; and
    how many codes were moved to their table's end."""
    symbols, moved = tables.clip(codes)
    models, stack = _models(tables), coder().stream.stack
    groups = [symbols[i : i + 1] for i in range(len(symbols))] if per_item else [symbols]
    streams = []
    for group in groups:
        ans = stack.AnsCoder()
        for c in reversed(range(symbols.shape[1])):  # a stack: the last channel in is the first out
            ans.encode_reverse(np.ascontiguousarray(group[:, c]), models[c])
        streams.append(ans.get_compressed())
    return streams, moved


def decode_streams(streams: list[np.ndarray], n: int, tables: Tables) -> np.ndarray:
    """The integer codes ``(n, C)`` of :func:`encode_streams`' streams."""
    models, stack = _models(tables), coder().stream.stack
    rows = [n] if len(streams) == 1 else [1] * n
    out = []
    for words, count in zip(streams, rows):
        ans = stack.AnsCoder(np.ascontiguousarray(words, dtype=np.uint32))
        out.append(np.stack([ans.decode(models[c], count) for c in range(len(models))], axis=1))
    return np.concatenate(out).astype(np.int64) + tables.offsets[None, :]


def varints(values: list[int]) -> bytes:
    out = bytearray()
    for value in values:
        while True:
            low, value = value & 0x7F, value >> 7
            out.append(low | (0x80 if value else 0))
            if not value:
                break
    return bytes(out)


def read_varints(data: bytes, start: int, count: int) -> tuple[list[int], int]:
    values = []
    for _ in range(count):
        value, shift = 0, 0
        while True:
            if start >= len(data) or shift > 35:
                raise ValueError("cut short")
            byte = data[start]
            start += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        values.append(value)
    return values, start


def model_digest(weights: bytes, tables: Tables) -> bytes:
    """The SHA-256 a file names: of the model's weights file and its frozen tables."""
    return hashlib.sha256(weights + tables.digest()).digest()


def pack(streams: list[np.ndarray], n: int, code_size: int, shape: tuple[int, ...], digest: bytes) -> bytes:
    """The container of :func:`encode_streams`' streams (see the module's text)."""
    head = HEAD.pack(MAGIC, FORMAT, digest, n, code_size, len(shape)) + struct.pack(f"<{len(shape)}I", *shape)
    body = struct.pack("<I", len(streams)) + varints([len(s) for s in streams])
    body += b"".join(np.asarray(s, dtype="<u4").tobytes() for s in streams)
    payload = head + body
    return payload + struct.pack("<I", zlib.crc32(payload))


@dataclass
class Unpacked:
    n: int
    code_size: int
    shape: tuple[int, ...]
    streams: list[np.ndarray]
    digest: bytes


def unpack(data: bytes, source: str = "file") -> Unpacked:
    """A container's parts, checked: magic, format, length and checksum, each refused in one line."""
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise DataError(f"{source}: not an aekit compressed file (no {MAGIC.decode()} magic)")
    if len(data) < HEAD.size + 4:
        raise DataError(f"{source}: cut short ({len(data)} bytes; a header alone takes {HEAD.size + 4})")
    _, version, digest, n, code_size, ndim = HEAD.unpack_from(data)
    if version > FORMAT:
        raise DataError(f"{source}: written in format {version} by a newer aekit; this one reads format {FORMAT}: "
                        "upgrade aekit")  # fmt: skip
    if zlib.crc32(data[:-4]) != struct.unpack_from("<I", data, len(data) - 4)[0]:
        raise DataError(f"{source}: damaged or cut short: its CRC-32 checksum does not match its bytes")
    try:
        at = HEAD.size
        shape = struct.unpack_from(f"<{ndim}I", data, at)
        at += 4 * ndim
        (count,) = struct.unpack_from("<I", data, at)
        lengths, at = read_varints(data, at + 4, count)
        streams = []
        for length in lengths:
            streams.append(np.frombuffer(data, dtype="<u4", count=length, offset=at).astype(np.uint32))
            at += 4 * length
        if at != len(data) - 4 or count not in (1, n):
            raise ValueError("inconsistent lengths")
    except (struct.error, ValueError):
        raise DataError(f"{source}: its header does not match its payload") from None
    return Unpacked(n, code_size, tuple(shape), streams, digest)
