"""Pre-encoded clips for the benchmarks, so that publishers spend no CPU on encoding.

A clip is the test pattern encoded once as a normal stream (one keyframe, then P-frames)
and once as keyframes only, so a replaying publisher can answer a PLI with a keyframe of
the current position.
"""

from __future__ import annotations

import pickle
from fractions import Fraction
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from streamsnap.media.pattern import pattern_frame

CACHE = Path(__file__).resolve().parent / "cache"
ENCODERS = {"VP8": "libvpx", "H264": "libx264"}


@dataclass(frozen=True)
class Clip:
    """One pre-encoded clip."""

    codec: str
    width: int
    height: int
    frames: list[bytes]
    "The normal stream: a keyframe, then P-frames."
    keyframes: list[bytes]
    "Frame i encoded as a keyframe."


def _encode(codec: str, width: int, height: int, count: int, bitrate: int, all_key: bool) -> list[bytes]:
    context = av.CodecContext.create(ENCODERS[codec], "w")
    context.width, context.height, context.pix_fmt = width, height, "yuv420p"
    context.bit_rate = bitrate
    context.framerate = Fraction(30)
    context.time_base = Fraction(1, 30)
    context.gop_size = 1 if all_key else 100000
    if codec == "VP8":
        context.options = {"deadline": "good", "cpu-used": "4", "lag-in-frames": "0"}
    else:
        context.profile = "Baseline"
        context.options = {"tune": "zerolatency", "preset": "veryfast", "level": "31"}
    rate = str(bitrate)
    context.options = dict(context.options, minrate=rate, maxrate=rate, bufsize=rate)
    # Camera-like noise below the counter band makes the encoder spend its whole bitrate,
    # as a real camera does; the plain pattern would compress to a tenth of it.
    noise = np.random.default_rng(7)
    out: list[bytes] = []
    for index in range(count):
        rgb = pattern_frame(index, width, height)
        band = height // 4
        rgb[band:] = np.clip(rgb[band:].astype(np.int16) + noise.integers(-24, 24, rgb[band:].shape), 0, 255)
        frame = av.VideoFrame.from_ndarray(rgb.astype(np.uint8), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = index
        out.extend(bytes(packet) for packet in context.encode(frame))
    out.extend(bytes(packet) for packet in context.encode(None))
    return out


def load_clip(codec: str, width: int, height: int, seconds: int = 4, bitrate: int = 1_500_000) -> Clip:
    """The clip for these parameters, encoded on first use and cached under bench/cache/."""
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"{codec}-{width}x{height}-{seconds}s-{bitrate}.pickle"
    if path.exists():
        clip: Clip = pickle.loads(path.read_bytes())
        return clip
    count = seconds * 30
    clip = Clip(codec, width, height, _encode(codec, width, height, count, bitrate, False),
                _encode(codec, width, height, count, bitrate, True))
    path.write_bytes(pickle.dumps(clip))
    return clip
