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
import imagecodecs
import numpy as np
from av.video.codeccontext import VideoCodecContext
from av.video.reformatter import VideoReformatter
from PIL import Image

from streamsnap.framing import framing
from streamsnap.framing import output_size as framed_size
from streamsnap.media.frames import EncodedFrame
from streamsnap.picture import DEFAULT_QUALITY, ImageFormat, ImageSpec

# FFmpeg's native decoders: faster than libvpx for VP8, and the only H.264 one PyAV ships.
_DECODERS = {"VP8": "vp8", "H264": "h264"}


PNG_FILTER_UP = 32
"""libpng's PNG_FILTER_UP: one fixed row filter instead of trying all five on every row.

Measured side by side (`bench/encoders.py`): on video pictures it compresses as well as
the adaptive choice (Pillow's, and libpng's default) at less than half the time."""


class DecodeError(Exception):
    """The group did not decode to a picture."""


@dataclass(frozen=True)
class Picture:
    """A decoded picture and the frame it came from."""

    frame: av.VideoFrame
    "The decoded frame, at the stream's native size and pixel format."
    source: EncodedFrame
    "The encoded frame it depicts (its arrival time gives the picture's age)."
    frames_decoded: int
    "How many encoded frames were decoded to get it."

    @property
    def size(self) -> tuple[int, int]:
        """Native (width, height)."""
        return self.frame.width, self.frame.height


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
    return Picture(last, group[last.pts], len(group))


def output_size(native: tuple[int, int], spec: ImageSpec) -> tuple[int, int]:
    """The size to encode at: native, exact, or scaled to one given side keeping the aspect ratio."""
    return framed_size(native, spec.width, spec.height)


def encode(picture: Picture, spec: ImageSpec, png_compress_level: int) -> bytes:
    """The picture as an image file of `spec` (scaled and converted to RGB by swscale in one pass,
    then cropped or letterboxed by numpy when `spec.fit` asks)."""
    placed = framing(picture.size, spec.width, spec.height, spec.fit)
    width, height = placed.scaled
    # A reformatter of its own: `VideoFrame.reformat` shares one per frame, and two workers
    # encoding the same picture at once (PNG and JPEG of one moment) deadlock on it.
    rgb = VideoReformatter().reformat(picture.frame, width=width, height=height, format="rgb24").to_ndarray()
    if not placed.is_plain_scale:
        rgb = _placed(rgb, placed.crop, placed.kept, placed.offset, placed.size)
    if spec.format is ImageFormat.PNG:
        return bytes(imagecodecs.png_encode(rgb, level=png_compress_level, filter=PNG_FILTER_UP))
    buffer = io.BytesIO()
    quality = spec.quality or DEFAULT_QUALITY[spec.format]
    # WebP method 0 is the fastest encoder setting; the quality knob still applies.
    options = {"method": 0} if spec.format is ImageFormat.WEBP else {}
    Image.fromarray(rgb).save(buffer, format=spec.format.name, quality=quality, **options)
    return buffer.getvalue()


def _placed(rgb: np.ndarray, crop: tuple[int, int], kept: tuple[int, int], offset: tuple[int, int],
            size: tuple[int, int]) -> np.ndarray:
    """The kept part of `rgb` (cover's centre crop) placed on a black picture of `size` (contain's bars)."""
    left, top = crop
    kept_width, kept_height = kept
    part = rgb[top:top + kept_height, left:left + kept_width]
    if (kept_width, kept_height) == size:
        return np.ascontiguousarray(part)
    output = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    x, y = offset
    output[y:y + kept_height, x:x + kept_width] = part
    return output
