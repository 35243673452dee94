"""Encoded video frames as they arrive, and the bounded cache the snapshot engine decodes from.

Nothing here decodes: a stream nobody asks a picture of costs one list append per frame
and at most `max_bytes` of memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from streamsnap.media import h264

KEYFRAME_CADENCE_SAMPLES = 3
"Intervals between a publisher's own keyframes seen before its cadence is trusted (starts bring extra ones)."


def vp8_keyframe_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) when `data` is a VP8 keyframe (RFC 6386 9.1), else None."""
    if len(data) < 10 or data[0] & 0x01 or data[3:6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(data[6:8], "little") & 0x3FFF
    height = int.from_bytes(data[8:10], "little") & 0x3FFF
    return width, height


def is_keyframe(codec: str, data: bytes) -> bool:
    """Whether a decoder can start from this access unit alone."""
    if codec == "VP8":
        return vp8_keyframe_size(data) is not None
    if codec == "H264":
        return h264.starts_decoding(data)
    return False


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One complete encoded video frame."""

    data: bytes
    "The access unit (VP8 frame, or H.264 Annex-B)."
    timestamp: int
    "RTP timestamp (90 kHz)."
    keyframe: bool
    "Whether decoding can start here."
    arrival: float
    "Monotonic time at which its last packet arrived."


class GopCache:
    """The frames since the last keyframe, bounded in count and bytes.

    When a group outgrows the bounds it is dropped whole: a partial group cannot be
    decoded, and a fresh keyframe (requested by PLI) is then cheaper than keeping it.
    """

    def __init__(self, codec: str, *, max_frames: int, max_bytes: int,
                 clock: Callable[[], float]) -> None:
        self.codec = codec
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self._clock = clock
        self._frames: list[EncodedFrame] = []
        self._bytes = 0
        self._keyframe_waiters: list[asyncio.Future[None]] = []
        self.frames_received = 0
        "Complete frames seen since the stream started."
        self.keyframes_received = 0
        "Keyframes among them."
        self.last_arrival: float | None = None
        "When the newest frame arrived (decodable or not)."
        self.first_arrival: float | None = None
        "When the first frame arrived (with `frames_received`, gives the average frame rate)."
        self.size: tuple[int, int] | None = None
        "Picture size, when the bitstream tells it cheaply (VP8 keyframes)."
        self.last_keyframe_arrival: float | None = None
        "When the newest keyframe arrived (asked for or not)."
        self.natural_keyframe_interval: float | None = None
        """Seconds between the publisher's own keyframes (those nobody asked for), averaged; None until
        `KEYFRAME_CADENCE_SAMPLES` intervals were seen. A publisher that sends them only when asked (as
        aiortc and many cameras over WebRTC do) never gets one."""
        self._natural_intervals = 0
        self._keyframe_asked_at: float | None = None

    def add(self, data: bytes, timestamp: int) -> EncodedFrame:
        """Record one frame, as it arrives."""
        now = self._clock()
        keyframe = is_keyframe(self.codec, data)
        frame = EncodedFrame(data, timestamp, keyframe, now)
        self.frames_received += 1
        self.last_arrival = now
        if self.first_arrival is None:
            self.first_arrival = now
        if keyframe:
            self.keyframes_received += 1
            self._count_keyframe(now)
            if self.codec == "VP8":
                self.size = vp8_keyframe_size(data)
            self._frames = [frame]
            self._bytes = len(data)
            waiters, self._keyframe_waiters = self._keyframe_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        elif self._frames:
            self._frames.append(frame)
            self._bytes += len(data)
            if len(self._frames) > self.max_frames or self._bytes > self.max_bytes:
                self.clear()
        return frame

    def keyframe_asked(self) -> None:
        """A keyframe was asked of the publisher (PLI): the next one is not counted as its own."""
        self._keyframe_asked_at = self._clock()

    def keyframe_interval(self) -> float | None:
        """The publisher's own keyframe interval, when it keeps one: None when it sends keyframes only
        when asked, has not shown its cadence yet, or the current group outlasted twice the average."""
        interval = self.natural_keyframe_interval
        if interval is None or self.last_keyframe_arrival is None or self._natural_intervals < KEYFRAME_CADENCE_SAMPLES:
            return None
        if self._clock() - self.last_keyframe_arrival > 2 * interval:
            return None
        return interval

    def _count_keyframe(self, now: float) -> None:
        # A keyframe within a second of a request is the answer to it, not the publisher's cadence.
        asked = self._keyframe_asked_at is not None and now - self._keyframe_asked_at < 1.0
        if asked:
            self._keyframe_asked_at = None
        elif self.last_keyframe_arrival is not None:
            # From the previous keyframe of either kind: encoders start counting their group anew
            # after a requested keyframe.
            interval = now - self.last_keyframe_arrival
            previous = self.natural_keyframe_interval
            self._natural_intervals += 1
            self.natural_keyframe_interval = interval if previous is None else 0.7 * previous + 0.3 * interval
        self.last_keyframe_arrival = now

    def clear(self) -> None:
        """Forget the cached group (after loss, or when it outgrew the bounds)."""
        self._frames = []
        self._bytes = 0

    def group(self) -> list[EncodedFrame]:
        """The cached group: a keyframe and every frame after it, oldest first (may be empty)."""
        return list(self._frames)

    @property
    def fps(self) -> float | None:
        """Average frames per second since the first frame; None before two frames."""
        if self.first_arrival is None or self.last_arrival is None or self.last_arrival <= self.first_arrival:
            return None
        return (self.frames_received - 1) / (self.last_arrival - self.first_arrival)

    @property
    def cached_bytes(self) -> int:
        """Bytes held by the cached group."""
        return self._bytes

    def next_keyframe(self) -> asyncio.Future[None]:
        """A future resolved when the next keyframe arrives."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._keyframe_waiters.append(waiter)
        return waiter

    def close(self) -> None:
        """The stream ended: wake every waiter with an error, free the frames."""
        self.clear()
        waiters, self._keyframe_waiters = self._keyframe_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(ConnectionError("stream ended"))
