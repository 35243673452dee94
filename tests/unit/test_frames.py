"""Keyframe detection on real encoder output, and the bounded GOP cache."""

from __future__ import annotations

import asyncio
import fractions
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
import pytest
from av.video.frame import PictureType

from streamsnap.media import h264
from streamsnap.media.frames import (
    FPS_WINDOW,
    SPS_READS_PER_SECOND,
    EncodedFrame,
    GopCache,
    PictureSize,
    is_keyframe,
    vp8_keyframe_size,
)
from streamsnap.media.h264 import NalType, nal_types

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class Packet:
    data: bytes
    keyframe: bool
    "What the encoder itself says."


def encode(
    codec: str,
    width: int,
    height: int,
    count: int,
    force_key: set[int],
    options: dict[str, str] | None = None,
) -> list[Packet]:
    """`count` frames of moving noise through a real encoder; frames in `force_key` are forced I."""
    context: Any = av.CodecContext.create(codec, "w")
    context.width, context.height, context.pix_fmt = width, height, "yuv420p"
    context.time_base = fractions.Fraction(1, 30)
    context.framerate = fractions.Fraction(30, 1)
    context.options = options or {}
    rng = np.random.default_rng(1)
    packets: list[Packet] = []
    for index in range(count):
        picture = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
        frame.pts = index
        if index in force_key:
            frame.pict_type = PictureType.I
        packets += [Packet(bytes(p), bool(p.is_keyframe)) for p in context.encode(frame)]
    packets += [Packet(bytes(p), bool(p.is_keyframe)) for p in context.encode(None)]
    assert len(packets) == count
    return packets


@pytest.fixture(scope="module")
def vp8_packets() -> list[Packet]:
    return encode("libvpx", 320, 240, 6, {3})


@pytest.fixture(scope="module")
def h264_packets() -> list[Packet]:
    if "libx264" not in av.codecs_available:
        pytest.skip("PyAV built without libx264")
    # Annex-B out (no global header), no B-frames, so packets come out in order.
    return encode("libx264", 320, 240, 6, {3}, {"tune": "zerolatency", "preset": "ultrafast"})


# --- VP8 -------------------------------------------------------------------------------------


def test_vp8_first_and_forced_frames_are_keyframes(vp8_packets: list[Packet]) -> None:
    detected = [is_keyframe("VP8", p.data) for p in vp8_packets]
    assert detected == [True, False, False, True, False, False]
    assert detected == [p.keyframe for p in vp8_packets]


def test_vp8_keyframe_size_reads_the_encoded_size(vp8_packets: list[Packet]) -> None:
    assert [vp8_keyframe_size(p.data) for p in vp8_packets] == [
        (320, 240),
        None,
        None,
        (320, 240),
        None,
        None,
    ]


@pytest.mark.parametrize("width, height", [(176, 144), (640, 360), (34, 18)])
def test_vp8_keyframe_size_of_other_sizes(width: int, height: int) -> None:
    key = encode("libvpx", width, height, 1, set())[0]
    assert vp8_keyframe_size(key.data) == (width, height)


def test_vp8_header_parsing_by_hand() -> None:
    # frame tag (key, shown), start code, 14-bit width/height with 2-bit scale on top
    header = (
        b"\x50\x2a\x00"
        + b"\x9d\x01\x2a"
        + (0xC000 | 1280).to_bytes(2, "little")
        + (0x4000 | 720).to_bytes(2, "little")
    )
    assert vp8_keyframe_size(header) == (1280, 720)
    assert vp8_keyframe_size(header[:9]) is None  # too short
    assert vp8_keyframe_size(b"\x51" + header[1:]) is None  # interframe bit
    assert vp8_keyframe_size(header[:3] + b"\x9d\x01\x2b" + header[6:]) is None  # bad start code
    assert vp8_keyframe_size(b"") is None


# --- H.264 -----------------------------------------------------------------------------------


def test_h264_keyframes_carry_idr_and_sps(h264_packets: list[Packet]) -> None:
    types = [nal_types(p.data) for p in h264_packets]
    for index in (0, 3):
        assert {NalType.IDR, NalType.SPS, NalType.PPS} <= types[index]
    for index in (1, 2, 4, 5):
        assert NalType.NON_IDR_SLICE in types[index]
        assert NalType.IDR not in types[index]
        assert NalType.SPS not in types[index]
    detected = [is_keyframe("H264", p.data) for p in h264_packets]
    assert detected == [True, False, False, True, False, False]
    assert detected == [p.keyframe for p in h264_packets]


def test_h264_nal_types_by_hand() -> None:
    sps, pps, idr = b"\x67\x42\x00\x1e", b"\x68\xce\x38\x80", b"\x65\x88\x84\x00"
    annex_b = b"\x00\x00\x00\x01" + sps + b"\x00\x00\x00\x01" + pps + b"\x00\x00\x01" + idr
    assert nal_types(annex_b) == {7, 8, 5}
    assert is_keyframe("H264", annex_b)
    assert not is_keyframe("H264", b"\x00\x00\x01" + idr)  # IDR without SPS: decoder cannot start
    assert not is_keyframe("H264", b"\x00\x00\x01" + sps)  # SPS alone
    assert nal_types(b"\x00\x00\x01\x41\x9a") == {1}
    assert nal_types(b"\x00\x00\x01") == set()  # start code with nothing after it
    assert nal_types(b"no start code") == set()


def test_unknown_codec_has_no_keyframes(vp8_packets: list[Packet]) -> None:
    assert not is_keyframe("VP9", vp8_packets[0].data)
    assert not is_keyframe("vp8", vp8_packets[0].data)  # codec names are matched exactly


# --- GopCache --------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def vp8_key(size: int = 40, width: int = 320, height: int = 240) -> bytes:
    header = (
        b"\x50\x2a\x00\x9d\x01\x2a" + width.to_bytes(2, "little") + height.to_bytes(2, "little")
    )
    return header + b"\x00" * (size - len(header))


def vp8_inter(size: int = 20) -> bytes:
    return b"\x31" + b"\x00" * (size - 1)


def cache(max_frames: int = 100, max_bytes: int = 10_000, clock: Clock | None = None) -> GopCache:
    return GopCache("VP8", max_frames=max_frames, max_bytes=max_bytes, clock=clock or Clock())


def test_frames_before_the_first_keyframe_are_dropped_but_counted() -> None:
    clock = Clock()
    gop = cache(clock=clock)
    frame = gop.add(vp8_inter(), 1000)
    assert frame == EncodedFrame(vp8_inter(), 1000, False, 100.0)
    clock.now = 100.5
    gop.add(vp8_inter(), 4000)
    assert gop.group() == []
    assert gop.cached_bytes == 0
    assert (gop.frames_received, gop.keyframes_received) == (2, 0)
    assert gop.last_arrival == 100.5
    assert gop.size is None


def test_keyframe_starts_a_group_and_the_next_resets_it() -> None:
    clock = Clock()
    gop = cache(clock=clock)
    gop.add(vp8_inter(), 0)
    key = gop.add(vp8_key(40), 3000)
    assert key.keyframe
    clock.now = 101.0
    gop.add(vp8_inter(20), 6000)
    gop.add(vp8_inter(25), 9000)
    assert [(f.timestamp, f.keyframe, f.arrival) for f in gop.group()] == [
        (3000, True, 100.0),
        (6000, False, 101.0),
        (9000, False, 101.0),
    ]
    assert gop.cached_bytes == 85
    assert gop.size == (320, 240)

    clock.now = 102.0
    gop.add(vp8_key(50, 640, 480), 12000)
    assert [f.timestamp for f in gop.group()] == [12000]
    assert gop.cached_bytes == 50
    assert gop.size == (640, 480)
    assert (gop.frames_received, gop.keyframes_received) == (5, 2)
    assert gop.last_arrival == 102.0


def test_fps_is_measured_over_a_window_of_arrivals_never_over_a_near_zero_span() -> None:
    clock = Clock()
    gop = cache(clock=clock)
    assert gop.fps is None
    gop.add(vp8_key(), 0)
    clock.now += 0.000011  # a camera's first two frames read at once (once listed as 89553.58 fps)
    gop.add(vp8_inter(), 3000)
    assert gop.fps is None
    for _ in range(4):  # 10 fps: not told before the frames span half a second
        clock.now += 0.1
        gop.add(vp8_inter(), 0)
        assert gop.fps is None
    for _ in range(6):
        clock.now += 0.1
        gop.add(vp8_inter(), 0)
    assert gop.fps is not None and 10 <= gop.fps <= 12
    for _ in range(100):  # ten seconds later the burst is forgotten: the rate is the stream's now
        clock.now += 0.1
        gop.add(vp8_inter(), 0)
    assert gop.fps == pytest.approx(10.0)
    for _ in range(50):  # the publisher drops to 5 fps: within the window, the listing says so
        clock.now += 0.2
        gop.add(vp8_inter(), 0)
    assert gop.fps == pytest.approx(5.0)
    clock.now += FPS_WINDOW + 0.1  # nothing for longer than the window
    assert gop.fps == 0.0


def test_group_is_a_copy() -> None:
    gop = cache()
    gop.add(vp8_key(), 0)
    gop.group().clear()
    assert len(gop.group()) == 1


def test_frame_bound_drops_the_whole_group() -> None:
    gop = cache(max_frames=3)
    gop.add(vp8_key(), 0)
    gop.add(vp8_inter(), 1)
    gop.add(vp8_inter(), 2)
    assert len(gop.group()) == 3  # exactly at the bound: kept
    gop.add(vp8_inter(), 3)
    assert gop.group() == []
    assert gop.cached_bytes == 0
    gop.add(vp8_inter(), 4)  # no keyframe to start from: still dropped
    assert gop.group() == []
    gop.add(vp8_key(), 5)
    assert [f.timestamp for f in gop.group()] == [5]
    assert (gop.frames_received, gop.keyframes_received) == (6, 2)


def test_byte_bound_drops_the_whole_group() -> None:
    gop = cache(max_bytes=100)
    gop.add(vp8_key(40), 0)
    gop.add(vp8_inter(60), 1)
    assert gop.cached_bytes == 100  # exactly at the bound: kept
    assert len(gop.group()) == 2
    gop.add(vp8_inter(1), 2)
    assert gop.group() == []
    assert gop.cached_bytes == 0
    gop.add(vp8_key(40), 3)
    assert gop.cached_bytes == 40


def test_clear_forgets_the_group_but_not_the_counters() -> None:
    gop = cache()
    gop.add(vp8_key(), 0)
    gop.add(vp8_inter(), 1)
    gop.clear()
    assert gop.group() == []
    gop.add(vp8_inter(), 2)
    assert gop.group() == []
    assert (gop.frames_received, gop.keyframes_received) == (3, 1)


def test_cache_of_real_vp8_frames(vp8_packets: list[Packet]) -> None:
    gop = cache(max_bytes=10_000_000)
    for index, packet in enumerate(vp8_packets):
        gop.add(packet.data, index * 3000)
    assert [f.timestamp for f in gop.group()] == [9000, 12000, 15000]
    assert gop.cached_bytes == sum(len(p.data) for p in vp8_packets[3:])
    assert (gop.frames_received, gop.keyframes_received) == (6, 2)
    assert gop.size == (320, 240)


def test_cache_of_real_h264_frames(h264_packets: list[Packet]) -> None:
    gop = GopCache("H264", max_frames=100, max_bytes=10_000_000, clock=Clock())
    for index, packet in enumerate(h264_packets):
        gop.add(packet.data, index)
    assert [(f.timestamp, f.keyframe) for f in gop.group()] == [(3, True), (4, False), (5, False)]
    assert gop.keyframes_received == 2
    assert gop.size == (320, 240)  # from the SPS before the keyframe


# --- The picture size, from each keyframe's header ----------------------------------------------


START = b"\x00\x00\x00\x01"


def units(access_unit: bytes) -> list[bytes]:
    """The NAL units of an Annex-B access unit (x264's: four-byte start codes)."""
    return [unit.rstrip(b"\x00") for unit in access_unit.split(START) if unit]


def h264_cache(clock: Clock | None = None) -> GopCache:
    return GopCache("H264", max_frames=100, max_bytes=10_000_000, clock=clock or Clock())


@pytest.fixture(scope="module")
def h264_1080p() -> list[Packet]:
    if "libx264" not in av.codecs_available:
        pytest.skip("PyAV built without libx264")
    return encode("libx264", 1920, 1080, 3, {2}, {"tune": "zerolatency", "preset": "ultrafast"})


def test_the_size_is_known_from_the_first_keyframe_before_any_decode(h264_1080p: list[Packet]) -> None:
    gop = h264_cache()
    assert gop.size is None and gop.picture_size is None
    for index, packet in enumerate(h264_1080p):
        frame = gop.add(packet.data, index)
        if packet.keyframe:
            assert frame.size == PictureSize(1920, 1080, 1920, 1088)
        else:
            assert frame.size is None  # an SPS is read where one is, not per frame
        assert gop.size == (1920, 1080)
    assert gop.picture_size == PictureSize(1920, 1080, 1920, 1088)
    assert gop.unreadable_headers == 0


def test_the_size_of_a_vp8_keyframe_is_counted_in_macroblocks_for_the_decoder() -> None:
    gop = cache()
    frame = gop.add(vp8_key(width=642, height=362), 0)
    assert frame.size == gop.picture_size == PictureSize(642, 362, 656, 368)
    assert gop.add(vp8_inter(), 1).size is None


async def test_a_keyframe_whose_sps_cannot_be_read_is_not_kept(h264_1080p: list[Packet]) -> None:
    gop = h264_cache()
    gop.add(h264_1080p[0].data, 0)
    waiter = gop.next_keyframe()
    sps, pps, *rest = units(h264_1080p[2].data)
    broken = START + sps[:5] + START + pps + b"".join(START + unit for unit in rest)
    assert is_keyframe("H264", broken)  # it looks like one: IDR and SPS
    frame = gop.add(broken, 2)
    assert not frame.keyframe and frame.size is None
    assert gop.group() == []  # nothing decodes until a keyframe whose size is known
    assert (gop.unreadable_headers, gop.keyframes_received) == (1, 1)
    assert gop.size == (1920, 1080)  # the stream's size as last known
    gop.add(h264_1080p[1].data, 3)
    assert gop.group() == []  # the frames after it are not kept either
    await asyncio.sleep(0)
    assert not waiter.done()  # a picture waiting for a keyframe waits on
    gop.add(h264_1080p[0].data, 4)
    await asyncio.wait_for(waiter, 1)


def test_a_frame_declaring_another_size_without_an_idr_ends_the_group(h264_1080p: list[Packet]) -> None:
    other_sps = units(encode("libx264", 640, 480, 1, set(), {"preset": "ultrafast"})[0].data)[0]
    same_sps = units(h264_1080p[0].data)[0]
    gop = h264_cache()
    gop.add(h264_1080p[0].data, 0)
    gop.add(START + same_sps + h264_1080p[1].data, 1)  # an SPS repeated before a P-frame: fine
    assert [frame.timestamp for frame in gop.group()] == [0, 1]
    gop.add(START + other_sps + h264_1080p[1].data, 2)  # a decoder would switch to 640x480 mid-group
    assert gop.group() == []
    assert gop.size == (1920, 1080)


def test_a_repeated_sps_is_read_once(h264_1080p: list[Packet], monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[bytes] = []
    read = h264.sps_readings
    monkeypatch.setattr(h264, "sps_readings", lambda unit: reads.append(unit) or read(unit))
    gop = h264_cache()
    for index in range(50):
        gop.add(h264_1080p[0].data, index)
    assert len(reads) == 1 and gop.keyframes_received == 50


def test_new_sps_are_read_at_a_bounded_rate(h264_1080p: list[Packet]) -> None:
    clock = Clock()
    gop = h264_cache(clock)
    sps, *rest = units(h264_1080p[0].data)
    body = b"".join(START + unit for unit in rest)
    # Each SPS differs (its level byte) but declares the same size: all are new to the cache.
    variants = [START + sps[:3] + bytes([level]) + sps[4:] + body for level in range(10, 10 + 2 * SPS_READS_PER_SECOND)]
    for index, keyframe in enumerate(variants[:SPS_READS_PER_SECOND]):
        assert gop.add(keyframe, index).keyframe
    assert not gop.add(variants[SPS_READS_PER_SECOND], 99).keyframe  # over the budget: not read, not kept
    assert gop.unreadable_headers == 1 and gop.group() == []
    clock.now += 1.0
    assert gop.add(variants[SPS_READS_PER_SECOND + 1], 100).keyframe


def test_more_sps_than_an_access_unit_may_carry_make_it_unreadable(h264_1080p: list[Packet]) -> None:
    sps, *rest = units(h264_1080p[0].data)
    gop = h264_cache()
    flood = (START + sps) * (h264.MAX_SPS_PER_ACCESS_UNIT + 1) + b"".join(START + unit for unit in rest)
    assert not gop.add(flood, 0).keyframe
    assert gop.unreadable_headers == 1 and gop.size is None


def test_a_vp8_frame_tagged_keyframe_without_its_start_code_ends_the_group() -> None:
    gop = cache()
    gop.add(vp8_key(), 0)
    gop.add(vp8_inter(), 1)
    bad = b"\x50\x2a\x00\x9d\x01\x2b" + b"\x00" * 30
    assert not gop.add(bad, 2).keyframe
    assert gop.group() == [] and gop.unreadable_headers == 1


def test_sizes_for_the_size_check_take_the_larger_reading() -> None:
    # An SPS whose emulation-prevention byte sits before the size: FFmpeg may read either way.
    unit = bytes.fromhex("6742001ed4000003000858d8da4001e56a009c2640")
    size = PictureSize.of_sps(h264.sps_readings(unit))
    assert size == PictureSize(2496, 64, 16, 497056)
    assert PictureSize.of_sps([h264.parse_sps(unit)]).coded_pixels == 2496 * 64


async def test_next_keyframe_resolves_on_the_next_keyframe() -> None:
    gop = cache()
    gop.add(vp8_key(), 0)  # a keyframe before the wait does not count
    first, second = gop.next_keyframe(), gop.next_keyframe()
    gop.add(vp8_inter(), 1)
    await asyncio.sleep(0)
    assert not first.done()
    gop.add(vp8_key(), 2)
    await asyncio.wait_for(asyncio.gather(first, second), 1)
    assert first.exception() is None and second.exception() is None
    later = gop.next_keyframe()
    assert not later.done()  # waiters are one-shot
    gop.add(vp8_key(), 3)
    await asyncio.wait_for(later, 1)


async def test_next_keyframe_survives_a_cancelled_waiter() -> None:
    gop = cache()
    cancelled, kept = gop.next_keyframe(), gop.next_keyframe()
    cancelled.cancel()
    gop.add(vp8_key(), 0)
    await asyncio.wait_for(kept, 1)
    assert cancelled.cancelled()


async def test_close_fails_waiters_and_frees_frames() -> None:
    gop = cache()
    gop.add(vp8_key(), 0)
    waiter = gop.next_keyframe()
    gop.close()
    with pytest.raises(ConnectionError, match="stream ended"):
        await asyncio.wait_for(waiter, 1)
    assert gop.group() == []
    assert gop.cached_bytes == 0
