"""RTSP cameras with a real RTSP server (GStreamer's, in a subprocess): the three ways in, the three
picture transports, a camera that dies and returns, and every way a pull fails, answered clearly."""

from __future__ import annotations

import asyncio
import base64
import gc
import io
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import psutil
import pytest
import yarl
from PIL import Image

from streamsnap.access import TokenPolicy
from streamsnap.config import Camera
from streamsnap.wcsclient import SnapshotFailed, WcsClient
from tests.conftest import RunningServer, png_image
from tests.harness import RtspCamera, free_port, gstreamer_missing

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

GREEN, RED, BLUE = 0x00FF00, 0xFF0000, 0x0000FF
SECRET = "s3cr3t-pw"


if gstreamer_missing():  # scripts/system-deps.sh installs it (make test)
    pytest.skip("GStreamer's RTSP server (python3-gst-1.0, gir1.2-gst-rtsp-server-1.0) is not installed",
                allow_module_level=True)


@pytest.fixture
async def cameras() -> AsyncIterator[Callable[..., Awaitable[RtspCamera]]]:
    """Start RTSP cameras (killed at teardown)."""
    started: list[RtspCamera] = []

    async def start(colour: int = GREEN, **options: Any) -> RtspCamera:
        camera = RtspCamera(free_port(), colour, **options)
        started.append(camera)
        await camera.start()
        return camera

    yield start
    for camera in started:
        camera.kill()


def centre_colour(image: Image.Image) -> tuple[int, int, int]:
    r, g, b = image.convert("RGB").getpixel((image.width // 2, image.height // 2))  # type: ignore[misc]
    return r, g, b


def assert_colour(image: Image.Image, colour: int) -> None:
    expected = ((colour >> 16) & 0xFF, (colour >> 8) & 0xFF, colour & 0xFF)
    got = centre_colour(image)
    assert all(abs(a - b) <= 24 for a, b in zip(got, expected, strict=True)), f"{got} is not {expected}"


def image_url(server: RunningServer, name: str, ext: str = "png") -> yarl.URL:
    return yarl.URL(f"{server.http_url}/streams/{urllib.parse.quote(name, safe='')}/snapshot.{ext}", encoded=True)


async def post(http: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, Any]:
    async with http.post(url, json=body) as response:
        text = await response.text()
        try:
            return response.status, (await response.json(content_type=None)) if text else None
        except ValueError:
            return response.status, text


async def rest_picture(http: aiohttp.ClientSession, server: RunningServer, name: str) -> tuple[int, Any]:
    return await post(http, f"{server.http_url}/rest-api/stream/snapshot", {"streamName": name})


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20.0, every: float = 0.2) -> None:
    """Wait until `check()` holds (a state seen from outside, over HTTP: there is no event to await)."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(every)


async def test_rtsp_name_pictured_over_websocket_rest_and_image_url(
        start_server: Callable[..., Any], cameras: Callable[..., Awaitable[RtspCamera]],
        http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    camera = await cameras(GREEN, user="viewer", password=SECRET)
    server: RunningServer = await start_server()
    client = await WcsClient.connect(server.ws_url)
    try:
        picture = await client.snapshot(camera.url, timeout=20)  # the pull starts on demand
        assert png_image(picture.png).size == (320, 240)
        assert_colour(png_image(picture.png), GREEN)
    finally:
        await client.close()

    status, body = await rest_picture(http, server, camera.url)
    assert status == 200, body
    assert_colour(png_image(base64.b64decode(body["data"])), GREEN)

    async with http.get(image_url(server, camera.url, "jpg")) as response:
        assert response.status == 200, await response.text()
        assert_colour(Image.open(io.BytesIO(await response.read())), GREEN)

    # One pull for all of them, listed under the url without its credentials.
    async with http.get(f"{server.http_url}/streams") as response:
        listing = await response.text()
    assert camera.public_url in listing and SECRET not in listing and "viewer" not in listing
    status, found = await post(http, f"{server.http_url}/rest-api/stream/find_all", {})
    assert status == 200
    assert [(s["name"], s["mediaProvider"]) for s in found] == [(camera.public_url, "RTSP")]
    status, pulls = await post(http, f"{server.http_url}/rest-api/rtsp/find_all", {})
    assert status == 200 and pulls[0]["uri"] == camera.public_url and pulls[0]["origin"] == "on_demand"
    async with http.get(f"{server.http_url}/metrics") as response:
        metrics = await response.text()
    assert 'kind="rtsp"' in metrics and SECRET not in metrics
    assert SECRET not in caplog.text

    # The picture of the public name is the same pull (no second connection).
    status, body = await rest_picture(http, server, camera.public_url)
    assert status == 200, body
    assert len(server.node.cameras.pulls()) == 1  # type: ignore[union-attr]


async def test_rest_startup_find_all_terminate(start_server: Callable[..., Any],
                                               cameras: Callable[..., Awaitable[RtspCamera]],
                                               http: aiohttp.ClientSession) -> None:
    camera = await cameras(BLUE)
    server: RunningServer = await start_server()
    base = f"{server.http_url}/rest-api/rtsp"
    status, body = await post(http, f"{base}/startup", {"uri": camera.url, "toStream": "door", "transport": "udp"})
    assert status == 200, body
    assert body["toStream"] == "door" and body["status"] == "PUBLISHING" and body["transport"] == "udp"

    async with http.get(image_url(server, "door")) as response:
        assert response.status == 200
        assert_colour(png_image(await response.read()), BLUE)
    client = await WcsClient.connect(server.ws_url)
    try:
        assert_colour(png_image((await client.snapshot("door")).png), BLUE)
    finally:
        await client.close()

    status, body = await post(http, f"{base}/startup", {"uri": camera.url, "toStream": "door"})
    assert status == 409, body
    status, pulls = await post(http, f"{base}/find_all", {})
    assert status == 200 and [p["toStream"] for p in pulls] == ["door"]
    assert pulls[0]["uri"] == camera.public_url and pulls[0]["origin"] == "rest"

    status, _ = await post(http, f"{base}/terminate", {"uri": camera.url})
    assert status == 200
    status, _ = await post(http, f"{base}/find_all", {})
    assert status == 404
    status, body = await rest_picture(http, server, "door")
    assert status == 404 and body["reason"] == "stream_not_found"
    status, body = await post(http, f"{base}/terminate", {"toStream": "door"})
    assert status == 404
    status, body = await post(http, f"{base}/startup", {"toStream": "x"})
    assert status == 400 and body["field"] == "uri"


async def test_configured_camera_ends_with_its_reason_and_comes_back(
        start_server: Callable[..., Any], cameras: Callable[..., Awaitable[RtspCamera]],
        http: aiohttp.ClientSession) -> None:
    camera = await cameras(RED, user="admin", password=SECRET)
    server: RunningServer = await start_server(
        cameras=[Camera(name="yard", uri=camera.url)], rtsp_packet_timeout=2.0, rtsp_reconnect_max=1.0,
    )

    async def picture_is(colour: int) -> bool:
        async with http.get(image_url(server, "yard")) as response:
            if response.status != 200:
                return False
            assert_colour(png_image(await response.read()), colour)
            return True

    await eventually(lambda: picture_is(RED))
    camera.kill()

    async def pull_ended() -> bool:
        status, pulls = await post(http, f"{server.http_url}/rest-api/rtsp/find_all", {})
        return status == 200 and pulls[0]["status"] in ("RECONNECTING", "CONNECTING") and pulls[0]["reason"]

    await eventually(pull_ended)
    _, pulls = await post(http, f"{server.http_url}/rest-api/rtsp/find_all", {})
    assert pulls[0]["reason"] in ("source_closed", "source_timeout"), pulls
    assert SECRET not in str(pulls)
    status, body = await rest_picture(http, server, "yard")
    assert status == 404, body

    await camera.start()  # the same camera, back on its port
    await eventually(lambda: picture_is(RED))
    _, pulls = await post(http, f"{server.http_url}/rest-api/rtsp/find_all", {})
    assert pulls[0]["status"] == "PUBLISHING" and pulls[0]["attempts"] >= 2


async def test_on_demand_pull_stops_when_idle(start_server: Callable[..., Any],
                                              cameras: Callable[..., Awaitable[RtspCamera]],
                                              http: aiohttp.ClientSession) -> None:
    camera = await cameras(GREEN)
    server: RunningServer = await start_server(rtsp_idle_timeout=1.0)
    status, body = await rest_picture(http, server, camera.url)
    assert status == 200, body

    async def stream_gone() -> bool:
        async with http.get(f"{server.http_url}/streams") as response:
            return await response.json() == []

    await eventually(stream_gone, timeout=10)
    status, body = await rest_picture(http, server, camera.url)  # and starts again when asked
    assert status == 200, body


async def _garbage_server(answer: bytes | None) -> tuple[asyncio.Server, int]:
    """A TCP server that answers every RTSP request with `answer` (None: says nothing at all)."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await reader.readuntil(b"\r\n\r\n")
                if answer is not None:
                    cseq = next((line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
                                 if line.lower().startswith(b"cseq")), b"1")
                    writer.write(answer.replace(b"{cseq}", cseq))
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


_JUNK_SDP = b"v=banana\r\nm=video junk\r\n\x00\x01"
GARBAGE_SDP = (b"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nContent-Type: application/sdp\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (len(_JUNK_SDP), _JUNK_SDP))


async def test_failed_pulls_are_answered_clearly(start_server: Callable[..., Any],
                                                 cameras: Callable[..., Awaitable[RtspCamera]],
                                                 http: aiohttp.ClientSession) -> None:
    camera = await cameras(GREEN, user="viewer", password=SECRET)
    garbage, garbage_port = await _garbage_server(GARBAGE_SDP)
    silent, silent_port = await _garbage_server(None)
    server: RunningServer = await start_server(rtsp_open_timeout=2.0, rtsp_packet_timeout=2.0)
    closed_port = free_port()
    cases = [
        (f"rtsp://viewer:wrong-{SECRET}@127.0.0.1:{camera.port}/cam", 502, "source_unauthorized",
         "camera refused the credentials"),
        (camera.public_url, 502, "source_unauthorized", "camera refused the credentials"),
        (f"rtsp://viewer:{SECRET}@127.0.0.1:{camera.port}/nothing-here", 404, "source_not_found",
         "no stream at that camera path"),
        (f"rtsp://127.0.0.1:{closed_port}/cam", 502, "source_unreachable", "camera unreachable"),
        (f"rtsp://127.0.0.1:{garbage_port}/cam", 502, None, None),
        (f"rtsp://127.0.0.1:{silent_port}/cam", 504, "source_timeout", "camera timeout"),
        ("rtsp://", 400, "bad_source_uri", "bad camera url"),
        ("rtsp://127.0.0.1:99999/cam", 400, "bad_source_uri", "bad camera url"),
        ("rtsp://host.invalid./cam", 502, "source_unreachable", "camera unreachable"),
    ]
    client = await WcsClient.connect(server.ws_url)
    try:
        for uri, http_status, reason, words in cases:
            status, body = await rest_picture(http, server, uri)
            assert status == http_status, (uri, body)
            if reason is not None:
                assert body["reason"] == reason, (uri, body)
            else:
                assert body["reason"] in ("unsupported_source", "source_unreachable"), (uri, body)
            assert SECRET not in str(body)
            with pytest.raises(SnapshotFailed) as failed:
                await client.snapshot(uri, timeout=20)
            if words is not None:
                assert failed.value.args[0].endswith(words), (uri, failed.value.args)
            assert SECRET not in str(failed.value)
        assert server.node.cameras.pulls() == []  # type: ignore[union-attr]
        async with http.get(f"{server.http_url}/streams") as response:
            assert await response.json() == []
    finally:
        await client.close()
        garbage.close()
        silent.close()


class Trap:
    """A listener on 127.0.0.2 (outside the allow-lists of these tests) that counts the connections it gets."""

    def __init__(self) -> None:
        self.connections = 0
        self.server: asyncio.Server
        self.port = 0

    @classmethod
    async def start(cls) -> Trap:
        trap = cls()
        trap.server = await asyncio.start_server(trap._count, "127.0.0.2", 0)
        trap.port = trap.server.sockets[0].getsockname()[1]
        return trap

    async def _count(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()


async def test_hosts_outside_the_allow_list_are_never_connected(start_server: Callable[..., Any],
                                                                cameras: Callable[..., Awaitable[RtspCamera]],
                                                                http: aiohttp.ClientSession) -> None:
    camera = await cameras(GREEN)
    trap = await Trap.start()
    server: RunningServer = await start_server(rtsp_allowed_hosts=["127.0.0.1/32"])
    try:
        status, body = await rest_picture(http, server, f"rtsp://127.0.0.2:{trap.port}/cam")
        assert status == 403 and body["reason"] == "source_not_allowed", body
        status, body = await post(http, f"{server.http_url}/rest-api/rtsp/startup",
                                  {"uri": f"rtsp://localhost.:{trap.port}/cam"})
        assert status in (403, 502), body  # localhost may resolve to ::1 as well: outside the list
        assert trap.connections == 0
        status, body = await rest_picture(http, server, camera.url)
        assert status == 200, body
    finally:
        trap.server.close()


async def _redirecting_server(location: str) -> tuple[asyncio.Server, int]:
    """An RTSP server that redirects every request to `location` ("{self}" stands for its own address)."""
    server, port = await _garbage_server(b"RTSP/1.0 302 Moved Temporarily\r\nCSeq: {cseq}\r\nLocation: "
                                         + location.encode() + b"\r\nContent-Length: 0\r\n\r\n")
    if "{self}" in location:  # the answer names the server's own port, known only now
        server.close()
        holder: list[int] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    await reader.readuntil(b"\r\n\r\n")
                    target = location.replace("{self}", f"127.0.0.1:{holder[0]}")
                    writer.write(f"RTSP/1.0 302 Moved\r\nCSeq: 1\r\nLocation: {target}\r\n\r\n".encode())
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        holder.append(port)
    return server, port


async def test_redirects_are_followed_within_the_limit_and_the_allow_list(
        start_server: Callable[..., Any], cameras: Callable[..., Awaitable[RtspCamera]],
        http: aiohttp.ClientSession) -> None:
    camera = await cameras(BLUE)
    locked = await cameras(GREEN, user="viewer", password=SECRET)
    trap = await Trap.start()
    to_camera, to_camera_port = await _redirecting_server(camera.public_url)
    loop, loop_port = await _redirecting_server("rtsp://{self}/again")
    to_trap, to_trap_port = await _redirecting_server(f"rtsp://127.0.0.2:{trap.port}/cam")
    to_other_host, to_other_host_port = await _redirecting_server(f"rtsp://localhost:{locked.port}/cam")
    server: RunningServer = await start_server(rtsp_allowed_hosts=["127.0.0.1/32", "localhost"],
                                               rtsp_max_redirects=2)
    try:
        status, body = await rest_picture(http, server, f"rtsp://127.0.0.1:{to_camera_port}/cam")
        assert status == 200, body
        assert_colour(png_image(base64.b64decode(body["data"])), BLUE)

        status, body = await rest_picture(http, server, f"rtsp://127.0.0.1:{loop_port}/cam")
        assert (status, body["reason"]) == (502, "source_unreachable"), body

        status, body = await rest_picture(http, server, f"rtsp://127.0.0.1:{to_trap_port}/cam")
        assert (status, body["reason"]) == (403, "source_not_allowed"), body
        assert trap.connections == 0

        # Credentials go along to the same host only: the camera on "localhost" never gets them.
        status, body = await rest_picture(http, server, f"rtsp://viewer:{SECRET}@127.0.0.1:{to_other_host_port}/c")
        assert (status, body["reason"]) == (502, "source_unauthorized"), body
    finally:
        for listener in (trap.server, to_camera, loop, to_trap, to_other_host):
            listener.close()


async def test_failed_pulls_leak_neither_memory_nor_descriptors(start_server: Callable[..., Any],
                                                                 cameras: Callable[..., Awaitable[RtspCamera]],
                                                                 http: aiohttp.ClientSession) -> None:
    camera = await cameras(GREEN, user="viewer", password=SECRET)
    garbage, garbage_port = await _garbage_server(GARBAGE_SDP)
    server: RunningServer = await start_server()
    failing = [f"rtsp://viewer:nope@127.0.0.1:{camera.port}/cam", f"rtsp://127.0.0.1:{free_port()}/cam",
               f"rtsp://127.0.0.1:{garbage_port}/cam"]
    process = psutil.Process()

    async def round_of(count: int) -> None:
        for index in range(count):
            status, _ = await rest_picture(http, server, failing[index % len(failing)])
            assert status >= 400

    try:
        await round_of(15)  # warm up: thread stacks, FFmpeg's lazily loaded parts, caches
        gc.collect()
        fds, rss = process.num_fds(), process.memory_info().rss
        await round_of(50)
        gc.collect()
        assert process.num_fds() <= fds + 2
        assert process.memory_info().rss - rss < 8 * 1024 * 1024, "RSS grew by more than 8 MB over 50 failed pulls"
        assert server.node.cameras.pulls() == []  # type: ignore[union-attr]
    finally:
        garbage.close()


async def test_starting_a_pull_needs_the_pull_right(start_server: Callable[..., Any],
                                                    cameras: Callable[..., Awaitable[RtspCamera]],
                                                    http: aiohttp.ClientSession) -> None:
    secret = "k" * 64
    camera = await cameras(GREEN)
    server: RunningServer = await start_server(auth_secret=secret)
    tokens = TokenPolicy(secret)
    viewer = {"Authorization": f"Bearer {tokens.issue(['snapshot'])}"}
    puller = {"Authorization": f"Bearer {tokens.issue(['snapshot', 'pull'], streams=['rtsp://*', 'door'])}"}
    snapshot_url = f"{server.http_url}/rest-api/stream/snapshot"

    async with http.post(snapshot_url, json={"streamName": camera.url}, headers=viewer) as response:
        assert response.status == 403  # may take pictures, may not make the server pull a camera
    async with http.post(f"{server.http_url}/rest-api/rtsp/startup", json={"uri": camera.url, "toStream": "door"},
                         headers=viewer) as response:
        assert response.status == 403
    async with http.post(f"{server.http_url}/rest-api/rtsp/startup", json={"uri": camera.url}) as response:
        assert response.status == 401
    async with http.post(snapshot_url, json={"streamName": camera.url}, headers=puller) as response:
        assert response.status == 200, await response.text()
    async with http.post(snapshot_url, json={"streamName": camera.url}, headers=viewer) as response:
        assert response.status == 200  # the pull runs: pictures of it need only the snapshot right
    async with http.post(f"{server.http_url}/rest-api/rtsp/startup", json={"uri": camera.url, "toStream": "door"},
                         headers=puller) as response:
        assert response.status == 200, await response.text()
