"""The snapshot engine: a picture of a live stream, decoded only when asked for.

For each request the engine picks the cheaper of the ways to a picture fresh enough for the
caller, counted in CPU and keyframe traffic, never in time spent waiting: the last keyframe
alone (when the caller's max age allows it), the cached group (the last keyframe and the frames
after it), or a new keyframe asked of the publisher (PLI) and decoded alone. Requests for one
stream that arrive while a picture is being made share it. Decoding and encoding run in a
bounded pool of worker threads off the event loop, the earliest deadline first; past what the
pool can do in time (measured), or while the media loop runs late, new requests are refused at
once (`SnapshotFailure.OVERLOADED`), and work whose callers have all gone is dropped. A stream whose
keyframe declares a picture over the size cap (`oversize`, read from the SPS or VP8 header as the frame
arrived) is refused before any of that (`SnapshotFailure.TOO_LARGE`): no decode, no worker, no memory.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from streamsnap.config import SnapshotSettings
from streamsnap.media.frames import EncodedFrame, GopCache, PictureSize
from streamsnap.media.imaging import DecodeError, Picture, decode_latest, encode, output_size
from streamsnap.media.looplag import LoopLagMonitor
from streamsnap.media.pool import WorkerPool
from streamsnap.media.source import Source
from streamsnap.picture import PNG, ImageFormat, ImageSpec
from streamsnap.reasons import SnapshotError, SnapshotFailure

logger = logging.getLogger(__name__)

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

    def available(self) -> bool:
        """Whether a request could be spent now (nothing is spent)."""
        self._refill()
        return self._tokens >= 1.0

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._refilled) * self.rate)
        self._refilled = now

    def take(self) -> bool:
        """Spend one request if the budget allows it now."""
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


BACKGROUND_SHARE = 0.5
"The part of the deadline's worth of queued work under which the server's own steady work is still taken."
DEFAULT_FRAME_INTERVAL = 1 / 30
"The publisher's frame interval assumed before its frame rate is known."
PLI_INTERVAL = 0.5
"Seconds between repeated keyframe requests while a picture waits for a keyframe."


def oversize(size: PictureSize, max_width: int, max_height: int) -> str | None:
    """Why pictures of `size` are too large to decode under a cap of `max_width` x `max_height`, or None.

    What a decode costs (memory, time) goes with the pixels, so the cap is on them: a stream's pictures may
    have at most `max_width` x `max_height` pixels, whatever their shape (a portrait or a tall stream is
    decoded, and scaled into the output cap), and the pixels a decoder allocates, coded in whole macroblocks
    (32 lines for interlaced pictures) before the cropping, may not exceed the cap's: an SPS cannot hide a
    large picture behind a small crop.
    """
    cap = f"the limit {max_width}x{max_height}"
    if size.width * size.height > max_width * max_height:
        return f"the stream's pictures are {size.width}x{size.height}, larger than {cap}"
    coded_limit = -(-max_width // 32) * 32 * (-(-max_height // 32) * 32)
    if size.coded_pixels > coded_limit:
        return (f"the stream's pictures are coded at {size.coded_width}x{size.coded_height} "
                f"({size.width}x{size.height} shown), more pixels than {cap}")
    return None


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
class LatencyHistogram:
    """How long answers took, in the buckets `/metrics` reports."""

    bounds: tuple[float, ...] = LATENCY_BOUNDS
    "Upper bounds (seconds) of the buckets."
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS) + 1))
    "Answers per bucket (not cumulative); the last one counts those above every bound."
    total: float = 0.0
    "Seconds spent answering, summed."

    def observe(self, seconds: float) -> None:
        """Count one answer that took `seconds`."""
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds


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
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    "How long finished requests took."
    keyframe_only: int = 0
    "Pictures decoded from the cached keyframe alone (younger than the caller's max age), without its deltas."
    overloaded: int = 0
    "Requests refused at once: the pool could not have served them in time, or the media loop ran late."
    abandoned: int = 0
    "Pictures and encodes stopped because every caller waiting for them had gone."
    decode_cpu_seconds: float = 0.0
    "CPU time of the worker threads decoding (not counting waits for a core or the GIL)."
    too_large: int = 0
    "Pictures refused before any decode: the stream's keyframe declares a picture over the size cap."

    def finished(self, outcome: str, seconds: float) -> None:
        """Count one answered request."""
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        self.latency.observe(seconds)


class _Shared:
    """Work that concurrent equal requests share, and how many of them still wait for it."""

    __slots__ = ("floor", "max_age", "task", "waiters")

    def __init__(self, max_age: float = math.inf) -> None:
        self.task: asyncio.Future[Any] | None = None
        self.waiters = 0
        self.max_age = max_age
        "For a picture: the largest age (seconds) its frame may have when it is chosen."
        self.floor: float | None = None
        "For a picture: the arrival of its frame once chosen (inf while it waits for a keyframe still to come)."

    def fresh_enough(self, now: float, max_age: float) -> bool:
        """Whether the picture's frame is at most `max_age` seconds older than `now` (a caller's arrival)."""
        if self.floor is None:  # not chosen yet: chosen later, by a rule as strict or stricter
            return self.max_age <= max_age
        return self.floor >= now - max_age


class SnapshotEngine:
    """Makes pictures of streams on request."""

    def __init__(self, settings: SnapshotSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.stats = EngineStats()
        self._clock = clock
        self.pool = WorkerPool(settings.workers)
        self.loop_lag = LoopLagMonitor()
        "Run by the server while it is up (`web/app.py`); reads 0 when not running."
        self._pictures: dict[int, _Shared] = {}
        "The latest picture under way, by stream (a caller asking a fresher frame than its own does not join it)."
        self._picture_jobs = 0
        "Pictures under way (more than `_pictures` holds when a fresher one was started beside an older one)."
        self._encodings: dict[tuple[int, ImageSpec], _Shared] = {}
        # Running estimates of what the work costs, measured inside the workers.
        # CPU seconds choose the cheaper way (time spent queued is no cost of either way);
        # wall seconds in the worker give the pool's capacity (a busy machine makes it smaller).
        self._keyframe_cpu = 0.003
        "CPU seconds to decode one keyframe alone."
        self._frame_cpu = 0.001
        "CPU seconds to decode each frame after the keyframe."
        self._decode_wall = 0.004
        self._encode_wall = 0.010

    @property
    def capacity(self) -> float:
        """Pictures per second the pool achieves (decode and encode), as measured so far."""
        return self.settings.workers / (self._decode_wall + self._encode_wall)

    @property
    def backlog(self) -> float:
        """Seconds the pool needs for the pictures and encodes under way, at its measured capacity."""
        pictures = self._picture_jobs + len(self._encodings) * self._encode_wall / (self._decode_wall
                                                                                     + self._encode_wall)
        return pictures / self.capacity

    async def request(
        self, source: Source, spec: ImageSpec = PNG, *, max_age_ms: float | None = None,
        max_size: tuple[int, int] | None = None, keyframe_budget: KeyframeBudget | None = None,
        background: bool = False,
    ) -> Snapshot:
        """The freshest picture of `source` as `spec` asks; raises `SnapshotError`.

        `max_age_ms` bounds how old the depicted frame may be (default: the engine's setting); given,
        it also lets the last keyframe be decoded alone when it is that young. A stream whose pictures are
        over the engine's cap (`max_width` x `max_height`) is refused before any decode; `max_size` caps the
        output picture, checked on the decoded picture before encoding; `keyframe_budget` limits the
        keyframe requests sent to the stream's publisher. A request the server cannot serve in time
        is refused at once with `OVERLOADED` (a `background` one already when the workers are half as busy:
        the server's own steady work yields to pictures somebody waits for); cancelling every request
        waiting for a picture stops its work (a decode not yet started never starts).
        """
        self.stats.requests += 1
        started = self._clock()
        deadline = started + self.settings.deadline_ms / 1000
        max_age = (self.settings.max_frame_age_ms if max_age_ms is None else max_age_ms) / 1000
        try:
            if source.video is not None and source.video.picture_size is not None:
                # Before anything else: a stream whose pictures are over the cap costs no decode and no wait.
                self._check_size(source.video.picture_size)
            under_way = self._pictures.get(id(source))
            if under_way is not None and not under_way.fresh_enough(started, max_age):
                under_way = None  # its frame is older than this caller takes: a fresher picture of its own
            self._admit(joining=under_way is not None, background=background)
            if under_way is None:
                under_way = self._start_picture(source, max_age_ms, keyframe_budget, deadline, max_age)
            else:
                self.stats.coalesced += 1
            picture = await self._wait(self._pictures, id(source), under_way)
            width, height = output_size(picture.size, spec)
            if max_size is not None and (width > max_size[0] or height > max_size[1]):
                raise SnapshotError(SnapshotFailure.TOO_LARGE, f"{width}x{height} is larger than the limit "
                                    f"{max_size[0]}x{max_size[1]}")
        except SnapshotError as exc:
            self.stats.failures += 1
            self.stats.finished(exc.reason, self._clock() - started)
            raise
        data = await self._shared(self._encodings, (id(picture), spec),
                                  lambda: self._encode(picture, spec, deadline))
        self.stats.finished("ok", self._clock() - started)
        return Snapshot(data, spec.format, width, height, picture.source.arrival)

    def _admit(self, *, joining: bool, background: bool = False) -> None:
        """Refuse at once a request the server cannot serve in time: media first, then the pool's capacity.

        `joining`: the request shares a picture under way (which adds no decode); `background`: the server's
        own steady work, which may use only half the deadline's worth of the pool, joining or not (a joiner still
        adds an encode of its own spec: MJPEG feeds of many sizes of one stream).
        """
        lag = self.loop_lag.recent_mean
        reason = ""
        if lag > self.settings.max_event_loop_lag_ms / 1000:
            reason = f"the media loop runs {lag * 1000:.0f} ms late on average"
        elif not joining or background:
            # An idle pool takes any picture, even one slower than the deadline: refusing it would serve nobody.
            backlog = self.backlog
            wait = backlog + 1 / self.capacity
            allowed = self.settings.deadline_ms / 1000 * (BACKGROUND_SHARE if background else 1.0)
            if backlog > 0 and wait > allowed:
                reason = f"{wait:.2f} s of pictures queued at {self.capacity:.0f} pictures/s"
        if reason:
            self.stats.overloaded += 1
            raise SnapshotError(SnapshotFailure.OVERLOADED, reason)

    def _start_picture(self, source: Source, max_age_ms: float | None, budget: KeyframeBudget | None,
                       deadline: float, max_age: float) -> _Shared:
        """Start making a picture of `source` (the one later callers of that stream may share)."""
        job = self._pictures[id(source)] = _Shared(max_age)
        self._picture_jobs += 1
        job.task = asyncio.ensure_future(self._take(source, max_age_ms, budget, deadline, job))

        def done(_: object) -> None:
            self._picture_jobs -= 1
            _forget(self._pictures, id(source), job)

        job.task.add_done_callback(done)
        return job

    async def _shared(self, in_flight: dict[Any, _Shared], key: Any,
                      start: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        """Join the work under `key`, or start it: concurrent equal requests do the work once."""
        shared = in_flight.get(key)
        if shared is None:
            shared = in_flight[key] = _Shared()
            shared.task = task = asyncio.ensure_future(start())
            task.add_done_callback(lambda _: _forget(in_flight, key, shared))
        return await self._wait(in_flight, key, shared)

    async def _wait(self, in_flight: dict[Any, _Shared], key: Any, shared: _Shared) -> Any:
        """The result of `shared`; when the last request waiting for it is cancelled, the work is cancelled too."""
        task = shared.task
        assert task is not None
        shared.waiters += 1
        try:
            return await asyncio.shield(task)
        finally:
            shared.waiters -= 1
            if not shared.waiters and not task.done():  # every caller has gone
                _forget(in_flight, key, shared)
                task.cancel()
                self.stats.abandoned += 1

    def close(self) -> None:
        """Stop the worker threads (running work finishes, queued work is dropped)."""
        self.pool.close()

    async def _take(self, source: Source, max_age_ms: float | None, budget: KeyframeBudget | None,
                    deadline: float, job: _Shared) -> Picture:
        video = await self._first_frames(source)
        group = video.group()
        max_age = job.max_age
        now = self._clock()
        if max_age_ms is not None and group and now - group[0].arrival <= max_age:
            # The caller takes a picture this old: the keyframe alone is the cheapest there is.
            picture = await self._render_cached(source, video, group[:1], deadline, job)
            if picture is not None:
                self.stats.keyframe_only += 1
                return picture
        if group and now - group[-1].arrival <= max_age and self._cache_is_better(video, len(group), budget):
            picture = await self._render_cached(source, video, group, deadline, job)
            if picture is not None:
                return picture
        return await self._render_next_keyframe(source, video, budget, deadline,
                                                max(max_age, self.settings.max_frame_age_ms / 1000), job)

    def _cache_is_better(self, video: GopCache, frames: int, budget: KeyframeBudget | None) -> bool:
        """Whether to decode the `frames` cached frames rather than send a PLI and decode its keyframe.

        While the workers are idle, the caller's wait counts: a PLI's keyframe comes at the publisher's
        next frame slot at the soonest, so a group that decodes in less than one frame interval is the
        sooner picture (and sends no PLI). Otherwise both ways are counted in CPU seconds measured inside
        the workers; the PLI also costs the keyframe it makes the publisher send, the less so the sooner
        the publisher's own keyframe is due. When the stream's keyframe budget is spent, there is no PLI
        to compare with.
        """
        if budget is not None and not budget.available():
            return True
        cached = self._keyframe_cpu + (frames - 1) * self._frame_cpu
        fps = video.fps
        if self.backlog == 0 and cached <= (1 / fps if fps else DEFAULT_FRAME_INTERVAL):
            return True
        interval = video.keyframe_interval()
        since = 0.0 if video.last_keyframe_arrival is None else self._clock() - video.last_keyframe_arrival
        # A PLI moves the next keyframe earlier: it adds a whole keyframe when the publisher sends none
        # of its own, almost nothing when its own is due anyway.
        extra_keyframes = 1.0 if interval is None else max(0.0, 1.0 - since / interval)
        keyframe = self._keyframe_cpu + extra_keyframes * self.settings.keyframe_request_cost_frames * self._frame_cpu
        return cached <= keyframe

    async def _render_cached(self, source: Source, video: GopCache, group: list[EncodedFrame],
                             deadline: float, job: _Shared) -> Picture | None:
        """The picture of the group's last frame; None (and the cached group forgotten) when it does not decode."""
        try:
            return await self._render(video.codec, group, deadline, job)
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
                                    deadline: float, fallback_age: float, job: _Shared) -> Picture:
        """The picture of the next keyframe, asked for by PLI as the budget allows, decoded alone.

        When the budget withholds a request and the cached group is no older than
        `fallback_age` seconds, that group is the freshest picture there is: it is decoded instead.
        """
        give_up = self._clock() + self.settings.keyframe_timeout
        while (remaining := give_up - self._clock()) > 0:
            if budget is not None and not budget.take():
                self.stats.keyframe_requests_withheld += 1
                group = video.group()
                if group and self._clock() - group[-1].arrival <= fallback_age:
                    picture = await self._render_cached(source, video, group, deadline, job)
                    if picture is not None:
                        return picture
                waiter = video.next_keyframe()
            else:
                waiter = video.next_keyframe()  # before the PLI: its keyframe may come back at once
                if await source.request_keyframe():
                    self.stats.keyframe_requests += 1
                    video.keyframe_asked()
                else:
                    # Nobody to ask (RTMP has no way back to the encoder): the cached group is the
                    # freshest picture there is, rather than waiting for the encoder's own keyframe.
                    group = video.group()
                    if group and self._clock() - group[-1].arrival <= fallback_age:
                        waiter.cancel()
                        picture = await self._render_cached(source, video, group, deadline, job)
                        if picture is not None:
                            return picture
                        waiter = video.next_keyframe()
            job.floor = math.inf  # the keyframe waited for comes after anyone who joins now
            keyframe_or_end: list[asyncio.Future[Any]] = [waiter, source.ended]
            try:
                done, _ = await asyncio.wait(
                    keyframe_or_end, timeout=min(PLI_INTERVAL, remaining),
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                if not waiter.done():
                    waiter.cancel()
            if source.ended.done():
                raise SnapshotError(SnapshotFailure.STREAM_NOT_FOUND, "the stream ended")
            if waiter not in done:
                continue
            if waiter.exception() is not None:
                raise SnapshotError(SnapshotFailure.STREAM_NOT_FOUND, "the stream ended")
            group = video.group()
            if not group:
                continue
            try:
                # The keyframe alone: frames that arrived after it while this task waited for the
                # loop would make a busy server decode more per picture, not less.
                return await self._render(video.codec, group[:1], deadline, job)
            except DecodeError as exc:
                logger.info("stream %s: keyframe not decodable (%s)", source.name, exc)
        raise SnapshotError(SnapshotFailure.NO_DECODABLE_FRAME)

    def _check_size(self, size: PictureSize) -> None:
        """Refuse (`TOO_LARGE`) pictures larger than the cap (`max_width` x `max_height`) before any decode."""
        reason = oversize(size, self.settings.max_width, self.settings.max_height)
        if reason is not None:
            self.stats.too_large += 1
            raise SnapshotError(SnapshotFailure.TOO_LARGE, reason)

    async def _render(self, codec: str, group: list[EncodedFrame], deadline: float, job: _Shared) -> Picture:
        # The one way to a decoder: the size the keyframe declares (read as the cache took it) is checked first.
        declared = group[0].size
        if declared is None:
            raise SnapshotError(SnapshotFailure.NO_DECODABLE_FRAME, "the keyframe declares no picture size")
        self._check_size(declared)
        job.floor = group[-1].arrival  # the frame is chosen: only callers who take one this old may join now
        ran = await self.pool.run(deadline, decode_latest, codec, group)
        picture = ran.value
        self.stats.decode_seconds += ran.wall_seconds
        self.stats.decode_cpu_seconds += ran.cpu_seconds
        # Timed inside the worker: time spent queued for a worker says nothing of decode cost.
        frames = picture.frames_decoded
        if frames == 1:
            self._keyframe_cpu = 0.8 * self._keyframe_cpu + 0.2 * ran.cpu_seconds
        else:
            per_frame = max(1e-5, (ran.cpu_seconds - self._keyframe_cpu) / (frames - 1))
            self._frame_cpu = 0.8 * self._frame_cpu + 0.2 * per_frame
        self._decode_wall = 0.9 * self._decode_wall + 0.1 * ran.wall_seconds
        self.stats.decodes += 1
        self.stats.frames_decoded += frames
        return picture

    async def _encode(self, picture: Picture, spec: ImageSpec, deadline: float) -> bytes:
        self.stats.encodes += 1
        ran = await self.pool.run(deadline, encode, picture, spec, self.settings.png_compress_level)
        self.stats.encode_seconds += ran.wall_seconds
        self._encode_wall = 0.9 * self._encode_wall + 0.1 * ran.wall_seconds
        return ran.value


def _forget(in_flight: dict[Any, _Shared], key: Any, shared: _Shared) -> None:
    """Drop `shared` from `in_flight` (unless newer work took its key already)."""
    if in_flight.get(key) is shared:
        del in_flight[key]
