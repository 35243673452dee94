"""The HTTP side with a real server and a real aiortc publisher: image url, stream list, WCS REST."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
import yarl
from aiortc import AudioStreamTrack, RTCPeerConnection
from PIL import Image

from streamsnap.media.pattern import PatternTrack, read_counter
from streamsnap.wcsclient import PublishFailed, WcsClient
from tests.conftest import MAX_LAG_FRAMES, RunningServer, png_image

pytestmark = pytest.mark.integration



def decode(data: bytes, expected_format: str) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == expected_format
    image.load()
    return image


async def test_image_url_in_every_format_and_size(server: RunningServer, http: aiohttp.ClientSession) -> None:
    track = PatternTrack(640, 480)
    publisher = await WcsClient.connect(server.ws_url)
    try:
        await publisher.publish("cam", [track])
        for ext, content_type, pil_format in [("png", "image/png", "PNG"), ("jpg", "image/jpeg", "JPEG"),
                                              ("webp", "image/webp", "WEBP")]:
            async with http.get(f"{server.http_url}/streams/cam/snapshot.{ext}") as response:
                assert response.status == 200, await response.text()
                published_then = track.counter
                assert response.headers["Content-Type"] == content_type
                assert response.headers["Cache-Control"] == "no-store"
                assert 0 <= float(response.headers["X-Frame-Age-Ms"]) < 1000
                image = decode(await response.read(), pil_format)
            assert image.size == (640, 480)
            assert 0 <= published_then - read_counter(image) <= MAX_LAG_FRAMES, ext

        async with http.get(f"{server.http_url}/streams/cam/snapshot.jpg", params={"width": "320"}) as response:
            assert response.status == 200
            published_then = track.counter
            image = decode(await response.read(), "JPEG")
        assert image.size == (320, 240)  # aspect kept
        assert 0 <= published_then - read_counter(image) <= MAX_LAG_FRAMES

        async with http.get(f"{server.http_url}/streams/cam/snapshot.png",
                            params={"width": "400", "height": "100"}) as response:
            assert response.status == 200
            assert png_image(await response.read()).size == (400, 100)

        sizes = {}
        for quality in (5, 95):
            async with http.get(f"{server.http_url}/streams/cam/snapshot.jpg",
                                params={"quality": str(quality), "max_age_ms": "5000"}) as response:
                assert response.status == 200
                sizes[quality] = len(await response.read())
        assert sizes[5] < sizes[95]
    finally:
        await publisher.close()


async def test_stream_list(server: RunningServer, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{server.http_url}/streams") as response:
        assert response.status == 200
        assert await response.json() == []
    publisher = await WcsClient.connect(server.ws_url)
    try:
        await publisher.publish("listed", [PatternTrack(320, 240)], codec="VP8")
        async with asyncio.timeout(5):  # the frame rate is told once the frames span half a second
            while True:
                async with http.get(f"{server.http_url}/streams") as response:
                    streams = await response.json()
                if streams[0]["fps"] is not None:
                    break
                await asyncio.sleep(0.1)
        assert len(streams) == 1
        listed = streams[0]
        assert listed["name"] == "listed"
        assert listed["codec"] == "VP8"
        assert (listed["width"], listed["height"]) == (320, 240)
        assert 10 < listed["fps"] < 40
        assert listed["since"].endswith("Z")
        assert listed["node"]
        assert listed["status"] == "PUBLISHING"
    finally:
        await publisher.close()


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"width": "wide"}, "width"),
        ({"width": "0"}, "width"),
        ({"width": "100000"}, "width"),
        ({"height": "-3"}, "height"),
        ({"height": "5000"}, "height"),
        ({"quality": "0"}, "quality"),
        ({"quality": "101"}, "quality"),
        ({"max_age_ms": "-1"}, "max_age_ms"),
        ({"max_age_ms": "soon"}, "max_age_ms"),
    ],
)
async def test_image_url_bad_parameters(server: RunningServer, http: aiohttp.ClientSession,
                                        query: dict[str, str], field: str) -> None:
    async with http.get(f"{server.http_url}/streams/anything/snapshot.png", params=query) as response:
        assert response.status == 400
        body = await response.json()
    assert body["field"] == field
    assert body["status"] == 400


async def test_image_url_unknown_stream_and_format(server: RunningServer, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{server.http_url}/streams/nobody/snapshot.png") as response:
        assert response.status == 404
        assert (await response.json())["error"] == "Stream not found"
    async with http.get(f"{server.http_url}/streams/nobody/snapshot.gif") as response:
        assert response.status == 404


async def test_image_url_of_a_stream_without_picture_yet_is_503(
    start_server: Callable[..., Any], http: aiohttp.ClientSession
) -> None:
    server = await start_server(keyframe_timeout=0.3, connect_timeout=10.0)
    client = await WcsClient.connect(server.ws_url)
    pc = RTCPeerConnection()
    try:
        # An offer whose answer is never applied: the stream exists, its media never starts.
        pc.addTransceiver(PatternTrack(320, 240), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        watched = client.watch("pending-id", "pending")
        await client.send("publishStream", {"mediaSessionId": "pending-id", "name": "pending", "published": True,
                                            "hasVideo": True, "hasAudio": False, "sdp": pc.localDescription.sdp})
        for _ in range(100):  # the server claims the name as it answers the offer
            if await server.node.registry.lookup("pending") is not None:
                break
            await asyncio.sleep(0.05)
        async with http.get(f"{server.http_url}/streams/pending/snapshot.jpg") as response:
            assert response.status == 503
            assert response.headers["Retry-After"] == "1"
            assert (await response.json())["error"] == "Publish stream is not ready"
        # REST answers as the image url does: one table of statuses for every HTTP way in
        status, answer = await post(http, f"{server.http_url}/rest-api/stream/snapshot", {"streamName": "pending"})
        assert (status, answer["error"], answer["reason"]) == (503, "Publish stream is not ready", "not_ready")
        assert watched.status == "PENDING"
    finally:
        await pc.close()
        await client.close()


async def test_image_url_timeout_is_504(start_server: Callable[..., Any], http: aiohttp.ClientSession) -> None:
    # A keyframe cannot come back within 10 ms, and max_age_ms=0 forbids the cached group.
    server = await start_server(keyframe_timeout=0.01)
    publisher = await WcsClient.connect(server.ws_url)
    try:
        await publisher.publish("slow", [PatternTrack(320, 240)])
        async with http.get(f"{server.http_url}/streams/slow/snapshot.png", params={"max_age_ms": "0"}) as response:
            assert response.status == 504
            assert (await response.json())["error"] == "No decodable frame within timeout"
    finally:
        await publisher.close()


async def post(http: aiohttp.ClientSession, url: str, body: Any = None, *, raw: bytes | None = None) -> tuple[int, Any]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    async with http.post(url, data=data, headers={"Content-Type": "application/json"}) as response:
        text = await response.text()
        return response.status, (json.loads(text) if text else None)


async def test_wcs_rest_find_snapshot_terminate(server: RunningServer, http: aiohttp.ClientSession) -> None:
    rest = f"{server.http_url}/rest-api/stream"
    assert (await post(http, f"{rest}/find_all"))[0] == 404
    track = PatternTrack(640, 480)
    publisher = await WcsClient.connect(server.ws_url)
    try:
        publication = await publisher.publish("rest-cam", [track])

        status, streams = await post(http, f"{rest}/find_all")
        assert status == 200
        assert [s["name"] for s in streams] == ["rest-cam"]
        found = streams[0]
        assert found["mediaSessionId"] == publication.id
        assert found["published"] is True and found["status"] == "PUBLISHING"
        assert found["hasVideo"] is True and found["mediaProvider"] == "WebRTC"
        async with http.get(f"{rest}/find_all") as response:  # some WCS clients GET it
            assert response.status == 200

        status, streams = await post(http, f"{rest}/find", {"name": "rest-cam", "published": True})
        assert status == 200 and streams[0]["mediaSessionId"] == publication.id
        assert (await post(http, f"{rest}/find", {"mediaSessionId": publication.id}))[0] == 200
        assert (await post(http, f"{rest}/find", {"name": "other"}))[0] == 404
        assert (await post(http, f"{rest}/find", {"published": False}))[0] == 404

        status, answer = await post(http, f"{rest}/snapshot", {"streamName": "rest-cam"})
        assert status == 200
        image = png_image(base64.b64decode(answer["data"]))
        assert image.size == (640, 480)
        assert 0 <= track.counter - read_counter(image) <= MAX_LAG_FRAMES
        assert (await post(http, f"{rest}/snapshot", {"streamName": "nobody"}))[0] == 404

        status, answer = await post(http, f"{rest}/terminate", {"name": "rest-cam"})
        assert status == 200 and answer is None
        with pytest.raises(PublishFailed) as ended:
            await publisher.wait_status(publication, "PUBLISHING", timeout=5)
        assert (ended.value.status, ended.value.info) == ("UNPUBLISHED", "Stopped by rest /terminate")
        assert await server.node.registry.all() == []
        assert (await post(http, f"{rest}/terminate", {"name": "rest-cam"}))[0] == 404
        assert (await post(http, f"{rest}/snapshot", {"streamName": "rest-cam"}))[0] == 404
    finally:
        await publisher.close()


@pytest.mark.parametrize(
    ("method", "body", "field"),
    [
        ("snapshot", b"", None),
        ("snapshot", b"{}", "streamName"),
        ("snapshot", b'{"streamName": 7}', "streamName"),
        ("snapshot", b'{"streamName": ""}', "streamName"),
        ("snapshot", b"[1, 2]", None),
        ("snapshot", b"not json", None),
        ("find", b'{"name": 1}', "name"),
        ("find", b'{"published": "yes"}', "published"),
        ("terminate", b'{"mediaSessionIds": "one"}', "mediaSessionIds"),
        ("terminate", b'"everything"', None),
        ("find", b'{"name": "' + b"x" * 70_000 + b'"}', None),
    ],
)
async def test_wcs_rest_bad_bodies_are_400(server: RunningServer, http: aiohttp.ClientSession,
                                           method: str, body: bytes, field: str | None) -> None:
    status, answer = await post(http, f"{server.http_url}/rest-api/stream/{method}", raw=body)
    assert status == 400
    assert answer["status"] == 400
    assert answer.get("field") == field


async def test_image_url_of_an_audio_only_stream_is_404(server: RunningServer, http: aiohttp.ClientSession) -> None:
    publisher = await WcsClient.connect(server.ws_url)
    try:
        await publisher.publish("voice", [AudioStreamTrack()])
        async with http.get(f"{server.http_url}/streams/voice/snapshot.png") as response:
            assert response.status == 404
            assert (await response.json())["error"] == "Stream has no video"
        # the same answer over REST (it was 500 there once)
        status, answer = await post(http, f"{server.http_url}/rest-api/stream/snapshot", {"streamName": "voice"})
        assert (status, answer["error"], answer["reason"]) == (404, "Stream has no video", "no_video")
    finally:
        await publisher.close()


async def test_image_url_of_a_name_with_a_slash_and_a_space(server: RunningServer,
                                                           http: aiohttp.ClientSession) -> None:
    publisher = await WcsClient.connect(server.ws_url)
    try:
        await publisher.publish("lobby/cam 1", [PatternTrack(320, 240)])
        url = yarl.URL(f"{server.http_url}/streams/lobby%2Fcam%201/snapshot.png", encoded=True)
        async with http.get(url) as response:
            assert response.status == 200
            assert png_image(await response.read()).size == (320, 240)
    finally:
        await publisher.close()
