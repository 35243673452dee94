"""The snapshot and publishing services through real sockets: the same limits and answers on every transport."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiortc import RTCPeerConnection
from aiortc.rtp import RTCP_PSFB_PLI, RtcpPsfbPacket

from streamsnap.media import snapshot as engine_module
from streamsnap.media.pattern import PatternTrack, read_counter
from streamsnap.wcsclient import PublishFailed, SnapshotFailed, WcsClient
from tests.conftest import MAX_LAG_FRAMES, RunningServer, png_image, serve_on_loopback

pytestmark = pytest.mark.integration


async def wait_claimed(server: RunningServer, name: str) -> None:
    """Wait until `name` is in the registry (its offer reached the server)."""
    assert server.node is not None
    async with asyncio.timeout(10):
        while await server.node.registry.lookup(name) is None:  # noqa: ASYNC110 -- no event to await
            await asyncio.sleep(0.02)


async def stuck_stream(server: RunningServer, client: WcsClient, name: str) -> RTCPeerConnection:
    """Offer a stream and never apply the answer: the name is claimed, its media never starts.

    Picture requests of it stay in flight until `keyframe_timeout`. Close the returned peer connection.
    """
    pc = RTCPeerConnection()
    pc.addTransceiver(PatternTrack(160, 120), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    await client.send("publishStream", {"mediaSessionId": f"{name}-id", "name": name, "published": True,
                                        "hasVideo": True, "hasAudio": False, "sdp": pc.localDescription.sdp})
    await wait_claimed(server, name)
    return pc


async def post_snapshot(http: aiohttp.ClientSession, server: RunningServer, name: str) -> tuple[int, Any]:
    async with http.post(f"{server.http_url}/rest-api/stream/snapshot", json={"streamName": name}) as response:
        return response.status, await response.json()


async def get_image(http: aiohttp.ClientSession, url: str, **params: str) -> tuple[int, Any, bytes]:
    async with http.get(url, params=params) as response:
        body = await response.read()
        is_json = response.content_type == "application/json"
        return response.status, (await response.json() if is_json else None), body


async def test_image_url_refuses_past_the_server_limit_and_while_draining(
        start_server: Callable[..., Any], http: aiohttp.ClientSession) -> None:
    server: RunningServer = await start_server(max_snapshots_in_flight=1, keyframe_timeout=1.0)
    publisher = await WcsClient.connect(server.ws_url)
    try:
        pc = await stuck_stream(server, publisher, "stuck")
        url = f"{server.http_url}/streams/stuck/snapshot.png"
        started = time.monotonic()
        results = await asyncio.gather(*(get_image(http, url) for _ in range(30)))
        statuses = sorted(status for status, _, _ in results)
        assert statuses == [429] * 29 + [503], statuses  # one served (not ready), the rest refused
        refused = [body for status, body, _ in results if status == 429]
        assert all(body["reason"] == "server_busy" for body in refused)
        assert all(body["error"] == "Failed by error: too many snapshots in flight on this server" for body in refused)
        assert time.monotonic() - started < 5

        assert server.node is not None
        server.node.state.draining = True  # what a stopping server does first
        status, body, _ = await get_image(http, url)
        assert (status, body["reason"]) == (503, "shutting_down")
        status, body = await post_snapshot(http, server, "stuck")
        assert (status, body["reason"]) == (503, "shutting_down")
        await pc.close()
    finally:
        await publisher.close()


async def test_per_client_limit_on_every_transport(start_server: Callable[..., Any],
                                                   http: aiohttp.ClientSession) -> None:
    server: RunningServer = await start_server(max_snapshots_per_client=2, keyframe_timeout=1.0)
    publisher = await WcsClient.connect(server.ws_url)
    viewer = await WcsClient.connect(server.ws_url)
    try:
        pc = await stuck_stream(server, publisher, "stuck")
        # one address: two WebSocket requests and three HTTP ones; only two may be in flight
        results = await asyncio.gather(
            viewer.snapshot("stuck"), viewer.snapshot("stuck"),
            *(get_image(http, f"{server.http_url}/streams/stuck/snapshot.jpg") for _ in range(3)),
            return_exceptions=True)
        infos = [r.info for r in results[:2] if isinstance(r, SnapshotFailed)]
        statuses = [r[0] for r in results[2:] if isinstance(r, tuple)]
        assert infos == ["Publish stream is not ready"] * 2  # served (media never came)
        assert statuses == [429, 429, 429]
        await pc.close()
    finally:
        await publisher.close()
        await viewer.close()


async def test_picture_past_the_size_cap_is_refused_on_every_transport(
        start_server: Callable[..., Any], http: aiohttp.ClientSession) -> None:
    # H.264 carries its size only in the SPS: the cap is checked on the decoded picture.
    server: RunningServer = await start_server(image_max_width=320, image_max_height=240)
    publisher = await WcsClient.connect(server.ws_url)
    viewer = await WcsClient.connect(server.ws_url)
    try:
        track = PatternTrack(160, 480)
        await publisher.publish("tall", [track], codec="H264")
        with pytest.raises(SnapshotFailed) as refused:
            await viewer.snapshot("tall")
        assert refused.value.info == "Failed by error: picture larger than the server's size limit"
        status, body = await post_snapshot(http, server, "tall")
        assert (status, body["reason"]) == (400, "too_large")
        url = f"{server.http_url}/streams/tall/snapshot.png"
        for params in ({}, {"width": "100"}, {"width": "320"}):
            status, body, _ = await get_image(http, url, **params)
            assert (status, body["reason"]) == (400, "too_large"), params
            assert "is larger than the limit 320x240" in body["error"]
        status, body, _ = await get_image(http, url, width="3840")  # a parameter past the cap
        assert (status, body["field"]) == (400, "width")
        status, _, data = await get_image(http, url, height="240")  # within the cap: served
        assert status == 200
        picture = png_image(data)
        assert picture.size == (80, 240)
        # the session goes on: a stream within the cap is pictured on the same socket
        small = PatternTrack(160, 120)
        await publisher.publish("small", [small], codec="H264")
        answer = await viewer.snapshot("small")
        assert 0 <= small.counter - read_counter(png_image(answer.png)) <= MAX_LAG_FRAMES
    finally:
        await publisher.close()
        await viewer.close()


class SlowBackend:
    """An application backend that allows everything after `delay` seconds."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(self.delay)
        return web.json_response({})


@pytest.fixture
async def slow_backend() -> AsyncIterator[SlowBackend]:
    backend = SlowBackend(0.5)
    app = web.Application()
    app.router.add_post("/hooks", backend.handle)
    runner, port = await serve_on_loopback(app, shutdown_timeout=0.5)
    backend.url = f"http://127.0.0.1:{port}/hooks"
    yield backend
    await runner.cleanup()


async def test_max_streams_holds_with_a_slow_backend_and_concurrent_publishers(
        start_server: Callable[..., Any], slow_backend: SlowBackend) -> None:
    server: RunningServer = await start_server(max_streams=2, backend_url=slow_backend.url, backend_timeout=3.0)
    publishers = [await WcsClient.connect(server.ws_url) for _ in range(8)]
    try:
        results = await asyncio.gather(
            *(client.publish(f"cam-{index}", [PatternTrack(160, 120)]) for index, client in enumerate(publishers)),
            return_exceptions=True)
        published = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, PublishFailed)]
        assert len(published) == 2, results
        assert len(refused) == 6, results
        assert {r.info for r in refused} == {"Failed by error: too many streams on this server"}
        assert server.node is not None
        assert await server.node.registry.count() == 2
    finally:
        for client in publishers:
            await client.close()


async def test_an_unexpected_engine_error_is_answered_and_the_session_goes_on(
        server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
    publisher = await WcsClient.connect(server.ws_url)
    viewer = await WcsClient.connect(server.ws_url)
    try:
        track = PatternTrack(320, 240)
        await publisher.publish("cam", [track])
        real_decode = engine_module.decode_latest

        def broken_decode(*args: Any) -> Any:
            raise RuntimeError("a bug in the decoder")  # not a DecodeError: nothing expects it

        monkeypatch.setattr(engine_module, "decode_latest", broken_decode)
        with pytest.raises(SnapshotFailed) as failed:
            await viewer.snapshot("cam", timeout=5)
        assert failed.value.info == "Failed by error"
        monkeypatch.setattr(engine_module, "decode_latest", real_decode)
        for _ in range(3):  # the pending slot was given back: the session keeps working
            answer = await viewer.snapshot("cam")
            assert 0 <= track.counter - read_counter(png_image(answer.png)) <= MAX_LAG_FRAMES
    finally:
        await publisher.close()
        await viewer.close()


def count_plis(pc: RTCPeerConnection) -> list[float]:
    """Times at which the publisher's video sender receives a PLI (the test peer is instrumented, not the server)."""
    sender = next(s for s in pc.getSenders() if s.track is not None and s.track.kind == "video")
    received: list[float] = []
    original = sender._handle_rtcp_packet

    async def counting(packet: Any) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_PLI:
            received.append(time.monotonic())
        await original(packet)

    sender._handle_rtcp_packet = counting
    return received


async def hammer(http: aiohttp.ClientSession, url: str, seconds: float, loops: int = 4) -> list[int]:
    """Ask for `max_age_ms=0` pictures back to back from `loops` clients for `seconds`; return the statuses."""
    statuses: list[int] = []
    deadline = time.monotonic() + seconds

    async def loop() -> None:
        while time.monotonic() < deadline:
            async with http.get(url, params={"max_age_ms": "0"}) as response:
                await response.read()
                statuses.append(response.status)

    await asyncio.gather(*(loop() for _ in range(loops)))
    return statuses


@pytest.mark.parametrize("rate", [2.0, 50.0])
async def test_max_age_zero_floods_send_at_most_the_keyframe_budget(
        start_server: Callable[..., Any], http: aiohttp.ClientSession, rate: float) -> None:
    server: RunningServer = await start_server(max_keyframe_requests_per_second=rate)
    publisher = await WcsClient.connect(server.ws_url)
    try:
        track = PatternTrack(320, 240)
        publication = await publisher.publish("flooded", [track])
        assert publication.pc is not None
        plis = count_plis(publication.pc)
        seconds = 3.0
        statuses = await hammer(http, f"{server.http_url}/streams/flooded/snapshot.png", seconds)
        assert set(statuses) == {200}
        assert len(statuses) > 20
        if rate == 2.0:
            # the budget: `rate` a second plus a burst of `rate`, whatever the number of requests
            assert len(plis) <= rate * seconds + rate + 1, (len(plis), len(statuses))
        else:  # the same flood with a large budget does reach the publisher: the limit above is what held
            assert len(plis) > 2.0 * seconds + 3, (len(plis), len(statuses))
        status, _, data = await get_image(http, f"{server.http_url}/streams/flooded/snapshot.png", max_age_ms="0")
        assert status == 200
        assert 0 <= track.counter - read_counter(png_image(data)) <= MAX_LAG_FRAMES
    finally:
        await publisher.close()


async def test_a_young_enough_picture_is_reused(server: RunningServer, http: aiohttp.ClientSession) -> None:
    publisher = await WcsClient.connect(server.ws_url)
    try:
        await publisher.publish("reused", [PatternTrack(320, 240)])
        assert server.node is not None
        stats = server.node.engine.stats
        url = f"{server.http_url}/streams/reused/snapshot.jpg"
        _, _, first = await get_image(http, url, max_age_ms="60000")
        requests = stats.requests
        again = [await get_image(http, url, max_age_ms="60000") for _ in range(5)]
        assert {body for _, _, body in again} == {first}  # the same picture, byte for byte
        assert stats.requests == requests  # and the engine was not asked
        _, _, fresh = await get_image(http, url, max_age_ms="0")
        assert fresh != first and stats.requests == requests + 1
    finally:
        await publisher.close()


async def test_rest_and_websocket_give_the_same_picture_answers(server: RunningServer,
                                                                http: aiohttp.ClientSession) -> None:
    viewer = await WcsClient.connect(server.ws_url)
    try:
        with pytest.raises(SnapshotFailed) as failed:
            await viewer.snapshot("nobody")
        status, body = await post_snapshot(http, server, "nobody")
        assert (status, body["error"], body["reason"]) == (404, failed.value.info, "stream_not_found")
        status, body, _ = await get_image(http, f"{server.http_url}/streams/nobody/snapshot.png")
        assert (status, body["error"], body["reason"]) == (404, failed.value.info, "stream_not_found")
    finally:
        await viewer.close()
