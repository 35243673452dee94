"""The picture size from the bitstream header, through real sockets: every source lists its size from its
first keyframe on, before any picture is asked (issue 24), and a pixel bomb (an 8192x8192 H.264 stream
pushed over RTMP by Debian's ffmpeg) is refused before any decode while other streams are pictured
(issue 22)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest

from streamsnap.config import Camera
from streamsnap.media.pattern import PatternTrack
from streamsnap.wcsclient import SnapshotFailed, WcsClient
from tests.conftest import RunningServer
from tests.harness import free_port
from tests.integration.test_rtmp import Rtmp

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None,
                                  reason="needs Debian's ffmpeg (scripts/system-deps.sh)")

BOMB = 8192


async def listed(http: aiohttp.ClientSession, server: RunningServer, name: str) -> dict[str, Any] | None:
    streams = await (await http.get(f"{server.http_url}/streams")).json()
    return next((stream for stream in streams if stream["name"] == name), None)


async def publishing(http: aiohttp.ClientSession, server: RunningServer, name: str,
                     timeout: float = 20.0) -> dict[str, Any]:
    """The stream as /streams lists it the first time it is PUBLISHING."""
    async with asyncio.timeout(timeout):
        while True:
            stream = await listed(http, server, name)
            if stream is not None and stream["status"] == "PUBLISHING":
                return stream
            await asyncio.sleep(0.05)


async def record_size(server: RunningServer, name: str, timeout: float = 3.0) -> tuple[int | None, int | None]:
    """The stream record's size (what other nodes see), once the publish watch has written it."""
    assert server.node is not None
    async with asyncio.timeout(timeout):
        while True:
            record = await server.node.registry.lookup(name)
            assert record is not None
            if record.width is not None:
                return record.width, record.height
            await asyncio.sleep(0.05)


def no_picture_asked(server: RunningServer) -> bool:
    assert server.node is not None
    return server.node.engine.stats.requests == 0


# --- The pixel bomb --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bomb_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three black 8192x8192 frames, a keyframe first, encoded once by Debian's ffmpeg (libx264, ultrafast).

    Pushed looped with `-c copy`: the server gets what a live `-f lavfi -i color=black:s=8192x8192` push
    sends, without an encoder at half a second a frame competing with the server for the machine's cores.
    """
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs Debian's ffmpeg (scripts/system-deps.sh)")
    clip = tmp_path_factory.mktemp("bomb") / "bomb.flv"
    subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
                    f"color=black:s={BOMB}x{BOMB}:r=5", "-frames:v", "3", "-c:v", "libx264", "-preset", "ultrafast",
                    "-tune", "zerolatency", "-g", "3", "-pix_fmt", "yuv420p", "-f", "flv", str(clip)],
                   check=True, timeout=90)
    return clip


@pytest.fixture
async def rtmp_server(start_server: Callable[..., Any]) -> AsyncIterator[Rtmp]:
    port = free_port()
    ctx = Rtmp(await start_server(rtmp_port=port), port)
    yield ctx
    for proc in ctx.procs:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def push_clip(ctx: Rtmp, clip: Path, name: str) -> None:
    ctx.procs.append(await asyncio.create_subprocess_exec(
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(clip),
        "-c", "copy", "-f", "flv", ctx.url(name), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    ))


@needs_ffmpeg
async def test_a_pixel_bomb_is_refused_before_any_decode_while_other_streams_are_pictured(
        rtmp_server: Rtmp, bomb_clip: Path, http: aiohttp.ClientSession) -> None:
    ctx, server = rtmp_server, rtmp_server.server
    assert server.node is not None
    engine = server.node.engine
    await ctx.push(ctx.url("normal"))
    await push_clip(ctx, bomb_clip, "bomb")
    bomb = await publishing(http, server, "bomb")
    assert (bomb["codec"], bomb["width"], bomb["height"]) == ("H264", BOMB, BOMB)  # listed at once
    await publishing(http, server, "normal")
    base = server.http_url
    assert (await http.get(f"{base}/streams/normal/snapshot.jpg")).status == 200
    decodes = engine.stats.decodes
    process = psutil.Process()
    rss_before = peak = process.memory_info().rss
    normal: list[int] = []
    done = False

    async def watch_memory() -> None:
        nonlocal peak
        while not done:
            peak = max(peak, process.memory_info().rss)
            await asyncio.sleep(0.01)

    async def picture_normal() -> None:
        while not done:
            async with http.get(f"{base}/streams/normal/snapshot.jpg?max_age_ms=0") as response:
                await response.read()
                normal.append(response.status)

    async def picture_bomb(width: int) -> tuple[int, dict[str, Any], float]:
        started = time.perf_counter()
        async with http.get(f"{base}/streams/bomb/snapshot.jpg?width={width}") as response:
            return response.status, await response.json(), time.perf_counter() - started

    helpers = [asyncio.ensure_future(watch_memory()), asyncio.ensure_future(picture_normal())]
    try:
        answers = []
        for round_ in range(5):
            answers += await asyncio.gather(*(picture_bomb(160 + round_ * 8 + k) for k in range(4)))
            await asyncio.sleep(0.1)
    finally:
        done = True
        await asyncio.gather(*helpers)
    for status, body, seconds in answers:
        assert status == 400, body
        assert body["reason"] == "too_large"
        assert "8192x8192" in body["error"] and "3840x2160" in body["error"], body
        assert seconds < 0.2, f"refused after {seconds * 1000:.0f} ms"
    assert engine.stats.too_large >= len(answers)
    assert engine.stats.decodes - decodes <= len(normal)  # the normal stream's decodes, none of the bomb's
    assert normal and set(normal) == {200}, normal  # the other stream was pictured all along
    assert peak - rss_before < 50 * 2**20, f"RSS grew {(peak - rss_before) / 2**20:.0f} MB"

    viewer = await WcsClient.connect(server.ws_url)  # the same answer over WCS
    try:
        with pytest.raises(SnapshotFailed, match="larger than the server's size limit"):
            await viewer.snapshot("bomb")
    finally:
        await viewer.close()


# --- Every source lists its size from its first keyframe ------------------------------------


@needs_ffmpeg
async def test_an_rtmp_stream_lists_its_size_from_its_first_keyframe(
        rtmp_server: Rtmp, http: aiohttp.ClientSession) -> None:
    ctx, server = rtmp_server, rtmp_server.server
    await ctx.push(ctx.url("cam"), picture="color=c=blue:s=640x360:r=15")
    stream = await publishing(http, server, "cam")
    assert (stream["codec"], stream["width"], stream["height"]) == ("H264", 640, 360)
    assert no_picture_asked(server)
    found = await (await http.post(f"{server.http_url}/rest-api/stream/find", json={"name": "cam"})).json()
    assert [(s["videoCodec"], s["width"], s["height"]) for s in found] == [("H264", 640, 360)]
    assert await record_size(server, "cam") == (640, 360)


@pytest.mark.parametrize("codec, size", [("H264", (640, 360)), ("VP8", (480, 270))])
async def test_a_webrtc_stream_lists_its_size_from_its_first_keyframe(
        server: RunningServer, http: aiohttp.ClientSession, codec: str, size: tuple[int, int]) -> None:
    publisher = await WcsClient.connect(server.ws_url)
    try:
        await publisher.publish("cam", [PatternTrack(*size)], codec=codec)  # returns once the first frame is in
        stream = await publishing(http, server, "cam")
        assert (stream["codec"], stream["width"], stream["height"]) == (codec, *size)
        assert no_picture_asked(server)
        assert await record_size(server, "cam") == size
    finally:
        await publisher.close()


def _gstreamer_missing() -> bool:
    probe = subprocess.run(["/usr/bin/python3", "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
                            "from gi.repository import GstRtspServer"], capture_output=True)
    return probe.returncode != 0


@pytest.mark.skipif(_gstreamer_missing(), reason="GStreamer's RTSP server is not installed (scripts/system-deps.sh)")
async def test_an_rtsp_camera_lists_its_size_from_its_first_keyframe(
        start_server: Callable[..., Any], http: aiohttp.ClientSession) -> None:
    from tests.integration.test_rtsp import RtspCamera  # imported here: that module skips itself without GStreamer

    camera = RtspCamera(free_port(), 0x00FF00, extra=["--width", "640", "--height", "360"])
    await camera.start()
    try:
        server: RunningServer = await start_server(cameras=[Camera(name="yard", uri=camera.url)])
        await publishing(http, server, "yard")

        async def size_listed() -> bool:
            stream = await listed(http, server, "yard")
            return stream is not None and stream["width"] is not None

        await _within(size_listed, 3.0)  # the camera's keyframe interval is one second
        stream = await listed(http, server, "yard")
        assert stream is not None and (stream["codec"], stream["width"], stream["height"]) == ("H264", 640, 360)
        assert no_picture_asked(server)
        assert await record_size(server, "yard") == (640, 360)
    finally:
        camera.kill()


async def _within(check: Callable[[], Awaitable[bool]], seconds: float) -> None:
    async with asyncio.timeout(seconds):
        while not await check():  # noqa: ASYNC110 -- a state seen from outside, over HTTP
            await asyncio.sleep(0.05)
