"""Hostile clients, round two: each attack of issue 12 against a real server over real sockets.

Every test plays the attack, checks the server's answer, and checks that a well-behaved
client is still served (and, where the server is in-process, that nothing is left behind).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
import jwt
import pytest
import yarl
from aiohttp import web
from aiortc.rtp import RtpPacket
from aiortc.sdp import SessionDescription
from cryptography import x509

from streamsnap.access import TokenPolicy
from streamsnap.config import WebRtcSettings
from streamsnap.logs import HideTokens
from streamsnap.media.pattern import PatternTrack, read_counter
from streamsnap.media.sdp_limits import check_offer
from streamsnap.media.webrtc import WebRtcSource
from streamsnap.server.tls import local_certificate
from streamsnap.wcsclient import Publication, PublishFailed, SnapshotFailed, WcsClient
from tests.conftest import RunningServer, png_image, serve_on_loopback
from tests.harness import free_port
from tests.harness.peer import real_offer, rtp_injector
from tests.integration.baseline import assert_back_to_baseline, take_baseline

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SECRET = "attacks-secret-" + "0123456789abcdef" * 3
MAX_LAG_FRAMES = 20


# Helpers


async def publish_raw(client: WcsClient, name: str, sdp: str) -> Publication:
    """Send a `publishStream` with `sdp` as it is; the returned publication collects its statuses."""
    publication = client.watch(str(uuid.uuid4()), name)
    await client.send("publishStream", {"mediaSessionId": publication.id, "name": name, "sdp": sdp,
                                        "hasVideo": True, "hasAudio": False})
    return publication


def lines_of(sdp: str) -> list[str]:
    return [line for line in sdp.split("\r\n") if line]


def with_lines_in_first_media(sdp: str, extra: list[str]) -> str:
    lines = lines_of(sdp)
    first = next(i for i, line in enumerate(lines) if line.startswith("m="))
    return "\r\n".join(lines[:first + 1] + extra + lines[first + 1:]) + "\r\n"


def issue_bomb() -> str:
    """The issue's SDP bomb: 3000 m-lines, about 0.9 MB."""
    head = ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE " + " ".join(map(str, range(3000)))
            + "\r\na=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\n")
    section = ("m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:{i}\r\na=sendonly\r\n"
               "a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\na=rtcp-fb:96 goog-remb\r\n"
               "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=setup:actpass\r\na=msid:- {i}\r\n"
               "a=ssrc:{i} cname:abcdefgh\r\n")
    sdp = head + "".join(section.format(i=i) for i in range(3000))
    assert 800_000 < len(sdp) < 1_000_000
    return sdp


def candidates(count: int) -> list[str]:
    # Loopback addresses on ports nobody listens on: a test sends nothing anywhere else.
    return [f"a=candidate:{i} 1 udp 2130706431 127.0.0.1 {20000 + i} typ host" for i in range(count)]


async def maximal_offer(limits: WebRtcSettings) -> str:
    """A real offer grown to every bound at once: `max_media` sections, `max_candidates`, `max_lines`, ~`max_bytes`."""
    lines = [line for line in lines_of(await real_offer(limits.sdp_max_media)) if not line.startswith("a=candidate")]
    lines = with_lines_in_first_media("\r\n".join(lines), candidates(limits.sdp_max_candidates)).split("\r\n")[:-1]
    spare_lines = limits.sdp_max_lines - len(lines) - 1
    spare_bytes = limits.sdp_max_bytes - len("\r\n".join(lines).encode()) - 200
    pad_length = max(1, spare_bytes // spare_lines - 2)
    sections = [i for i, line in enumerate(lines) if line.startswith("m=")]
    pads = [f"a=x-pad-{i}:" + "p" * max(1, pad_length - len(f"a=x-pad-{i}:")) for i in range(spare_lines)]
    # The padding goes into every section (media attributes are what aiortc works hardest on).
    per_section = -(-len(pads) // len(sections))
    for index in reversed(sections):
        lines[index + 1:index + 1] = pads[:per_section]
        pads = pads[per_section:]
    sdp = "\r\n".join(lines) + "\r\n"
    check_offer(sdp, limits)  # allowed, just
    return sdp


async def still_served(server: RunningServer, name: str, track: PatternTrack, **connection: Any) -> None:
    """A fresh session gets a true, recent picture of `name`."""
    viewer = await WcsClient.connect(server.ws_url, **connection)
    try:
        picture = await viewer.snapshot(name)
        assert 0 <= track.counter - read_counter(png_image(picture.png)) <= MAX_LAG_FRAMES
    finally:
        await viewer.close()


class HealthProbe:
    """Asks /healthz over and over; the latencies say whether the event loop was held."""

    def __init__(self, url: str, interval: float = 0.01) -> None:
        self.url = url
        self.interval = interval
        self.latencies: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> HealthProbe:
        self._task = asyncio.ensure_future(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        async with aiohttp.ClientSession() as http:
            while True:
                started = time.perf_counter()
                async with http.get(f"{self.url}/healthz") as response:
                    assert response.status == 200
                    await response.read()
                self.latencies.append(time.perf_counter() - started)
                await asyncio.sleep(self.interval)

    @property
    def worst(self) -> float:
        return max(self.latencies)


# 1 and 5: SDP and ICE candidate bombs


@pytest.mark.parametrize("case", ["issue-bomb", "bytes", "media", "lines", "candidates"])
async def test_sdp_bombs_are_refused_before_parsing(server: RunningServer, case: str,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    baseline = take_baseline()
    publisher = await WcsClient.connect(server.ws_url)
    track = PatternTrack(160, 120)
    await publisher.publish("bystander", [track])
    offer = await real_offer()
    sdp, logged = {
        "issue-bomb": (issue_bomb(), "larger than 65536 bytes"),
        "bytes": (with_lines_in_first_media(offer, ["a=x-big:" + "b" * 70_000]), "larger than 65536 bytes"),
        "media": ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
                  + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n" * 9, "9 media sections, more than 8"),
        "lines": (with_lines_in_first_media(offer, [f"a=x-{i}" for i in range(1200)]), "lines, more than 1000"),
        "candidates": (with_lines_in_first_media(offer, candidates(100)), "ICE candidates, more than 32"),
    }[case]
    attacker = await WcsClient.connect(server.ws_url)
    try:
        with caplog.at_level(logging.INFO, logger="streamsnap"):
            started = time.monotonic()
            publication = await publish_raw(attacker, f"bomb-{case}", sdp)
            with pytest.raises(PublishFailed) as failed:
                await attacker.wait_status(publication, "PUBLISHING", timeout=10)
            answered_in = time.monotonic() - started
        assert (failed.value.status, failed.value.info) == ("FAILED", "Invalid SDP")
        assert answered_in < 1.0, answered_in  # refused by counting, nothing parsed
        assert logged in caplog.text  # the reason is in the server's log
        assert server.node is not None
        assert [r.name for r in await server.node.registry.all()] == ["bystander"]
        await still_served(server, "bystander", track)
    finally:
        await attacker.close()
        await publisher.close()
    await assert_back_to_baseline(server, baseline)


async def test_a_maximal_allowed_offer_does_not_hold_the_loop(start_server: Callable[..., Any]) -> None:
    """The largest offer the bounds let through is parsed and answered while /healthz stays prompt."""
    server: RunningServer = await start_server(connect_timeout=2.0)
    limits = WebRtcSettings()
    sdp = await maximal_offer(limits)
    assert len(sdp.encode()) > limits.sdp_max_bytes * 0.9 and sdp.count("\r\nm=") == limits.sdp_max_media
    started = time.perf_counter()
    SessionDescription.parse(sdp)
    parse_seconds = time.perf_counter() - started
    assert parse_seconds < 0.05, parse_seconds
    attacker = await WcsClient.connect(server.ws_url)
    try:
        async with HealthProbe(server.http_url) as probe:
            await asyncio.sleep(0.2)
            for index in range(4):  # the issue's four offers in one session
                publication = await publish_raw(attacker, f"maximal-{index}", sdp)
            with pytest.raises(PublishFailed) as failed:  # the offer is answered; the peer never connects
                await attacker.wait_status(publication, "PUBLISHING", timeout=15)
            assert failed.value.info in ("Failed by ICE timeout", "Failed by ICE error")
        assert len(probe.latencies) > 20
        assert probe.worst < 0.25, sorted(probe.latencies)[-5:]
        assert sorted(probe.latencies)[int(len(probe.latencies) * 0.99) - 1] < 0.1
    finally:
        await attacker.close()


# 2: sessions that never log in


async def test_sessions_that_never_log_in_are_closed(start_server: Callable[..., Any]) -> None:
    server: RunningServer = await start_server(login_timeout=1.0, max_sessions=10)
    baseline = take_baseline()
    async with aiohttp.ClientSession() as http:
        idlers = [await http.ws_connect(server.ws_url) for _ in range(10)]

        async def keep_pinging(ws: aiohttp.ClientWebSocketResponse) -> None:
            while not ws.closed:  # pings and junk before `connection` refresh nothing
                await ws.send_str(json.dumps({"message": "ping", "data": [None]}))
                await ws.send_str(json.dumps({"message": "pong", "data": [None]}))
                await asyncio.sleep(0.2)

        pingers = [asyncio.ensure_future(keep_pinging(ws)) for ws in idlers]
        try:
            # while they live the server is full ...
            with pytest.raises(Exception, match="Too many sessions on this server"):
                await WcsClient.connect(server.ws_url)
            # ... and then each is told and closed, within the login timeout plus a tick
            started = time.monotonic()
            for ws in idlers:
                infos = []
                async with asyncio.timeout(5):
                    async for frame in ws:
                        if frame.type is aiohttp.WSMsgType.TEXT:
                            message = json.loads(frame.data)
                            if message["message"] == "fail":
                                infos.append(message["data"][0]["info"])
                assert infos == ["Terminated by login timeout"]
                assert ws.close_code == 1008
            assert time.monotonic() - started < 3.0
        finally:
            for pinger in pingers:
                pinger.cancel()
            await asyncio.gather(*pingers, return_exceptions=True)
    # the places are free again for a client that logs in
    client = await WcsClient.connect(server.ws_url)
    track = PatternTrack(160, 120)
    await client.publish("after-idlers", [track])
    await asyncio.sleep(2.5)  # a session that logged in is not closed by the login timeout
    assert not client.ws.closed
    await still_served(server, "after-idlers", track)
    await client.close()
    await assert_back_to_baseline(server, baseline)


# 3: token lifetime and scope


async def test_token_expiry_is_checked_at_every_use(start_server: Callable[..., Any],
                                                   http: aiohttp.ClientSession) -> None:
    server: RunningServer = await start_server(auth_secret=SECRET)
    tokens = TokenPolicy(SECRET)
    publisher = await WcsClient.connect(server.ws_url, authToken=tokens.issue(["publish"]))
    track = PatternTrack(160, 120)
    await publisher.publish("cam-1", [track])
    short = tokens.issue(["snapshot", "publish"], ttl=2)
    expires = jwt.decode(short, options={"verify_signature": False})["exp"]
    viewer = await WcsClient.connect(server.ws_url, authToken=short)
    try:
        assert (await viewer.snapshot("cam-1")).png  # valid now
        await asyncio.sleep(max(0.0, expires - time.time()) + 0.2)
        with pytest.raises(SnapshotFailed, match="Restricted access"):  # the same session, after `exp`
            await viewer.snapshot("cam-1")
        with pytest.raises(PublishFailed) as refused:
            await viewer.publish("cam-2", [PatternTrack(160, 120)])
        assert refused.value.info == "Restricted access"
        async with http.post(f"{server.http_url}/rest-api/stream/snapshot", json={"streamName": "cam-1"},
                             headers={"Authorization": f"Bearer {short}"}) as response:
            assert response.status == 401
        async with http.get(f"{server.http_url}/streams/cam-1/snapshot.png",
                            headers={"Authorization": f"Bearer {short}"}) as response:
            assert response.status == 401
    finally:
        await viewer.close()
    await still_served(server, "cam-1", track, authToken=tokens.issue(["snapshot"]))
    await publisher.close()


async def test_tokens_without_exp_and_empty_scopes(start_server: Callable[..., Any]) -> None:
    server: RunningServer = await start_server(auth_secret=SECRET)
    lenient: RunningServer = await start_server(auth_secret=SECRET, auth_allow_no_exp=True)
    tokens = TokenPolicy(SECRET)
    forever = jwt.encode({"rights": ["snapshot", "publish"]}, SECRET)  # what `token --ttl 0` makes
    with pytest.raises(Exception, match="Restricted access"):
        await WcsClient.connect(server.ws_url, authToken=forever)
    accepted = await WcsClient.connect(lenient.ws_url, authToken=forever)
    await accepted.close()

    exact = await WcsClient.connect(server.ws_url, authToken=tokens.issue(["publish"], streams=["cam[1]"]))
    track = PatternTrack(160, 120)
    await exact.publish("cam[1]", [track])  # a name with pattern characters, granted as written
    nothing = jwt.encode({"rights": ["snapshot"], "streams": [], "exp": int(time.time()) + 60}, SECRET)
    empty = await WcsClient.connect(server.ws_url, authToken=nothing)
    try:
        with pytest.raises(SnapshotFailed, match="Restricted access"):  # `streams: []` grants nothing
            await empty.snapshot("cam[1]")
    finally:
        await empty.close()
    await still_served(server, "cam[1]", track, authToken=tokens.issue(["snapshot"], streams=["cam[1]"]))
    await exact.close()


# 4 (issue's 6): open metrics


async def test_metrics_need_a_metrics_token_and_show_only_its_streams(start_server: Callable[..., Any],
                                                                      http: aiohttp.ClientSession) -> None:
    server: RunningServer = await start_server(auth_secret=SECRET, metrics_max_streams=2)
    tokens = TokenPolicy(SECRET)
    publisher = await WcsClient.connect(server.ws_url, authToken=tokens.issue(["publish"]))
    try:
        for name in ("cam-1", "cam-2", "cam-3", "secret-cam-1"):
            await publisher.publish(name, [PatternTrack(160, 120)])

        async def scrape(token: str | None) -> tuple[int, str]:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            async with http.get(f"{server.http_url}/metrics", headers=headers) as response:
                return response.status, await response.text()

        assert (await scrape(None))[0] == 401
        assert (await scrape(tokens.issue(["snapshot", "manage"])))[0] == 403  # the right is its own
        status, text = await scrape(tokens.issue(["metrics"], streams=["cam-*"]))
        assert status == 200
        assert "secret-cam-1" not in text
        labelled = {line.split('stream="')[1].split('"')[0] for line in text.splitlines()
                    if line.startswith("streamsnap_stream_frames_received")}
        assert len(labelled) == 2 and labelled <= {"cam-1", "cam-2", "cam-3"}  # metrics_max_streams
        assert "streamsnap_streams 3.0" in text  # counts only what the token may see
    finally:
        await publisher.close()


async def test_metrics_listener_of_its_own(start_full_server: Callable[..., Any],
                                           http: aiohttp.ClientSession) -> None:
    port = free_port()
    server = await start_full_server(auth_secret=SECRET, metrics_port=port, metrics_host="127.0.0.1",
                                     metrics_max_streams=0)
    async with http.get(f"http://127.0.0.1:{server.port('http')}/metrics") as response:
        assert response.status == 401
    async with http.get(f"http://127.0.0.1:{server.port('metrics')}/metrics") as response:
        assert response.status == 200  # no token there: a private network's scraper
        text = await response.text()
    assert "streamsnap_sessions" in text and 'stream="' not in text  # 0: no per-stream series
    async with http.get(f"http://127.0.0.1:{server.port('metrics')}/streams") as response:
        assert response.status == 404  # nothing else on that port


# 5 (issue's 8 and part of 12): logs


@pytest.fixture
def server_log() -> Any:
    """What the server's log handler (as `serve` configures it) writes, as text."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(HideTokens())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


async def test_no_credentials_and_no_control_characters_in_logs(start_full_server: Callable[..., Any],
                                                                 server_log: io.StringIO,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    server = await start_full_server(auth_secret=SECRET)
    base = f"http://127.0.0.1:{server.port('http')}"
    tokens = TokenPolicy(SECRET)
    jwt_text = tokens.issue(["snapshot"], subject="logged-viewer")
    publisher = await WcsClient.connect(base.replace("http", "ws") + "/x", authToken=tokens.issue(["publish"]))
    try:
        await publisher.publish("evil\nFORGED INFO line\x1b[31m", [PatternTrack(160, 120)])
        with caplog.at_level(logging.INFO, logger="aiohttp.access"):
            async with aiohttp.ClientSession() as http:
                for key in ("access_token", "access%5Ftoken", "%61ccess_token", "ACCESS_TOKEN", "access%255Ftoken"):
                    url = yarl_url(f"{base}/streams/cam/snapshot.png?width=20&{key}={jwt_text}")
                    async with http.get(url, headers={"Referer": f"https://site.example/?token={jwt_text}"}):
                        pass
                async with http.get(yarl_url(f"{base}/%1b%5b31mred%0a%0dFORGED")) as response:
                    assert "FORGED" not in await response.text()  # 404 bodies do not echo input
        access_lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
        assert len(access_lines) >= 6
        assert all(jwt_text not in line for line in access_lines), access_lines
        assert any("access%5Ftoken=<hidden>" in line for line in access_lines)
    finally:
        await publisher.close()
    text = server_log.getvalue()
    assert jwt_text not in text
    assert "\x1b" not in text
    assert not any(line.startswith("FORGED") for line in text.splitlines())
    assert "evil\\x0aFORGED INFO line\\x1b[31m" in text


def yarl_url(text: str) -> yarl.URL:
    """`text` as a url sent exactly as written (no re-quoting)."""
    return yarl.URL(text, encoded=True)


async def test_an_over_long_request_logs_one_line(start_full_server: Callable[..., Any],
                                                  caplog: pytest.LogCaptureFixture) -> None:
    server = await start_full_server()
    port = server.port("http")
    with caplog.at_level(logging.DEBUG):
        for request in (b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20_000 + b"\r\n\r\n"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            answer = await asyncio.wait_for(reader.read(200), 5)
            assert answer.startswith((b"HTTP/1.1 4", b"HTTP/1.0 4")), answer
            writer.close()
        await asyncio.sleep(0.2)
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert noisy == [], [r.getMessage() for r in noisy]
    told = [r.getMessage() for r in caplog.records if r.name == "streamsnap.http"]
    assert len(told) == 2 and all("\n" not in line and len(line) < 400 for line in told), told


# 6 (issue's 9 and 10): slowloris, cross-site and careless REST


async def test_slowloris_connections_are_closed_and_counted_per_address(
        start_full_server: Callable[..., Any]) -> None:
    server = await start_full_server(http_header_timeout=1.0, max_http_connections_per_ip=8)
    port = server.port("http")
    idle = []
    for _ in range(7):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        idle.append((reader, writer))
    drip_reader, drip_writer = await asyncio.open_connection("127.0.0.1", port)

    async def drip() -> None:
        with contextlib.suppress(ConnectionError):
            for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"z" * 100:
                drip_writer.write(bytes([byte]))
                await drip_writer.drain()
                await asyncio.sleep(0.1)

    dripping = asyncio.ensure_future(drip())
    await asyncio.sleep(0.2)
    # the address holds 8 connections: a ninth is closed on arrival
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert await asyncio.wait_for(reader.read(100), 5) == b""
    writer.close()
    # within the header timeout every idle and dripping connection is closed
    started = time.monotonic()
    for reader, _ in [*idle, (drip_reader, drip_writer)]:
        with contextlib.suppress(ConnectionError):
            assert await asyncio.wait_for(reader.read(100), 5) == b""
    assert time.monotonic() - started < 2.0
    dripping.cancel()
    await asyncio.gather(dripping, return_exceptions=True)
    for _, w in [*idle, (drip_reader, drip_writer)]:
        w.close()
    assert server.guard is not None and server.guard.timed_out >= 8 and server.guard.refused >= 1
    # then the address is served again, keep-alive and WebSocket alike
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as response:
        assert response.status == 200
    # a kept-alive connection that drips its second request's headers is closed as well
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 200")
    started = time.monotonic()
    with contextlib.suppress(ConnectionError):
        for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"z" * 100:
            writer.write(bytes([byte]))
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader.read(1000), 0.1)
            if reader.at_eof():
                break
    assert reader.at_eof() and time.monotonic() - started < 2.5
    writer.close()
    client = await WcsClient.connect(f"ws://127.0.0.1:{port}/x")
    await asyncio.sleep(1.5)  # a WebSocket is past its headers: the header timeout does not touch it
    assert not client.ws.closed
    await client.close()


async def test_cross_site_and_careless_rest_calls_are_refused(server: RunningServer,
                                                              http: aiohttp.ClientSession) -> None:
    publisher = await WcsClient.connect(server.ws_url)
    track = PatternTrack(160, 120)
    await publisher.publish("cam2", [track])
    rest = f"{server.http_url}/rest-api/stream"
    try:
        # what a page of another site can send without a preflight: text/plain (or a form)
        for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
            async with http.post(f"{rest}/terminate", data=b"{}", headers={"Content-Type": content_type}) as answer:
                assert answer.status == 415, content_type
            async with http.post(f"{server.http_url}/rest-api/rtsp/terminate", data=b'{"toStream": "cam2"}',
                                 headers={"Content-Type": content_type}) as answer:
                assert answer.status == 415, content_type
        async with http.post(f"{rest}/terminate", data=b'{"name": "cam2"}') as answer:  # no content type at all
            assert answer.status == 415
        async with http.post(f"{rest}/terminate", json={"nmae": "cam2"}) as answer:  # a typo is not a wildcard
            assert (answer.status, (await answer.json())["field"]) == (400, "nmae")
        async with http.post(f"{rest}/find", json={"nmae": "cam2"}) as answer:
            assert answer.status == 400
        for body in ({}, {"display": ["metrics"]}):  # no filter: refused, not "every stream"
            async with http.post(f"{rest}/terminate", json=body) as answer:
                assert answer.status == 400
        async with http.post(f"{rest}/terminate", data=b"", headers={"Content-Type": "application/json"}) as answer:
            assert answer.status == 400
        assert publisher.publications and next(iter(publisher.publications.values())).status == "PUBLISHING"
        await still_served(server, "cam2", track)
        async with http.post(f"{rest}/terminate", json={"name": "cam2"}) as answer:
            assert answer.status == 200
    finally:
        await publisher.close()


# 7 (issue's 3): per-address limits behind proxies and NATs


async def session_from(url: str, **headers: str) -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse,
                                                        dict[str, Any]]:
    """A WebSocket session with `headers` on the upgrade; returns the first answer to `connection`."""
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(url, headers=headers)
    await ws.send_str(json.dumps({"message": "connection", "data": [{}]}))
    first = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
    return http, ws, first


async def test_forwarded_addresses_from_trusted_proxies_and_ipv6_by_64(start_server: Callable[..., Any]) -> None:
    server: RunningServer = await start_server(trusted_proxies=["127.0.0.1"], max_connections_per_ip=1)
    opened = []
    try:
        for headers, answer in [
            ({"X-Forwarded-For": "2001:db8::1"}, "getUserData"),
            ({"X-Forwarded-For": "2001:db8::2"}, "Too many sessions from 2001:db8::2"),  # the same /64
            ({"Forwarded": 'for="[2001:db8:0:1::1]:4711";proto=https'}, "getUserData"),  # another /64
            ({"X-Forwarded-For": "203.0.113.9, 127.0.0.1"}, "getUserData"),  # the nearest untrusted hop
            ({"X-Forwarded-For": "198.51.100.1, 203.0.113.9"}, "Too many sessions from 203.0.113.9"),
        ]:
            http, ws, first = await session_from(server.ws_url, **headers)
            opened.append((http, ws))
            got = first["message"] if first["message"] == "getUserData" else first["data"][0]["info"]
            assert got == answer, headers
        assert server.node is not None
        remotes = sorted(getattr(r, "remote", "") for r in server.node.sessions)
        assert remotes == ["2001:db8:0:1::1", "2001:db8::1", "203.0.113.9"]  # what logs and hooks are told
    finally:
        for http, ws in opened:
            await ws.close()
            await http.close()
    # from a peer that is no trusted proxy the headers are ignored (anyone can write them)
    plain: RunningServer = await start_server(max_connections_per_ip=1)
    http1, ws1, first = await session_from(plain.ws_url, **{"X-Forwarded-For": "192.0.2.1"})
    http2, ws2, second = await session_from(plain.ws_url, **{"X-Forwarded-For": "192.0.2.2"})
    try:
        assert first["message"] == "getUserData"
        assert second["data"][0]["info"] == "Too many sessions from 127.0.0.1"
    finally:
        for http, ws in ((http1, ws1), (http2, ws2)):
            await ws.close()
            await http.close()


async def test_a_few_hundred_sessions_from_one_address(start_server: Callable[..., Any]) -> None:
    server: RunningServer = await start_server(keepalive_interval=5.0)
    clients = await asyncio.gather(*(WcsClient.connect(server.ws_url, timeout=30) for _ in range(300)))
    try:
        assert server.node is not None and len(server.node.sessions) == 300
    finally:
        await asyncio.gather(*(client.close() for client in clients))


# 8 (issue's 11): one tenant cannot starve the others


async def test_per_subject_quotas_for_streams_and_snapshots(start_server: Callable[..., Any]) -> None:
    server: RunningServer = await start_server(auth_secret=SECRET, max_streams=4, max_streams_per_subject=2,
                                               max_snapshots_in_flight=4, max_snapshots_per_subject=2,
                                               connect_timeout=6.0, keyframe_timeout=3.0)
    tokens = TokenPolicy(SECRET)
    attacker = await WcsClient.connect(server.ws_url, authToken=tokens.issue(
        ["publish", "snapshot"], streams=["attacker-*"], subject="attacker"))
    victim = await WcsClient.connect(server.ws_url, authToken=tokens.issue(
        ["publish", "snapshot"], streams=["victim-*"], subject="victim"))
    try:
        offer = await real_offer()
        pending = [await publish_raw(attacker, f"attacker-{i}", offer) for i in range(3)]  # never connect
        with pytest.raises(PublishFailed) as refused:
            await attacker.wait_status(pending[2], "PUBLISHING", timeout=5)
        assert refused.value.info == "Failed by error: too many streams for this token's subject"
        track = PatternTrack(160, 120)
        await victim.publish("victim-1", [track])  # max_streams is 4: the attacker holds only 2
        # the attacker's snapshots of its pending stream wait; the third is refused at once
        waits = [asyncio.ensure_future(attacker.snapshot("attacker-0")) for _ in range(3)]
        done, _ = await asyncio.wait(waits, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
        assert len(done) == 1
        with pytest.raises(SnapshotFailed, match="too many snapshots in flight for this token's subject"):
            done.pop().result()
        picture = await victim.snapshot("victim-1")  # the server's slots are not the attacker's alone
        assert 0 <= track.counter - read_counter(png_image(picture.png)) <= MAX_LAG_FRAMES
        await asyncio.gather(*waits, return_exceptions=True)
    finally:
        await attacker.close()
        await victim.close()


# 10 (issue's 12): hooks, certificates


async def test_backend_hooks_do_not_follow_redirects(start_server: Callable[..., Any]) -> None:
    followed: list[str] = []

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect("/elsewhere")

    async def elsewhere(request: web.Request) -> web.Response:
        followed.append(await request.text())
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", redirect)
    app.router.add_post("/elsewhere", elsewhere)
    runner, port = await serve_on_loopback(app)
    try:
        server: RunningServer = await start_server(backend_url=f"http://127.0.0.1:{port}/hook", backend_timeout=2.0)
        with pytest.raises(Exception, match="Restricted access"):
            await WcsClient.connect(server.ws_url)
        assert followed == []  # the signed request went nowhere else
    finally:
        await runner.cleanup()


def test_serve_refuses_a_short_auth_secret_at_start() -> None:
    env = os.environ | {"STREAMSNAP_AUTH_SECRET": "a"}
    done = subprocess.run([sys.executable, "-m", "streamsnap", "serve", "--host", "127.0.0.1", "--port", "0"],
                          env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "streamsnap: access.secret is 1 bytes; HS256 needs at least 32 (RFC 7518), e.g. from `openssl rand -base64 32`"]


def test_the_self_signed_certificate_is_a_leaf() -> None:
    certificate = x509.load_pem_x509_certificate(local_certificate().cert_pem)
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca is False
    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign


async def test_connections_over_the_per_address_cap_from_a_trusted_proxy_are_kept(
        start_full_server: Callable[..., Any]) -> None:
    server = await start_full_server(max_http_connections_per_ip=2, trusted_proxies=["127.0.0.1"])
    port = server.port("http")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True)) as http:
        answers = await asyncio.gather(*(http.get(f"http://127.0.0.1:{port}/healthz") for _ in range(6)))
        assert [a.status for a in answers] == [200] * 6  # a proxy carries many clients: not capped
        for answer in answers:
            answer.release()
    assert server.guard is not None and server.guard.refused == 0


def test_guard_counts_ipv6_clients_by_64() -> None:
    from streamsnap.server.connections import ConnectionGuard

    guard = ConnectionGuard(1.0, 2)
    assert guard.admit("2001:db8::1") == guard.admit("2001:db8::ffff") == "2001:db8::/64"
    with pytest.raises(LookupError):
        guard.admit("2001:db8::1234")
    assert guard.admit("2001:db8:0:1::1") == "2001:db8:0:1::/64"
    guard.release("2001:db8::/64")
    assert guard.admit("2001:db8::5") == "2001:db8::/64"




# 9 (issue's 4): RTP frames that never complete, and many packet sources


async def test_rtp_frames_that_never_complete_are_bounded(start_server: Callable[..., Any]) -> None:
    cap = 1024 * 1024
    server: RunningServer = await start_server(gop_max_bytes=cap, rtp_max_packets_per_frame=512, rtp_max_sources=4)
    baseline = take_baseline()
    publisher = await WcsClient.connect(server.ws_url)
    track = PatternTrack(160, 120)
    publication = await publisher.publish("flooded", [track], codec="VP8")
    send, payload_type, last_timestamp = rtp_injector(publication)
    await asyncio.sleep(0.3)
    ahead = last_timestamp() + 90_000 * 600  # ten minutes ahead of the real frames: never "late"
    assert server.node is not None
    record = await server.node.registry.lookup("flooded")
    assert record is not None
    source = server.node.sources.get("flooded", record.lease)
    assert isinstance(source, WebRtcSource)
    try:
        # four frames far ahead that never get a marker bit, 2500 packets of 1100 bytes each (11 MB)
        for index in range(10_000):
            frame = index % 4  # as many as the assembler lets wait (MAX_WAIT_FRAMES)
            packet = RtpPacket(payload_type=payload_type, marker=0, sequence_number=(10_000 + index) & 0xFFFF,
                               timestamp=(ahead + frame * 3000) & 0xFFFFFFFF, ssrc=0x5EED0001,
                               payload=b"\x00" + b"z" * 1100)
            await send(packet.serialize())
            if index % 100 == 0:
                await asyncio.sleep(0.01)  # at a pace the loopback socket's buffer takes
            if index % 1000 == 0:
                assert source.pending_bytes <= cap, source.pending_bytes
        await asyncio.sleep(0.3)
        assert source.pending_bytes <= cap, source.pending_bytes
        assert source.oversized_frames >= 4  # each frame given up at 512 packets, its later packets dropped
        # and packets from forty more sources
        for ssrc in range(40):
            packet = RtpPacket(payload_type=payload_type, marker=1, sequence_number=ssrc, timestamp=ssrc,
                               ssrc=0x0BAD0000 + ssrc, payload=b"\x10" + b"y" * 100)
            await send(packet.serialize())
            await asyncio.sleep(0.002)
        await asyncio.sleep(0.3)
        assert source.pending_bytes <= cap, source.pending_bytes
        assert source.dropped_packets > 0  # sources over rtp_max_sources
        assert publication.status == "PUBLISHING"
        await still_served(server, "flooded", track)
        assert source.pending_bytes <= cap
    finally:
        await publisher.close()
    await assert_back_to_baseline(server, baseline)
