"""RTMP push with Debian's ffmpeg: pictures over every transport, ends, refusals, hostile peers."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
from PIL import Image

from streamsnap.access import Right, TokenPolicy
from streamsnap.protocol.rtmp import HANDSHAKE_SIZE
from streamsnap.wcsclient import WcsClient
from tests.conftest import ROOT, RunningServer, png_image
from tests.harness import Processes, free_port, wait_listening
from tests.integration.test_readme_tour import BIN, ENV, steps_of, with_ports

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs Debian's ffmpeg (scripts/system-deps.sh)"),
]

SECRET = "rtmp-test-secret-0123456789abcdef"
# Left half red, right half blue: a picture whose pixels say it is this stream, the right way round.
PICTURE = "color=c=blue:s=320x240:r=15,drawbox=x=0:y=0:w=160:h=240:color=red:t=fill"


class Rtmp:
    """A server with its RTMP listener on a free port, and ffmpeg publishers to it."""

    def __init__(self, server: RunningServer, rtmp_port: int) -> None:
        self.server = server
        self.rtmp_port = rtmp_port
        self.procs: list[asyncio.subprocess.Process] = []
        self.headers: dict[str, str] = {}
        "What /streams is asked with (a bearer token when access control is on)."

    def url(self, name: str, app: str = "live") -> str:
        return f"rtmp://127.0.0.1:{self.rtmp_port}/{app}/{name}"

    async def push(self, url: str, picture: str = PICTURE, seconds: int = 60,
                   gop: int = 15) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-re", "-f", "lavfi",
            "-i", picture, "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
            "-pix_fmt", "yuv420p", "-g", str(gop), "-f", "flv", url,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        self.procs.append(proc)
        return proc

    async def publishing(self, http: aiohttp.ClientSession, name: str, timeout: float = 15.0) -> None:
        async def wait() -> None:
            while True:
                streams = await (await http.get(f"{self.server.http_url}/streams", headers=self.headers)).json()
                if any(s["name"] == name and s["status"] == "PUBLISHING" for s in streams):
                    return
                await asyncio.sleep(0.1)

        await asyncio.wait_for(wait(), timeout)

    async def gone(self, http: aiohttp.ClientSession, name: str, timeout: float = 10.0) -> None:
        async def wait() -> None:
            url = f"{self.server.http_url}/streams"
            while any(s["name"] == name for s in await (await http.get(url, headers=self.headers)).json()):  # noqa: ASYNC110
                await asyncio.sleep(0.1)

        await asyncio.wait_for(wait(), timeout)


@pytest.fixture
async def rtmp(start_server: Callable[..., Any]) -> AsyncIterator[Callable[..., Any]]:
    made: list[Rtmp] = []

    async def make(**overrides: Any) -> Rtmp:
        port = free_port()
        server = await start_server(rtmp_port=port, **overrides)
        made.append(Rtmp(server, port))
        return made[-1]

    yield make
    for each in made:
        for proc in each.procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


def assert_halves(image: Image.Image) -> None:
    assert image.size == (320, 240)
    rgb = image.convert("RGB")
    left, right = rgb.getpixel((60, 120)), rgb.getpixel((260, 120))
    assert isinstance(left, tuple) and isinstance(right, tuple)
    assert left[0] > 200 and left[1] < 50 and left[2] < 50, left
    assert right[2] > 200 and right[0] < 50 and right[1] < 50, right


async def test_an_ffmpeg_push_is_pictured_over_websocket_rest_and_image_url(
        rtmp: Callable[..., Any], http: aiohttp.ClientSession) -> None:
    ctx: Rtmp = await rtmp()
    await ctx.push(ctx.url("cam"))
    await ctx.publishing(http, "cam")
    base = ctx.server.http_url

    viewer = await WcsClient.connect(ctx.server.ws_url)
    try:
        assert_halves(png_image((await viewer.snapshot("cam")).png))
    finally:
        await viewer.close()

    answer = await http.post(f"{base}/rest-api/stream/snapshot", json={"streamName": "cam"})
    assert answer.status == 200
    assert_halves(png_image(base64.b64decode((await answer.json())["data"])))

    image = await http.get(f"{base}/streams/cam/snapshot.jpg")
    assert image.status == 200
    assert_halves(Image.open(io.BytesIO(await image.read())))

    found = await (await http.post(f"{base}/rest-api/stream/find_all")).json()
    assert [(s["name"], s["mediaProvider"], s["videoCodec"]) for s in found] == [("cam", "RTMP", "H264")]
    metrics = await (await http.get(f"{base}/metrics")).text()
    assert 'streamsnap_streams_by_kind{kind="rtmp"} 1.0' in metrics


async def test_a_fresh_picture_does_not_wait_for_the_encoders_next_keyframe(
        rtmp: Callable[..., Any], http: aiohttp.ClientSession) -> None:
    # RTMP cannot ask for a keyframe: a fresh picture decodes the cached group at once rather than
    # waiting (a PLI interval, 0.5 s, or the encoder's keyframe 10 s away).
    ctx: Rtmp = await rtmp()
    proc = await ctx.push(ctx.url("cam"), gop=150)
    await ctx.publishing(http, "cam")
    assert proc.returncode is None
    await asyncio.sleep(1.5)
    times = []
    for _ in range(3):
        started = time.perf_counter()
        picture = await http.get(f"{ctx.server.http_url}/streams/cam/snapshot.png?max_age_ms=0")
        assert picture.status == 200
        assert_halves(png_image(await picture.read()))
        times.append(time.perf_counter() - started)
    assert sorted(times)[1] < 0.4, times


async def test_a_killed_ffmpeg_ends_its_stream_with_a_clear_reason(
        rtmp: Callable[..., Any], http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture) -> None:
    ctx: Rtmp = await rtmp()
    proc = await ctx.push(ctx.url("cam"))
    await ctx.publishing(http, "cam")
    with caplog.at_level(logging.INFO, logger="streamsnap.service.publishing"):
        proc.send_signal(signal.SIGKILL)
        await ctx.gone(http, "cam")
    assert "stream cam ended: disconnected" in caplog.text
    picture = await http.get(f"{ctx.server.http_url}/streams/cam/snapshot.png")
    assert picture.status == 404


async def test_an_ffmpeg_stopped_gracefully_ends_its_stream_as_stopped_by_its_publisher(
        rtmp: Callable[..., Any], http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture) -> None:
    ctx: Rtmp = await rtmp()
    proc = await ctx.push(ctx.url("cam"))
    await ctx.publishing(http, "cam")
    with caplog.at_level(logging.INFO, logger="streamsnap.service.publishing"):
        proc.send_signal(signal.SIGINT)  # ffmpeg unpublishes (FCUnpublish, deleteStream) and hangs up
        await ctx.gone(http, "cam")
    assert "stream cam ended: stopped_by_publisher" in caplog.text


async def test_a_second_push_of_a_live_name_is_refused(rtmp: Callable[..., Any], http: aiohttp.ClientSession) -> None:
    ctx: Rtmp = await rtmp()
    await ctx.push(ctx.url("cam"))
    await ctx.publishing(http, "cam")
    second = await ctx.push(ctx.url("cam"))
    assert await asyncio.wait_for(second.wait(), 15) != 0
    assert second.stderr is not None
    assert b"Stream name is already in use" in await second.stderr.read()
    assert (await http.get(f"{ctx.server.http_url}/streams/cam/snapshot.png")).status == 200


async def test_an_encoder_cannot_push_a_camera_url_name(rtmp: Callable[..., Any], http: aiohttp.ClientSession) -> None:
    ctx: Rtmp = await rtmp()
    pushed = await ctx.push(ctx.url("rtsp://camera.example/x"))
    assert await asyncio.wait_for(pushed.wait(), 15) != 0  # refused: ffmpeg exits
    assert pushed.stderr is not None
    assert b"names of camera urls are the server's own pulls" in await pushed.stderr.read()
    assert await (await http.get(f"{ctx.server.http_url}/streams")).json() == []


async def test_rest_terminate_closes_the_rtmp_connection(rtmp: Callable[..., Any], http: aiohttp.ClientSession) -> None:
    ctx: Rtmp = await rtmp()
    proc = await ctx.push(ctx.url("cam"))
    await ctx.publishing(http, "cam")
    answer = await http.post(f"{ctx.server.http_url}/rest-api/stream/terminate", json={"name": "cam"})
    assert answer.status == 200
    assert await asyncio.wait_for(proc.wait(), 10) != 0  # ffmpeg sees its connection closed
    await ctx.gone(http, "cam")


async def test_with_access_control_the_token_rides_in_the_stream_key(
        rtmp: Callable[..., Any], http: aiohttp.ClientSession) -> None:
    ctx: Rtmp = await rtmp(auth_secret=SECRET)
    ctx.headers = {"Authorization": f"Bearer {TokenPolicy(SECRET).issue([Right.SNAPSHOT])}"}
    refused = await ctx.push(ctx.url("cam"))
    assert await asyncio.wait_for(refused.wait(), 15) != 0
    assert refused.stderr is not None and b"Restricted access" in await refused.stderr.read()
    wrong_name = TokenPolicy(SECRET).issue([Right.PUBLISH], streams=["other"])
    refused = await ctx.push(ctx.url(f"cam?token={wrong_name}"))
    assert await asyncio.wait_for(refused.wait(), 15) != 0
    token = TokenPolicy(SECRET).issue([Right.PUBLISH], streams=["cam"])
    await ctx.push(ctx.url(f"cam?token={token}"))
    await ctx.publishing(http, "cam")


async def _raw(port: int, data: bytes, *, read: bool = True) -> bytes:
    """Send `data` to the RTMP port; return what came back before the server closed (or 2 s passed)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    received = b""
    try:
        while read:
            chunk = await asyncio.wait_for(reader.read(65536), 2.0)
            if not chunk:
                break
            received += chunk
    except (TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()
    return received


async def _after_handshake(port: int, data: bytes) -> bytes:
    """Handshake, then send `data`; return what came back after it before the server closed (or 2 s)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"\x03" + bytes(HANDSHAKE_SIZE))
        await asyncio.wait_for(reader.readexactly(1 + 2 * HANDSHAKE_SIZE), 2.0)
        writer.write(bytes(HANDSHAKE_SIZE) + data)
        received = b""
        while chunk := await asyncio.wait_for(reader.read(65536), 2.0):
            received += chunk
        return received
    finally:
        writer.close()


def _closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except BlockingIOError:
        return False


async def test_hostile_peers_are_closed_and_everyone_else_is_served(
        rtmp: Callable[..., Any], http: aiohttp.ClientSession) -> None:
    ctx: Rtmp = await rtmp(rtmp_handshake_timeout=1.0, rtmp_max_connections=50)
    await ctx.push(ctx.url("cam"))
    await ctx.publishing(http, "cam")
    me = psutil.Process(os.getpid())

    async def round_of_abuse() -> None:
        # Garbage, an HTTP request, a handshake cut short, a chunk size of 2^31-1, a 16 MB message.
        assert await _raw(ctx.rtmp_port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == b""
        assert await _raw(ctx.rtmp_port, os.urandom(4000)) in (b"",)
        c1 = b"\x03" + bytes(HANDSHAKE_SIZE)
        huge_chunk = b"\x02" + bytes(3) + (4).to_bytes(3, "big") + b"\x01" + bytes(4) + struct.pack(">I", 0x7FFFFFFF)
        assert await _after_handshake(ctx.rtmp_port, huge_chunk) == b""
        huge_message = b"\x06" + bytes(3) + (0xFFFFFF).to_bytes(3, "big") + b"\x09" + bytes(4)
        assert await _after_handshake(ctx.rtmp_port, huge_message) == b""
        assert await _after_handshake(ctx.rtmp_port, os.urandom(3000)) == b""
        # Truncated handshakes and silent sockets: closed by the handshake timeout.
        loop = asyncio.get_running_loop()
        idle = []
        for i in range(1000):
            sock = socket.socket()
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", ctx.rtmp_port))
            if i % 2:
                await loop.sock_sendall(sock, c1[: 1 + i])
            idle.append(sock)
        await asyncio.sleep(0.5)
        # Past the connection cap: refused at once; the live stream is still pictured meanwhile.
        assert (await http.get(f"{ctx.server.http_url}/streams/cam/snapshot.png")).status == 200
        await asyncio.sleep(2.5)
        assert all(_closed_by_server(sock) for sock in idle)
        for sock in idle:
            sock.close()

    await round_of_abuse()
    baseline_fds, baseline_rss = me.num_fds(), me.memory_info().rss
    for _ in range(2):
        await round_of_abuse()
    assert me.num_fds() <= baseline_fds + 5
    assert me.memory_info().rss <= baseline_rss + 20 * 1024 * 1024
    picture = await http.get(f"{ctx.server.http_url}/streams/cam/snapshot.png")
    assert picture.status == 200
    assert_halves(Image.open(io.BytesIO(await picture.read())))
    new = await ctx.push(ctx.url("cam2"))
    await ctx.publishing(http, "cam2")
    assert new.returncode is None


@pytest.mark.timeout(120)
def test_the_rtmp_commands_of_the_docs_as_written(tmp_path: Path, processes: Processes) -> None:
    page = (ROOT / "docs" / "encoders.md").read_text()
    section = re.search(r"^## RTMP\n(.*?)^## ", page, re.S | re.M)
    assert section, "docs/encoders.md lost its '## RTMP' section"
    block = re.search(r"```sh\n(.*?)```", section.group(1), re.S)
    assert block, "the section has no ```sh block"
    steps = steps_of(block.group(1))
    port, rtmp_port = free_port(), free_port()
    # Only the ports change (and .venv/bin/streamsnap is this environment's).
    env = ENV | {"PATH": f"{BIN}:{os.environ['PATH']}", "STREAMSNAP_HOST": "127.0.0.1"}
    for step in steps:
        words = shlex.split(with_ports(step.command, port).replace(":1935", f":{rtmp_port}")
                            .replace("=1935", f"={rtmp_port}").replace("--port 8080", f"--port {port}"), comments=True)
        variables = dict(word.split("=", 1) for word in words if re.fullmatch(r"[A-Z_]+=\S*", word))
        words = [word for word in words if not re.fullmatch(r"[A-Z_]+=\S*", word)]
        if words[0] == ".venv/bin/streamsnap":
            words[0] = str(BIN / "streamsnap")
        if step.background:
            proc = processes.start(words[:-1], tmp_path, env | variables)
            if words[0].endswith("streamsnap"):
                wait_listening(port, proc, timeout=60)
            else:
                _wait_publishing(port, "cam1")
            continue
        result = subprocess.run(words, cwd=tmp_path, env=env | variables, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, (step.command, result.stdout, result.stderr)
    picture = Image.open(tmp_path / "cam1.jpg")
    assert (picture.format, picture.size) == ("JPEG", (640, 480))


def _wait_publishing(port: int, name: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/streams", timeout=5) as answer:
            if any(s["name"] == name and s["status"] == "PUBLISHING" for s in json.load(answer)):
                return
        time.sleep(0.2)
    raise AssertionError(f"{name} did not start publishing")
