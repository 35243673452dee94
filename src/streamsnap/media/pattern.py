"""Tracks the `publish` command sends: a synthetic camera, and a video file played in a loop.

The synthetic camera is a moving test pattern whose frame counter can be read back from pixels.

The top quarter of each frame is a row of `COUNTER_BITS` black or white blocks spelling
the frame number in binary (most significant bit first); big blocks survive lossy video
coding. Below it, a colour that changes every second and a bar that sweeps across. The CLI's
`publish --pattern` sends it, and the tests read the counter out of snapshots.

`FileTrack` plays a video file (`publish --file`) and starts it over at its end without a
gap or a jump back in time: the timestamps keep growing across passes, which encoders need.
"""

from __future__ import annotations

import asyncio
import errno
import fractions
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
from aiortc import VideoStreamTrack
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import VideoFrame
from PIL import Image

COUNTER_BITS = 16
FPS = 30
# One colour per second, cycling: red, green, blue, yellow, magenta, cyan.
SECOND_COLOURS = np.array(
    [[220, 30, 30], [30, 200, 30], [30, 30, 220], [220, 220, 30], [220, 30, 220], [30, 220, 220]],
    dtype=np.uint8,
)


def pattern_frame(counter: int, width: int, height: int) -> np.ndarray:
    """The RGB picture for frame number `counter` (height x width x 3)."""
    image = np.empty((height, width, 3), dtype=np.uint8)
    band = height // 4
    image[band:] = SECOND_COLOURS[(counter // FPS) % len(SECOND_COLOURS)]
    bar = max(4, width // 20)
    x = (counter * 4) % max(1, width - bar)
    image[band + band // 2 :, x : x + bar] = 255
    block = width // COUNTER_BITS
    image[:band] = 0
    for bit in range(COUNTER_BITS):
        if counter >> (COUNTER_BITS - 1 - bit) & 1:
            image[:band, bit * block : (bit + 1) * block] = 255
    return image


def read_counter(picture: Image.Image) -> int:
    """The frame number a pattern picture shows (inverse of `pattern_frame`)."""
    pixels = np.asarray(picture.convert("L"), dtype=np.float32)
    height, width = pixels.shape
    band, block = height // 4, width // COUNTER_BITS
    value = 0
    for bit in range(COUNTER_BITS):
        # sample the middle of each block, away from edges the codec smears
        cell = pixels[band // 4 : band * 3 // 4, bit * block + block // 4 : (bit + 1) * block - block // 4]
        value = value << 1 | int(cell.mean() > 128)
    return value


def read_colour(picture: Image.Image) -> tuple[int, int, int]:
    """Mean colour of the area below the counter, left of the sweeping bar's lane."""
    rgb = np.asarray(picture.convert("RGB"), dtype=np.float32)
    height = rgb.shape[0]
    band = height // 4
    area = rgb[band + band // 4 : band + band // 2]
    r, g, b = (int(v) for v in area.reshape(-1, 3).mean(axis=0))
    return r, g, b


class PatternTrack(VideoStreamTrack):
    """An aiortc video track that paints `pattern_frame` at 30 fps."""

    def __init__(self, width: int = 640, height: int = 480) -> None:
        super().__init__()
        self.width = width
        self.height = height
        self.counter = 0
        "Number of the frame most recently produced."

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        self.counter = int(pts * time_base * FPS)
        frame = VideoFrame.from_ndarray(pattern_frame(self.counter, self.width, self.height), format="rgb24")
        frame.pts = pts
        frame.time_base = time_base if isinstance(time_base, fractions.Fraction) else fractions.Fraction(time_base)
        return frame


class VideoFileError(Exception):
    """A file FFmpeg cannot read, or one without a video stream."""


# RTP's video clock: frames go to the encoder with timestamps on it, whatever the file's time base.
VIDEO_CLOCK = fractions.Fraction(1, 90000)
FALLBACK_FRAME_SECONDS = 1 / FPS


class FileTrack(MediaStreamTrack):
    """An aiortc video track that plays a video file at its own pace, looped unless `loop` is False.

    Decoding runs in a thread, off the event loop. At the end of the file it is opened again
    and its frames are stamped after the last frame of the previous pass, one frame
    duration apart, so the picture never stalls and the clock never goes back. Without
    `loop` the track ends (its `ended` event) after one pass.
    """

    kind = "video"

    def __init__(self, path: Path, *, loop: bool = True) -> None:
        super().__init__()
        self.path = path
        self.loop = loop
        self.passes = 0
        "Complete passes through the file so far."
        self._frames = self._open()
        self._first = self._next_file_frame()  # fails here, not in the sender, if nothing decodes
        if self._first is None:
            raise VideoFileError(f"{path}: no video frame decodes")
        self._offset = 0.0
        "Seconds before the current pass starts (the length of the previous passes)."
        self._file_start: float | None = None
        "Timestamp of the current pass's first frame in the file, in seconds."
        self._last_time = -1.0
        self._frame_seconds = FALLBACK_FRAME_SECONDS
        self._started_at: float | None = None

    def _open(self) -> Iterator[VideoFrame]:
        try:
            container = av.open(str(self.path))
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise VideoFileError(f"{self.path}: {_reason(exc)}") from None
        if not container.streams.video:
            container.close()
            raise VideoFileError(f"{self.path}: has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        if rate:
            self._frame_seconds = float(1 / rate)
        return self._decode(container, stream)

    @staticmethod
    def _decode(container: av.container.InputContainer, stream: av.VideoStream) -> Iterator[VideoFrame]:
        try:
            yield from container.decode(stream)
        finally:
            container.close()

    def _next_file_frame(self) -> VideoFrame | None:
        try:
            return next(self._frames)
        except StopIteration:
            return None
        except av.FFmpegError as exc:  # a damaged tail: treat as the end of the file
            raise VideoFileError(f"{self.path}: {_reason(exc)}") from None

    def _next_frame(self) -> tuple[VideoFrame, float] | None:
        """The next frame and its time on the track's clock (seconds), or None at the end (no loop)."""
        frame = self._first if self._first is not None else self._next_file_frame()
        self._first = None
        if frame is None:
            self.passes += 1
            if not self.loop:
                return None
            self._offset = self._last_time + self._frame_seconds
            self._file_start = None
            self._frames = self._open()
            frame = self._next_file_frame()
            if frame is None:
                return None
        file_time = float(frame.time) if frame.time is not None else None
        if self._file_start is None:
            self._file_start = file_time or 0.0
        at = self._offset + (file_time - self._file_start if file_time is not None else 0.0)
        if at <= self._last_time:  # missing or repeated timestamps: one frame after the last
            at = self._last_time + self._frame_seconds
        self._last_time = at
        return frame, at

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        try:
            item = await asyncio.to_thread(self._next_frame)
        except VideoFileError:
            item = None
        if item is None:
            self.stop()
            raise MediaStreamError
        frame, at = item
        now = time.monotonic()
        if self._started_at is None:
            self._started_at = now - at
        wait = self._started_at + at - now
        if wait > 0:
            await asyncio.sleep(wait)
        frame.pts = round(at / VIDEO_CLOCK)
        frame.time_base = VIDEO_CLOCK
        return frame


def _reason(exc: BaseException) -> str:
    """Why a file cannot be played, in our words where we know the case, else the system's."""
    if isinstance(exc, FileNotFoundError) or getattr(exc, "errno", None) == errno.ENOENT:
        return "no such file"
    if isinstance(exc, av.InvalidDataError):
        return "not a video file that FFmpeg can read"
    strerror = getattr(exc, "strerror", None)
    return str(strerror) if strerror else str(exc)
