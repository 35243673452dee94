"""Decoding a group of encoded frames to one picture, and encoding pictures to image files.

These functions are CPU-bound and blocking: the snapshot engine runs them in its worker
pool, never on the event loop.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import av
from av.video.codeccontext import VideoCodecContext
from PIL import Image

from streamsnap.media.frames import EncodedFrame

# FFmpeg's native decoders: faster than libvpx for VP8, and the only H.264 one PyAV ships.
_DECODERS = {"VP8": "vp8", "H264": "h264"}


class DecodeError(Exception):
    """The group did not decode to a picture."""


@dataclass(frozen=True)
class Picture:
    """A decoded picture and the frame it came from."""

    image: Image.Image
    "RGB picture at the stream's native size."
    frame: EncodedFrame
    "The encoded frame it depicts (its arrival time gives the picture's age)."
    frames_decoded: int
    "How many encoded frames were decoded to get it."


def decode_latest(codec: str, group: Sequence[EncodedFrame]) -> Picture:
    """Decode a keyframe and the frames after it; return the picture of the last one."""
    name = _DECODERS.get(codec)
    if name is None:
        raise DecodeError(f"no decoder for {codec}")
    if not group or not group[0].keyframe:
        raise DecodeError("a group must start with a keyframe")
    context = cast(VideoCodecContext, av.CodecContext.create(name, "r"))
    context.thread_count = 1  # one picture per packet, no frame-threading delay
    last: av.VideoFrame | None = None
    try:
        for index, frame in enumerate(group):
            packet = av.Packet(frame.data)
            packet.pts = index
            for picture in context.decode(packet):
                last = picture
        for picture in context.decode(None):
            last = picture
    except av.FFmpegError as exc:
        raise DecodeError(f"{codec} decode failed: {exc}") from None
    if last is None or last.pts is None or not 0 <= last.pts < len(group):
        raise DecodeError(f"{codec} group of {len(group)} frames gave no picture")
    return Picture(Image.fromarray(last.to_ndarray(format="rgb24")), group[last.pts], len(group))


def encode_png(image: Image.Image, compress_level: int) -> bytes:
    """PNG bytes of `image`; level 1 is several times faster than Pillow's default 6."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()
