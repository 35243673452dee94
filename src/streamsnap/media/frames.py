"""Encoded video frames as they arrive, and the bounded cache the snapshot engine decodes from.

Nothing here decodes: a stream nobody asks a picture of costs one list append per frame
and at most `max_bytes` of memory. The size of its pictures is read from each keyframe's
header (the SPS H.264 and H.265 sources put before it, the VP8 keyframe header) as it arrives: the
listings show it at once, and the snapshot engine checks it before anything decodes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from streamsnap.media import h264, h265, vp8

KEYFRAME_CADENCE_SAMPLES = 3
"Intervals between a publisher's own keyframes seen before its cadence is trusted (starts bring extra ones)."

SPS_READS_PER_SECOND = 8
"""SPS units not seen before that one stream may have read per second. An encoder repeats one SPS (read once,
then remembered); a stream sending new ones faster has its frames dropped, not its size read."""

SPS_REMEMBERED = 4
"SPS units (with what they declare) a cache remembers, so that repeated ones are not read again."

FPS_WINDOW = 5.0
"""Seconds of frame arrivals the frame rate is measured over: it follows the stream (a burst at its start,
a pause, a new rate) within that long, where an average since the first frame never forgets."""

FPS_MIN_SPAN = 0.5
"""Seconds the arrivals in the window must span before a rate is told: two frames microseconds apart (a
camera's first packets read at once) tell nothing of the rate, and once divided gave 89553 fps."""

FPS_MAX_ARRIVALS = 512
"Arrival times kept for the rate at most (a stream over ~100 fps is measured over less than the window)."


class HeaderError(ValueError):
    """A frame whose header cannot be read: an H.264 or H.265 SPS, a VP8 keyframe header (or one SPS too many)."""


class DeclaredSize(Protocol):
    """What an SPS (H.264's, H.265's) declares of the pictures after it."""

    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def coded_width(self) -> int: ...
    @property
    def coded_height(self) -> int: ...
    @property
    def coded_pixels(self) -> int: ...


def _macroblocks(pixels: int) -> int:
    """`pixels` rounded up to whole 16-pixel macroblocks (what decoders allocate)."""
    return -(-pixels // 16) * 16


@dataclass(frozen=True, slots=True)
class PictureSize:
    """The size of a stream's pictures as the header of a frame declares it, known before any decode."""

    width: int
    "Width of the pictures shown (after H.264's frame cropping)."
    height: int
    coded_width: int
    "Width a decoder allocates for each picture (whole macroblocks, before cropping)."
    coded_height: int

    @property
    def coded_pixels(self) -> int:
        """Luma samples a decoder allocates per picture."""
        return self.coded_width * self.coded_height

    @classmethod
    def of_sps(cls, readings: Sequence[DeclaredSize]) -> PictureSize:
        """What an SPS declares (`h264.sps_readings`, or the one reading of an H.265 SPS): shown as the standard
        reads it, coded as the largest way a decoder may read it."""
        shown = readings[0]
        coded = max(readings, key=lambda reading: reading.coded_pixels)
        return cls(shown.width, shown.height, coded.coded_width, coded.coded_height)

    @classmethod
    def of_vp8(cls, header: vp8.KeyframeHeader) -> PictureSize:
        """What a VP8 keyframe header declares."""
        return cls(header.width, header.height, _macroblocks(header.width), _macroblocks(header.height))


def vp8_keyframe_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) when `data` is a readable VP8 keyframe (RFC 6386 9.1), else None."""
    try:
        header = vp8.keyframe_header(data)
    except vp8.Vp8Error:
        return None
    return None if header is None else (header.width, header.height)


def is_keyframe(codec: str, data: bytes) -> bool:
    """Whether a decoder can start from this access unit alone."""
    if codec == "VP8":
        return vp8_keyframe_size(data) is not None
    if codec == "H264":
        return h264.starts_decoding(data)
    if codec == "H265":
        return h265.starts_decoding(data)
    return False


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One complete encoded video frame."""

    data: bytes
    "The access unit (VP8 frame, or H.264/H.265 Annex-B)."
    timestamp: int
    "RTP timestamp (90 kHz)."
    keyframe: bool
    "Whether decoding can start here."
    arrival: float
    "Monotonic time at which its last packet arrived."
    size: PictureSize | None = None
    "The picture size its header declares: on every keyframe of a cache, and H.264 frames that carry an SPS."


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
        "When the first frame arrived."
        self._arrivals: deque[float] = deque(maxlen=FPS_MAX_ARRIVALS)
        "When the frames of the last `FPS_WINDOW` seconds arrived, for the frame rate."
        self.picture_size: PictureSize | None = None
        "Picture size the newest readable keyframe declares (its SPS, or VP8 header): known before any decode."
        self.unreadable_headers = 0
        "Frames whose header (SPS, VP8 keyframe header) could not be read: never decoded, their group dropped."
        self.last_keyframe_arrival: float | None = None
        "When the newest keyframe arrived (asked for or not)."
        self.natural_keyframe_interval: float | None = None
        """Seconds between the publisher's own keyframes (those nobody asked for), averaged; None until
        `KEYFRAME_CADENCE_SAMPLES` intervals were seen. A publisher that sends them only when asked (as
        aiortc and many cameras over WebRTC do) never gets one."""
        self._natural_intervals = 0
        self._keyframe_asked_at: float | None = None
        self._sps_seen: dict[bytes, PictureSize] = {}
        self._sps_reads: list[float] = []
        "When SPS units not seen before were read, over the last second."

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) of the pictures shown, from the newest readable keyframe's header."""
        size = self.picture_size
        return None if size is None else (size.width, size.height)

    def add(self, data: bytes, timestamp: int) -> EncodedFrame:
        """Record one frame, as it arrives.

        The picture size its header declares is read here, before anything can decode it: a frame
        whose header cannot be read ends the cached group and is not kept, and so is one that declares
        a size other than its group's keyframe (only a keyframe may change it).
        """
        now = self._clock()
        self.frames_received += 1
        self.last_arrival = now
        if self.first_arrival is None:
            self.first_arrival = now
        arrivals = self._arrivals
        arrivals.append(now)
        while arrivals[0] < now - FPS_WINDOW:
            arrivals.popleft()
        try:
            keyframe, size = self._read_header(data, now)
        except HeaderError:
            self.unreadable_headers += 1
            self.clear()
            return EncodedFrame(data, timestamp, False, now)
        frame = EncodedFrame(data, timestamp, keyframe, now, size)
        if keyframe:
            self.keyframes_received += 1
            self._count_keyframe(now)
            self.picture_size = size
            self._frames = [frame]
            self._bytes = len(data)
            waiters, self._keyframe_waiters = self._keyframe_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        elif self._frames:
            if size is not None and size != self._frames[0].size:
                self.clear()
                return frame
            self._frames.append(frame)
            self._bytes += len(data)
            if len(self._frames) > self.max_frames or self._bytes > self.max_bytes:
                self.clear()
        return frame

    def _read_header(self, data: bytes, now: float) -> tuple[bool, PictureSize | None]:
        """Whether `data` is a keyframe, and the picture size its header declares (None: it has no such
        header); raises `HeaderError`. A keyframe always declares one."""
        try:
            if self.codec == "VP8":
                header = vp8.keyframe_header(data)
                return (False, None) if header is None else (True, PictureSize.of_vp8(header))
            if self.codec == "H264":
                types = h264.nal_types(data)
                size = None
                if h264.NalType.SPS in types or h264.SUBSET_SPS in types:
                    size = self._sps_size(data, now)
                return h264.NalType.IDR in types and h264.NalType.SPS in types, size
            if self.codec == "H265":
                types = h265.nal_types(data)
                size = self._sps_size(data, now) if h265.NalType.SPS in types else None
                return h265.NalType.SPS in types and any(kind in h265.IRAP_TYPES for kind in types), size
        except (h264.H264Error, vp8.Vp8Error) as exc:  # h265.H265Error is one
            raise HeaderError(str(exc)) from None
        return False, None

    def _sps_size(self, access_unit: bytes, now: float) -> PictureSize | None:
        """The largest picture the SPSs of `access_unit` declare; each SPS not seen lately is read, within
        `SPS_READS_PER_SECOND`."""
        largest: PictureSize | None = None
        hevc = self.codec == "H265"
        for unit in h265.parameter_set_units(access_unit) if hevc else h264.parameter_set_units(access_unit):
            size = self._sps_seen.get(unit)
            if size is None:
                self._sps_reads = [read for read in self._sps_reads if now - read < 1.0]
                if len(self._sps_reads) >= SPS_READS_PER_SECOND:
                    raise HeaderError(f"more than {SPS_READS_PER_SECOND} new SPS in a second")
                self._sps_reads.append(now)
                size = PictureSize.of_sps([h265.parse_sps(unit)] if hevc else h264.sps_readings(unit))
                if len(self._sps_seen) >= SPS_REMEMBERED:
                    self._sps_seen.clear()
                self._sps_seen[unit] = size
            if largest is None or size.coded_pixels > largest.coded_pixels:
                largest = size
        return largest

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
        """Frames per second over the last `FPS_WINDOW` seconds of arrivals; 0.0 when no frame came in that
        long; None while too few frames came to tell (fewer than two, or spanning under `FPS_MIN_SPAN`)."""
        if self.last_arrival is None:
            return None
        if self._clock() - self.last_arrival > FPS_WINDOW:
            return 0.0
        arrivals = self._arrivals
        span = arrivals[-1] - arrivals[0]
        if len(arrivals) < 2 or span < FPS_MIN_SPAN:
            return None
        return (len(arrivals) - 1) / span

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
