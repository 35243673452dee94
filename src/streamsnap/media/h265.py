"""H.265 (HEVC) below the container: NAL unit types, keyframes, parameter sets, and the picture size its SPS
declares, read before anything is decoded.

RTSP cameras send it (FFmpeg demuxes their RTP into Annex-B access units, the parameter sets of the SDP in
its extradata); the frame cache reads each keyframe's SPS here, as it reads H.264's in `h264.py`, so that the
size cap holds before a decoder allocates anything. The bit reader and the unescaping are H.264's: the two
standards share the RBSP syntax and the exp-Golomb codes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from streamsnap.media.h264 import BitReader, H264Error, header_bytes, prepend_unless_present, unescape, units_where


class NalType(enum.IntEnum):
    """The NAL unit types streamsnap looks at (ITU-T H.265 table 7-1)."""

    BLA_W_LP = 16
    "The first of the IRAP types (16..23): a decoder can start at such a picture."
    CRA = 21
    RESERVED_IRAP_23 = 23
    VPS = 32
    SPS = 33
    PPS = 34
    AUD = 35
    PREFIX_SEI = 39


IRAP_TYPES = range(NalType.BLA_W_LP, NalType.RESERVED_IRAP_23 + 1)
"Intra random access point pictures (BLA, IDR, CRA and the reserved IRAP types)."

MAX_SPS_BYTES = 4096
"""Bytes of one SPS NAL unit read at most. What lies before the conformance window is the profile, tier and
level of at most 8 sub-layers (under 100 bytes) and five exp-Golomb values; nothing past it is read."""

MAX_SPS_PER_ACCESS_UNIT = 4
"SPS units one access unit may carry (encoders send one; more is refused before any is read)."


class H265Error(H264Error):
    """Bytes that are not H.265 as their container says they are (an `H264Error`: the same readers catch it)."""


def nal_type(unit: bytes) -> int:
    """The type of one NAL unit (without its start code), from the first of its two header bytes."""
    return (unit[0] >> 1) & 0x3F


def nal_types(access_unit: bytes) -> set[int]:
    """NAL unit types in an Annex-B access unit."""
    return {(header >> 1) & 0x3F for header in header_bytes(access_unit)}


def starts_decoding(access_unit: bytes) -> bool:
    """Whether a decoder can start from this Annex-B access unit alone: an IRAP picture and an SPS."""
    types = nal_types(access_unit)
    return NalType.SPS in types and any(kind in IRAP_TYPES for kind in types)


def with_parameter_sets(keyframe: bytes, parameter_sets: bytes) -> bytes:
    """An Annex-B keyframe with `parameter_sets` (VPS, SPS, PPS) in front unless it carries an SPS of its own:
    cameras often send them once, in the SDP (`sprop-vps`, `sprop-sps`, `sprop-pps`)."""
    return prepend_unless_present(keyframe, parameter_sets, NalType.SPS in nal_types(keyframe))


@dataclass(frozen=True)
class SequenceParameterSet:
    """What an SPS (ITU-T H.265 7.3.2.2.1) says of the pictures that follow it, up to the conformance window."""

    sps_id: int
    profile_idc: int
    level_idc: int
    chroma_format_idc: int
    "0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4."
    coded_width: int
    "pic_width_in_luma_samples: the width a decoder allocates per picture."
    coded_height: int
    width: int
    "Width after the conformance window: the picture shown."
    height: int

    @property
    def coded_pixels(self) -> int:
        """Luma samples a decoder allocates per picture."""
        return self.coded_width * self.coded_height


PROFILE_BITS = 88
"general_profile_space .. general_inbld_flag (7.3.3): 2 + 1 + 5 + 32 + 4 + 43 + 1 bits."


def _skip_profile_tier_level(bits: BitReader, max_sub_layers_minus1: int) -> tuple[int, int]:
    """Read past profile_tier_level(1, max_sub_layers_minus1) (7.3.3); the general profile and level."""
    bits.u(2)  # general_profile_space
    bits.u(1)  # general_tier_flag
    profile_idc = bits.u(5)
    bits.u(PROFILE_BITS - 8)  # compatibility flags, source flags, constraint flags, inbld
    level_idc = bits.u(8)
    present = [(bits.flag(), bits.flag()) for _ in range(max_sub_layers_minus1)]
    if max_sub_layers_minus1 > 0:
        bits.u(2 * (8 - max_sub_layers_minus1))  # reserved_zero_2bits
    for profile_present, level_present in present:
        bits.u((PROFILE_BITS if profile_present else 0) + (8 if level_present else 0))
    return profile_idc, level_idc


def parse_sps(unit: bytes) -> SequenceParameterSet:
    """The SPS NAL unit `unit` (its two header bytes first, emulation-prevention bytes in place); raises
    `H265Error`.

    Reads up to the conformance window from at most `MAX_SPS_BYTES`, every value checked against its range
    before it is used, so junk costs bounded work and ends in `H265Error`.
    """
    if len(unit) < 3 or nal_type(unit) != NalType.SPS:
        raise H265Error("not an H.265 SPS NAL unit")
    try:
        return _read_sps(BitReader(unescape(unit[2:MAX_SPS_BYTES])))
    except H265Error:
        raise
    except H264Error as exc:  # the bit reader's words
        raise H265Error(str(exc)) from None


def _read_sps(bits: BitReader) -> SequenceParameterSet:
    bits.u(4)  # sps_video_parameter_set_id
    max_sub_layers_minus1 = bits.u(3)
    if max_sub_layers_minus1 > 6:
        raise H265Error(f"sps_max_sub_layers_minus1 {max_sub_layers_minus1} out of range (at most 6)")
    bits.flag()  # sps_temporal_id_nesting_flag
    profile_idc, level_idc = _skip_profile_tier_level(bits, max_sub_layers_minus1)
    sps_id = bits.ue(15)
    chroma_format_idc = bits.ue(3)
    separate_colour_planes = bits.flag() if chroma_format_idc == 3 else False
    coded_width = bits.ue()
    coded_height = bits.ue()
    if coded_width == 0 or coded_height == 0:
        raise H265Error("the SPS declares an empty picture")
    width, height = coded_width, coded_height
    if bits.flag():  # conformance_window_flag
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        # Offsets in chroma samples (SubWidthC, SubHeightC of table 6-1; 1 without chroma arrays).
        array_type = 0 if separate_colour_planes else chroma_format_idc
        unit_x = 2 if array_type in (1, 2) else 1
        unit_y = 2 if array_type == 1 else 1
        width -= unit_x * (left + right)
        height -= unit_y * (top + bottom)
        if width <= 0 or height <= 0:
            raise H265Error("the SPS crops the whole picture away")
    return SequenceParameterSet(sps_id, profile_idc, level_idc, chroma_format_idc, coded_width, coded_height,
                                width, height)


def parameter_set_units(access_unit: bytes) -> list[bytes]:
    """The SPS NAL units of an Annex-B access unit, each cut to `MAX_SPS_BYTES`; raises `H265Error` past
    `MAX_SPS_PER_ACCESS_UNIT` of them."""
    return units_where(access_unit, lambda header: (header >> 1) & 0x3F == NalType.SPS, MAX_SPS_PER_ACCESS_UNIT,
                       MAX_SPS_BYTES, H265Error)
