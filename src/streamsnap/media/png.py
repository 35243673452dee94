"""PNG files of 8-bit RGB pictures: the Up row filter in numpy, deflated by ISA-L, the container written here.

A snapshot's PNG was 80% of a picture's CPU when libpng made it (zlib level 1 is slow for
what it saves). The format itself is small: a signature, a header chunk, the filtered rows
deflated in one zlib stream, an end chunk, each chunk with a CRC-32. Measured side by side
in `bench/encoders.py` on decoded video pictures, ISA-L's deflate at its level 2 makes the
file about 4x faster than zlib's level 1 at the same size; its level 1 is no faster and
makes larger files, zlib-ng and libdeflate are slower at the fast end (libdeflate
compresses better at its higher levels, which is why the higher `level`s use it).
"""

from __future__ import annotations

import struct
import threading
import zlib
from typing import cast

import imagecodecs
import numpy as np
from isal import isal_zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"

FILTER_UP = 2
"PNG filter type 2: each byte minus the byte above it (the row above the first one counts as zeros)."

_RGB8 = (8, 2, 0, 0, 0)
"IHDR fields after the size: bit depth 8, colour type 2 (RGB), deflate, adaptive filtering, no interlace."

_local = threading.local()


def encode_png(rgb: np.ndarray, level: int = 1) -> bytes:
    """`rgb` (height x width x 3, uint8; row strides may be padded) as a PNG file.

    Every row has the Up filter: on video pictures it deflates as well as choosing a filter
    per row (libpng's default) at a fraction of the time. `level` is streamsnap's
    `png_compress_level`, 0-9, mapped to a deflate by measurement (`bench/encoders.py`):

    - 0: stored, not compressed (zlib level 0: no deflate CPU, the largest file);
    - 1: ISA-L level 2 (as small as zlib level 1 was, about 4x faster; ISA-L's level 1 is
      no faster and 7% larger, its level 3 slower and larger);
    - 2-9: libdeflate at the same level (smaller files for more CPU, as zlib's 2-9 were,
      and at each level faster than zlib and no larger).
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"an RGB picture of uint8 is needed, not {rgb.dtype} {rgb.shape}")
    if not 0 <= level <= 9:
        raise ValueError(f"PNG level {level} is not in 0-9")
    height, width = rgb.shape[:2]
    if height == 0 or width == 0:
        raise ValueError("a PNG has at least one pixel")
    return png_file(width, height, _deflate(up_filtered(rgb), level))


def png_file(width: int, height: int, zlib_stream: bytes) -> bytes:
    """The PNG file of an 8-bit RGB picture whose filtered rows deflate to `zlib_stream`."""
    header = struct.pack(">II5B", width, height, *_RGB8)
    # One copy of the compressed data, into the file: the chunks are joined as their parts
    return b"".join((SIGNATURE, *_chunk(b"IHDR", header), *_chunk(b"IDAT", zlib_stream), *_chunk(b"IEND", b"")))


def up_filtered(rgb: np.ndarray) -> np.ndarray:
    """The rows of `rgb` as PNG filter type Up: a filter byte, then each byte minus the one above (mod 256).

    Written into a buffer this thread keeps for pictures of this size (valid until the thread's
    next call): a fresh megabyte per picture costs page faults whenever the allocator has handed
    the memory back to the system.
    """
    height, width = rgb.shape[:2]
    stride = width * 3
    filtered = _buffer((height, stride + 1))
    rows = rgb.reshape(height, stride)  # a view: only the row stride may differ from width * 3
    filtered[:, 0] = FILTER_UP
    filtered[0, 1:] = rows[0]
    # uint8 arithmetic wraps around, which is exactly the filter's modulo 256
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])
    return filtered


def _buffer(shape: tuple[int, int]) -> np.ndarray:
    """A uint8 array of `shape` that this thread reuses (the last size asked only, so memory stays bounded)."""
    kept: np.ndarray | None = getattr(_local, "filtered", None)
    if kept is None or kept.shape != shape:
        kept = _local.filtered = np.empty(shape, dtype=np.uint8)
    return kept


def _deflate(data: np.ndarray, level: int) -> bytes:
    """`data` as one zlib stream, by the deflate `level` maps to (see `encode_png`)."""
    if level == 0:
        return zlib.compress(data.data, 0)
    if level == 1:
        return isal_zlib.compress(data.data, 2)
    # Any contiguous buffer is taken (no copy to bytes); the stubs name only bytes, bytearray and mmap
    return bytes(imagecodecs.deflate_encode(cast(bytes, data), level=level))


def _chunk(kind: bytes, data: bytes) -> tuple[bytes, bytes, bytes]:
    """A PNG chunk's parts: length and type, data, CRC-32 of type and data."""
    crc = isal_zlib.crc32(data, isal_zlib.crc32(kind))
    return struct.pack(">I", len(data)) + kind, data, struct.pack(">I", crc)
