"""The snapshot engine: a picture of a live stream, decoded only when asked for.

For each request the engine picks the cheaper of two ways to the freshest picture:
decode the cached group (the last keyframe and the frames after it), or ask the
publisher for a new keyframe (PLI) and decode that alone. Requests for one stream that
arrive while a picture is being made share it. Decoding and encoding run in a bounded
thread pool, off the event loop.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from streamsnap.media.frames import EncodedFrame, GopCache
from streamsnap.media.imaging import DecodeError, ImageFormat, ImageSpec, Picture, decode_latest, encode, output_size
from streamsnap.media.source import Source
from streamsnap.reasons import SnapshotError, SnapshotFailure

logger = logging.getLogger(__name__)


_T = TypeVar("_T")

PNG = ImageSpec()
"A PNG at the stream's native size: what the WCS protocol answers with."


class KeyframeBudget:
    """A token bucket of keyframe requests for one stream: at most `rate` per second, in bursts of `burst`.

    However many pictures are asked, the publisher is asked for at most this many keyframes.
    """

    def __init__(self, rate: float, burst: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self._clock = clock
        self._tokens = self.burst
        self._refilled = clock()

    def take(self) -> bool:
        """Spend one request if the budget allows it now."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._refilled) * self.rate)
        self._refilled = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


@dataclass(frozen=True)
class EngineSettings:
    """Settings of the snapshot engine."""

    max_frame_age_ms: float = 1000.0
    "A cached picture older than this is not used; a fresh keyframe is asked for instead."
    keyframe_timeout: float = 3.0
    "Seconds to wait for a decodable frame before answering with a failure."
    pli_interval: float = 0.5
    "Seconds between repeated keyframe requests while waiting."
    workers: int = 2
    "Threads that decode and encode."
    png_compress_level: int = 1
    "zlib level of PNG output (0-9)."


@dataclass(frozen=True)
class Snapshot:
    """A picture of a stream, encoded."""

    data: bytes
    "The image file."
    format: ImageFormat
    width: int
    height: int
    frame_arrival: float
    "Monotonic time at which the depicted frame arrived."


LATENCY_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass
class EngineStats:
    """Counters the engine keeps (exposed as metrics, read by tests)."""

    requests: int = 0
    "Requests received."
    coalesced: int = 0
    "Requests served by a picture already being made."
    decodes: int = 0
    "Groups decoded."
    frames_decoded: int = 0
    "Encoded frames decoded, over all groups."
    encodes: int = 0
    "Image files encoded (coalesced requests for the same format and size share one)."
    keyframe_requests: int = 0
    "PLIs sent."
    failures: int = 0
    "Requests answered with an error."
    decode_seconds: float = 0.0
    "Time spent decoding, over all groups."
    encode_seconds: float = 0.0
    "Time spent encoding image files."
    outcomes: dict[str, int] = field(default_factory=dict)
    "Finished requests by outcome: 'ok', or the failure's reason."
    keyframe_requests_withheld: int = 0
    "Keyframe requests not sent because the stream's budget was spent."
    latency_bounds: tuple[float, ...] = LATENCY_BOUNDS
    "Upper bounds (seconds) of the request latency histogram's buckets."
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS) + 1))
    "Requests per bucket (not cumulative); the last one counts those above every bound."
    latency_sum: float = 0.0
    "Seconds spent answering requests, summed."

    def finished(self, outcome: str, seconds: float) -> None:
        """Count one answered request."""
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        self.latency_counts[bisect.bisect_left(self.latency_bounds, seconds)] += 1
        self.latency_sum += seconds


class SnapshotEngine:
    """Makes pictures of streams on request."""

    def __init__(self, settings: EngineSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.stats = EngineStats()
        self._clock = clock
        self._pool = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="snapshot")
        self._pictures: dict[int, asyncio.Task[Picture]] = {}
        self._encodings: dict[tuple[int, ImageSpec], asyncio.Task[bytes]] = {}
        # Running estimates that decide between decoding the cached group and a PLI.
        self._decode_seconds_per_frame = 0.002
        self._keyframe_wait_seconds = 0.1

    async def request(
        self, source: Source, spec: ImageSpec = PNG, *, max_age_ms: float | None = None,
        max_size: tuple[int, int] | None = None, keyframe_budget: KeyframeBudget | None = None,
    ) -> Snapshot:
        """The freshest picture of `source` as `spec` asks; raises `SnapshotError`.

        `max_age_ms` bounds how old a cached frame may be (default: the engine's setting);
        `max_size` caps the output picture, checked on the decoded picture before encoding;
        `keyframe_budget` limits the keyframe requests sent to the stream's publisher.
        """
        self.stats.requests += 1
        started = self._clock()
        try:
            picture = await self._shared(self._pictures, id(source),
                                         lambda: self._take(source, max_age_ms, keyframe_budget))
            width, height = output_size(picture.size, spec)
            if max_size is not None and (width > max_size[0] or height > max_size[1]):
                raise SnapshotError(SnapshotFailure.TOO_LARGE, f"{width}x{height} is larger than the limit "
                                    f"{max_size[0]}x{max_size[1]}")
        except SnapshotError as exc:
            self.stats.failures += 1
            self.stats.finished(exc.reason, self._clock() - started)
            raise
        data = await self._shared(self._encodings, (id(picture), spec), lambda: self._encode(picture, spec))
        self.stats.finished("ok", self._clock() - started)
        return Snapshot(data, spec.format, width, height, picture.source.arrival)

    async def _shared(self, in_flight: dict[Any, asyncio.Task[Any]], key: Any,
                      start: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        """Join the task under `key`, or start it: concurrent equal requests do the work once."""
        task = in_flight.get(key)
        if task is None:
            task = asyncio.ensure_future(start())
            in_flight[key] = task
            task.add_done_callback(lambda _: in_flight.pop(key, None))
        elif in_flight is self._pictures:
            self.stats.coalesced += 1
        return await asyncio.shield(task)

    def close(self) -> None:
        """Stop the worker threads (pending work finishes first)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _take(self, source: Source, max_age_ms: float | None, budget: KeyframeBudget | None) -> Picture:
        video = await self._first_frames(source)
        group = video.group()
        max_age = (self.settings.max_frame_age_ms if max_age_ms is None else max_age_ms) / 1000
        if group and self._clock() - group[-1].arrival <= max_age and self._cache_is_cheaper(len(group)):
            picture = await self._render_cached(source, video, group)
            if picture is not None:
                return picture
        return await self._render_next_keyframe(source, video, budget, max(max_age, self.settings.max_frame_age_ms
                                                                           / 1000))

    async def _render_cached(self, source: Source, video: GopCache, group: list[EncodedFrame]) -> Picture | None:
        """The picture of the cached group's last frame; None (and the group forgotten) when it does not decode."""
        try:
            return await self._render(video.codec, group)
        except DecodeError as exc:
            logger.info("stream %s: cached group not decodable (%s)", source.name, exc)
            video.clear()
            return None

    async def _first_frames(self, source: Source) -> GopCache:
        """The stream's frame cache, once media flows (a stream may be asked for as it starts)."""
        started_or_ended: list[asyncio.Future[Any]] = [source.media_started, source.ended]
        await asyncio.wait(started_or_ended, timeout=self.settings.keyframe_timeout,
                           return_when=asyncio.FIRST_COMPLETED)
        if source.ended.done():
            raise SnapshotError(SnapshotFailure.STREAM_NOT_FOUND, "the stream ended")
        if not source.media_started.done():
            raise SnapshotError(SnapshotFailure.NOT_READY)
        if not source.has_video:
            raise SnapshotError(SnapshotFailure.NO_VIDEO)
        if source.video is None:
            raise SnapshotError(SnapshotFailure.NOT_READY)
        return source.video

    async def _render_next_keyframe(self, source: Source, video: GopCache, budget: KeyframeBudget | None,
                                    fallback_age: float) -> Picture:
        """The picture of the next keyframe, asked for by PLI as the budget allows.

        When the budget withholds a request and the cached group is no older than
        `fallback_age` seconds, that group is the freshest picture there is: it is decoded instead.
        """
        deadline = self._clock() + self.settings.keyframe_timeout
        while (remaining := deadline - self._clock()) > 0:
            started = self._clock()
            if budget is not None and not budget.take():
                self.stats.keyframe_requests_withheld += 1
                group = video.group()
                if group and self._clock() - group[-1].arrival <= fallback_age:
                    picture = await self._render_cached(source, video, group)
                    if picture is not None:
                        return picture
                waiter = video.next_keyframe()
            else:
                waiter = video.next_keyframe()  # before the PLI: its keyframe may come back at once
                if await source.request_keyframe():
                    self.stats.keyframe_requests += 1
            keyframe_or_end: list[asyncio.Future[Any]] = [waiter, source.ended]
            done, _ = await asyncio.wait(
                keyframe_or_end, timeout=min(self.settings.pli_interval, remaining),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if source.ended.done():
                waiter.cancel()
                raise SnapshotError(SnapshotFailure.STREAM_NOT_FOUND, "the stream ended")
            if waiter not in done:
                waiter.cancel()
                continue
            if waiter.exception() is not None:
                raise SnapshotError(SnapshotFailure.STREAM_NOT_FOUND, "the stream ended")
            self._keyframe_wait_seconds = 0.8 * self._keyframe_wait_seconds + 0.2 * (self._clock() - started)
            group = video.group()
            if not group:
                continue
            try:
                return await self._render(video.codec, group)
            except DecodeError as exc:
                logger.info("stream %s: keyframe not decodable (%s)", source.name, exc)
        raise SnapshotError(SnapshotFailure.NO_DECODABLE_FRAME)

    def _cache_is_cheaper(self, frames: int) -> bool:
        return frames * self._decode_seconds_per_frame <= self._keyframe_wait_seconds

    async def _render(self, codec: str, group: list[EncodedFrame]) -> Picture:
        picture, seconds = await self._in_pool(decode_latest, codec, group)
        self.stats.decode_seconds += seconds
        # Timed inside the worker: time spent queued for a worker says nothing of decode cost.
        self._decode_seconds_per_frame = 0.8 * self._decode_seconds_per_frame + 0.2 * seconds / picture.frames_decoded
        self.stats.decodes += 1
        self.stats.frames_decoded += picture.frames_decoded
        return picture

    async def _encode(self, picture: Picture, spec: ImageSpec) -> bytes:
        self.stats.encodes += 1
        data, seconds = await self._in_pool(encode, picture, spec, self.settings.png_compress_level)
        self.stats.encode_seconds += seconds
        return data

    async def _in_pool(self, function: Callable[..., _T], *args: Any) -> tuple[_T, float]:
        """Run `function` in the worker pool; return its result and the seconds it ran."""

        def timed() -> tuple[_T, float]:
            started = time.perf_counter()
            return function(*args), time.perf_counter() - started

        return await asyncio.get_running_loop().run_in_executor(self._pool, timed)
