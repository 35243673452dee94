"""Session-level behaviour over a real socket: keep-alive, and one session's load not blocking others."""

from __future__ import annotations

import asyncio

import pytest

from streamsnap.media.pattern import PatternTrack, read_counter
from streamsnap.wcsclient import WcsClient
from tests.conftest import png_image

pytestmark = pytest.mark.integration


async def test_server_pings_and_drops_a_silent_client(start_server) -> None:  # type: ignore[no-untyped-def]
    server = await start_server(keepalive_interval=0.5, keepalive_timeout=2.5)
    silent = await WcsClient.connect(server.ws_url)
    alive = await WcsClient.connect(server.ws_url)
    try:
        silent.answer_pings = False
        track = PatternTrack(320, 240)
        await silent.publish("silent-cam", [track])
        await asyncio.wait_for(silent.closed, 8)
        assert silent.pings >= 2
        # the dropped session's stream went with it; the answering one is still there
        assert not alive.closed.done()
        assert alive.pings >= 2
        assert await server.node.registry.all() == []
    finally:
        await silent.close()
        await alive.close()


async def test_getuserdata_carries_session_identity(server) -> None:  # type: ignore[no-untyped-def]
    client = await WcsClient.connect(server.ws_url, authToken=None, custom={"room": "a"})
    try:
        data = client.user_data
        assert data["appKey"] == "defaultApp"
        assert data["custom"] == {"room": "a"}
        assert len(data["sessionId"]) >= 8 and len(data["authToken"]) >= 16
    finally:
        await client.close()


async def test_a_slow_snapshot_does_not_hold_up_the_session(server) -> None:  # type: ignore[no-untyped-def]
    """A snapshot waiting for a stream that has no frame yet must not delay the next request."""
    client = await WcsClient.connect(server.ws_url)
    try:
        track = PatternTrack(320, 240)
        await client.publish("ready", [track])
        # publish a second stream but do not wait: its snapshot waits for media
        pending = await client.publish("late", [PatternTrack(320, 240)], wait=False)
        slow = asyncio.ensure_future(client.snapshot("late"))
        picture = await asyncio.wait_for(client.snapshot("ready"), 5)
        assert 0 <= track.counter - read_counter(png_image(picture.png)) <= 20
        await asyncio.wait_for(slow, 10)
        await client.wait_status(pending, "PUBLISHING", 10)
    finally:
        await client.close()
