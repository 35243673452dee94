"""H.264 from an encoder that wants the server's time: AVCC frames of too many units, or of units that
hold start codes, are refused at a bounded cost (issue 22, item 4); honest frames convert as before."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamsnap.config import GopSettings
from streamsnap.media.h264 import (
    H264Error,
    TooManyNalUnits,
    annex_b,
    avcc_access_unit,
    avcc_to_annex_b,
    has_start_code,
    nal_types,
    with_parameter_sets,
)
from streamsnap.media.rtmp import RtmpSource
from streamsnap.reasons import StreamEnd

pytestmark = pytest.mark.unit

SPS = b"\x67\x42\xc0\x1e\xda\x02\x80\xbf\xe5\x84\x00\x00\x03\x00\x04"
PPS = b"\x68\xce\x3c\x80"
IDR = b"\x65\x88\x80\x40"
SLICE = b"\x41\x9a\x02"
SEI = b"\x06\x05\x01\x80"
PARAMETER_SETS = annex_b([SPS, PPS])


def avcc(*units: bytes, length_size: int = 4) -> bytes:
    return b"".join(len(unit).to_bytes(length_size, "big") + unit for unit in units)


@pytest.mark.parametrize("units", [[IDR], [SEI, IDR], [SPS, PPS, IDR], [SLICE], [SLICE] * 8])
@pytest.mark.parametrize("length_size", [1, 2, 4])
def test_the_same_access_units_as_before(units: list[bytes], length_size: int) -> None:
    data = avcc(*units, length_size=length_size)
    before = annex_b(avcc_to_annex_b(data, length_size))
    if any(unit[0] & 0x1F == 5 for unit in units):
        before = with_parameter_sets(before, PARAMETER_SETS)
    assert avcc_access_unit(data, length_size, 1024, PARAMETER_SETS) == before
    assert avcc_access_unit(data, length_size, 1024) == annex_b(units)


def test_parameter_sets_go_only_before_a_keyframe_without_its_own() -> None:
    assert avcc_access_unit(avcc(IDR), 4, 16, PARAMETER_SETS) == PARAMETER_SETS + annex_b([IDR])
    own = [b"\x67\x64\x00\x28\xac\xd9\x40\x78", PPS, IDR]
    assert avcc_access_unit(avcc(*own), 4, 16, PARAMETER_SETS) == annex_b(own)
    assert avcc_access_unit(avcc(SLICE), 4, 16, PARAMETER_SETS) == annex_b([SLICE])


def test_more_units_than_the_cap_are_refused_after_reading_one_more_length() -> None:
    assert avcc_access_unit(avcc(*[SLICE] * 16), 4, 16) == annex_b([SLICE] * 16)
    with pytest.raises(TooManyNalUnits, match="more than 16 NAL units in a frame"):
        avcc_access_unit(avcc(*[SLICE] * 17), 4, 16)
    # The 4 MiB tag of 1-byte units (838 848 of them): 1.3-4 s of the event loop converted
    # one by one, refused now after 1025 lengths.
    bomb = b"\x00\x00\x00\x01\x41" * ((4 << 20) // 5)
    started = time.perf_counter()
    with pytest.raises(TooManyNalUnits):
        avcc_access_unit(bomb, 4, 1024)
    assert time.perf_counter() - started < 0.05


@pytest.mark.parametrize("unit", [
    b"\x41" + b"\x00\x00\x01" * 3,  # what would be three more units to an Annex-B reader
    b"\x41\x9a\x00\x00\x01\x65",
])
def test_a_unit_holding_a_start_code_is_refused(unit: bytes) -> None:
    assert has_start_code(unit)
    with pytest.raises(H264Error, match="start code inside a NAL unit"):
        avcc_access_unit(avcc(IDR, unit), 4, 1024)
    # Emulation prevention (00 00 03) is what encoders write instead: taken as it is.
    assert avcc_access_unit(avcc(b"\x41\x00\x00\x03\x01"), 4, 1024) == annex_b([b"\x41\x00\x00\x03\x01"])


def test_a_million_start_codes_in_one_unit_cost_one_search() -> None:
    # One unit, 4 MiB of start codes: an Annex-B reader (the cache's keyframe test) would loop over
    # 1.4 million units; it is refused by one search instead.
    bomb = avcc(b"\x41" + b"\x00\x00\x01" * 1_400_000)
    started = time.perf_counter()
    with pytest.raises(H264Error, match="start code inside"):
        avcc_access_unit(bomb, 4, 1024)
    assert time.perf_counter() - started < 0.05


@given(st.binary(max_size=300), st.sampled_from([1, 2, 4]), st.integers(min_value=1, max_value=8))
def test_hostile_frames_give_a_bounded_access_unit_or_h264_error(data: bytes, length_size: int,
                                                                 max_units: int) -> None:
    try:
        access_unit = avcc_access_unit(data, length_size, max_units)
    except H264Error:
        return
    units = avcc_to_annex_b(data, length_size)
    assert access_unit == annex_b(units) and len(units) <= max_units
    assert len(nal_types(access_unit)) <= max_units


def avc_config() -> bytes:
    return (b"\x01\x42\xc0\x1e\xff\xe1" + len(SPS).to_bytes(2, "big") + SPS + b"\x01"
            + len(PPS).to_bytes(2, "big") + PPS)


async def test_an_rtmp_source_ends_on_a_tag_over_its_nal_unit_cap(caplog: pytest.LogCaptureFixture) -> None:
    source = RtmpSource("cam", GopSettings(), on_start=lambda: None, disconnect=lambda: None, max_nal_units=64)
    source.feed_video(0, b"\x17\x00\x00\x00\x00" + avc_config())
    source.feed_video(0, b"\x17\x01\x00\x00\x00" + avcc(SEI, *[IDR] * 63))  # 64 units: taken
    assert source.video is not None and source.video.frames_received == 1
    with caplog.at_level(logging.INFO, logger="streamsnap.media.rtmp"):
        source.feed_video(40, b"\x27\x01\x00\x00\x00" + avcc(*[SLICE] * 65))
    assert await asyncio.wait_for(source.ended, 1) is StreamEnd.ERROR
    assert "more than 64 NAL units in a frame (rtmp.max_nal_units_per_frame)" in caplog.text
    assert source.video.frames_received == 1


async def test_an_rtmp_source_refuses_parameter_sets_holding_start_codes() -> None:
    source = RtmpSource("cam", GopSettings(), on_start=lambda: None, disconnect=lambda: None)
    bad_sps = SPS + b"\x00\x00\x01" * 1000
    record = (b"\x01\x42\xc0\x1e\xff\xe1" + len(bad_sps).to_bytes(2, "big") + bad_sps + b"\x01"
              + len(PPS).to_bytes(2, "big") + PPS)
    source.feed_video(0, b"\x17\x00\x00\x00\x00" + record)
    assert await asyncio.wait_for(source.ended, 1) is StreamEnd.ERROR
