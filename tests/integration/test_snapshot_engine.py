"""The snapshot engine against a real aiortc publisher: freshness, the PLI path, coalescing, bounds.

These read the engine's counters (what /metrics will expose) beside the pictures themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from streamsnap.media.imaging import ImageFormat, ImageSpec
from streamsnap.media.pattern import PatternTrack, read_counter
from streamsnap.wcsclient import WcsClient
from tests.conftest import MAX_LAG_FRAMES, RunningServer, png_image

pytestmark = pytest.mark.integration



async def publish(
    server: RunningServer, name: str, size: tuple[int, int] = (320, 240)
) -> tuple[WcsClient, PatternTrack]:
    client = await WcsClient.connect(server.ws_url)
    track = PatternTrack(*size)
    await client.publish(name, [track])
    return client, track


async def test_fresh_picture_after_long_idle_uses_a_new_keyframe(start_server: Callable[..., Any]) -> None:
    # A small cache bound makes "long idle" short: after 1 s the cached group is gone.
    server: RunningServer = await start_server(gop_max_frames=15)
    client, track = await publish(server, "idle")
    try:
        assert server.node is not None
        stats = server.node.engine.stats
        stream = server.node.sources.get("idle")
        assert stream is not None and stream.video is not None
        video = stream.video
        for _ in range(2):
            await asyncio.sleep(1.0)
            # aiortc's encoder may start a new group when the bitrate changes; wait until the
            # group has outgrown the bound again, so that nothing decodable is cached.
            async with asyncio.timeout(5):
                while video.group():  # noqa: ASYNC110 -- polling a cache the test does not own
                    await asyncio.sleep(0.02)
            requests_before = stats.keyframe_requests
            picture = await client.snapshot("idle")
            assert stats.keyframe_requests > requests_before  # the PLI path was taken
            assert 0 <= track.counter - read_counter(png_image(picture.png)) <= MAX_LAG_FRAMES
            assert picture.payload["frameAgeMs"] < 500
    finally:
        await client.close()


async def test_cached_group_is_decoded_without_asking_for_a_keyframe(server: RunningServer) -> None:
    client, track = await publish(server, "cached")
    try:
        assert server.node is not None
        stats = server.node.engine.stats
        await client.snapshot("cached")  # may ask for a keyframe: the group then starts anew
        await asyncio.sleep(0.15)  # a few frames after that keyframe: fewer than a PLI is worth
        requests_before, frames_before = stats.keyframe_requests, stats.frames_decoded
        picture = await client.snapshot("cached")
        assert stats.keyframe_requests == requests_before
        assert stats.frames_decoded - frames_before > 1  # keyframe and the frames after it
        assert 0 <= track.counter - read_counter(png_image(picture.png)) <= MAX_LAG_FRAMES
    finally:
        await client.close()


async def test_a_hundred_concurrent_requests_cost_one_decode(server: RunningServer) -> None:
    client, track = await publish(server, "popular", (640, 480))
    try:
        assert server.node is not None
        engine = server.node.engine
        stream = server.node.sources.get("popular")
        assert stream is not None
        await client.snapshot("popular")
        decodes, encodes = engine.stats.decodes, engine.stats.encodes
        snapshots = await asyncio.gather(*(engine.request(stream) for _ in range(100)))
        assert engine.stats.decodes == decodes + 1
        assert engine.stats.encodes == encodes + 1
        assert len({s.data for s in snapshots}) == 1
        assert 0 <= track.counter - read_counter(png_image(snapshots[0].data)) <= MAX_LAG_FRAMES

        # Different formats of the same moment share the decode, not the encode.
        decodes, encodes = engine.stats.decodes, engine.stats.encodes
        specs = [ImageSpec(), ImageSpec(ImageFormat.JPEG), ImageSpec(ImageFormat.WEBP, width=160)] * 10
        snapshots = await asyncio.gather(*(engine.request(stream, spec) for spec in specs))
        assert engine.stats.decodes == decodes + 1
        assert engine.stats.encodes == encodes + 3
        assert {(s.format, s.width, s.height) for s in snapshots} == {
            (ImageFormat.PNG, 640, 480), (ImageFormat.JPEG, 640, 480), (ImageFormat.WEBP, 160, 120)}
    finally:
        await client.close()


async def test_requests_over_the_wire_are_coalesced(server: RunningServer) -> None:
    client, _ = await publish(server, "wire", (640, 480))
    viewers = [await WcsClient.connect(server.ws_url) for _ in range(4)]
    try:
        assert server.node is not None
        stats = server.node.engine.stats
        await asyncio.sleep(1.5)  # let the cached group grow so the request waits on a keyframe
        decodes = stats.decodes
        pictures = await asyncio.gather(*(viewers[k % 4].snapshot("wire") for k in range(40)))
        assert len(pictures) == 40
        assert stats.decodes - decodes < 10
        assert stats.coalesced > 0
    finally:
        await client.close()
        for viewer in viewers:
            await viewer.close()


async def test_memory_stays_bounded_without_a_second_keyframe(start_server: Callable[..., Any]) -> None:
    # aiortc's encoder sends a keyframe at the start (and again when told a new bitrate),
    # then only when asked: the cache has to stay within its bound on its own.
    server: RunningServer = await start_server(gop_max_frames=1000, gop_max_bytes=60_000)
    client, track = await publish(server, "long-gop", (640, 480))
    try:
        assert server.node is not None
        stream = server.node.sources.get("long-gop")
        assert stream is not None and stream.video is not None
        video = stream.video
        await asyncio.sleep(0.5)
        keyframes, frames = video.keyframes_received, video.frames_received
        largest = 0
        for _ in range(40):
            await asyncio.sleep(0.05)
            largest = max(largest, video.cached_bytes)
        assert video.frames_received - frames > 40
        assert video.keyframes_received - keyframes <= 1
        assert 0 < largest <= 60_000
        keyframes = video.keyframes_received
        picture = await client.snapshot("long-gop")  # still served, through a fresh keyframe
        assert 0 <= track.counter - read_counter(png_image(picture.png)) <= MAX_LAG_FRAMES
        assert video.keyframes_received > keyframes
    finally:
        await client.close()


async def test_snapshot_in_flight_when_the_stream_ends_fails_promptly(start_server: Callable[..., Any]) -> None:
    server: RunningServer = await start_server(gop_max_frames=5, keyframe_timeout=10)
    client, _ = await publish(server, "ending")
    viewer = await WcsClient.connect(server.ws_url)
    try:
        await asyncio.sleep(0.5)
        # Stop the publisher's media so no keyframe can come, then ask and end the stream.
        publication = next(iter(client.publications.values()))
        assert publication.pc is not None
        for sender in publication.pc.getSenders():
            sender._enabled = False
        pending = asyncio.ensure_future(viewer.snapshot("ending", timeout=10))
        await asyncio.sleep(0.3)
        assert not pending.done()
        await client.unpublish(publication)
        started = asyncio.get_running_loop().time()
        with pytest.raises(Exception) as failed:
            await pending
        assert asyncio.get_running_loop().time() - started < 2
        assert getattr(failed.value, "info", None) == "Stream not found"
    finally:
        await client.close()
        await viewer.close()
