"""H.264 bitstream code: NAL types, the avcC record, AVCC to Annex-B, parameter sets; then hostile bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamsnap.media.h264 import (
    AvcConfig,
    H264Error,
    NalType,
    annex_b,
    annexb_parameter_sets,
    avcc_to_annex_b,
    nal_type,
    nal_types,
    parse_avc_config,
    starts_decoding,
    with_parameter_sets,
)

pytestmark = pytest.mark.unit

SPS_A = b"\x67\x42\xc0\x1e\xda\x02\x80\xbf\xe5\x84\x00\x00\x03\x00\x04"
SPS_B = b"\x67\x64\x00\x28\xac\xd9\x40\x78"
PPS_A = b"\x68\xce\x3c\x80"
PPS_B = b"\x68\xeb\xe3\xcb\x22\xc0"
PPS_C = b"\x68\xee\x06\xe2\xc0"
IDR = b"\x65\x88\x80\x40"
SLICE = b"\x41\x9a\x02"


def record(sps: list[bytes], pps: list[bytes], length_size: int = 4, tail: bytes = b"") -> bytes:
    """An avcC record as an encoder writes it (reserved bits set)."""
    out = bytes([1, 0x42, 0xC0, 0x1E, 0xFC | (length_size - 1), 0xE0 | len(sps)])
    out += b"".join(len(unit).to_bytes(2, "big") + unit for unit in sps)
    out += bytes([len(pps)]) + b"".join(len(unit).to_bytes(2, "big") + unit for unit in pps)
    return out + tail


def avcc(*units: bytes, length_size: int = 4) -> bytes:
    return b"".join(len(unit).to_bytes(length_size, "big") + unit for unit in units)


def test_nal_types_are_the_standards_numbers() -> None:
    assert (NalType.NON_IDR_SLICE, NalType.IDR, NalType.SPS, NalType.PPS) == (1, 5, 7, 8)
    assert [nal_type(unit) for unit in (SPS_A, PPS_A, IDR, SLICE)] == [7, 8, 5, 1]
    assert nal_type(b"\xe5") == 5  # forbidden bit and nal_ref_idc are not part of the type


def test_a_record_with_several_sps_and_pps() -> None:
    config = parse_avc_config(record([SPS_A, SPS_B], [PPS_A, PPS_B, PPS_C]))
    assert config == AvcConfig(4, (SPS_A, SPS_B), (PPS_A, PPS_B, PPS_C))
    start = b"\x00\x00\x00\x01"
    assert config.annex_b() == start + SPS_A + start + SPS_B + start + PPS_A + start + PPS_B + start + PPS_C


@pytest.mark.parametrize("length_size", [1, 2, 4])
def test_the_nal_length_size_is_read(length_size: int) -> None:
    assert parse_avc_config(record([SPS_A], [PPS_A], length_size)).length_size == length_size


def test_what_follows_the_pps_is_left_alone() -> None:
    # High profile records end with chroma format and bit depth fields.
    config = parse_avc_config(record([SPS_B], [PPS_A], tail=b"\xfd\xf8\xf8\x00"))
    assert (config.sps, config.pps) == ((SPS_B,), (PPS_A,))


def test_a_record_without_pps_is_taken() -> None:
    assert parse_avc_config(record([SPS_A], [])).pps == ()


def test_every_truncation_of_a_record_is_refused_in_our_words() -> None:
    whole = record([SPS_A, SPS_B], [PPS_A, PPS_B])
    for size in range(len(whole)):
        with pytest.raises(H264Error, match=r"(?i)record"):
            parse_avc_config(whole[:size])


@pytest.mark.parametrize("data, words", [
    (b"", "not an AVCDecoderConfigurationRecord"),
    (b"\x00\x00\x00\x01" + SPS_A, "not an AVCDecoderConfigurationRecord"),  # Annex-B, not avcC
    (b"\x02" + record([SPS_A], [PPS_A])[1:], "not an AVCDecoderConfigurationRecord"),
    (record([SPS_A], [PPS_A], length_size=3), "length size 3"),
    (record([], [PPS_A]), "no SPS"),
    (record([b""], [PPS_A]), "parameter set runs past the record"),
    (record([SPS_A], [PPS_A])[:-1], "parameter set runs past the record"),
])
def test_bad_records_are_refused_in_our_words(data: bytes, words: str) -> None:
    with pytest.raises(H264Error, match=words):
        parse_avc_config(data)


def test_avcc_to_annex_b_of_several_nal_units() -> None:
    units = avcc_to_annex_b(avcc(SPS_A, PPS_A, IDR, SLICE), 4)
    assert units == [SPS_A, PPS_A, IDR, SLICE]
    assert annex_b(units) == b"".join(b"\x00\x00\x00\x01" + unit for unit in (SPS_A, PPS_A, IDR, SLICE))
    assert avcc_to_annex_b(avcc(IDR, SLICE, length_size=2), 2) == [IDR, SLICE]
    assert avcc_to_annex_b(avcc(IDR, SLICE, length_size=1), 1) == [IDR, SLICE]
    assert avcc_to_annex_b(b"", 4) == []


@pytest.mark.parametrize("data, words", [
    (avcc(IDR) + (100).to_bytes(4, "big") + SLICE, "NAL unit runs past the frame"),  # a length past the end
    (avcc(IDR) + b"\x00\x00", "NAL length runs past the frame"),  # a length cut short
    (avcc(IDR) + bytes(4), "NAL unit runs past the frame"),  # a unit of no bytes
])
def test_a_length_prefix_past_the_end_is_refused(data: bytes, words: str) -> None:
    with pytest.raises(H264Error, match=words):
        avcc_to_annex_b(data, 4)


def test_nal_types_and_where_a_decoder_starts() -> None:
    keyframe = annex_b([SPS_A, PPS_A, IDR])
    assert nal_types(keyframe) == {7, 8, 5}
    assert nal_types(b"\x00\x00\x01" + SLICE + b"\x00\x00\x00\x01" + SLICE) == {1}
    assert starts_decoding(keyframe)
    assert not starts_decoding(annex_b([PPS_A, IDR]))
    assert not starts_decoding(annex_b([SPS_A, PPS_A]))


def test_parameter_sets_go_before_a_keyframe_that_lacks_them() -> None:
    parameter_sets = annex_b([SPS_A, PPS_A])
    bare = annex_b([IDR])
    assert with_parameter_sets(bare, parameter_sets) == parameter_sets + bare
    own = annex_b([SPS_B, PPS_B, IDR])
    assert with_parameter_sets(own, parameter_sets) == own  # its own SPS wins
    assert with_parameter_sets(bare, b"") == bare


def test_extradata_in_either_form_gives_annex_b_parameter_sets() -> None:
    start = b"\x00\x00\x00\x01"
    assert annexb_parameter_sets(record([SPS_A, SPS_B], [PPS_A])) == start + SPS_A + start + SPS_B + start + PPS_A
    annexb = start + SPS_A + start + PPS_A
    assert annexb_parameter_sets(annexb) == annexb
    assert annexb_parameter_sets(None) == b"" and annexb_parameter_sets(b"") == b""
    # A malformed record gives nothing rather than a cut SPS a decoder would choke on.
    assert annexb_parameter_sets(record([SPS_A], [PPS_A])[:12]) == b""


@given(st.binary(max_size=200))
def test_hostile_records_raise_h264_error_only(data: bytes) -> None:
    try:
        config = parse_avc_config(data)
    except H264Error:
        return
    assert config.length_size in (1, 2, 4) and config.sps


@given(st.binary(max_size=200), st.sampled_from([1, 2, 4]))
def test_hostile_frames_raise_h264_error_only(data: bytes, length_size: int) -> None:
    try:
        units = avcc_to_annex_b(data, length_size)
    except H264Error:
        return
    assert sum(length_size + len(unit) for unit in units) == len(data)
