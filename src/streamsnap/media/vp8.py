"""VP8 below the RTP payload: the frame tag and the keyframe header (RFC 6386 9.1), read before any decode.

The one home of VP8 bitstream code (the RTP payload descriptor is read where frames are assembled,
`media/receiver.py`). Nothing here decodes a picture: the frame cache learns a stream's size from
its keyframes, and the snapshot engine checks it, through here.
"""

from __future__ import annotations

from dataclasses import dataclass

START_CODE = b"\x9d\x01\x2a"
"The three bytes after a keyframe's frame tag."

KEYFRAME_HEADER_SIZE = 10
"Frame tag (3 bytes), start code (3), width and height (2 each)."


class Vp8Error(ValueError):
    """A frame that says it is a VP8 keyframe but whose header cannot be one."""


@dataclass(frozen=True)
class KeyframeHeader:
    """What the first ten bytes of a VP8 keyframe say."""

    width: int
    "Coded width in pixels (14 bits): the size a decoder makes pictures at."
    height: int
    horizontal_scale: int
    "Upscaling the sender suggests for display (0: none, 1: 5/4, 2: 5/3, 3: 2); decoders ignore it."
    vertical_scale: int
    version: int
    "The frame tag's version (profile), 0 to 3 in the standard."
    show_frame: bool
    first_partition_size: int
    "Bytes of the first partition, after this header."


def is_keyframe_tag(frame: bytes) -> bool:
    """Whether the frame tag says keyframe (its lowest bit clear): decoders, FFmpeg's too, go by this bit."""
    return bool(frame) and not frame[0] & 0x01


def keyframe_header(frame: bytes) -> KeyframeHeader | None:
    """The header of a VP8 keyframe; None for an interframe; raises `Vp8Error` when the frame tag says
    keyframe but the rest cannot be one (too short, no start code, a zero side)."""
    if not is_keyframe_tag(frame):
        if not frame:
            raise Vp8Error("empty frame")
        return None
    if len(frame) < KEYFRAME_HEADER_SIZE:
        raise Vp8Error(f"keyframe of {len(frame)} bytes, shorter than its header")
    if frame[3:6] != START_CODE:
        raise Vp8Error("keyframe without the start code 9d 01 2a")
    tag = int.from_bytes(frame[0:3], "little")
    horizontal = int.from_bytes(frame[6:8], "little")
    vertical = int.from_bytes(frame[8:10], "little")
    width, height = horizontal & 0x3FFF, vertical & 0x3FFF
    if not width or not height:
        raise Vp8Error(f"keyframe of {width}x{height} pixels")
    return KeyframeHeader(width=width, height=height, horizontal_scale=horizontal >> 14,
                          vertical_scale=vertical >> 14, version=(tag >> 1) & 0x07,
                          show_frame=bool(tag & 0x10), first_partition_size=tag >> 5)
