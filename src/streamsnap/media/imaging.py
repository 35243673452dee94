"""Decoding a group of encoded frames to one picture, and encoding pictures to image files.

These functions are CPU-bound and blocking: the snapshot engine runs them in its worker
pool, never on the event loop.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import av
import numpy as np
import simplejpeg
from av.video.codeccontext import VideoCodecContext
from av.video.reformatter import ColorRange, VideoReformatter
from PIL import Image

from streamsnap.framing import framing
from streamsnap.framing import output_size as framed_size
from streamsnap.media.frames import EncodedFrame
from streamsnap.media.png import encode_png
from streamsnap.picture import DEFAULT_QUALITY, ImageFormat, ImageSpec

# FFmpeg's native decoders: faster than libvpx for VP8, and the only H.264 one PyAV ships.
_DECODERS = {"VP8": "vp8", "H264": "h264", "H265": "hevc"}


_JPEG_PLANE_FORMATS = frozenset({"yuv420p", "yuvj420p"})
"Decoded formats whose planes are a JPEG's own 4:2:0 YCbCr (after a range change for yuv420p)."

_BT601 = frozenset({2, 5, 6})
"""FFmpeg's AVColorSpace values a JPEG's YCbCr shares: unspecified (which swscale takes as BT.601),
BT470BG and SMPTE170M. Other matrices (BT.709, BT.2020) go through RGB, which converts them."""

_REFORMATTERS_PER_THREAD = 8
"Conversions (sizes and formats) a worker thread keeps a swscale context for."

_local = threading.local()


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
    "How many encoded frames were given to the decoder to get it."
    pictures_made: int = 1
    """Pictures the decoder made on the way: fewer than `frames_decoded` when non-reference frames
    (which no later frame depends on) were passed over unpictured."""

    @property
    def size(self) -> tuple[int, int]:
        """Native (width, height)."""
        return self.frame.width, self.frame.height


def decode_latest(codec: str, group: Sequence[EncodedFrame]) -> Picture:
    """Decode a keyframe and the frames after it; return the picture of the last one.

    Only what that picture needs is reconstructed: the decoder skips the non-reference frames
    before the last one (a stream with temporal layers, as browsers send with simulcast, has one
    in two), which no later frame depends on; their headers are still read, so the last picture
    is the same to the pixel.
    """
    name = _DECODERS.get(codec)
    if name is None:
        raise DecodeError(f"no decoder for {codec}")
    if not group or not group[0].keyframe:
        raise DecodeError("a group must start with a keyframe")
    context = cast(VideoCodecContext, av.CodecContext.create(name, "r"))
    context.thread_count = 1  # one picture per packet, no frame-threading delay
    last: av.VideoFrame | None = None
    made = 0
    try:
        for index, frame in enumerate(group):
            context.skip_frame = "NONREF" if index < len(group) - 1 else "DEFAULT"
            packet = av.Packet(frame.data)
            packet.pts = index
            for picture in context.decode(packet):
                last, made = picture, made + 1
        for picture in context.decode(None):
            last, made = picture, made + 1
    except av.FFmpegError as exc:
        raise DecodeError(f"{codec} decode failed: {exc}") from None
    if last is None or last.pts is None or not 0 <= last.pts < len(group):
        raise DecodeError(f"{codec} group of {len(group)} frames gave no picture")
    return Picture(last, group[last.pts], len(group), made)


def output_size(native: tuple[int, int], spec: ImageSpec) -> tuple[int, int]:
    """The size to encode at: native, exact, or scaled to one given side keeping the aspect ratio."""
    return framed_size(native, spec.width, spec.height)


def encode(picture: Picture, spec: ImageSpec, png_compress_level: int) -> bytes:
    """The picture as an image file of `spec`.

    A JPEG of the whole picture at its native size is encoded straight from the decoded
    YUV 4:2:0 planes (libjpeg-turbo; only the range changes, from video's 16-235 to JPEG's
    0-255). Every other file is converted to RGB (and scaled) by swscale in one pass, then
    cropped or letterboxed by numpy when `spec.fit` asks; PNG is `streamsnap.media.png`'s,
    `png_compress_level` as documented there.
    """
    placed = framing(picture.size, spec.width, spec.height, spec.fit)
    quality = spec.quality or DEFAULT_QUALITY.get(spec.format, 0)
    if spec.format is ImageFormat.JPEG and placed.is_plain_scale and placed.size == picture.size:
        planes = _jpeg_planes(picture.frame)
        if planes is not None:
            return cast(bytes, simplejpeg.encode_jpeg_yuv_planes(*planes, quality=quality))
    width, height = placed.scaled
    rgb = _converted(picture.frame, width, height, "rgb24").to_ndarray()
    if not placed.is_plain_scale:
        rgb = _placed(rgb, placed.crop, placed.kept, placed.offset, placed.size)
    if spec.format is ImageFormat.PNG:
        return encode_png(rgb, png_compress_level)
    buffer = io.BytesIO()
    # WebP method 0 is the fastest encoder setting; the quality knob still applies.
    options = {"method": 0} if spec.format is ImageFormat.WEBP else {}
    Image.fromarray(rgb).save(buffer, format=spec.format.name, quality=quality, **options)
    return buffer.getvalue()


def _jpeg_planes(frame: av.VideoFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The frame's Y, Cb, Cr planes as a JPEG takes them (full range, BT.601, 4:2:0), or None if it has none."""
    if frame.format.name not in _JPEG_PLANE_FORMATS or frame.colorspace not in _BT601:
        return None
    if frame.format.name == "yuv420p" and frame.color_range != ColorRange.JPEG:
        # Video's limited range stretched to JPEG's full range: swscale does this plane by plane,
        # faster than a numpy lookup table, and matches what its RGB conversion does.
        frame = _converted(frame, frame.width, frame.height, "yuv420p", ColorRange.JPEG)
    planes = tuple(_plane_array(plane) for plane in frame.planes)
    if len(planes) != 3:
        return None
    return planes[0], planes[1], planes[2]


def _plane_array(plane: Any) -> np.ndarray:
    """A view of one plane of a frame, without the padding at the end of its rows."""
    rows = np.frombuffer(plane, dtype=np.uint8).reshape(plane.height, plane.line_size)
    return rows[:, :plane.width]


def _converted(frame: av.VideoFrame, width: int, height: int, format: str,
               color_range: ColorRange | None = None) -> av.VideoFrame:
    """`frame` scaled and converted by swscale, with a context this worker thread keeps for this conversion.

    A context of the thread's own: `VideoFrame.reformat` shares one per frame, and two workers
    encoding the same picture at once (PNG and JPEG of one moment) deadlock on it. Kept across
    pictures: setting one up for every picture cost as much as converting a 640x480 picture to
    RGB (0.11 ms each, measured side by side).
    """
    kept: OrderedDict[tuple[object, ...], VideoReformatter] | None = getattr(_local, "reformatters", None)
    if kept is None:
        kept = _local.reformatters = OrderedDict()
    key = (frame.width, frame.height, frame.format.name, width, height, format, color_range)
    reformatter = kept.get(key)
    if reformatter is None:
        reformatter = kept[key] = VideoReformatter()
        if len(kept) > _REFORMATTERS_PER_THREAD:
            kept.popitem(last=False)
    else:
        kept.move_to_end(key)
    # One thread: the pool runs pictures side by side already, and a context that kept swscale's
    # own threads (one per CPU by default) would hang in a process forked from this one.
    return reformatter.reformat(frame, width=width, height=height, format=format, dst_color_range=color_range,
                                threads=1)


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
