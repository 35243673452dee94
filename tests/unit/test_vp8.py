"""The VP8 keyframe header: sizes of libvpx's keyframes, each checked against FFmpeg's decoder; then
hostile bytes, which end in `Vp8Error` and nothing else."""

from __future__ import annotations

import fractions
from typing import Any

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamsnap.media.vp8 import KEYFRAME_HEADER_SIZE, KeyframeHeader, Vp8Error, is_keyframe_tag, keyframe_header

pytestmark = pytest.mark.unit


def frames(width: int, height: int, count: int = 2) -> list[bytes]:
    """`count` frames of libvpx (a keyframe, then interframes)."""
    context: Any = av.CodecContext.create("libvpx", "w")
    context.width, context.height, context.pix_fmt = width, height, "yuv420p"
    context.time_base = fractions.Fraction(1, 30)
    rng = np.random.default_rng(width)
    out: list[bytes] = []
    for index in range(count):
        frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = index
        out += [bytes(packet) for packet in context.encode(frame)]
    return out + [bytes(packet) for packet in context.encode(None)]


def decoded_size(frame: bytes) -> tuple[int, int]:
    """The size FFmpeg's VP8 decoder (the one the snapshot engine runs) makes the picture at."""
    context: Any = av.CodecContext.create("vp8", "r")
    pictures = list(context.decode(av.Packet(frame))) + list(context.decode(None))
    assert pictures, "FFmpeg made no picture"
    return pictures[0].width, pictures[0].height


@pytest.mark.parametrize("width, height", [(320, 240), (176, 144), (1280, 720), (34, 18), (642, 362)])
def test_the_size_of_libvpx_keyframes_is_the_decoded_size(width: int, height: int) -> None:
    key, inter = frames(width, height)[:2]
    header = keyframe_header(key)
    assert header is not None
    assert (header.width, header.height) == (width, height) == decoded_size(key)
    assert (header.horizontal_scale, header.vertical_scale, header.version, header.show_frame) == (0, 0, 0, True)
    assert KEYFRAME_HEADER_SIZE < header.first_partition_size < len(key)
    assert keyframe_header(inter) is None
    assert not is_keyframe_tag(inter)


def test_scale_bits_are_not_part_of_the_size() -> None:
    key = frames(320, 240, 1)[0]
    scaled = key[:6] + (0xC000 | 320).to_bytes(2, "little") + (0x4000 | 240).to_bytes(2, "little") + key[10:]
    header = keyframe_header(scaled)
    assert header is not None
    assert (header.width, header.height, header.horizontal_scale, header.vertical_scale) == (320, 240, 3, 1)
    assert decoded_size(scaled) == (320, 240)  # decoders make the coded size; the scale is a display hint


def test_a_header_by_hand() -> None:
    # frame tag: keyframe, version 1, shown, first partition of 0x1234 bytes
    tag = (0x1234 << 5 | 0x10 | 1 << 1).to_bytes(3, "little")
    header = keyframe_header(tag + b"\x9d\x01\x2a" + (1920).to_bytes(2, "little") + (1080).to_bytes(2, "little"))
    assert header == KeyframeHeader(width=1920, height=1080, horizontal_scale=0, vertical_scale=0, version=1,
                                    show_frame=True, first_partition_size=0x1234)


@pytest.mark.parametrize("data, words", [
    (b"", "empty"),
    (b"\x50\x2a\x00\x9d\x01\x2a\x40\x01\xf0", "shorter than its header"),
    (b"\x50\x2a\x00\x9d\x01\x2b\x40\x01\xf0\x00", "start code"),
    (b"\x50\x2a\x00\x9d\x01\x2a\x00\xc0\xf0\x00", "0x240"),  # a width of zero under the scale bits
])
def test_a_frame_tagged_keyframe_that_cannot_be_one_is_refused(data: bytes, words: str) -> None:
    with pytest.raises(Vp8Error, match=words):
        keyframe_header(data)


def test_an_interframe_needs_no_more_than_its_tag() -> None:
    assert keyframe_header(b"\x31") is None


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=32))
def test_random_bytes_end_in_vp8_error(data: bytes) -> None:
    try:
        header = keyframe_header(data)
    except Vp8Error:
        return
    assert header is None or (header.width > 0 and header.height > 0)
