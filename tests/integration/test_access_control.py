"""Access control over real sockets: tokens, Origin, and a real backend answering the hooks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from streamsnap.access import SIGNATURE_HEADER, TokenPolicy, signature_valid
from streamsnap.media.pattern import PatternTrack, read_counter
from streamsnap.wcsclient import PublishFailed, SnapshotFailed, WcsClient
from tests.conftest import RunningServer, png_image

pytestmark = pytest.mark.integration

SECRET = "integration-secret-" + "0123456789abcdef" * 3
HOOK_KEY = "hook-signing-key"


async def refused_connection(url: str, **connection: Any) -> tuple[dict[str, Any], int | None]:
    """Connect with `connection` fields; return the `fail` answer and the close code."""
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        await ws.send_str(json.dumps({"message": "connection", "data": [connection]}))
        first = await asyncio.wait_for(ws.receive(), 5)
        closing = await asyncio.wait_for(ws.receive(), 5)
        assert closing.type is aiohttp.WSMsgType.CLOSE
        return json.loads(first.data), ws.close_code


async def test_tokens_required_when_a_secret_is_set(start_server: Callable[..., Any]) -> None:
    server: RunningServer = await start_server(auth_secret=SECRET)
    tokens = TokenPolicy(SECRET)
    for token in (None, "garbage", TokenPolicy("x" * 64).issue(["publish"])):
        answer, code = await refused_connection(server.ws_url, authToken=token)
        assert answer == {"message": "fail", "data": [{"apiMethod": "connection", "info": "Restricted access"}]}
        assert code == 1008

    publisher = await WcsClient.connect(server.ws_url, authToken=tokens.issue(["publish"], streams=["cam-*"]))
    viewer = await WcsClient.connect(server.ws_url, authToken=tokens.issue(["snapshot"], streams=["cam-1"]))
    try:
        track = PatternTrack(160, 120)
        await publisher.publish("cam-1", [track])
        await publisher.publish("cam-2", [PatternTrack(160, 120)])
        # publish outside the token's patterns, and without the right
        with pytest.raises(PublishFailed) as refused:
            await publisher.publish("office", [PatternTrack(160, 120)])
        assert (refused.value.status, refused.value.info) == ("FAILED", "Restricted access")
        with pytest.raises(PublishFailed) as refused:
            await viewer.publish("cam-3", [PatternTrack(160, 120)])
        assert refused.value.info == "Restricted access"
        # snapshots only of streams the token may see; a live stream outside it looks the same as none
        picture = await viewer.snapshot("cam-1")
        assert 0 <= track.counter - read_counter(png_image(picture.png)) <= 20
        for name in ("cam-2", "nobody"):
            with pytest.raises(SnapshotFailed) as failed:
                await viewer.snapshot(name)
            assert failed.value.info == "Restricted access"
        with pytest.raises(SnapshotFailed) as failed:
            await publisher.snapshot("cam-1")  # publish right only
        assert failed.value.info == "Restricted access"
    finally:
        await publisher.close()
        await viewer.close()


async def test_origin_allow_list(start_server: Callable[..., Any]) -> None:
    server: RunningServer = await start_server(allowed_origins=["https://app.example"])
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(server.ws_url, origin="https://evil.example")
        assert refused.value.status == 403
        async with http.ws_connect(server.ws_url, origin="https://app.example") as ws:
            await ws.send_str(json.dumps({"message": "connection", "data": [{}]}))
            assert json.loads((await asyncio.wait_for(ws.receive(), 5)).data)["message"] == "getUserData"


@dataclass
class Backend:
    """An application backend on loopback that answers streamsnap's hooks."""

    url: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)
    signatures_ok: list[bool] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.signatures_ok.append(signature_valid(HOOK_KEY, body, request.headers.get(SIGNATURE_HEADER)))
        event = json.loads(body)
        self.events.append(event)
        name = str(event.get("name", ""))
        if event.get("custom", {}).get("user") == "mallory" or name.startswith("forbidden"):
            return web.json_response({"reason": "no"}, status=403)
        if name.startswith("slow"):
            await asyncio.sleep(5)
        return web.json_response({})


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    state = Backend()
    app = web.Application()
    app.router.add_post("/hooks", state.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hooks"
    yield state
    await runner.cleanup()


async def test_backend_hooks_allow_and_refuse(start_server: Callable[..., Any], backend: Backend) -> None:
    server: RunningServer = await start_server(backend_url=backend.url, backend_secret=HOOK_KEY,
                                               backend_timeout=1.0)
    answer, code = await refused_connection(server.ws_url, custom={"user": "mallory"})
    assert answer["data"][0] == {"apiMethod": "connection", "info": "Restricted access"}
    assert code == 1008

    client = await WcsClient.connect(server.ws_url, custom={"user": "alice"})
    try:
        track = PatternTrack(160, 120)
        await client.publish("lobby", [track])
        picture = await client.snapshot("lobby")
        assert png_image(picture.png).size == (160, 120)
        with pytest.raises(PublishFailed) as refused:
            await client.publish("forbidden-room", [PatternTrack(160, 120)])
        assert refused.value.info == "Restricted access"
        started = asyncio.get_running_loop().time()
        with pytest.raises(PublishFailed) as refused:  # the backend does not answer in time: fail closed
            await client.publish("slow-room", [PatternTrack(160, 120)])
        assert refused.value.info == "Restricted access"
        assert asyncio.get_running_loop().time() - started < 4
        with pytest.raises(SnapshotFailed) as failed:
            await client.snapshot("forbidden-view")
        assert failed.value.info == "Restricted access"
    finally:
        await client.close()

    assert all(backend.signatures_ok)
    kinds = [(e["event"], e.get("name")) for e in backend.events]
    assert kinds[:6] == [("connect", None), ("connect", None), ("publishStream", "lobby"), ("snapshot", "lobby"),
                         ("publishStream", "forbidden-room"), ("publishStream", "slow-room")]
    connect = backend.events[1]
    assert connect["clientAddress"] == "127.0.0.1" and connect["custom"] == {"user": "alice"}
    assert len(connect["sessionId"]) >= 8
    publish = backend.events[2]
    assert publish["sessionId"] == connect["sessionId"] and publish["mediaSessionId"]


async def test_unreachable_backend_fails_closed_or_open_as_configured(start_server: Callable[..., Any]) -> None:
    dead = "http://127.0.0.1:9/hooks"  # discard port: nothing listens
    closed_server: RunningServer = await start_server(backend_url=dead, backend_timeout=1.0)
    answer, _ = await refused_connection(closed_server.ws_url)
    assert answer["data"][0]["info"] == "Restricted access"
    open_server: RunningServer = await start_server(backend_url=dead, backend_timeout=1.0, backend_fail_open=True)
    client = await WcsClient.connect(open_server.ws_url)
    await client.close()
