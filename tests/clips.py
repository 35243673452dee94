"""Video files of the test pattern, written with PyAV at test time (what `publish --file` plays)."""

from __future__ import annotations

import fractions
from pathlib import Path

import av

from streamsnap.media.pattern import FPS, pattern_frame

ENCODERS = {".webm": "libvpx", ".mp4": "libx264"}


def write_pattern_clip(path: Path, frames: int = FPS, width: int = 320, height: int = 240) -> Path:
    """`frames` pattern frames (counter 0, 1, …) at 30 fps: VP8 in .webm, H.264 in .mp4."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(ENCODERS[path.suffix], rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(pattern_frame(index, width, height), format="rgb24")
            frame.pts, frame.time_base = index, fractions.Fraction(1, FPS)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path
