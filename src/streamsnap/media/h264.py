"""H.264 below the container: NAL unit types, the avcC record, AVCC to Annex-B, parameter sets.

The one home of H.264 bitstream code. RTSP (FFmpeg's extradata), RTMP (FLV sequence headers and
length-prefixed frames) and the frame cache (keyframe detection) all read H.264 through here.
The cache and the decoder take Annex-B access units (start codes); nothing here decodes a picture.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

START_CODE = b"\x00\x00\x00\x01"
"The start code streamsnap writes before a NAL unit (readers also accept the three-byte one)."


class NalType(enum.IntEnum):
    """The NAL unit types streamsnap looks at (ITU-T H.264 table 7-1)."""

    NON_IDR_SLICE = 1
    IDR = 5
    SPS = 7
    PPS = 8


class H264Error(ValueError):
    """Bytes that are not H.264 as their container says they are."""


def nal_type(unit: bytes) -> int:
    """The type of one NAL unit (without its start code or length), from its header byte."""
    return unit[0] & 0x1F


def nal_types(access_unit: bytes) -> set[int]:
    """NAL unit types in an Annex-B access unit (three- or four-byte start codes)."""
    types: set[int] = set()
    pos = access_unit.find(b"\x00\x00\x01")
    while pos != -1 and pos + 3 < len(access_unit):
        types.add(access_unit[pos + 3] & 0x1F)  # nal_type, without slicing out a byte per unit
        pos = access_unit.find(b"\x00\x00\x01", pos + 3)
    return types


def starts_decoding(access_unit: bytes) -> bool:
    """Whether a decoder can start from this Annex-B access unit alone: an IDR slice and an SPS."""
    types = nal_types(access_unit)
    return NalType.IDR in types and NalType.SPS in types


def annex_b(units: Iterable[bytes]) -> bytes:
    """NAL units as one Annex-B byte string, each after a start code."""
    return b"".join(START_CODE + unit for unit in units)


def with_parameter_sets(keyframe: bytes, parameter_sets: bytes) -> bytes:
    """An Annex-B keyframe with `parameter_sets` in front unless it carries an SPS of its own.

    A decoder starts only where an SPS is, and encoders often send it once: in the RTMP
    sequence header, in a camera's SDP.
    """
    if not parameter_sets or NalType.SPS in nal_types(keyframe):
        return keyframe
    return parameter_sets + keyframe


@dataclass(frozen=True)
class AvcConfig:
    """What an AVCDecoderConfigurationRecord (avcC) says: NAL length size, SPS and PPS."""

    length_size: int
    "Bytes of the length before each NAL unit of an AVCC frame (1, 2 or 4)."
    sps: tuple[bytes, ...]
    pps: tuple[bytes, ...]

    def annex_b(self) -> bytes:
        """SPS and PPS as Annex-B NAL units (what goes before an IDR)."""
        return annex_b((*self.sps, *self.pps))


def parse_avc_config(record: bytes) -> AvcConfig:
    """The AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.2.4.1) in `record`; raises `H264Error`."""
    if len(record) < 7 or record[0] != 1:
        raise H264Error("not an AVCDecoderConfigurationRecord")
    length_size = (record[4] & 0x03) + 1
    if length_size == 3:
        raise H264Error("NAL length size 3 is not allowed")
    pos = 5
    sets: list[tuple[bytes, ...]] = []
    for count_mask in (0x1F, 0xFF):  # SPS count in 5 bits (3 reserved), PPS count in 8
        if pos >= len(record):
            raise H264Error("record ends before its parameter sets")
        count = record[pos] & count_mask
        pos += 1
        units = []
        for _ in range(count):
            if pos + 2 > len(record):
                raise H264Error("parameter set length runs past the record")
            size = int.from_bytes(record[pos:pos + 2], "big")
            pos += 2
            if size == 0 or pos + size > len(record):
                raise H264Error("parameter set runs past the record")
            units.append(bytes(record[pos:pos + size]))
            pos += size
        sets.append(tuple(units))
    # What follows the PPS (High profile chroma and bit depth fields) tells the decoder nothing
    # the SPS does not, so it is not read.
    if not sets[0]:
        raise H264Error("no SPS in the record")
    return AvcConfig(length_size, sets[0], sets[1])


def avcc_to_annex_b(data: bytes, length_size: int) -> list[bytes]:
    """The NAL units of a length-prefixed (AVCC) access unit, for `annex_b`; raises `H264Error`
    when a length overruns."""
    units: list[bytes] = []
    pos = 0
    while pos < len(data):
        if pos + length_size > len(data):
            raise H264Error("NAL length runs past the frame")
        size = int.from_bytes(data[pos:pos + length_size], "big")
        pos += length_size
        if size == 0 or pos + size > len(data):
            raise H264Error("NAL unit runs past the frame")
        units.append(data[pos:pos + size])
        pos += size
    return units


def annexb_parameter_sets(extradata: bytes | None) -> bytes:
    """The SPS and PPS of H.264 codec extradata as Annex-B (FFmpeg's demuxers give Annex-B or avcC).

    Empty when there are none or the avcC record is malformed: parameter sets only help a
    keyframe that lacks its own, and a camera whose keyframes carry them still decodes.
    """
    if not extradata:
        return b""
    if extradata[0] != 1:  # Annex-B starts with a zero byte; avcC with its version, 1
        return extradata
    try:
        return parse_avc_config(extradata).annex_b()
    except H264Error:
        return b""


class TooManyNalUnits(H264Error):
    """A frame of more NAL units than the source allows."""


def has_start_code(unit: bytes) -> bool:
    """Whether a NAL unit holds `00 00 01`, which H.264 forbids inside one (7.4.1, emulation prevention):
    in Annex-B every reader would split the unit there."""
    return unit.find(b"\x00\x00\x01") != -1


def avcc_access_unit(data: bytes, length_size: int, max_units: int, parameter_sets: bytes = b"") -> bytes:
    """A length-prefixed (AVCC) access unit as Annex-B, with `parameter_sets` (Annex-B) in front when it
    is a keyframe without an SPS of its own (see `with_parameter_sets`).

    Bounded by `max_units` whatever the size of `data`: at most `max_units` + 1 lengths are read
    before `TooManyNalUnits` is raised, and nothing is copied until all are read (then once).
    Raises `H264Error` when a length overruns, a unit is empty, or a unit holds a start code (an
    Annex-B reader would split it, and find far more units than were counted here).
    """
    spans: list[tuple[int, int]] = []
    pos, end = 0, len(data)
    while pos < end:
        if len(spans) == max_units:
            raise TooManyNalUnits(f"more than {max_units} NAL units in a frame")
        if pos + length_size > end:
            raise H264Error("NAL length runs past the frame")
        start = pos + length_size
        pos = start + int.from_bytes(data[pos:start], "big")
        if pos == start or pos > end:
            raise H264Error("NAL unit runs past the frame")
        if data.find(b"\x00\x00\x01", start, pos) != -1:
            raise H264Error("start code inside a NAL unit")
        spans.append((start, pos))
    types = {data[start] & 0x1F for start, _ in spans}
    view = memoryview(data)
    parts: list[bytes | memoryview] = []
    if parameter_sets and NalType.IDR in types and NalType.SPS not in types:
        parts.append(parameter_sets)
    for start, stop in spans:
        parts += (START_CODE, view[start:stop])
    return b"".join(parts)
