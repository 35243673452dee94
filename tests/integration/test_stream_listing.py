"""What `GET /streams` and `/metrics` tell about a stream's frame rate, from a real encoder's connection."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from tests.conftest import RunningServer
from tests.harness import free_port
from tests.harness.rtmp_peer import HostilePeer, connect, publish, sequence_header, set_chunk_size, video_tag

pytestmark = pytest.mark.integration

SLICE = b"\x41\x9a\x00\x10"
"A non-IDR slice (counted as a frame, never decoded here)."


async def listed_fps(http: aiohttp.ClientSession, server: RunningServer, name: str) -> float | None:
    async with http.get(f"{server.http_url}/streams") as response:
        streams = {stream["name"]: stream for stream in await response.json()}
    fps: float | None = streams[name]["fps"]
    return fps


async def test_fps_right_after_a_burst_is_null_then_the_streams_rate(start_server: Callable[..., Any],
                                                                     http: aiohttp.ClientSession) -> None:
    server: RunningServer = await start_server(rtmp_port=free_port())
    assert server.node is not None
    rtmp_port = server.node.settings.rtmp.port
    peer = await HostilePeer.open(rtmp_port)
    try:
        await peer.handshake()
        await peer.send(set_chunk_size(65536) + connect(chunk_size=65536) + publish("burst", 65536))
        answers = b""
        async with asyncio.timeout(5):
            while b"NetStream.Publish.Start" not in answers:
                answers += await peer.read_exactly(1)
        # What an encoder (or a camera's buffer) does at start: a few frames at once, microseconds apart.
        await peer.send(sequence_header(65536) + b"".join(
            video_tag([SLICE], keyframe=False, timestamp=index * 100, chunk_size=65536) for index in range(3)))
        async with asyncio.timeout(5):
            while (stats := server.node.sources.stats("burst")) is None or stats.frames_received < 3:  # noqa: ASYNC110 -- polled: frames come over the socket
                await asyncio.sleep(0.01)
        assert await listed_fps(http, server, "burst") is None  # was 89553.58: 2 frames / 11 µs

        # Then 10 frames a second, as the encoder goes on: every reading on the way is null or near 10.
        readings: list[float | None] = []
        started = time.monotonic()
        for index in range(3, 33):
            await peer.send(video_tag([SLICE], keyframe=False, timestamp=index * 100, chunk_size=65536))
            readings.append(await listed_fps(http, server, "burst"))
            await asyncio.sleep(max(0.0, started + (index - 2) * 0.1 - time.monotonic()))
        told = [fps for fps in readings if fps is not None]
        assert told, readings  # known within three seconds
        assert all(5 <= fps <= 20 for fps in told), readings
        assert 7 <= told[-1] <= 13, readings
    finally:
        peer.close()
