"""H.265 cameras (issue 24): GStreamer's RTSP server encoding H.265 (x265), pictured on every way out (WebSocket,
REST, image url, MJPEG, thumbnails), its size known from the SPS as the first keyframe arrives, the size cap
applied from the SPS before anything is decoded, and H.265 over rtsps:// too."""

from __future__ import annotations

import base64
import io
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from streamsnap.config import Camera
from streamsnap.wcsclient import WcsClient
from tests.conftest import RunningServer, png_image
from tests.harness import RtspCamera
from tests.integration.test_camera_tls import certificate, tls_cameras  # noqa: F401 -- the fixture
from tests.integration.test_rtsp import (  # noqa: F401 -- the fixture
    BLUE,
    GREEN,
    RED,
    assert_colour,
    cameras,
    eventually,
    image_url,
    rest_picture,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

H265 = ["--codec", "h265"]


async def test_an_h265_camera_is_pictured_every_way_out(start_server: Callable[..., Any],
                                                        cameras: Callable[..., Awaitable[RtspCamera]],  # noqa: F811
                                                        http: aiohttp.ClientSession, tmp_path: Path) -> None:
    camera = await cameras(GREEN, extra=[*H265, "--width", "640", "--height", "360"])
    server: RunningServer = await start_server(
        cameras=[Camera(name="hall", uri=camera.url)], thumbnail_interval=0.5, thumbnail_dir=str(tmp_path))

    async def listed_at_its_size() -> bool:
        async with http.get(f"{server.http_url}/streams") as response:
            streams = await response.json()
        return bool(streams) and (streams[0]["width"], streams[0]["height"]) == (640, 360)

    await eventually(listed_at_its_size)

    async with http.get(image_url(server, "hall")) as response:  # image url
        assert response.status == 200, await response.text()
        picture = png_image(await response.read())
        assert picture.size == (640, 360)
        assert_colour(picture, GREEN)
    status, body = await rest_picture(http, server, "hall")  # REST
    assert status == 200, body
    assert_colour(png_image(base64.b64decode(body["data"])), GREEN)
    client = await WcsClient.connect(server.ws_url)  # WebSocket, and the on-demand pull of its url
    try:
        assert_colour(png_image((await client.snapshot("hall", timeout=20)).png), GREEN)
        assert_colour(png_image((await client.snapshot(camera.url, timeout=20)).png), GREEN)
    finally:
        await client.close()
    url = f"{server.http_url}/streams/hall/stream.mjpeg?fps=5"  # MJPEG: the first part is a picture of it
    async with http.get(url) as response:
        assert response.status == 200
        head = await response.content.readuntil(b"\r\n\r\n")
        assert b"image/jpeg" in head
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(
            b"content-length")))
        assert_colour(Image.open(io.BytesIO(await response.content.readexactly(length))), GREEN)

    async def thumbnail_written() -> bool:
        return (tmp_path / "hall.jpg").exists() and (tmp_path / "hall.jpg").stat().st_size > 0

    await eventually(thumbnail_written)
    assert_colour(Image.open(tmp_path / "hall.jpg"), GREEN)


async def test_the_size_cap_holds_from_the_h265_sps_before_decoding(
        start_server: Callable[..., Any], cameras: Callable[..., Awaitable[RtspCamera]],  # noqa: F811
        http: aiohttp.ClientSession) -> None:
    camera = await cameras(RED, extra=[*H265, "--width", "640", "--height", "360"])
    server: RunningServer = await start_server(cameras=[Camera(name="big", uri=camera.url)],
                                               **{"snapshots.max_width": 320, "snapshots.max_height": 240})

    async def refused() -> bool:
        async with http.get(image_url(server, "big")) as response:
            if response.status == 404:
                return False
            assert response.status == 400, await response.text()
            body = await response.json()
            assert body["reason"] == "too_large" and "640x360" in body["error"], body
            return True

    await eventually(refused)
    assert server.node.engine.stats.decodes == 0  # type: ignore[union-attr]


async def test_an_h265_camera_over_rtsps(start_server: Callable[..., Any],
                                         tls_cameras: Callable[..., Awaitable[RtspCamera]],  # noqa: F811
                                         http: aiohttp.ClientSession, tmp_path: Path) -> None:
    tls = certificate(tmp_path, "camera", ["localhost"], ["127.0.0.1"])
    camera = await tls_cameras(BLUE, tls, extra=H265)
    server: RunningServer = await start_server(rtsp_ca_file=str(tls[0]))
    client = await WcsClient.connect(server.ws_url)
    try:
        picture = png_image((await client.snapshot(camera.url, timeout=20)).png)
        assert picture.size == (320, 240)
        assert_colour(picture, BLUE)
    finally:
        await client.close()
