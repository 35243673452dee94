"""The H.264 SPS parser: picture sizes of real encoders' SPSs, each checked against FFmpeg's decoder;
SPSs rewritten with the fields encoders seldom write (scaling lists, POC cycles, escapes, crops), decoded
by FFmpeg the same way; then hostile bytes, which end in `H264Error` after bounded work and nothing else."""

from __future__ import annotations

import fractions
import time
from typing import Any

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamsnap.media.h264 import (
    MAX_SPS_PER_ACCESS_UNIT,
    H264Error,
    SequenceParameterSet,
    largest_sps,
    parameter_set_units,
    parse_sps,
    sps_readings,
    unescape,
)

pytestmark = pytest.mark.unit

FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

START = b"\x00\x00\x00\x01"


def keyframe(width: int, height: int, pix_fmt: str = "yuv420p", **options: str) -> bytes:
    """One frame of libx264's Annex-B output (SPS, PPS, IDR), as RTSP cameras and RTMP encoders send them."""
    if "libx264" not in av.codecs_available:
        pytest.skip("PyAV built without libx264")
    context: Any = av.CodecContext.create("libx264", "w")
    context.width, context.height, context.pix_fmt = width, height, pix_fmt
    context.time_base = fractions.Fraction(1, 30)
    context.options = options
    rng = np.random.default_rng(width * height)
    frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), format="rgb24")
    frame = frame.reformat(format=pix_fmt)
    frame.pts = 0
    packets = [bytes(p) for p in context.encode(frame)] + [bytes(p) for p in context.encode(None)]
    return packets[0]


def decoded_size(access_unit: bytes) -> tuple[int, int]:
    """The size FFmpeg's decoder (the one the snapshot engine runs) makes the picture at."""
    context: Any = av.CodecContext.create("h264", "r")
    frames = list(context.decode(av.Packet(access_unit))) + list(context.decode(None))
    assert frames, "FFmpeg made no picture"
    return frames[0].width, frames[0].height


def sps_of(access_unit: bytes) -> bytes:
    """The SPS NAL unit of an access unit (without the zero byte of a four-byte start code after it)."""
    return parameter_set_units(access_unit)[0].rstrip(b"\x00")


def size(sps: SequenceParameterSet) -> tuple[int, int]:
    return sps.width, sps.height


def up(value: int, step: int) -> int:
    return -(-value // step) * step


# --- Real encoders ---------------------------------------------------------------------------


@pytest.mark.parametrize("width, height, pix_fmt, options, profile", [
    (320, 240, "yuv420p", {"preset": "ultrafast", "tune": "zerolatency"}, 66),  # what aiortc and RTMP pushes send
    (176, 144, "yuv420p", {"profile": "baseline"}, 66),
    (1920, 1080, "yuv420p", {}, 100),  # High: 1088 coded lines cropped to 1080
    (1918, 1078, "yuv420p", {"preset": "ultrafast"}, 66),  # cropped on the right as well
    (640, 480, "yuv420p", {"profile": "high", "tune": "zerolatency"}, 100),
    (640, 360, "yuv422p", {"preset": "ultrafast"}, 122),  # High 4:2:2: crop units of one line
    (642, 482, "yuv444p", {"preset": "ultrafast"}, 244),  # High 4:4:4: crop units of one pixel
    (1280, 720, "yuv420p", {"x264-params": "interlaced=1"}, 100),  # fields: height in macroblock pairs
    (34, 18, "yuv420p", {"preset": "ultrafast"}, 66),
])
def test_the_size_of_real_encoders_sps_is_the_decoded_size(
        width: int, height: int, pix_fmt: str, options: dict[str, str], profile: int) -> None:
    access_unit = keyframe(width, height, pix_fmt, **options)
    sps = parse_sps(sps_of(access_unit))
    assert size(sps) == (width, height) == decoded_size(access_unit)
    assert sps.profile_idc == profile
    assert sps.coded_width == up(width, 16)
    assert sps.coded_height == up(height, 16 if sps.frame_mbs_only else 32)
    assert sps.frame_mbs_only == ("interlaced" not in options.get("x264-params", ""))
    assert largest_sps(access_unit) == sps
    assert sps_readings(sps_of(access_unit)) == [sps]


def test_an_access_unit_without_sps_declares_nothing() -> None:
    access_unit = keyframe(320, 240, preset="ultrafast")
    slices = b"".join(START + unit for unit in access_unit.split(START) if unit and unit[0] & 0x1F != 7)
    assert largest_sps(slices) is None
    assert largest_sps(b"") is None


def test_the_largest_of_several_sps_is_taken() -> None:
    small, large = sps_of(keyframe(176, 144, preset="ultrafast")), sps_of(keyframe(640, 480, preset="ultrafast"))
    both = START + small + START + large + START + small
    declared = largest_sps(both)
    assert declared is not None and size(declared) == (640, 480)


# --- SPSs rewritten with what encoders seldom write, decoded by FFmpeg --------------------------


class BitWriter:
    def __init__(self) -> None:
        self.bits: list[str] = []

    def u(self, count: int, value: int) -> BitWriter:
        self.bits.append(format(value, f"0{count}b") if count else "")
        return self

    def ue(self, value: int) -> BitWriter:
        code = value + 1
        self.bits.append("0" * (code.bit_length() - 1) + format(code, "b"))
        return self

    def se(self, value: int) -> BitWriter:
        return self.ue(2 * value - 1 if value > 0 else -2 * value)

    def text(self) -> str:
        return "".join(self.bits)


class BitReader:
    def __init__(self, data: bytes) -> None:
        self.bits = format(int.from_bytes(data, "big"), f"0{len(data) * 8}b")
        self.pos = 0

    def u(self, count: int) -> int:
        value = int(self.bits[self.pos:self.pos + count], 2)
        self.pos += count
        return value

    def ue(self) -> int:
        zeros = self.bits.index("1", self.pos) - self.pos
        self.pos += zeros
        return self.u(zeros + 1) - 1


def rbsp_bytes(bits: str) -> bytes:
    """Bits ending with the RBSP stop bit, padded to whole bytes."""
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big")


def escape(rbsp: bytes) -> bytes:
    """Emulation-prevention bytes added as an encoder adds them (7.4.1)."""
    out = bytearray()
    zeros = 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def rewrite(unit: bytes, *, scaling_lists: list[list[int] | None] | None = None,
            poc_cycle: tuple[int, int, list[int]] | None = None,
            crop: tuple[int, int, int, int] | None = None) -> bytes:
    """x264's High profile 4:2:0 SPS (POC type 2, no scaling lists) written anew with other fields, the rest
    (what the slices depend on, and the VUI) kept as it was.

    `scaling_lists`: the deltas of each of the eight lists (None: not present); `poc_cycle`: POC type 1
    (delta_pic_order_always_zero, so the slices stay as they are) with its two offsets and the cycle;
    `crop`: left, right, top, bottom in crop units."""
    reader = BitReader(unit[1:].replace(b"\x00\x00\x03", b"\x00\x00"))
    profile, constraints, level = reader.u(8), reader.u(8), reader.u(8)
    sps_id, chroma, depth_luma, depth_chroma, bypass, matrix = (reader.ue(), reader.ue(), reader.ue(), reader.ue(),
                                                                reader.u(1), reader.u(1))
    assert (profile, chroma, matrix) == (100, 1, 0), "x264's High profile 4:2:0 without scaling lists"
    log2_max_frame_num, poc_type = reader.ue(), reader.ue()
    assert poc_type == 2, "x264 without B-frames"
    refs, gaps, width_mbs, height_units, frame_mbs_only, direct = (reader.ue(), reader.u(1), reader.ue(), reader.ue(),
                                                                   reader.u(1), reader.u(1))
    assert frame_mbs_only
    old_crop = (reader.ue(), reader.ue(), reader.ue(), reader.ue()) if reader.u(1) else None
    tail = reader.bits[reader.pos:].rstrip("0")  # the VUI, through the stop bit
    writer = BitWriter().u(8, profile).u(8, constraints).u(8, level).ue(sps_id)
    writer.ue(chroma).ue(depth_luma).ue(depth_chroma).u(1, bypass)
    writer.u(1, scaling_lists is not None)
    for deltas in scaling_lists or []:
        writer.u(1, deltas is not None)
        for delta in deltas or []:
            writer.se(delta)
    writer.ue(log2_max_frame_num)
    if poc_cycle is None:
        writer.ue(2)
    else:
        non_ref, top_to_bottom, cycle = poc_cycle
        writer.ue(1).u(1, 1).se(non_ref).se(top_to_bottom).ue(len(cycle))
        for offset in cycle:
            writer.se(offset)
    writer.ue(refs).u(1, gaps).ue(width_mbs).ue(height_units).u(1, frame_mbs_only).u(1, direct)
    crop = crop if crop is not None else old_crop
    writer.u(1, crop is not None)
    for value in crop or ():
        writer.ue(value)
    return unit[:1] + escape(rbsp_bytes(writer.text() + tail))


def with_sps(access_unit: bytes, sps: bytes) -> bytes:
    return access_unit.replace(sps_of(access_unit), sps, 1)


@pytest.fixture(scope="module")
def high_1080p() -> bytes:
    return keyframe(1920, 1080, profile="high", tune="zerolatency")


def test_rewriting_alone_changes_nothing(high_1080p: bytes) -> None:
    same = rewrite(sps_of(high_1080p))
    assert same == sps_of(high_1080p)


def scaling(present: int) -> list[list[int] | None]:
    """Eight scaling lists: explicit ones, one that asks for the default list (first delta makes 0), one that
    stops early (a delta makes the next scale 0: the last one repeats), absent ones."""
    explicit_4x4 = [3 if index % 2 else -2 for index in range(16)]
    explicit_8x8 = [(index % 5) - 2 for index in range(64)]
    lists: list[list[int] | None] = [explicit_4x4, [-8], [4, 4, -16], None, explicit_4x4, None,
                                     explicit_8x8, [1, 1, 1, -11]]
    return [deltas if index < present else None for index, deltas in enumerate(lists)]


@pytest.mark.parametrize("present", [1, 3, 8])
def test_scaling_lists_are_read_past(high_1080p: bytes, present: int) -> None:
    sps = rewrite(sps_of(high_1080p), scaling_lists=scaling(present))
    access_unit = with_sps(high_1080p, sps)
    assert size(parse_sps(sps)) == (1920, 1080) == decoded_size(access_unit)


def test_a_poc_cycle_is_read_past(high_1080p: bytes) -> None:
    sps = rewrite(sps_of(high_1080p), poc_cycle=(-3, 7, [1, -1000, 65535, 0, -2**31 + 1, 2**31 - 1]))
    access_unit = with_sps(high_1080p, sps)
    assert size(parse_sps(sps)) == (1920, 1080) == decoded_size(access_unit)


def test_emulation_prevention_bytes_are_removed_before_reading(high_1080p: bytes) -> None:
    # 2**30 as se(v): thirty-one leading zero bits, so three zero bytes that the encoder must escape.
    sps = rewrite(sps_of(high_1080p), poc_cycle=(2**30, 0, [2**30, -2**30]))
    assert b"\x00\x00\x03" in sps[:12]  # before the size fields
    access_unit = with_sps(high_1080p, sps)
    assert size(parse_sps(sps)) == (1920, 1080) == decoded_size(access_unit)


@pytest.mark.parametrize("crop, expected", [
    ((0, 0, 0, 0), (1920, 1088)),
    ((0, 4, 0, 4), (1912, 1080)),
    ((32, 4, 2, 6), (1848, 1072)),  # the left crop a multiple of 64 pixels: FFmpeg crops it exactly
    ((0, 955, 0, 539), (10, 10)),
])
def test_the_frame_cropping_is_applied_in_chroma_units(
        high_1080p: bytes, crop: tuple[int, int, int, int], expected: tuple[int, int]) -> None:
    sps = rewrite(sps_of(high_1080p), crop=crop)
    declared = parse_sps(sps)
    assert size(declared) == expected == decoded_size(with_sps(high_1080p, sps))
    assert (declared.coded_width, declared.coded_height) == (1920, 1088)


def test_a_crop_of_the_whole_picture_is_refused(high_1080p: bytes) -> None:
    with pytest.raises(H264Error, match="crops"):
        parse_sps(rewrite(sps_of(high_1080p), crop=(480, 480, 0, 0)))


def test_both_of_ffmpegs_readings_count_when_an_escape_sits_before_the_size() -> None:
    # The RBSP says 2496x64; read with its emulation-prevention byte in place (FFmpeg's second try when
    # the first fails further on) it says 16x497056: the larger count of pixels is what a check must take.
    unit = bytes.fromhex("6742001ed4000003000858d8da4001e56a009c2640")
    standard, escaped = sps_readings(unit)
    assert size(standard) == (2496, 64) == size(parse_sps(unit))
    assert (escaped.coded_width, escaped.coded_height) == (16, 497056)
    declared = largest_sps(START + unit)
    assert declared == escaped


# --- Hostile bytes ---------------------------------------------------------------------------


def test_every_prefix_of_a_real_sps_is_refused_or_reads_the_same(high_1080p: bytes) -> None:
    unit = sps_of(high_1080p)
    for end in range(len(unit) + 1):
        try:
            assert size(parse_sps(unit[:end])) == (1920, 1080)
        except H264Error:
            pass


def test_too_long_exp_golomb_codes_are_refused() -> None:
    # pic_width_in_mbs_minus1 with 40 leading zeros: FFmpeg cannot read it either.
    writer = BitWriter().u(8, 66).u(8, 0).u(8, 30).ue(0).ue(0).ue(2).ue(1).u(1, 0)
    unit = b"\x67" + escape(rbsp_bytes(writer.text() + "0" * 40 + "1" + "0" * 40 + "1"))
    with pytest.raises(H264Error, match="too long"):
        parse_sps(unit)


def test_out_of_range_values_are_refused() -> None:
    for writer in (BitWriter().u(8, 66).u(8, 0).u(8, 30).ue(32),  # sps_id
                   BitWriter().u(8, 100).u(8, 0).u(8, 30).ue(0).ue(4),  # chroma_format_idc
                   BitWriter().u(8, 66).u(8, 0).u(8, 30).ue(0).ue(0).ue(3),  # pic_order_cnt_type
                   BitWriter().u(8, 66).u(8, 0).u(8, 30).ue(0).ue(0).ue(1).u(1, 0).se(0).se(0).ue(256),
                   BitWriter().u(8, 66).u(8, 0).u(8, 30).ue(0).ue(0).ue(2).ue(17)):  # max_num_ref_frames
        with pytest.raises(H264Error, match="out of range"):
            parse_sps(b"\x67" + escape(rbsp_bytes(writer.text() + "1" * 64)))


def test_more_sps_than_an_access_unit_may_carry_are_refused_unread() -> None:
    sps = sps_of(keyframe(176, 144, preset="ultrafast"))
    assert len(parameter_set_units((START + sps) * MAX_SPS_PER_ACCESS_UNIT)) == MAX_SPS_PER_ACCESS_UNIT
    with pytest.raises(H264Error, match="more than"):
        largest_sps((START + sps) * (MAX_SPS_PER_ACCESS_UNIT + 1))


def worst_sps() -> bytes:
    """The most values an SPS can make a reader read: twelve full scaling lists and a 255-frame POC cycle."""
    writer = BitWriter().u(8, 244).u(8, 0).u(8, 40).ue(0).ue(3).u(1, 0).ue(0).ue(0).u(1, 0).u(1, 1)
    for index in range(12):
        writer.u(1, 1)
        for _ in range(16 if index < 6 else 64):
            writer.se(0)
    writer.ue(0).ue(1).u(1, 0).se(0).se(0).ue(255)
    for _ in range(255):
        writer.se(0)
    writer.ue(1).u(1, 0).ue(119).ue(67).u(1, 1).u(1, 1).u(1, 0).u(1, 0)
    return b"\x67" + escape(rbsp_bytes(writer.text() + "1"))


def test_the_work_of_one_sps_is_bounded() -> None:
    unit = worst_sps()
    assert size(parse_sps(unit)) == (1920, 1088)
    started = time.perf_counter()
    for _ in range(10):
        largest_sps((START + unit) * MAX_SPS_PER_ACCESS_UNIT)
    per_access_unit = (time.perf_counter() - started) / 10
    assert per_access_unit < 0.05, f"{per_access_unit * 1000:.1f} ms for one access unit of the worst SPSs"


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_as_an_sps_end_in_h264_error(data: bytes) -> None:
    for header in (b"\x67", b"\x27", b"\x6f"):
        try:
            sps = parse_sps(header + data)
        except H264Error:
            continue
        assert 0 < sps.width <= sps.coded_width and 0 < sps.height <= sps.coded_height


@FUZZ
@given(st.lists(st.sampled_from([START, b"\x00\x00\x01", b"\x67", b"\x27", b"\x65", b"\x00\x00\x03", b"\x00"])
                | st.binary(max_size=40), max_size=30).map(b"".join))
def test_random_access_units_end_in_h264_error(data: bytes) -> None:
    try:
        declared = largest_sps(data)
    except H264Error:
        return
    assert declared is None or declared.coded_pixels > 0
    unescape(data)


@st.composite
def valid_sps(draw: st.DrawFn) -> tuple[bytes, tuple[int, int], tuple[int, int]]:
    """An SPS from random fields within the standard's ranges, with the size they declare."""
    profile = draw(st.sampled_from([66, 77, 88, 100, 110, 122, 244, 44]))
    writer = BitWriter().u(8, profile).u(8, draw(st.integers(0, 255))).u(8, draw(st.integers(0, 255)))
    writer.ue(draw(st.integers(0, 31)))
    chroma = 1
    if profile in (100, 110, 122, 244, 44):
        chroma = draw(st.integers(0, 3))
        writer.ue(chroma)
        if chroma == 3:
            writer.u(1, 0)
        writer.ue(draw(st.integers(0, 6))).ue(draw(st.integers(0, 6))).u(1, draw(st.integers(0, 1)))
        lists = draw(st.none() | st.lists(st.none() | st.lists(st.integers(-128, 127), min_size=1, max_size=64),
                                          min_size=8 if chroma != 3 else 12, max_size=8 if chroma != 3 else 12))
        writer.u(1, lists is not None)
        for index, deltas in enumerate(lists or []):
            writer.u(1, deltas is not None)
            last, scale = 8, 8
            for delta in (deltas or [])[:16 if index < 6 else 64]:
                writer.se(delta)
                scale = (last + delta) % 256
                if scale == 0:
                    break
                last = scale
            if deltas is not None and scale != 0:
                for _ in range((16 if index < 6 else 64) - len(deltas[:16 if index < 6 else 64])):
                    writer.se(0)
    writer.ue(draw(st.integers(0, 12)))
    poc_type = draw(st.integers(0, 2))
    writer.ue(poc_type)
    if poc_type == 0:
        writer.ue(draw(st.integers(0, 12)))
    elif poc_type == 1:
        writer.u(1, draw(st.integers(0, 1))).se(draw(st.integers(-2**31 + 1, 2**31 - 1)))
        writer.se(draw(st.integers(-2**31 + 1, 2**31 - 1)))
        cycle = draw(st.lists(st.integers(-2**31 + 1, 2**31 - 1), max_size=255))
        writer.ue(len(cycle))
        for offset in cycle:
            writer.se(offset)
    writer.ue(draw(st.integers(0, 16))).u(1, draw(st.integers(0, 1)))
    width_mbs, height_units = draw(st.integers(1, 600)), draw(st.integers(1, 600))
    frame_mbs_only = draw(st.booleans())
    writer.ue(width_mbs - 1).ue(height_units - 1).u(1, frame_mbs_only)
    if not frame_mbs_only:
        writer.u(1, draw(st.integers(0, 1)))
    writer.u(1, draw(st.integers(0, 1)))
    coded = (width_mbs * 16, height_units * 16 * (1 if frame_mbs_only else 2))
    unit_x = 2 if chroma in (1, 2) else 1
    unit_y = (2 if chroma == 1 else 1) * (1 if frame_mbs_only else 2)
    left = draw(st.integers(0, (coded[0] - 1) // unit_x))
    right = draw(st.integers(0, (coded[0] - 1) // unit_x - left))
    top = draw(st.integers(0, (coded[1] - 1) // unit_y))
    bottom = draw(st.integers(0, (coded[1] - 1) // unit_y - top))
    writer.u(1, 1).ue(left).ue(right).ue(top).ue(bottom).u(1, 0)
    shown = (coded[0] - unit_x * (left + right), coded[1] - unit_y * (top + bottom))
    return b"\x67" + escape(rbsp_bytes(writer.text() + "1")), coded, shown


@FUZZ
@given(valid_sps())
def test_any_valid_sps_reads_as_written(case: tuple[bytes, tuple[int, int], tuple[int, int]]) -> None:
    unit, coded, shown = case
    sps = parse_sps(unit)
    assert ((sps.coded_width, sps.coded_height), size(sps)) == (coded, shown)
    assert sps_readings(unit)[0] == sps
