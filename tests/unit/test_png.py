"""streamsnap's own PNG writer: every level gives a valid file of exactly the pixels it was given."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from streamsnap.media.png import SIGNATURE, encode_png

pytestmark = pytest.mark.unit


def _noise(width: int, height: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _smooth(width: int, height: int) -> np.ndarray:
    """A gradient with a little noise: compressible like a picture, not like a flat colour."""
    x = np.arange(width)[None, :, None]
    y = np.arange(height)[:, None, None]
    base = (x * 3 + y * 2 + np.arange(3) * 60) % 256
    return (base + np.random.default_rng(2).integers(0, 4, (height, width, 3))).astype(np.uint8)


def _decoded(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == "PNG" and image.mode == "RGB"
    return np.asarray(image)


def _chunks(data: bytes) -> list[tuple[bytes, bytes, int]]:
    """(type, data, stored CRC) of every chunk, read by hand."""
    assert data[:8] == SIGNATURE
    chunks, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at:at + 4])
        kind, body = data[at + 4:at + 8], data[at + 8:at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length:at + 12 + length])
        chunks.append((kind, body, crc))
        at += 12 + length
    assert at == len(data)
    return chunks


@pytest.mark.parametrize("level", range(10))
@pytest.mark.parametrize("size", [(640, 480), (321, 241), (1, 1), (3, 7), (1, 5), (5, 1)])
def test_every_level_gives_exactly_the_pixels(level: int, size: tuple[int, int]) -> None:
    for picture in (_noise(*size), _smooth(*size)):
        assert np.array_equal(_decoded(encode_png(picture, level)), picture)


def test_padded_rows_and_cropped_views_are_read_as_pixels() -> None:
    # What swscale hands over for odd widths: rows longer than width * 3 (a strided view)
    padded = _noise(336 // 3, 50)[:, :107]
    assert not padded.flags.c_contiguous
    assert np.array_equal(_decoded(encode_png(padded)), padded)
    # A centre crop (fit=cover) is a view into a larger picture
    cropped = _smooth(640, 480)[60:420, 53:587]
    assert np.array_equal(_decoded(encode_png(cropped)), cropped)


def test_chunks_header_and_crcs_are_right() -> None:
    picture = _smooth(97, 33)
    data = encode_png(picture, 1)
    chunks = _chunks(data)
    assert [kind for kind, _, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    for kind, body, crc in chunks:
        assert zlib.crc32(kind + body) == crc, kind
    width, height, depth, colour, method, filtering, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (width, height, depth, colour, method, filtering, interlace) == (97, 33, 8, 2, 0, 0, 0)
    assert chunks[2][1] == b""
    # Pillow's own check of every chunk's CRC
    Image.open(io.BytesIO(data)).verify()
    # Each row is a filter byte, then 3 bytes per pixel; every row is filtered Up
    rows = np.frombuffer(zlib.decompress(chunks[1][1]), dtype=np.uint8).reshape(33, 1 + 97 * 3)
    assert set(rows[:, 0]) == {2}


@pytest.mark.parametrize("offset", [8 + 8, 8 + 25 + 8 + 10])
def test_a_flipped_byte_is_caught_by_the_crc(offset: int) -> None:
    """A byte of IHDR's width, then one inside IDAT's data: both fail Pillow's CRC check."""
    data = bytearray(encode_png(_smooth(40, 30), 1))
    Image.open(io.BytesIO(bytes(data))).verify()
    data[offset] ^= 1
    with pytest.raises((SyntaxError, OSError)):
        Image.open(io.BytesIO(bytes(data))).verify()


def test_level_0_is_stored_and_higher_levels_compress_more() -> None:
    picture = _smooth(320, 240)
    raw = 240 * (1 + 320 * 3)
    sizes = {level: len(encode_png(picture, level)) for level in range(10)}
    assert sizes[0] > raw  # stored blocks: the filtered rows plus block headers
    assert sizes[1] < raw / 2
    assert sizes[9] <= sizes[3] <= sizes[1]


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8),
                                 np.zeros((4, 4, 3), np.uint16), np.zeros((0, 4, 3), np.uint8)])
def test_what_is_not_an_rgb_picture_is_refused(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        encode_png(bad)


@pytest.mark.parametrize("level", [-1, 10])
def test_a_level_out_of_range_is_refused(level: int) -> None:
    with pytest.raises(ValueError, match="level"):
        encode_png(_smooth(4, 4), level)
