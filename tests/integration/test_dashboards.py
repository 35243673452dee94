"""What dashboards and camera viewers use, with a real server and a real aiortc publisher: fit, `.jpeg`,
HEAD without decoding, frame times, plain-words 400s, thumbnails served over HTTP, and MJPEG."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shlex
import shutil
import stat
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from PIL import Image

from streamsnap.access import TokenPolicy
from streamsnap.media.pattern import PatternTrack, read_counter
from streamsnap.server.listeners import Server
from streamsnap.service.thumbnails import file_stem
from streamsnap.wcsclient import WcsClient
from tests.conftest import MAX_LAG_FRAMES, TEST_SETTINGS, RunningServer

pytestmark = pytest.mark.integration

HTTP_API = Path(__file__).resolve().parents[2] / "docs" / "http-api.md"
SECRET = "dashboards-secret-" + "0123456789abcdef" * 3


@asynccontextmanager
async def publishing(server: RunningServer, name: str, width: int = 640, height: int = 480
                     ) -> AsyncIterator[tuple[WcsClient, PatternTrack]]:
    track = PatternTrack(width, height)
    client = await WcsClient.connect(server.ws_url)
    try:
        await client.publish(name, [track])
        yield client, track
    finally:
        await client.close()


def rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def saturated(pixels: np.ndarray) -> float:
    """Share of pixels that are strongly coloured (the pattern's colour area, not its black/white counter)."""
    spread = pixels.max(axis=-1) - pixels.min(axis=-1)
    return float((spread > 100).mean())


async def fetch(http: aiohttp.ClientSession, url: str, **params: str) -> tuple[aiohttp.ClientResponse, bytes]:
    async with http.get(url, params=params) as response:
        return response, await response.read()


# ---- fit -------------------------------------------------------------------------------------------------


async def test_fit_contain_letterboxes_and_cover_crops_the_centre(server: RunningServer,
                                                                  http: aiohttp.ClientSession) -> None:
    url = f"{server.http_url}/streams/fit/snapshot.png"
    async with publishing(server, "fit"):  # 640x480 (4:3) into 480x240 (2:1)
        pictures = {}
        for fit in ("fill", "contain", "cover"):
            response, data = await fetch(http, url, width="480", height="240", fit=fit, max_age_ms="2000")
            assert response.status == 200, data
            assert (response.headers["X-Image-Width"], response.headers["X-Image-Height"]) == ("480", "240")
            pictures[fit] = rgb(data)
            assert pictures[fit].shape == (240, 480, 3)
    contain, cover, fill = pictures["contain"], pictures["cover"], pictures["fill"]
    # The pattern: a black/white counter band (top quarter), a colour below, a white bar sweeping
    # across the lowest half; the checks look at the colour between band and bar.
    # contain: scaled to 320x240 in the middle, black bars of 80 columns on both sides
    assert contain[:, :76].max() < 16 and contain[:, -76:].max() < 16
    assert saturated(contain[62:88, 90:390]) > 0.5
    # cover: scaled to 480x360, 60 rows cropped from top and bottom: no bars, and the counter band
    # (90 rows once scaled) shows 30 rows only, where fill (stretched) shows 60
    assert saturated(cover[35:70, :12]) > 0.5 and saturated(cover[35:70, -12:]) > 0.5
    assert saturated(cover[5:25]) < 0.05
    assert saturated(fill[38:52]) < 0.05
    assert saturated(fill[62:88, :12]) > 0.5 and saturated(fill[62:88, -12:]) > 0.5


async def test_fit_needs_both_sides_and_jpeg_is_an_alias(server: RunningServer,
                                                         http: aiohttp.ClientSession) -> None:
    async with publishing(server, "alias"):
        response, data = await fetch(http, f"{server.http_url}/streams/alias/snapshot.jpeg", width="320",
                                     fit="cover")
        assert response.status == 200
        assert response.headers["Content-Type"] == "image/jpeg"
        image = Image.open(io.BytesIO(data))
        assert (image.format, image.size) == ("JPEG", (320, 240))  # one side: aspect kept, fit moot


# ---- headers, HEAD, parameters -------------------------------------------------------------------------------


async def test_frame_time_headers(server: RunningServer, http: aiohttp.ClientSession) -> None:
    async with publishing(server, "clock"):
        before = time.time()
        response, _ = await fetch(http, f"{server.http_url}/streams/clock/snapshot.jpg")
        after = time.time()
    assert response.status == 200
    stamp = datetime.fromisoformat(response.headers["X-Frame-Timestamp"].replace("Z", "+00:00")).timestamp()
    age = float(response.headers["X-Frame-Age-Ms"]) / 1000
    assert before - 1.0 <= stamp <= after
    assert abs((after - age) - stamp) < 0.5  # the frame's wall time is "now minus its age"
    modified = parsedate_to_datetime(response.headers["Last-Modified"]).timestamp()
    assert int(stamp) == modified


async def test_head_answers_without_decoding(server: RunningServer, http: aiohttp.ClientSession) -> None:
    assert server.node is not None
    stats = server.node.engine.stats
    async with publishing(server, "head", 320, 240):
        await asyncio.sleep(0.3)
        before = (stats.requests, stats.decodes, stats.encodes)
        for ext in ("png", "jpg", "jpeg", "webp"):
            async with http.head(f"{server.http_url}/streams/head/snapshot.{ext}", params={"width": "160"}) as r:
                assert r.status == 200
                assert r.headers["Content-Type"].startswith("image/")
                assert r.headers["Cache-Control"] == "no-store"
                assert (r.headers["X-Image-Width"], r.headers["X-Image-Height"]) == ("160", "120")
                stamp = datetime.fromisoformat(r.headers["X-Frame-Timestamp"].replace("Z", "+00:00")).timestamp()
                assert time.time() - 2 < stamp <= time.time()
                assert "Last-Modified" in r.headers
                assert await r.read() == b""
        assert (stats.requests, stats.decodes, stats.encodes) == before  # nothing decoded or encoded
        async with http.head(f"{server.http_url}/streams/nobody/snapshot.png") as r:
            assert r.status == 404
        async with http.head(f"{server.http_url}/streams/head/snapshot.png", params={"width": "x"}) as r:
            assert r.status == 400
        assert (stats.requests, stats.decodes, stats.encodes) == before


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"width": "wide"}, "width must be a whole number of pixels from 1 to 3840; got 'wide'"),
        ({"width": "0"}, "width must be a whole number of pixels from 1 to 3840; got '0'"),
        ({"height": "5000"}, "height must be a whole number of pixels from 1 to 2160; got '5000'"),
        ({"quality": "101"}, "quality must be a whole number from 1 to 100; got '101'"),
        ({"max_age_ms": "soon"}, "max_age_ms must be a number of milliseconds from 0 to 3600000; got 'soon'"),
        ({"fit": "stretch"}, "fit must be fill, contain or cover; got 'stretch'"),
    ],
)
async def test_bad_parameters_in_plain_words(server: RunningServer, http: aiohttp.ClientSession,
                                             query: dict[str, str], message: str) -> None:
    response, data = await fetch(http, f"{server.http_url}/streams/any/snapshot.png", **query)
    assert response.status == 400
    body = json.loads(data)
    assert body["error"] == message
    assert body["field"] == next(iter(query))


async def test_unknown_parameters_are_ignored(server: RunningServer, http: aiohttp.ClientSession) -> None:
    async with publishing(server, "busted", 320, 240):
        response, data = await fetch(http, f"{server.http_url}/streams/busted/snapshot.png", t="1700000000",
                                     _="42", width="160")
    assert response.status == 200
    assert Image.open(io.BytesIO(data)).size == (160, 120)


# ---- thumbnails ------------------------------------------------------------------------------------------------


async def test_thumbnails_readable_by_others_served_without_decoding_and_removed(
    start_server: Callable[..., Any], http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    folder = tmp_path / "thumbs"
    previous = os.umask(0o022)
    try:
        server = await start_server(thumbnail_interval=0.3, thumbnail_dir=str(folder), thumbnail_width=320,
                                    thumbnail_history=2, thumbnail_remove_ended=True)
        url = f"{server.http_url}/streams/lobby/thumbnail.jpg"
        current = folder / f"{file_stem('lobby')}.jpg"
        async with publishing(server, "lobby") as (_, track):
            thumbnailer = server.node.thumbnails
            assert thumbnailer is not None
            async with asyncio.timeout(10):
                while thumbnailer.written == 0:  # noqa: ASYNC110 -- no event for a round
                    await asyncio.sleep(0.05)
            assert stat.S_IMODE(current.stat().st_mode) == 0o644
            history = list((folder / file_stem("lobby")).glob("*.jpg"))
            assert history and all(stat.S_IMODE(path.stat().st_mode) == 0o644 for path in history)

            stats = server.node.engine.stats
            requests, written = stats.requests, thumbnailer.written
            for _ in range(20):
                response, data = await fetch(http, url)
                assert response.status == 200
                assert response.headers["Content-Type"] == "image/jpeg"
                image = Image.open(io.BytesIO(data))
                assert (image.format, image.size) == ("JPEG", (320, 240))
                assert 0 <= track.counter - read_counter(image) <= MAX_LAG_FRAMES + 15
            # every engine request in between was a thumbnail round's, none a download's
            assert stats.requests - requests <= thumbnailer.written - written

            modified = response.headers["Last-Modified"]
            async with http.get(url, headers={"If-Modified-Since": modified}) as again:
                assert again.status in (200, 304)  # 200 only if a newer round landed in between
                if again.status == 304:
                    assert await again.read() == b""
        async with asyncio.timeout(10):  # removed at the first round after the stream ended
            while current.exists() or (folder / file_stem("lobby")).exists():  # noqa: ASYNC110 -- files
                await asyncio.sleep(0.05)
        response, data = await fetch(http, url)
        assert response.status == 404
    finally:
        os.umask(previous)


async def test_thumbnail_url_when_off_or_unknown(server: RunningServer, http: aiohttp.ClientSession,
                                                 start_server: Callable[..., Any], tmp_path: Path) -> None:
    async with http.get(f"{server.http_url}/streams/any/thumbnail.jpg") as response:
        assert response.status == 404
        assert (await response.json())["reason"] == "thumbnails_off"
    on = await start_server(thumbnail_interval=60, thumbnail_dir=str(tmp_path))
    async with http.get(f"{on.http_url}/streams/nobody/thumbnail.jpg") as response:
        assert response.status == 404
        assert (await response.json())["reason"] == "stream_not_found"
    async with publishing(on, "later", 320, 240):  # the first round ran at start, before this stream
        async with http.get(f"{on.http_url}/streams/later/thumbnail.jpg") as response:
            assert response.status == 404
            body = await response.json()
            assert body["reason"] == "no_thumbnail_yet"
            assert "every 60 s" in body["error"]


# ---- MJPEG -------------------------------------------------------------------------------------------------


async def read_parts(response: aiohttp.ClientResponse, count: int,
                     first: bool = True) -> list[tuple[dict[str, str], bytes]]:
    """`count` parts of a multipart/x-mixed-replace answer, each checked for its framing."""
    reader = response.content
    if first:
        assert await reader.readline() == b"--frame\r\n"
    parts = []
    for _ in range(count):
        headers = {}
        while (line := await reader.readline()) != b"\r\n":
            key, _, value = line.decode().partition(":")
            headers[key.strip().lower()] = value.strip()
        data = await reader.readexactly(int(headers["content-length"]))
        assert await reader.readexactly(2) == b"\r\n"  # the JPEG ends with CRLF
        assert await reader.readline() == b"--frame\r\n"  # and the next boundary follows at once
        parts.append((headers, data))
    return parts


async def test_mjpeg_parts_are_fresh_jpegs(server: RunningServer, http: aiohttp.ClientSession) -> None:
    async with publishing(server, "motion") as (_, track):
        async with http.get(f"{server.http_url}/streams/motion/stream.mjpeg",
                            params={"fps": "10", "width": "320"}) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=frame"
            assert response.headers["Cache-Control"] == "no-store"
            started = time.monotonic()
            parts = await asyncio.wait_for(read_parts(response, 6), 10)
            elapsed = time.monotonic() - started
            published_then = track.counter
    counters = []
    for headers, data in parts:
        assert headers["content-type"] == "image/jpeg"
        assert "x-frame-timestamp" in headers
        image = Image.open(io.BytesIO(data))
        assert (image.format, image.size) == ("JPEG", (320, 240))
        counters.append(read_counter(image))
    assert counters == sorted(counters) and len(set(counters)) == len(counters)  # each part a newer frame
    assert 0 <= published_then - counters[-1] <= MAX_LAG_FRAMES
    assert elapsed > 0.35  # 10 fps: five intervals after the first part, not a burst


async def test_mjpeg_watchers_share_one_decode_and_stop_it_when_gone(server: RunningServer,
                                                                      http: aiohttp.ClientSession) -> None:
    assert server.node is not None
    stats = server.node.engine.stats
    url = f"{server.http_url}/streams/shared/stream.mjpeg"
    async with publishing(server, "shared", 320, 240):
        responses = [await http.get(url, params={"fps": "5"}) for _ in range(4)]
        try:
            await asyncio.wait_for(asyncio.gather(*(read_parts(r, 1) for r in responses)), 10)
            requests = stats.requests
            started = time.monotonic()
            parts = await asyncio.wait_for(asyncio.gather(*(read_parts(r, 5, first=False) for r in responses)),
                                           10)
            elapsed = time.monotonic() - started
            made = stats.requests - requests
            assert server.node.mjpeg is not None
            assert server.node.mjpeg.feeds == 1
        finally:
            for response in responses:
                response.close()
        assert sum(len(p) for p in parts) == 20
        async with http.head(url) as head:  # answered without a watcher or a picture
            assert head.status == 200
            assert head.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=frame"
        # one producer at 5 fps for all four watchers: about 5 pictures a second, not 20
        assert made <= 5 * elapsed + 3, (made, elapsed)
        async with asyncio.timeout(5):  # the server notices the watchers gone (at once, or at their next part)
            while server.node.mjpeg.watchers:  # noqa: ASYNC110 -- the server's own bookkeeping
                await asyncio.sleep(0.05)
        assert server.node.mjpeg.feeds == 0
        idle = stats.requests
        await asyncio.sleep(1.0)
        assert stats.requests == idle  # nothing decoded while nobody watches


async def test_mjpeg_limits_refuse_with_json(start_server: Callable[..., Any], http: aiohttp.ClientSession) -> None:
    server = await start_server(mjpeg_max_watchers_per_stream=1, mjpeg_max_watchers=2, mjpeg_max_fps=5)
    async with publishing(server, "a", 320, 240), publishing(server, "b", 320, 240):
        first = await http.get(f"{server.http_url}/streams/a/stream.mjpeg")
        try:
            assert first.status == 200
            async with http.get(f"{server.http_url}/streams/a/stream.mjpeg") as refused:
                assert refused.status == 429
                body = await refused.json()
                assert (body["status"], body["reason"]) == (429, "too_many_watchers")
                assert "at most 1" in body["error"]
                assert refused.headers["Retry-After"] == "1"
            second = await http.get(f"{server.http_url}/streams/b/stream.mjpeg")
            try:
                assert second.status == 200
                async with http.get(f"{server.http_url}/streams/b/stream.mjpeg") as full:
                    assert full.status == 429  # b's own cap first
                async with http.get(f"{server.http_url}/streams/c/stream.mjpeg") as full:
                    assert full.status == 503
                    assert (await full.json())["reason"] == "too_many_watchers"
            finally:
                second.close()
        finally:
            first.close()
        assert server.node.mjpeg is not None
        async with asyncio.timeout(5):  # the server notices a watcher gone at its next part
            while server.node.mjpeg.watchers:  # noqa: ASYNC110 -- the server's own bookkeeping
                await asyncio.sleep(0.05)
        assert server.node.mjpeg.feeds == 0
        async with http.get(f"{server.http_url}/streams/a/stream.mjpeg", params={"fps": "6"}) as fast:
            assert fast.status == 400
            assert (await fast.json())["error"] == ("fps must be a number of frames per second from 0.1 to 5; "
                                                    "got '6'")
        async with http.get(f"{server.http_url}/streams/nobody/stream.mjpeg") as missing:
            assert missing.status == 404
            assert (await missing.json())["reason"] == "stream_not_found"


async def test_mjpeg_ends_when_the_stream_ends(server: RunningServer, http: aiohttp.ClientSession) -> None:
    client = await WcsClient.connect(server.ws_url)
    try:
        await client.publish("ending", [PatternTrack(320, 240)])
        async with http.get(f"{server.http_url}/streams/ending/stream.mjpeg") as response:
            await asyncio.wait_for(read_parts(response, 2), 10)
            await client.close()
            rest = await asyncio.wait_for(response.content.read(), 10)  # EOF: the answer ended cleanly
            assert rest.count(b"--frame\r\n") <= 3
    finally:
        await client.close()


async def test_mjpeg_checks_access_like_the_image_url(start_server: Callable[..., Any],
                                                      http: aiohttp.ClientSession) -> None:
    server = await start_server(auth_secret=SECRET)
    tokens = TokenPolicy(SECRET)
    publisher = await WcsClient.connect(server.ws_url, authToken=tokens.issue(["publish"]))
    try:
        await publisher.publish("guarded", [PatternTrack(320, 240)])
        url = f"{server.http_url}/streams/guarded/stream.mjpeg"
        async with http.get(url) as response:
            assert response.status == 401
        async with http.get(url, params={"access_token": tokens.issue(["publish"])}) as response:
            assert response.status == 403
        async with http.get(url, params={"access_token": tokens.issue(["snapshot"])}) as response:
            assert response.status == 200
            await asyncio.wait_for(read_parts(response, 1), 10)
        async with http.get(url, headers={"Authorization": f"Bearer {tokens.issue(['snapshot'])}"}) as response:
            assert response.status == 200
        async with http.head(f"{server.http_url}/streams/guarded/snapshot.png") as response:
            assert response.status == 401
        async with http.get(f"{server.http_url}/streams/guarded/thumbnail.jpg") as response:
            assert response.status == 401
    finally:
        await publisher.close()


# ---- independent consumers: FFmpeg's own HTTP client and demuxers ------------------------------------------


async def run_tool(*args: str, timeout: float = 30) -> tuple[int, str, str]:
    tool = shutil.which(args[0])
    if tool is None:
        pytest.fail(f"{args[0]} is not installed: run scripts/system-deps.sh (Debian's ffmpeg)")
    process = await asyncio.create_subprocess_exec(tool, *args[1:], stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_ffprobe_reads_the_image_url(server: RunningServer) -> None:
    async with publishing(server, "probed"):
        for ext, codec, query, size in [("jpeg", "mjpeg", "width=480&height=240&fit=cover", (480, 240)),
                                        ("png", "png", "height=120", (160, 120)),
                                        ("webp", "webp", "t=1", (640, 480))]:
            code, out, err = await run_tool(
                "ffprobe", "-v", "error", "-show_entries", "stream=codec_name,width,height", "-of", "json",
                f"{server.http_url}/streams/probed/snapshot.{ext}?{query}")
            assert code == 0, err
            (stream,) = json.loads(out)["streams"]
            assert (stream["codec_name"], stream["width"], stream["height"]) == (codec, *size)


async def test_ffmpeg_reads_mjpeg(server: RunningServer, tmp_path: Path) -> None:
    async with publishing(server, "recorded") as (_, track):
        code, _, err = await run_tool(
            "ffmpeg", "-v", "error", "-nostdin", "-i",
            f"{server.http_url}/streams/recorded/stream.mjpeg?fps=10&width=320&height=240&fit=contain",
            "-frames:v", "3", str(tmp_path / "frame%d.png"))
        published_then = track.counter
    assert code == 0, err
    frames = [tmp_path / f"frame{index}.png" for index in (1, 2, 3)]
    counters = [read_counter(Image.open(path)) for path in frames]
    assert all(Image.open(path).size == (320, 240) for path in frames)
    assert counters == sorted(counters) and len(set(counters)) == 3  # three different, newer and newer frames
    assert 0 <= published_then - counters[-1] <= MAX_LAG_FRAMES


async def test_the_dashboard_commands_of_the_docs_run_as_written(server: RunningServer, tmp_path: Path) -> None:
    page = HTTP_API.read_text()
    section = page.split("## For dashboards and camera viewers", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [shlex.split(line.replace("127.0.0.1:8080", f"127.0.0.1:{server.port}"), comments=True)
                for line in block.splitlines() if line.strip() and not line.startswith("#")]  # `# ...`: output
    assert [words[0] for words in commands] == ["curl", "curl", "ffmpeg"]
    async with publishing(server, "demo"):
        outputs = []
        for words in commands:
            process = await asyncio.create_subprocess_exec(*words, cwd=tmp_path, stdout=asyncio.subprocess.PIPE,
                                                           stderr=asyncio.subprocess.STDOUT)
            out, _ = await asyncio.wait_for(process.communicate(), 30)
            assert process.returncode == 0, (words, out)
            outputs.append(out.decode())
    assert Image.open(tmp_path / "tile.jpg").size == (320, 320)
    assert outputs[1].startswith("HTTP/1.1 200") and "X-Frame-Timestamp" in outputs[1]
    assert [Image.open(tmp_path / f"frame{i}.jpg").size for i in (1, 2, 3)] == [(640, 480)] * 3


async def test_mjpeg_watchers_do_not_hold_up_shutdown(http: aiohttp.ClientSession) -> None:
    running = Server(TEST_SETTINGS)
    await running.start()
    server = RunningServer(running.port("http"), running.node)
    try:
        async with publishing(server, "closing", 320, 240):
            async with http.get(f"{server.http_url}/streams/closing/stream.mjpeg") as response:
                await asyncio.wait_for(read_parts(response, 1), 10)
                started = time.monotonic()
                await asyncio.wait_for(running.stop(), 10)
                assert time.monotonic() - started < 5
                await asyncio.wait_for(response.content.read(), 5)  # the answer ended
    finally:
        await running.stop()


async def test_cors_headers_on_every_picture_url(start_server: Callable[..., Any], http: aiohttp.ClientSession,
                                                 tmp_path: Path) -> None:
    server = await start_server(cors_origins=["https://dash.example"], thumbnail_interval=0.2,
                                thumbnail_dir=str(tmp_path))
    origin = {"Origin": "https://dash.example"}
    async with publishing(server, "shared", 320, 240):
        base = f"{server.http_url}/streams/shared"
        async with http.get(f"{base}/stream.mjpeg", headers=origin) as response:  # an answer already under way
            assert response.headers["Access-Control-Allow-Origin"] == "https://dash.example"
            assert "X-Frame-Timestamp" in response.headers["Access-Control-Expose-Headers"]
            await asyncio.wait_for(read_parts(response, 1), 10)
        for method, url in (("GET", f"{base}/snapshot.jpg"), ("HEAD", f"{base}/snapshot.jpeg"),
                            ("GET", f"{base}/thumbnail.jpg"), ("HEAD", f"{base}/stream.mjpeg")):
            async with http.request(method, url, headers=origin) as response:
                assert response.headers["Access-Control-Allow-Origin"] == "https://dash.example", (method, url)
        async with http.get(f"{base}/snapshot.jpg", headers={"Origin": "https://other.example"}) as response:
            assert response.status == 200
            assert "Access-Control-Allow-Origin" not in response.headers
