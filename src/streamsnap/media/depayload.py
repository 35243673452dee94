"""A frame's bitstream from the RTP payloads of its packets: the payload descriptors taken off (VP8, H.264).

The same output as aiortc's `depayload()` payload by payload (and the same refusals: a
`ValueError` for what it cannot parse; tests/unit/test_depayload.py compares the two on
hostile input), but without an object per packet: this runs once per received frame.
"""

from __future__ import annotations

from collections.abc import Callable

FrameDepayloader = Callable[[list[bytes]], bytes]
"Payloads of one frame, in order -> the frame's bitstream."

_ANNEX_B_START = b"\x00\x00\x00\x01"


def _vp8_descriptor_length(payload: bytes) -> int:
    """Length of the VP8 payload descriptor at the start of `payload` (RFC 7741 4.2)."""
    size = len(payload)
    if size < 1:
        raise ValueError("VPX descriptor is too short")
    if not payload[0] & 0x80:
        return 1
    if size < 2:
        raise ValueError("VPX descriptor has truncated extended bits")
    extension = payload[1]
    position = 2
    if extension & 0x80:  # I: a picture ID, 7 or 15 bits
        if size < 3:
            raise ValueError("VPX descriptor has truncated PictureID")
        if payload[2] & 0x80:
            if size < 4:
                raise ValueError("VPX descriptor has truncated long PictureID")
            position = 4
        else:
            position = 3
    if extension & 0x40:  # L: TL0PICIDX
        if size < position + 1:
            raise ValueError("VPX descriptor has truncated TL0PICIDX")
        position += 1
    if extension & 0x30:  # T and/or K: one octet
        if size < position + 1:
            raise ValueError("VPX descriptor has truncated T/K")
        position += 1
    return position


def vp8_frame(payloads: list[bytes]) -> bytes:
    """The VP8 frame carried by `payloads`."""
    parts = []
    for payload in payloads:
        # The two usual descriptors inline, as this runs for every packet of every frame.
        if payload and not payload[0] & 0x80:
            parts.append(payload[1:])
        elif len(payload) >= 4 and payload[1] == 0x80 and payload[2] & 0x80:  # a 15-bit picture ID only
            parts.append(payload[4:])
        else:
            parts.append(payload[_vp8_descriptor_length(payload):])
    return b"".join(parts)


def _h264_nal_units(payload: bytes) -> bytes:
    """One RTP payload of H.264 (RFC 6184: a NAL unit, a STAP-A or an FU-A) as Annex-B bytes."""
    if len(payload) < 2:
        raise ValueError("NAL unit is too short")
    header = payload[0]
    nal_type = header & 0x1F
    if 1 <= nal_type <= 23:  # a single NAL unit
        return _ANNEX_B_START + payload
    if nal_type == 28:  # FU-A: the NAL unit header is rebuilt on its first fragment
        fragment = payload[1]
        if fragment & 0x80:
            return _ANNEX_B_START + bytes(((header & 0xE0) | (fragment & 0x1F),)) + payload[2:]
        return payload[2:]
    if nal_type == 24:  # STAP-A: 16-bit sizes, each followed by its NAL unit
        units = []
        position, size = 1, len(payload)
        starts = []
        while position < size:
            if size < position + 2:
                raise ValueError("STAP-A length field is truncated")
            length = payload[position] << 8 | payload[position + 1]
            position += 2
            starts.append(position)
            position += length
            if size < position:
                raise ValueError("STAP-A data is truncated")
        # Each unit runs up to the next one's size field, as aiortc reads it.
        ends = [start - 2 for start in starts[1:]] + [size]
        for start, end in zip(starts, ends, strict=True):
            units.append(_ANNEX_B_START + payload[start:end])
        return b"".join(units)
    raise ValueError(f"NAL unit type {nal_type} is not supported")


def h264_frame(payloads: list[bytes]) -> bytes:
    """The H.264 access unit (Annex-B) carried by `payloads`."""
    return b"".join([_h264_nal_units(payload) for payload in payloads])


def as_is(payloads: list[bytes]) -> bytes:
    """A codec without a payload descriptor streamsnap knows: the payloads joined."""
    return b"".join(payloads)


def frame_depayloader(codec: str) -> FrameDepayloader:
    """The depayloader of `codec` (an RTP codec name: VP8, H264, ...)."""
    return {"VP8": vp8_frame, "H264": h264_frame}.get(codec, as_is)
