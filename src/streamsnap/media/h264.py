"""H.264 below the container: NAL unit types, the avcC record, AVCC to Annex-B, parameter sets.

The one home of H.264 bitstream code. RTSP (FFmpeg's extradata), RTMP (FLV sequence headers and
length-prefixed frames) and the frame cache (keyframe detection) all read H.264 through here.
The cache and the decoder take Annex-B access units (start codes); nothing here decodes a picture.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator
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


def header_bytes(access_unit: bytes) -> Iterator[int]:
    """The first header byte of each NAL unit of an Annex-B access unit (three- or four-byte start codes),
    without slicing out a unit (H.264's and H.265's NAL types are read from it)."""
    pos = access_unit.find(b"\x00\x00\x01")
    while pos != -1 and pos + 3 < len(access_unit):
        yield access_unit[pos + 3]
        pos = access_unit.find(b"\x00\x00\x01", pos + 3)


def nal_types(access_unit: bytes) -> set[int]:
    """NAL unit types in an Annex-B access unit."""
    return {header & 0x1F for header in header_bytes(access_unit)}


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
    return prepend_unless_present(keyframe, parameter_sets, NalType.SPS in nal_types(keyframe))


def prepend_unless_present(keyframe: bytes, parameter_sets: bytes, has_own: bool) -> bytes:
    """`parameter_sets` + `keyframe`, unless there are none or the keyframe `has_own` SPS."""
    if not parameter_sets or has_own:
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


# --- The sequence parameter set: the picture size, read before anything is decoded ------------------------------

SUBSET_SPS = 15
"NAL type of a subset SPS (SVC/MVC, Annex G/H): it starts with the same fields as an SPS."

MAX_SPS_BYTES = 8192
"""Bytes of one SPS NAL unit read at most. The fields up to the cropping of any SPS the standard allows take
at most about 3.1 KB (twelve scaling lists and a 255-frame POC cycle of 32-bit offsets), 4.7 KB escaped; what
lies past this is never looked at. The work is bounded by the count of values (under 800), not the bytes."""

MAX_SPS_PER_ACCESS_UNIT = 4
"SPS units one access unit may carry (encoders send one; more is refused before any is read)."

MAX_EXP_GOLOMB_ZEROS = 31
"Leading zeros of an exp-Golomb code read at most (values up to 2**32 - 2, as FFmpeg's readers go)."

_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 144})
"""Profiles whose SPS carries chroma format, bit depths and scaling lists. FFmpeg's decoder's list, not the
standard's (which adds 134, 135 and 139 and drops 144): the size is read where the decoder reads it."""


@dataclass(frozen=True)
class SequenceParameterSet:
    """What an SPS (ITU-T H.264 7.3.2.1.1) says of the pictures that follow it, up to the frame cropping."""

    sps_id: int
    profile_idc: int
    level_idc: int
    chroma_format_idc: int
    "0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4."
    frame_mbs_only: bool
    "False: pictures may be coded as fields (interlaced), their height counted in pairs of macroblocks."
    coded_width: int
    "Width in whole macroblocks: what a decoder allocates per picture."
    coded_height: int
    width: int
    "Width after the frame cropping: the picture shown."
    height: int

    @property
    def coded_pixels(self) -> int:
        """Luma samples a decoder allocates per picture."""
        return self.coded_width * self.coded_height


class BitReader:
    """An MSB-first bit reader over RBSP bytes that raises `H264Error` when they run out."""

    __slots__ = ("_bits", "_pos")

    def __init__(self, data: bytes) -> None:
        # One string of '0' and '1': finding the next set bit and slicing a value out are then C loops.
        self._bits = format(int.from_bytes(data, "big"), f"0{len(data) * 8}b") if data else ""
        self._pos = 0

    def u(self, count: int) -> int:
        end = self._pos + count
        if end > len(self._bits):
            raise H264Error("SPS ends early")
        value = int(self._bits[self._pos:end], 2) if count else 0
        self._pos = end
        return value

    def flag(self) -> bool:
        return self.u(1) == 1

    def _code(self) -> int:
        """One exp-Golomb code number (9.1), at most `MAX_EXP_GOLOMB_ZEROS` leading zeros."""
        bits, pos = self._bits, self._pos
        one = bits.find("1", pos, pos + MAX_EXP_GOLOMB_ZEROS + 1)
        if one == -1:
            raise H264Error("SPS ends early" if len(bits) - pos <= MAX_EXP_GOLOMB_ZEROS else "exp-Golomb code too long")
        end = 2 * one - pos + 1
        if end > len(bits):
            raise H264Error("SPS ends early")
        self._pos = end
        return int(bits[one:end], 2) - 1

    def ue(self, maximum: int | None = None) -> int:
        """An unsigned exp-Golomb value; `maximum`: the largest the standard (or FFmpeg) allows there."""
        value = self._code()
        if maximum is not None and value > maximum:
            raise H264Error(f"SPS value {value} out of range (at most {maximum})")
        return value

    def se(self) -> int:
        """A signed exp-Golomb value (within +-(2**31 - 1), as `MAX_EXP_GOLOMB_ZEROS` bounds it)."""
        code = self._code()
        return (code + 1) // 2 if code & 1 else -(code // 2)

    def skip_codes(self, count: int) -> None:
        """Read past `count` exp-Golomb codes whose values do not matter here (the loop of `_code`, inlined:
        an SPS may hold hundreds)."""
        bits, pos, size = self._bits, self._pos, len(self._bits)
        for _ in range(count):
            one = bits.find("1", pos, pos + MAX_EXP_GOLOMB_ZEROS + 1)
            if one == -1:
                raise H264Error("SPS ends early" if size - pos <= MAX_EXP_GOLOMB_ZEROS else "exp-Golomb code too long")
            pos = 2 * one - pos + 1
        if pos > size:
            raise H264Error("SPS ends early")
        self._pos = pos

    def skip_scaling_list(self, size: int) -> None:
        """Read past one scaling_list() (7.3.2.1.1.1): `size` deltas, or fewer when one makes the next scale 0."""
        bits, pos, end = self._bits, self._pos, len(self._bits)
        last = 8
        for _ in range(size):
            one = bits.find("1", pos, pos + 16)  # a delta_scale within -128..127 has at most 8 leading zeros
            if one == -1 or one - pos > 8:
                raise H264Error("SPS ends early" if end - pos <= 8 else "delta_scale out of range")
            stop = 2 * one - pos + 1
            if stop > end:
                raise H264Error("SPS ends early")
            code = int(bits[one:stop], 2) - 1
            pos = stop
            delta = (code + 1) // 2 if code & 1 else -(code // 2)
            if not -128 <= delta <= 127:
                raise H264Error("delta_scale out of range")
            following = (last + delta) % 256
            if following == 0:  # the rest of the list repeats the last scale: nothing more is written
                break
            last = following
        self._pos = pos


def escaped_payload(unit: bytes) -> bytes:
    """A NAL unit's bytes up to where FFmpeg ends it: the first 00 00 01 or 00 00 02, which only a start
    code may hold (emulation-prevention bytes still in place)."""
    end = len(unit)
    for stop in (b"\x00\x00\x01", b"\x00\x00\x02"):
        found = unit.find(stop, 0, end)
        if found != -1:
            end = found
    return unit[:end]


def unescape(unit: bytes) -> bytes:
    """The RBSP of a NAL unit: `escaped_payload` with the emulation-prevention bytes (the 03 of every
    00 00 03) removed, as FFmpeg removes them."""
    return escaped_payload(unit).replace(b"\x00\x00\x03", b"\x00\x00")


def parse_sps(unit: bytes) -> SequenceParameterSet:
    """The SPS NAL unit `unit` (its header byte first, emulation-prevention bytes in place); raises `H264Error`.

    Reads up to the frame cropping (the VUI says nothing of the size) from at most `MAX_SPS_BYTES`, every
    value checked against its range before it is used, so junk costs bounded work and ends in `H264Error`.
    """
    if not unit or nal_type(unit) not in (NalType.SPS, SUBSET_SPS):
        raise H264Error("not an SPS NAL unit")
    return _read_sps(BitReader(unescape(unit[1:MAX_SPS_BYTES])))


def _read_sps(bits: BitReader) -> SequenceParameterSet:
    profile_idc = bits.u(8)
    bits.u(8)  # constraint_set0..5 flags and two reserved bits
    level_idc = bits.u(8)
    sps_id = bits.ue(31)
    chroma_format_idc = 1
    separate_colour_planes = False
    if profile_idc in _HIGH_PROFILES:
        chroma_format_idc = bits.ue(3)
        if chroma_format_idc == 3:
            separate_colour_planes = bits.flag()
        bits.ue(6)  # bit_depth_luma_minus8
        bits.ue(6)  # bit_depth_chroma_minus8
        bits.flag()  # qpprime_y_zero_transform_bypass_flag
        if bits.flag():  # seq_scaling_matrix_present_flag
            for index in range(8 if chroma_format_idc != 3 else 12):
                if bits.flag():  # seq_scaling_list_present_flag
                    bits.skip_scaling_list(16 if index < 6 else 64)
    bits.ue(12)  # log2_max_frame_num_minus4
    pic_order_cnt_type = bits.ue(2)
    if pic_order_cnt_type == 0:
        bits.ue(12)  # log2_max_pic_order_cnt_lsb_minus4
    elif pic_order_cnt_type == 1:
        bits.flag()  # delta_pic_order_always_zero_flag
        bits.skip_codes(2)  # offset_for_non_ref_pic, offset_for_top_to_bottom_field
        bits.skip_codes(bits.ue(255))  # offset_for_ref_frame, num_ref_frames_in_pic_order_cnt_cycle times
    bits.ue(16)  # max_num_ref_frames (FFmpeg refuses more than 16)
    bits.flag()  # gaps_in_frame_num_value_allowed_flag
    width_mbs = bits.ue() + 1
    height_map_units = bits.ue() + 1
    frame_mbs_only = bits.flag()
    if not frame_mbs_only:
        bits.flag()  # mb_adaptive_frame_field_flag
    bits.flag()  # direct_8x8_inference_flag
    coded_width = width_mbs * 16
    coded_height = height_map_units * (1 if frame_mbs_only else 2) * 16
    width, height = coded_width, coded_height
    if bits.flag():  # frame_cropping_flag
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        # Crop units (7-19 to 7-22): chroma samples, and field pairs when pictures may be fields.
        array_type = 0 if separate_colour_planes else chroma_format_idc
        unit_x = 2 if array_type in (1, 2) else 1
        unit_y = (2 if array_type == 1 else 1) * (1 if frame_mbs_only else 2)
        width -= unit_x * (left + right)
        height -= unit_y * (top + bottom)
        if width <= 0 or height <= 0:
            raise H264Error("the SPS crops the whole picture away")
    return SequenceParameterSet(sps_id, profile_idc, level_idc, chroma_format_idc, frame_mbs_only,
                                coded_width, coded_height, width, height)


def parameter_set_units(access_unit: bytes) -> list[bytes]:
    """The SPS (and subset SPS) NAL units of an Annex-B access unit, each cut to `MAX_SPS_BYTES`; raises
    `H264Error` past `MAX_SPS_PER_ACCESS_UNIT` of them."""
    return units_where(access_unit, lambda header: header & 0x1F in (NalType.SPS, SUBSET_SPS),
                       MAX_SPS_PER_ACCESS_UNIT, MAX_SPS_BYTES, H264Error)


def units_where(access_unit: bytes, wanted: Callable[[int], bool], most: int, max_bytes: int,
                error: type[H264Error]) -> list[bytes]:
    """The NAL units of an Annex-B access unit whose first header byte is `wanted`, each cut to `max_bytes`;
    raises `error` past `most` of them (before the one too many is copied)."""
    units: list[bytes] = []
    pos = access_unit.find(b"\x00\x00\x01")
    while pos != -1 and pos + 3 < len(access_unit):
        start = pos + 3
        pos = access_unit.find(b"\x00\x00\x01", start)
        if wanted(access_unit[start]):
            if len(units) == most:
                raise error(f"more than {most} SPS in one access unit")
            end = len(access_unit) if pos == -1 else pos
            units.append(access_unit[start:min(end, start + max_bytes)])
    return units


def sps_readings(unit: bytes) -> list[SequenceParameterSet]:
    """The SPS NAL unit `unit` read every way FFmpeg's decoder may read it, the standard's reading first;
    raises `H264Error` when that one fails.

    FFmpeg reads an SPS from its RBSP and, when that fails further on than this reads (in the VUI), again
    from the bytes with their emulation-prevention bytes in place. When those differ before the cropping
    ends and the second reading succeeds, it is returned too: a check of the size must take the larger.
    """
    readings = [parse_sps(unit)]
    escaped = escaped_payload(unit[1:MAX_SPS_BYTES])
    if b"\x00\x00\x03" in escaped:
        try:
            raw = _read_sps(BitReader(escaped))
        except H264Error:
            return readings  # FFmpeg's second reading fails as well: the first is the one it may use
        if raw != readings[0]:
            readings.append(raw)
    return readings


def largest_sps(access_unit: bytes) -> SequenceParameterSet | None:
    """Of the SPSs an Annex-B access unit carries, the reading (`sps_readings`) declaring the most coded pixels;
    None when it carries none; raises `H264Error` when one cannot be read."""
    largest: SequenceParameterSet | None = None
    for unit in parameter_set_units(access_unit):
        for reading in sps_readings(unit):
            if largest is None or reading.coded_pixels > largest.coded_pixels:
                largest = reading
    return largest
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
