"""The synthetic camera's frame counter reads back, raw and after a real VP8 round trip."""

from __future__ import annotations

import fractions
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image

from streamsnap.media.pattern import (
    COUNTER_BITS,
    FPS,
    SECOND_COLOURS,
    pattern_frame,
    read_colour,
    read_counter,
)

pytestmark = pytest.mark.unit

COUNTERS = [0, 1, 2, 29, 30, 255, 256, 0x5555, 0xAAAA, 12345, 2**COUNTER_BITS - 1]
SIZES = [(320, 240), (640, 480), (1280, 720)]


@pytest.mark.parametrize("width, height", SIZES)
@pytest.mark.parametrize("counter", COUNTERS)
def test_counter_reads_back(counter: int, width: int, height: int) -> None:
    picture = pattern_frame(counter, width, height)
    assert picture.shape == (height, width, 3)
    assert picture.dtype == np.uint8
    assert read_counter(Image.fromarray(picture)) == counter


def test_counter_wraps_at_its_bit_count() -> None:
    assert read_counter(Image.fromarray(pattern_frame(2**COUNTER_BITS + 7, 640, 480))) == 7


@pytest.mark.parametrize("counter", [0, FPS - 1, FPS, 2 * FPS + 5, 5 * FPS, 6 * FPS])
def test_colour_changes_every_second(counter: int) -> None:
    expected = tuple(int(v) for v in SECOND_COLOURS[(counter // FPS) % len(SECOND_COLOURS)])
    assert read_colour(Image.fromarray(pattern_frame(counter, 640, 480))) == expected


def test_neighbouring_frames_differ() -> None:
    assert not np.array_equal(pattern_frame(10, 320, 240), pattern_frame(11, 320, 240))


def test_counter_survives_a_vp8_round_trip() -> None:
    width, height = 640, 480
    counters = [0, 1, 2, 3, 100, 101, 257, 1000, 0x5555, 0xAAAA, 40000, 65535]
    encoder: Any = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = fractions.Fraction(1, FPS)
    encoder.bit_rate = 1_000_000
    decoder: Any = av.CodecContext.create("vp8", "r")

    read: list[int] = []
    colours: list[tuple[int, int, int]] = []
    packets = []
    for pts, counter in enumerate(counters):
        frame = av.VideoFrame.from_ndarray(pattern_frame(counter, width, height), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = pts
        packets += encoder.encode(frame)
    packets += encoder.encode(None)
    for packet in packets:
        for decoded in decoder.decode(packet):
            assert (decoded.width, decoded.height) == (width, height)
            image = decoded.to_image()
            read.append(read_counter(image))
            colours.append(read_colour(image))

    assert read == counters
    for counter, colour in zip(counters, colours, strict=True):
        expected = SECOND_COLOURS[(counter // FPS) % len(SECOND_COLOURS)]
        assert all(abs(a - int(e)) < 40 for a, e in zip(colour, expected, strict=True)), (
            counter,
            colour,
        )
