"""Dashboards in real Chromium: MJPEG in an `<img>`, and the image url read by a page of another origin
(`fetch()` and a canvas) with and without CORS configured. Screenshots go to test-artifacts/."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from PIL import Image
from playwright.async_api import Page

from streamsnap.media.pattern import PatternTrack
from streamsnap.wcsclient import WcsClient
from tests.conftest import RunningServer, serve_on_loopback
from tests.e2e.conftest import write_y4m

pytestmark = pytest.mark.e2e


@pytest.fixture
async def other_origin() -> AsyncIterator[Callable[[str], Any]]:
    """A second web server (another port, so another origin) serving one page given as HTML."""
    runners: list[web.AppRunner] = []

    async def serve(html: str) -> str:
        app = web.Application()

        async def page(request: web.Request) -> web.Response:
            return web.Response(text=html, content_type="text/html")

        app.router.add_get("/", page)
        runner, port = await serve_on_loopback(app)
        runners.append(runner)
        return f"http://127.0.0.1:{port}/"

    yield serve
    for runner in runners:
        await runner.cleanup()


async def new_page(launch_chromium: Callable[[Path], Any], tmp_path: Path) -> Page:
    browser = await launch_chromium(write_y4m(tmp_path / "unused.y4m", (0, 0, 0), (0, 0, 0)))
    page: Page = await browser.new_page(viewport={"width": 700, "height": 560})
    return page


async def test_mjpeg_plays_in_an_img(start_server: Callable[..., Any], launch_chromium: Callable[[Path], Any],
                                     other_origin: Callable[[str], Any], tmp_path: Path, artifacts: Path) -> None:
    server: RunningServer = await start_server()
    publisher = await WcsClient.connect(server.ws_url)
    try:
        await publisher.publish("lobby", [PatternTrack(640, 480)])
        # From another origin, as a dashboard embeds a camera: an <img> needs no CORS.
        url = await other_origin(
            f'<html><body style="margin:0;background:#888">'
            f'<img id="live" width="640" height="360" '
            f'src="{server.http_url}/streams/lobby/stream.mjpeg?fps=10&width=640&height=360&fit=contain">'
            f"</body></html>")
        page = await new_page(launch_chromium, tmp_path)
        await page.goto(url)
        await page.wait_for_function("document.getElementById('live').naturalWidth > 0", timeout=10_000)
        assert await page.eval_on_selector("#live", "img => [img.naturalWidth, img.naturalHeight]") == [640, 360]
        shots = []
        for index in range(2):
            if index:
                await asyncio.sleep(1.0)
            path = artifacts / f"mjpeg-img-{index}.png"
            await page.locator("#live").screenshot(path=str(path))
            shots.append(np.asarray(Image.open(path).convert("RGB"), dtype=np.int16))
        first, second = shots
        # contain: 4:3 in 16:9, black bars left and right
        assert first[:, :50].max() < 20 and first[:, -50:].max() < 20
        assert np.abs(first - second).mean() > 2  # the picture moves with the stream
        # the counter band (top quarter of the picture) changed: new frames, not one repeated
        assert np.abs(first[:80, 90:550] - second[:80, 90:550]).max() > 100
        assert server.node is not None and server.node.mjpeg is not None
        assert server.node.mjpeg.watchers == 1
        await page.close()
    finally:
        await publisher.close()


# Reads the image url across origins both ways a dashboard does: fetch() (its bytes and headers),
# and an <img crossorigin> drawn on a canvas whose pixels are read back (a tainted canvas throws).
CROSS_ORIGIN_READ = """async (url) => {
  const result = {};
  try {
    const response = await fetch(url);
    const blob = await response.blob();
    result.fetch = {status: response.status, type: blob.type, size: blob.size,
                    timestamp: response.headers.get('X-Frame-Timestamp')};
  } catch (error) {
    result.fetch = {error: String(error)};
  }
  const img = document.getElementById('shown');
  img.crossOrigin = 'anonymous';
  const loaded = new Promise((resolve) => { img.onload = () => resolve('ok'); img.onerror = () => resolve('error'); });
  img.src = url + '&img=1';
  result.img = await loaded;
  if (result.img === 'ok') {
    const canvas = document.createElement('canvas');
    canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    const context = canvas.getContext('2d');
    context.drawImage(img, 0, 0);
    try {
      const data = context.getImageData(0, Math.round(canvas.height * 0.3), 1, 1).data;
      result.pixel = [data[0], data[1], data[2]];
    } catch (error) {
      result.pixel = String(error);
    }
  }
  document.getElementById('report').textContent = JSON.stringify(result);
  return result;
}"""


@pytest.mark.parametrize("cors", [False, True])
async def test_image_url_across_origins(start_server: Callable[..., Any], launch_chromium: Callable[[Path], Any],
                                        other_origin: Callable[[str], Any], tmp_path: Path, artifacts: Path,
                                        cors: bool) -> None:
    page_url = await other_origin('<html><body><img id="shown"><pre id="report"></pre></body></html>')
    page_origin = page_url.rstrip("/")
    server: RunningServer = await start_server(cors_origins=[page_origin] if cors else [])
    publisher = await WcsClient.connect(server.ws_url)
    try:
        await publisher.publish("panel", [PatternTrack(320, 240)])
        page = await new_page(launch_chromium, tmp_path)
        await page.goto(page_url)
        result = await page.evaluate(CROSS_ORIGIN_READ, f"{server.http_url}/streams/panel/snapshot.jpg?t=1")
        await page.screenshot(path=str(artifacts / f"cross-origin-{'cors' if cors else 'no-cors'}.png"))
        if cors:
            assert result["fetch"]["status"] == 200
            assert result["fetch"]["type"] == "image/jpeg" and result["fetch"]["size"] > 1000
            assert result["fetch"]["timestamp"].endswith("Z")  # an exposed header
            assert result["img"] == "ok"
            assert isinstance(result["pixel"], list) and max(result["pixel"]) - min(result["pixel"]) > 100
        else:
            assert "Failed to fetch" in result["fetch"]["error"]  # the browser hides the answer
            assert result["img"] == "error"  # crossorigin without CORS: not loaded at all
        await page.close()
    finally:
        await publisher.close()


async def test_server_answers_preflight_only_for_listed_origins(start_server: Callable[..., Any]) -> None:
    server: RunningServer = await start_server(cors_origins=["https://dash.example"])
    async with aiohttp.ClientSession() as http:
        for origin, allowed in (("https://dash.example", True), ("https://evil.example", False)):
            async with http.options(f"{server.http_url}/streams/x/stream.mjpeg",
                                    headers={"Origin": origin, "Access-Control-Request-Method": "GET",
                                             "Access-Control-Request-Headers": "authorization"}) as response:
                assert response.status == (204 if allowed else 403)
                if allowed:
                    assert response.headers["Access-Control-Allow-Origin"] == origin
            async with http.get(f"{server.http_url}/streams/x/thumbnail.jpg", headers={"Origin": origin}) as response:
                assert response.status == 404
                assert response.headers.get("Access-Control-Allow-Origin") == (origin if allowed else None)
