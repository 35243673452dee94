"""H.265 below the container (media/h265.py) and in the frame cache and the camera guard: picture sizes of
libx265's SPSs, each checked against FFmpeg's decoder (conformance windows, 4:2:2, 4:4:4, sub-layers),
keyframes, parameter sets put in front, frames bounded per access unit over RTP (RFC 7798), and hostile SPS
bytes, which end in `H265Error` after bounded work and nothing else."""

from __future__ import annotations

import fractions
from collections.abc import Iterator
from typing import Any

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamsnap.media import h265
from streamsnap.media.frames import GopCache
from streamsnap.media.rtsp import keyframe_with_parameter_sets, parameter_sets
from streamsnap.media.rtsp_guard import FrameBounds, GuardLimits, GuardRefusal
from streamsnap.media.snapshot import oversize
from tests.harness.hostile_rtsp import nal_units, rtp_packet

pytestmark = pytest.mark.unit

FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
START = b"\x00\x00\x00\x01"
LIMITS = GuardLimits(sdp_bytes=65536, tracks=8, frame_bytes=4 * 1024 * 1024, frame_packets=4096, frame_nals=1024,
                     packets_per_second=10_000)


def encode(width: int, height: int, count: int = 1, pix_fmt: str = "yuv420p", params: str = "") -> list[bytes]:
    """`count` frames of libx265's Annex-B output (VPS, SPS, PPS before the first), as H.265 cameras send them."""
    if "libx265" not in av.codecs_available:
        pytest.skip("PyAV built without libx265")
    context: Any = av.CodecContext.create("libx265", "w")
    context.width, context.height, context.pix_fmt = width, height, pix_fmt
    context.time_base = fractions.Fraction(1, 30)
    context.options = {"preset": "ultrafast", "tune": "zerolatency",
                       "x265-params": "log-level=none:keyint=30:bframes=0" + (f":{params}" if params else "")}
    rng = np.random.default_rng(width * height)
    frames: list[bytes] = []
    for index in range(count):
        picture = av.VideoFrame.from_ndarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
                                             format="rgb24").reformat(format=pix_fmt)
        picture.pts = index
        frames += [bytes(packet) for packet in context.encode(picture)]
    return frames + [bytes(packet) for packet in context.encode(None)]


def decoded_size(frame: bytes) -> tuple[int, int]:
    decoder: Any = av.CodecContext.create("hevc", "r")
    pictures = list(decoder.decode(av.Packet(frame))) + list(decoder.decode(None))
    return pictures[0].width, pictures[0].height


@pytest.mark.parametrize("width, height, pix_fmt, params", [
    (320, 240, "yuv420p", ""),
    (1280, 720, "yuv420p", ""),
    (642, 362, "yuv420p", ""),  # not a multiple of the coding block: a conformance window crops it
    (98, 62, "yuv420p", ""),
    (330, 250, "yuv422p", ""),
    (330, 250, "yuv444p", ""),
    (320, 240, "yuv420p", "temporal-layers=1"),  # sub-layers: their profile and level are read past
])
def test_sizes_of_real_sps_match_ffmpeg(width: int, height: int, pix_fmt: str, params: str) -> None:
    frame = encode(width, height, pix_fmt=pix_fmt, params=params)[0]
    assert h265.starts_decoding(frame)
    units = h265.parameter_set_units(frame)
    assert len(units) == 1
    sps = h265.parse_sps(units[0])
    assert (sps.width, sps.height) == (width, height) == decoded_size(frame)
    assert sps.coded_width >= width and sps.coded_height >= height and sps.coded_width % 8 == 0


def test_the_frame_cache_knows_the_size_and_keyframes_before_decoding() -> None:
    frames = encode(642, 362, count=3)
    cache = GopCache("H265", max_frames=100, max_bytes=1 << 24, clock=lambda: 0.0)
    first = cache.add(frames[0], 0)
    assert first.keyframe and cache.size == (642, 362)
    assert not cache.add(frames[1], 3000).keyframe
    assert cache.picture_size is not None and cache.picture_size.coded_width > 642  # whole coding blocks
    assert oversize(cache.picture_size, 640, 360) is not None  # more pixels than the cap: refused undecoded
    assert oversize(cache.picture_size, 1280, 720) is None


def test_parameter_sets_from_the_sdp_go_before_keyframes_without_their_own() -> None:
    frame = encode(320, 240)[0]
    units = nal_units(frame)
    sets = b"".join(START + unit for unit in units if h265.nal_type(unit) in (32, 33, 34))
    bare = b"".join(START + unit for unit in units if h265.nal_type(unit) not in (32, 33, 34))
    assert not h265.starts_decoding(bare)
    assert parameter_sets("H265", sets) == sets
    assert parameter_sets("H265", b"\x01" + sets) == b""  # an hvcC record is not taken for Annex-B
    whole = keyframe_with_parameter_sets("H265", bare, sets)
    assert h265.starts_decoding(whole) and decoded_size(whole) == (320, 240)
    assert keyframe_with_parameter_sets("H265", frame, sets) == frame  # it has its own


def sps_unit(width: int, height: int, crop: tuple[int, int, int, int] | None = None, chroma: int = 1) -> bytes:
    """An SPS NAL unit written field by field (one sub-layer, Main profile)."""
    bits = "0000" + "000" + "1"  # vps id, max_sub_layers_minus1, temporal_id_nesting
    bits += "00" + "0" + "00001" + "0" * 32 + "1000" + "0" * 44 + format(93, "08b")  # profile_tier_level
    bits += ue(0) + ue(chroma) + ("0" if chroma == 3 else "") + ue(width) + ue(height)
    bits += ("1" + "".join(ue(value) for value in crop)) if crop else "0"
    bits += "1" + "0" * (-(len(bits) + 1) % 8)
    payload = int(bits, 2).to_bytes(len(bits) // 8, "big")
    return bytes([33 << 1, 1]) + payload.replace(b"\x00\x00", b"\x00\x00\x03")


def ue(value: int) -> str:
    code = format(value + 1, "b")
    return "0" * (len(code) - 1) + code


def test_hand_written_sps_sizes_and_what_a_crop_cannot_hide() -> None:
    sps = h265.parse_sps(sps_unit(16384, 16384, crop=(0, 8000, 0, 8000)))
    assert (sps.width, sps.height, sps.coded_width, sps.coded_height) == (384, 384, 16384, 16384)
    assert (h265.parse_sps(sps_unit(64, 64, crop=(1, 1, 1, 1), chroma=3)).width) == 62  # 4:4:4 crops in pixels
    with pytest.raises(h265.H265Error):
        h265.parse_sps(sps_unit(64, 64, crop=(16, 16, 0, 0)))  # cropped away
    with pytest.raises(h265.H265Error):
        h265.parse_sps(sps_unit(0, 64))
    with pytest.raises(h265.H265Error):
        h265.parse_sps(bytes([34 << 1, 1, 0xFF]))  # a PPS
    access_unit = b"".join(START + sps_unit(64, 64) for _ in range(h265.MAX_SPS_PER_ACCESS_UNIT + 1))
    with pytest.raises(h265.H265Error):
        h265.parameter_set_units(access_unit)


@FUZZ
@given(st.binary(min_size=0, max_size=300))
def test_hostile_sps_bytes_end_in_h265_error(payload: bytes) -> None:
    try:
        sps = h265.parse_sps(bytes([33 << 1, 1]) + payload)
    except h265.H265Error:
        return
    assert sps.width > 0 and sps.height > 0 and sps.coded_width >= sps.width


def packetize(frame: bytes, size: int = 1200) -> Iterator[tuple[bytes, bool]]:
    """RTP payloads of one H.265 frame (RFC 7798: single NAL units, FUs past `size`), each with its marker."""
    units = nal_units(frame)
    for index, unit in enumerate(units):
        last_unit = index == len(units) - 1
        if len(unit) <= size:
            yield unit, last_unit
            continue
        header = bytes([(unit[0] & 0x81) | (49 << 1), unit[1]])
        kind, rest = h265.nal_type(unit), unit[2:]
        chunks = [rest[i:i + size] for i in range(0, len(rest), size)]
        for number, chunk in enumerate(chunks):
            start, end = number == 0, number == len(chunks) - 1
            yield header + bytes([(0x80 if start else 0) | (0x40 if end else 0) | kind]) + chunk, last_unit and end


def test_real_h265_frames_pass_the_frame_bounds_and_an_endless_one_does_not() -> None:
    bounds = FrameBounds(GuardLimits(65536, 8, frame_bytes=1_000_000, frame_packets=1024, frame_nals=16,
                                     packets_per_second=10_000), "H265")
    sequence = 0
    for index, frame in enumerate(encode(640, 360, count=10)):
        for payload, marker in packetize(frame):
            assert bounds.check(rtp_packet(payload, sequence=sequence, timestamp=index * 3000, marker=marker))
            sequence += 1
    bounds = FrameBounds(LIMITS, "H265")
    fu_start = bytes([49 << 1, 1, 0x80 | 1, 0x80])  # a slice that starts a picture, fragmented
    fu_middle = bytes([49 << 1, 1, 1])
    assert bounds.check(rtp_packet(fu_start + b"\x88" * 1400, sequence=0, timestamp=0, marker=True))
    with pytest.raises(GuardRefusal) as refused:
        for sequence in range(1, 10_000):  # never a start bit again: one frame that never ends
            bounds.check(rtp_packet(fu_middle + b"\x88" * 1400, sequence=sequence, timestamp=0, marker=True))
    assert "gop.max_bytes" in refused.value.words
    # Aggregation packets of many slices of one picture count their NAL units.
    slice_continued = bytes([1 << 1, 1, 0x00])  # first_slice_segment_in_pic_flag 0: the same picture
    aggregate = bytes([48 << 1, 1]) + b"".join(len(unit).to_bytes(2, "big") + unit for unit in [slice_continued] * 300)
    bounds = FrameBounds(LIMITS, "H265")
    with pytest.raises(GuardRefusal) as refused:
        for sequence in range(5):
            bounds.check(rtp_packet(aggregate, sequence=sequence, timestamp=0, marker=True))
    assert "rtsp.max_frame_nals" in refused.value.words
    assert not FrameBounds(LIMITS, "H265").check(rtp_packet(bytes([50 << 1, 1, 0, 0]), sequence=1, timestamp=0,
                                                            marker=True))  # PACI: dropped, as FFmpeg does
