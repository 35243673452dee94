"""Pictures under heavy load, with real publishers: the excess is refused fast, the rest is served right.

A small server (one worker thread, a short deadline) gets bursts of requests for large pictures
of many streams, far more than it can make in time. The requests it cannot serve in time are
refused at once with the overload reason; the pictures it serves show the right frame; no
published stream ends; and decoding per picture stays one frame however busy the server is.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from streamsnap.media.imaging import ImageSpec
from streamsnap.media.pattern import PatternTrack, read_counter
from streamsnap.media.pool import WorkerPool
from streamsnap.media.snapshot import EngineStats, SnapshotEngine
from streamsnap.media.source import Source
from streamsnap.reasons import SnapshotFailure
from streamsnap.service.node import Node
from streamsnap.wcsclient import SnapshotFailed, WcsClient
from streamsnap.web.wcs import SNAPSHOT_INFO
from tests.conftest import MAX_LAG_FRAMES, RunningServer, png_image

pytestmark = pytest.mark.integration

STREAMS = 6
OVERLOADED_DEADLINE_MS = 10
BIG = {"width": "1920", "max_age_ms": "0"}
"A large picture (a 320x240 stream scaled up: costly to encode) of a fresh frame (a PLI each)."


@dataclass
class Answer:
    stream: int
    status: int
    seconds: float
    "From the request sent to the answer read, client side."
    body: bytes
    reason: str | None
    retry_after: str | None
    counter: int = 0
    "The publisher's frame counter when the answer was read."


async def fetch(http: aiohttp.ClientSession, server: RunningServer, stream: int, **params: str) -> Answer:
    started = time.perf_counter()
    async with http.get(f"{server.http_url}/streams/load{stream}/snapshot.png", params=params) as response:
        body = await response.read()
        reason = (await response.json())["reason"] if response.content_type == "application/json" else None
        return Answer(stream, response.status, time.perf_counter() - started, body, reason,
                      response.headers.get("Retry-After"))


async def occupy_the_worker(pool: WorkerPool) -> tuple[asyncio.Future[Any], threading.Event]:
    """Give the pool's only worker a job that holds it until the event returned is set."""
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(10)

    busy = asyncio.ensure_future(pool.run(0.0, hold))
    async with asyncio.timeout(5):
        while not started.is_set():  # noqa: ASYNC110 -- the worker taking the job
            await asyncio.sleep(0.005)
    return busy, release


@dataclass
class HeldWorker:
    """A warm engine with its only worker held busy, so that the next picture's decode waits in the queue."""

    engine: SnapshotEngine
    source: Source
    busy: asyncio.Future[Any]
    release: threading.Event

    async def until_queued(self) -> None:
        """Until a decode job waits in the pool's queue."""
        async with asyncio.timeout(5):
            while self.engine.pool.stats.queued == 0:  # noqa: ASYNC110 -- the decode job reaching the queue
                await asyncio.sleep(0.005)

    async def let_go(self) -> None:
        """Free the worker."""
        self.release.set()
        await self.busy


async def hold_the_worker(node: Node | None, name: str) -> HeldWorker:
    """`name`'s source and the engine, warmed by one picture (media flows, estimates are measured), with
    the engine's only worker held busy."""
    assert node is not None
    source = node.sources.get(name)
    assert source is not None
    await node.engine.request(source, max_age_ms=0)
    busy, release = await occupy_the_worker(node.engine.pool)
    return HeldWorker(node.engine, source, busy, release)


def frames_per_picture(stats: EngineStats, before: tuple[int, int]) -> float:
    decodes, frames = stats.decodes - before[0], stats.frames_decoded - before[1]
    assert decodes > 0
    return frames / decodes


Loaded = tuple[RunningServer, WcsClient, list[PatternTrack]]


@pytest.fixture
async def overloaded(start_server: Callable[..., Any]) -> AsyncIterator[Loaded]:
    """A server with one worker and a 10 ms deadline (the least allowed: a burst of one picture per stream is
    then several deadlines' worth of work on any machine, however cheap pictures get), and `STREAMS` live 320x240
    pattern streams."""
    async with publishing(await start_server(snapshot_workers=1, snapshot_deadline_ms=OVERLOADED_DEADLINE_MS,
                                             max_keyframe_requests_per_second=50)) as loaded:
        yield loaded


@pytest.fixture
async def loaded(start_server: Callable[..., Any]) -> AsyncIterator[Loaded]:
    """A server with one worker (and the default deadline), and `STREAMS` live 320x240 pattern streams."""
    async with publishing(await start_server(snapshot_workers=1)) as loaded:
        yield loaded


@contextlib.asynccontextmanager
async def publishing(server: RunningServer) -> AsyncIterator[Loaded]:
    publisher = await WcsClient.connect(server.ws_url)
    tracks = [PatternTrack(320, 240) for _ in range(STREAMS)]
    try:
        for k, track in enumerate(tracks):
            await publisher.publish(f"load{k}", [track])
        yield server, publisher, tracks
    finally:
        await publisher.close()


async def test_a_burst_past_capacity_is_refused_fast_and_what_is_served_is_right(
        overloaded: Loaded, http: aiohttp.ClientSession) -> None:
    server, publisher, tracks = overloaded
    assert server.node is not None
    engine = server.node.engine
    stats = engine.stats
    # Light load first: one big picture at a time (this also teaches the engine what they cost).
    for k in range(STREAMS):
        for _ in range(2):
            answer = await fetch(http, server, k, **BIG)
            assert answer.status == 200
    before = (stats.decodes, stats.frames_decoded)
    for k in range(STREAMS):
        assert (await fetch(http, server, k, **BIG)).status == 200
    light = frames_per_picture(stats, before)
    capacity = engine.capacity
    assert capacity > 0
    # The premise: one picture of every stream is at least twice the deadline's worth of the worker's time.
    assert STREAMS / capacity > 2 * OVERLOADED_DEADLINE_MS / 1000, capacity

    # Bursts: every stream asked at once, four times each (they share one picture per stream),
    # three times over: far more work than one worker does in the deadline.
    before = (stats.decodes, stats.frames_decoded)
    answers: list[Answer] = []
    for _ in range(3):
        answers += await asyncio.gather(*(fetch(http, server, k, **BIG) for k in range(STREAMS) for _ in range(4)))
        for answer in answers:
            answer.counter = answer.counter or tracks[answer.stream].counter
        await asyncio.sleep(0.2)
    served = [a for a in answers if a.status == 200]
    refused = [a for a in answers if a.status != 200]
    assert served, "a server past its capacity still serves what it can"
    assert refused, f"{len(answers)} requests at {capacity:.0f} pictures/s: some must be refused"
    assert {(a.status, a.reason, a.retry_after) for a in refused} == {(503, SnapshotFailure.OVERLOADED.value, "1")}
    refusal_times = sorted(a.seconds for a in refused)
    assert refusal_times[len(refusal_times) // 2] < 0.05, refusal_times  # refused fast, not after a wait
    assert refusal_times[-1] < 0.5, refusal_times
    assert frames_per_picture(stats, before) <= max(light, 1.0) + 0.01  # no costlier path under load
    assert stats.overloaded >= len(refused)

    # What was served shows the stream's frame, at the size asked.
    # (Decoded in a thread: this test's loop is the server's too, and a late loop refuses pictures.)
    for answer in served:
        image = await asyncio.to_thread(png_image, answer.body)
        assert image.size == (1920, 1440)
        assert 0 <= answer.counter - read_counter(image) <= MAX_LAG_FRAMES

    # No published stream ended: each is still live and still pictured.
    assert all(p.status == "PUBLISHING" for p in publisher.publications.values())
    assert len(await server.node.registry.all()) == STREAMS
    for k in range(STREAMS):
        picture = await publisher.snapshot(f"load{k}")
        assert 0 <= tracks[k].counter - read_counter(png_image(picture.png)) <= MAX_LAG_FRAMES


async def test_a_cancelled_request_does_not_decode(
        loaded: Loaded) -> None:
    held = await hold_the_worker(loaded[0].node, "load0")
    engine, source = held.engine, held.source
    decodes, frames, skipped = engine.stats.decodes, engine.stats.frames_decoded, engine.pool.stats.skipped
    request = asyncio.ensure_future(engine.request(source, ImageSpec(), max_age_ms=0))
    await held.until_queued()
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    # The cancellation reaches the queued job through the picture's own tasks, a turn of the loop each; only
    # then is the worker let go (else it may take the job first: a race of this test, not of the server's).
    for _ in range(10):
        await asyncio.sleep(0)
    await held.let_go()
    await engine.request(source, max_age_ms=0)  # the pool goes on with later work
    assert engine.pool.stats.skipped == skipped + 1
    assert engine.stats.decodes == decodes + 1  # only the later request's
    assert engine.stats.frames_decoded == frames + 1
    assert engine.stats.abandoned >= 1


async def test_a_picture_goes_on_while_one_of_its_callers_waits(loaded: Loaded) -> None:
    server, _, tracks = loaded
    held = await hold_the_worker(server.node, "load4")
    engine, source = held.engine, held.source
    decodes, abandoned = engine.stats.decodes, engine.stats.abandoned
    staying = asyncio.ensure_future(engine.request(source, max_age_ms=0))
    leaving = asyncio.ensure_future(engine.request(source, max_age_ms=0))
    await held.until_queued()
    leaving.cancel()
    await held.let_go()
    picture = await staying
    assert engine.stats.decodes == decodes + 1
    assert engine.stats.abandoned == abandoned
    image = await asyncio.to_thread(png_image, picture.data)
    assert 0 <= tracks[4].counter - read_counter(image) <= MAX_LAG_FRAMES


async def test_a_caller_joins_a_picture_under_way_only_when_its_frame_is_fresh_enough(loaded: Loaded) -> None:
    server, _, tracks = loaded
    held = await hold_the_worker(server.node, "load3")
    engine, source = held.engine, held.source
    decodes, coalesced = engine.stats.decodes, engine.stats.coalesced
    first = asyncio.ensure_future(engine.request(source, max_age_ms=0))
    await held.until_queued()  # its keyframe came and its decode is queued
    await asyncio.sleep(0.1)  # frames arrive after the one the queued picture shows
    asked_at = tracks[3].counter
    # Taking a frame up to 5 s old: the queued picture does.
    relaxed = asyncio.ensure_future(engine.request(source, max_age_ms=5000))
    await asyncio.sleep(0)
    # Asking a frame no older than the request: the queued picture's is older, so a picture of its own.
    fresh = asyncio.ensure_future(engine.request(source, max_age_ms=0))
    await asyncio.sleep(0.1)
    await held.let_go()
    pictures = await asyncio.gather(first, fresh, relaxed)
    counters = [read_counter(await asyncio.to_thread(png_image, p.data)) for p in pictures]
    assert counters[0] < asked_at <= counters[1]
    assert counters[2] == counters[0]
    assert engine.stats.decodes == decodes + 2
    assert engine.stats.coalesced == coalesced + 1


async def test_an_http_caller_that_hangs_up_stops_its_picture(start_full_server: Callable[..., Any]) -> None:
    server = await start_full_server(snapshot_workers=1)  # as `serve` runs it
    publisher = await WcsClient.connect(f"ws://127.0.0.1:{server.port('http')}/")
    await publisher.publish("load5", [PatternTrack(320, 240)])
    held = await hold_the_worker(server.node, "load5")
    engine, source = held.engine, held.source
    decodes, skipped = engine.stats.decodes, engine.pool.stats.skipped
    _, writer = await asyncio.open_connection("127.0.0.1", server.port("http"))
    writer.write(b"GET /streams/load5/snapshot.png?max_age_ms=0 HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    await held.until_queued()
    writer.close()  # the caller hangs up before its picture is decoded
    await writer.wait_closed()
    async with asyncio.timeout(5):
        while engine.stats.abandoned == 0:  # noqa: ASYNC110 -- the server noticing
            await asyncio.sleep(0.01)
    await held.let_go()
    await engine.request(source, max_age_ms=0)  # the pool goes on with later work
    assert engine.pool.stats.skipped == skipped + 1
    assert engine.stats.decodes == decodes + 1  # only the later request's
    await publisher.close()


async def test_the_server_keeps_live_streams_out_of_full_collections(start_server: Callable[..., Any]) -> None:
    gc.unfreeze()
    server: RunningServer = await start_server()
    publisher = await WcsClient.connect(server.ws_url)
    try:
        await publisher.publish("kept", [PatternTrack(160, 120)])
        async with asyncio.timeout(10):  # the keeper looks every 2 s
            while gc.get_freeze_count() == 0:  # noqa: ASYNC110 -- the heap keeper's doing
                await asyncio.sleep(0.1)
    finally:
        await publisher.close()
        gc.unfreeze()


async def test_a_closed_session_stops_its_pictures(
        loaded: Loaded) -> None:
    server, _, _ = loaded
    assert server.node is not None
    engine = server.node.engine
    source = server.node.sources.get("load1")
    assert source is not None
    await engine.request(source)
    busy, release = await occupy_the_worker(engine.pool)
    viewer = await WcsClient.connect(server.ws_url)
    decodes, skipped = engine.stats.decodes, engine.pool.stats.skipped
    asking = asyncio.ensure_future(viewer.snapshot("load1", timeout=5))
    async with asyncio.timeout(5):
        while engine.pool.stats.queued == 0:  # noqa: ASYNC110 -- the decode job reaching the queue
            await asyncio.sleep(0.005)
    await viewer.close()  # the caller goes away
    asking.cancel()
    async with asyncio.timeout(5):
        while engine.stats.abandoned == 0:  # noqa: ASYNC110 -- the server noticing the closed socket
            await asyncio.sleep(0.005)
    release.set()
    await busy
    await asyncio.gather(asking, return_exceptions=True)
    await asyncio.sleep(0.1)
    assert engine.pool.stats.skipped == skipped + 1
    assert engine.stats.decodes == decodes


async def test_keyframe_alone_when_the_caller_allows_its_age(
        loaded: Loaded, http: aiohttp.ClientSession) -> None:
    server, _, tracks = loaded
    assert server.node is not None
    stats = server.node.engine.stats
    assert (await fetch(http, server, 2, max_age_ms="0")).status == 200  # a fresh keyframe (PLI)
    source = server.node.sources.get("load2")
    assert source is not None and source.video is not None
    await asyncio.sleep(0.4)  # a dozen frames after it
    group = source.video.group()
    assert len(group) > 5
    keyframe_age_ms = (time.monotonic() - group[0].arrival) * 1000
    frames, keyframe_only = stats.frames_decoded, stats.keyframe_only
    # (At the native size, but not the spec of the picture above: that one would be reused.)
    answer = await fetch(http, server, 2, max_age_ms=str(keyframe_age_ms + 2000), width="320")
    assert answer.status == 200
    assert stats.frames_decoded == frames + 1  # the keyframe alone, no deltas
    assert stats.keyframe_only == keyframe_only + 1
    # It shows the keyframe's moment: older than the newest frame by about the frames after it.
    lag = tracks[2].counter - read_counter(png_image(answer.body))
    assert len(group) - 1 <= lag <= len(group) + MAX_LAG_FRAMES

    # Younger than the keyframe: not the keyframe alone.
    frames, keyframe_only = stats.frames_decoded, stats.keyframe_only
    answer = await fetch(http, server, 2, max_age_ms="150", width="200")
    assert answer.status == 200
    assert stats.keyframe_only == keyframe_only


async def test_a_late_media_loop_refuses_new_pictures_on_every_transport(
        loaded: Loaded, http: aiohttp.ClientSession) -> None:
    server, publisher, _ = loaded
    assert server.node is not None
    monitor = server.node.engine.loop_lag
    await asyncio.sleep(0.1)
    for _ in range(6):  # the loop (server and test share it) kept busy, as a flood of work on it would
        time.sleep(0.4)  # noqa: ASYNC251
        await asyncio.sleep(0)  # the monitor wakes late, each time
    assert monitor.recent >= 0.3
    assert monitor.recent_mean > 0.25
    answer = await fetch(http, server, 3)
    assert (answer.status, answer.reason, answer.retry_after) == (503, "overloaded", "1")
    with pytest.raises(SnapshotFailed) as failed:
        await publisher.snapshot("load3")
    assert failed.value.info == SNAPSHOT_INFO[SnapshotFailure.OVERLOADED]
    async with http.get(f"{server.http_url}/metrics") as response:
        text = await response.text()
    assert "streamsnap_event_loop_lag_seconds" in text
    assert "streamsnap_snapshot_capacity" in text
    async with asyncio.timeout(5):  # once the loop keeps time again, pictures are made again
        while monitor.recent_mean > 0.25:  # noqa: ASYNC110 -- the lag window passing
            await asyncio.sleep(0.05)
    assert (await fetch(http, server, 3)).status == 200
