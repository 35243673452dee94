"""Access control over real sockets: tokens, Origin, and a real backend answering the hooks."""

from __future__ import annotations

import asyncio
import base64
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
from tests.conftest import RunningServer, png_image, serve_on_loopback

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
    runner, port = await serve_on_loopback(app, shutdown_timeout=0.5)
    state.url = f"http://127.0.0.1:{port}/hooks"
    yield state
    await runner.cleanup()


async def test_backend_hooks_allow_and_refuse(start_server: Callable[..., Any], backend: Backend,
                                              http: aiohttp.ClientSession) -> None:
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
        # the HTTP ways to a picture ask the backend too
        assert (await _call(http, "GET", f"{server.http_url}/streams/lobby/snapshot.png"))[0] == 200
        status, _, data = await _call(http, "GET", f"{server.http_url}/streams/forbidden-view/snapshot.png")
        assert (status, json.loads(data)["error"]) == (403, "Restricted access")
        status, _, _ = await _call(http, "POST", f"{server.http_url}/rest-api/stream/snapshot", None,
                                   {"streamName": "forbidden-view"})
        assert status == 403
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
    assert [(e["event"], e["name"], e["source"]) for e in backend.events[-3:]] == [
        ("snapshot", "lobby", "http"), ("snapshot", "forbidden-view", "http"), ("snapshot", "forbidden-view", "http")]


async def test_unreachable_backend_fails_closed_or_open_as_configured(start_server: Callable[..., Any]) -> None:
    dead = "http://127.0.0.1:9/hooks"  # discard port: nothing listens
    closed_server: RunningServer = await start_server(backend_url=dead, backend_timeout=1.0)
    answer, _ = await refused_connection(closed_server.ws_url)
    assert answer["data"][0]["info"] == "Restricted access"
    open_server: RunningServer = await start_server(backend_url=dead, backend_timeout=1.0, backend_fail_open=True)
    client = await WcsClient.connect(open_server.ws_url)
    await client.close()


async def _call(http: aiohttp.ClientSession, method: str, url: str, token: str | None = None,
                body: Any = None, **params: str) -> tuple[int, dict[str, str], bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    data = None if body is None else json.dumps(body).encode()
    if data is not None:
        headers["Content-Type"] = "application/json"  # REST bodies must say so (415 otherwise)
    async with http.request(method, url, headers=headers, data=data, params=params) as response:
        return response.status, dict(response.headers), await response.read()


async def test_http_endpoints_need_a_token_with_the_right(start_server: Callable[..., Any],
                                                          http: aiohttp.ClientSession) -> None:
    server: RunningServer = await start_server(auth_secret=SECRET)
    tokens = TokenPolicy(SECRET)
    viewer = tokens.issue(["snapshot"], streams=["cam-*"])
    operator = tokens.issue(["manage"], streams=["cam-*"])
    publisher = await WcsClient.connect(server.ws_url, authToken=tokens.issue(["publish"]))
    base, rest = server.http_url, f"{server.http_url}/rest-api/stream"
    try:
        track = PatternTrack(320, 240)
        cam = await publisher.publish("cam-1", [track])
        await publisher.publish("office", [PatternTrack(160, 120)])

        # no token, a forged one, a malformed header: 401 with a challenge, on every guarded endpoint
        for token in (None, "garbage", TokenPolicy("y" * 64).issue(["snapshot"])):
            for method, url, body in [("GET", f"{base}/streams", None),
                                      ("GET", f"{base}/streams/cam-1/snapshot.png", None),
                                      ("POST", f"{rest}/find_all", None), ("POST", f"{rest}/find", {}),
                                      ("POST", f"{rest}/snapshot", {"streamName": "cam-1"}),
                                      ("POST", f"{rest}/terminate", {})]:
                status, headers, data = await _call(http, method, url, token, body)
                assert status == 401, (method, url, token)
                assert headers["WWW-Authenticate"].startswith("Bearer")
                assert json.loads(data)["error"] == "Restricted access"
        async with http.get(f"{base}/streams", headers={"Authorization": f"Basic {viewer}"}) as response:
            assert response.status == 401

        # the viewer sees and pictures only its streams; the others look like no stream at all
        status, _, data = await _call(http, "GET", f"{base}/streams", viewer)
        assert status == 200 and [s["name"] for s in json.loads(data)] == ["cam-1"]
        status, _, data = await _call(http, "POST", f"{rest}/find_all", viewer)
        assert status == 200 and [s["name"] for s in json.loads(data)] == ["cam-1"]
        assert (await _call(http, "POST", f"{rest}/find", viewer, {"name": "office"}))[0] == 404

        status, _, data = await _call(http, "GET", f"{base}/streams/cam-1/snapshot.png", viewer)
        assert status == 200
        assert 0 <= track.counter - read_counter(png_image(data)) <= 20
        # an <img> cannot send headers: the token may ride in the query
        status, _, data = await _call(http, "GET", f"{base}/streams/cam-1/snapshot.jpg", None, access_token=viewer)
        assert status == 200 and data[:2] == b"\xff\xd8"
        status, _, data = await _call(http, "POST", f"{rest}/snapshot", viewer, {"streamName": "cam-1"})
        assert status == 200 and png_image(base64.b64decode(json.loads(data)["data"])).size == (320, 240)
        for method, url, body in [("GET", f"{base}/streams/office/snapshot.png", None),
                                  ("POST", f"{rest}/snapshot", {"streamName": "office"}),
                                  ("POST", f"{rest}/terminate", {"name": "cam-1"})]:  # no manage right
            status, _, data = await _call(http, method, url, viewer, body)
            assert (status, json.loads(data)["error"]) == (403, "Restricted access"), url
        assert (await _call(http, "GET", f"{base}/streams/office/snapshot.png", operator))[0] == 403

        # terminate: the operator may end cam-* streams, and only those
        assert (await _call(http, "POST", f"{rest}/terminate", operator, {"name": "office"}))[0] == 404
        assert (await _call(http, "POST", f"{rest}/terminate", operator, {}))[0] == 400  # no filter: refused
        assert (await _call(http, "POST", f"{rest}/terminate", operator, {"published": True}))[0] == 200
        with pytest.raises(PublishFailed) as ended:
            await publisher.wait_status(cam, "PUBLISHING", timeout=5)
        assert (ended.value.status, ended.value.info) == ("UNPUBLISHED", "Stopped by rest /terminate")
        assert server.node is not None
        assert [s.name for s in await server.node.registry.all()] == ["office"]
    finally:
        await publisher.close()
