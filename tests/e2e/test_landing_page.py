"""The landing page in real Chromium: live streams with refreshing thumbnails and their links, with auth on and off."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page, Request

from streamsnap.access import TokenPolicy
from streamsnap.media.pattern import SECOND_COLOURS, PatternTrack
from streamsnap.wcsclient import WcsClient
from tests.conftest import RunningServer
from tests.e2e.conftest import write_y4m
from tests.harness import RtspCamera, free_port, gstreamer_missing
from tests.integration.test_whip import WhipClient

pytestmark = pytest.mark.e2e

SECRET = "landing-secret-" + "0123456789abcdef" * 3
# The thumbnail's pixels, read back in the page: the mean colour of the pattern's lower half,
# where it shows one of SECOND_COLOURS.
THUMBNAIL_PIXELS = """(img) => {
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  const context = canvas.getContext('2d');
  context.drawImage(img, 0, 0);
  const y0 = Math.round(canvas.height * 0.3), y1 = Math.round(canvas.height * 0.35);
  const data = context.getImageData(0, y0, canvas.width, y1 - y0).data;
  const sum = [0, 0, 0];
  for (let i = 0; i < data.length; i += 4) { sum[0] += data[i]; sum[1] += data[i + 1]; sum[2] += data[i + 2]; }
  const n = data.length / 4;
  return [img.naturalWidth, img.naturalHeight, sum.map((v) => Math.round(v / n))];
}"""


class Publishers:
    """Pattern publishers in this process; closed at teardown."""

    def __init__(self) -> None:
        self.clients: list[WcsClient] = []

    async def publish(self, server: RunningServer, name: str, token: str | None = None) -> WcsClient:
        client = await WcsClient.connect(server.ws_url, **({"authToken": token} if token else {}))
        self.clients.append(client)
        await client.publish(name, [PatternTrack(320, 240)], codec="VP8")
        return client

    async def close(self, client: WcsClient) -> None:
        self.clients.remove(client)
        await client.close()


@pytest.fixture
async def publishers() -> AsyncIterator[Publishers]:
    started = Publishers()
    yield started
    for client in started.clients:
        await client.close()


async def open_landing(server: RunningServer, launch: Callable[[Path], Any], tmp_path: Path) -> Page:
    browser = await launch(write_y4m(tmp_path / "unused.y4m", (0, 0, 0), (0, 0, 0)))
    page: Page = await browser.new_page()
    await page.goto(server.http_url + "/")
    return page


def item(name: str) -> str:
    return f'li.stream[data-name="{name}"]'


async def wait_thumbnail(page: Page, name: str) -> tuple[int, int, list[int]]:
    """Wait for the stream's thumbnail; its size and the colour it shows below the counter."""
    await page.wait_for_selector(f"{item(name)} .thumb-box.has-picture", timeout=20000)
    width, height, colour = await page.eval_on_selector(f"{item(name)} img.thumb", THUMBNAIL_PIXELS)
    return width, height, colour


def is_pattern_colour(colour: list[int]) -> bool:
    return any(all(abs(c - int(e)) < 50 for c, e in zip(colour, expected, strict=True)) for expected in SECOND_COLOURS)


async def test_live_streams_with_refreshing_thumbnails_and_links(
    server: RunningServer, launch_chromium: Callable[[Path], Any], tmp_path: Path, publishers: Publishers,
    http: aiohttp.ClientSession, artifacts: Path,
) -> None:
    first = await publishers.publish(server, "lobby-cam")
    page = await open_landing(server, launch_chromium, tmp_path)

    width, height, colour = await wait_thumbnail(page, "lobby-cam")
    assert (width, height) == (160, 120)  # ?width=160 of a 320x240 stream
    assert is_pattern_colour(colour), colour  # the stream's own picture, not a placeholder
    facts = await page.text_content(f"{item('lobby-cam')} .facts") or ""
    assert "VP8" in facts and "320\u00d7240" in facts, facts

    updated = await page.get_attribute(f"{item('lobby-cam')} img.thumb", "data-updated")
    await page.wait_for_function(
        "([s, u]) => document.querySelector(s).dataset.updated !== u",
        arg=[f"{item('lobby-cam')} img.thumb", updated], timeout=10000,
    )  # the thumbnail refreshes by itself

    links = {cls: await page.get_attribute(f"{item('lobby-cam')} a.{cls}", "href")
             for cls in ("image-link", "jpeg-link", "mjpeg-link")}
    assert links == {"image-link": "/streams/lobby-cam/snapshot.png", "jpeg-link": "/streams/lobby-cam/snapshot.jpg",
                     "mjpeg-link": "/streams/lobby-cam/stream.mjpeg"}
    for href in (links["image-link"], await page.get_attribute("#openapiLink", "href"),
                 await page.get_attribute("#metricsLink", "href")):
        async with http.get(server.http_url + str(href)) as answer:
            assert answer.status == 200, href
    assert await page.get_attribute("#openapiLink", "href") == "/rest-api/openapi.json"
    assert await page.get_attribute("#metricsLink", "href") == "/metrics"

    await publishers.publish(server, "second-cam")  # appears without a reload
    await wait_thumbnail(page, "second-cam")
    assert "2 live streams" in (await page.text_content("#streamsStatus") or "")
    await page.screenshot(path=str(artifacts / "landing-page.png"), full_page=True)

    await publishers.close(first)  # and goes away when it ends
    await page.wait_for_selector(item("lobby-cam"), state="detached", timeout=15000)
    assert await page.locator("li.stream").count() == 1


async def test_landing_page_with_access_tokens(
    start_server: Callable[..., Any], launch_chromium: Callable[[Path], Any], tmp_path: Path,
    publishers: Publishers, artifacts: Path,
) -> None:
    server: RunningServer = await start_server(auth_secret=SECRET)
    policy = TokenPolicy(SECRET)
    await publishers.publish(server, "guarded-cam", token=policy.issue(["publish"]))
    page = await open_landing(server, launch_chromium, tmp_path)
    await page.wait_for_function(
        "(document.querySelector('#streamsStatus').textContent || '').includes('needs an access token')",
        timeout=10000,
    )
    assert await page.locator("li.stream").count() == 0
    await page.screenshot(path=str(artifacts / "landing-page-token-needed.png"), full_page=True)

    listing_headers: list[dict[str, str]] = []

    def note(request: Request) -> None:
        if request.url.endswith("/streams"):
            listing_headers.append(request.headers)

    page.on("request", note)
    token = policy.issue(["snapshot"])
    await page.fill("#token", token)
    await page.click("#useToken")
    width, height, colour = await wait_thumbnail(page, "guarded-cam")
    assert (width, height) == (160, 120) and is_pattern_colour(colour)
    assert any(h.get("authorization") == f"Bearer {token}" for h in listing_headers), listing_headers
    image_link = await page.get_attribute(f"{item('guarded-cam')} a.image-link", "href")
    assert image_link == f"/streams/guarded-cam/snapshot.png?access_token={token}"
    assert await page.evaluate("sessionStorage.getItem('streamsnap.token')") == token

    await page.reload()  # the token stays for this tab
    assert await page.input_value("#token") == token
    await wait_thumbnail(page, "guarded-cam")

    await page.fill("#token", "not-a-token")
    await page.click("#useToken")
    await page.wait_for_function(
        "(document.querySelector('#streamsStatus').textContent || '').startsWith('The server refused this token')",
        timeout=10000,
    )
    assert await page.locator("li.stream").count() == 0
    await page.click("#forgetToken")
    assert await page.evaluate("sessionStorage.getItem('streamsnap.token')") is None


@pytest.fixture
async def other_sources() -> AsyncIterator[list[Any]]:
    """Publishers of the other kinds (WHIP clients, ffmpeg processes, RTSP cameras), ended at teardown."""
    started: list[Any] = []
    yield started
    for source in started:
        if isinstance(source, WhipClient):
            await source.close()
        elif isinstance(source, RtspCamera):
            source.kill()
        elif source.returncode is None:
            source.kill()
            await source.wait()


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs Debian's ffmpeg (scripts/system-deps.sh)")
@pytest.mark.skipif(gstreamer_missing(), reason="needs GStreamer's RTSP server (scripts/system-deps.sh)")
async def test_each_stream_says_how_it_comes_in_and_the_blurb_names_every_way(
    start_server: Callable[..., Any], launch_chromium: Callable[[Path], Any], tmp_path: Path,
    publishers: Publishers, other_sources: list[Any], http: aiohttp.ClientSession, artifacts: Path,
) -> None:
    rtmp_port = free_port()
    server: RunningServer = await start_server(rtmp_port=rtmp_port)
    await publishers.publish(server, "from-browser")  # the WCS protocol, as a browser page publishes

    whip = WhipClient()
    other_sources.append(whip)
    assert (await whip.publish(http, f"{server.http_url}/whip/from-whip")).status == 201

    encoder = await asyncio.create_subprocess_exec(
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-re", "-f", "lavfi",
        "-i", "testsrc2=size=320x240:rate=15", "-t", "120", "-c:v", "libx264", "-preset", "ultrafast",
        "-tune", "zerolatency", "-pix_fmt", "yuv420p", "-g", "15", "-f", "flv",
        f"rtmp://127.0.0.1:{rtmp_port}/live/from-encoder",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    other_sources.append(encoder)

    camera = RtspCamera(free_port())
    other_sources.append(camera)
    await camera.start()
    async with http.post(f"{server.http_url}/rest-api/rtsp/startup",
                         json={"uri": camera.url, "toStream": "from-camera"}) as answer:
        assert answer.status == 200, await answer.text()

    page = await open_landing(server, launch_chromium, tmp_path)
    expected = {"from-browser": ("WebRTC", "browser"), "from-whip": ("WHIP", "WHIP client"),
                "from-encoder": ("RTMP", "encoder"), "from-camera": ("RTSP", "camera")}
    for name, (label, meaning) in expected.items():
        badge = f"{item(name)} .kind"
        await page.wait_for_selector(badge, state="visible", timeout=20000)
        assert (await page.text_content(badge)) == label, name
        assert meaning in (await page.get_attribute(badge, "title") or ""), name
        assert (await page.text_content(f"{item(name)} .stream-name")) == name
    await page.screenshot(path=str(artifacts / "landing-page-kinds.png"), full_page=True)

    ways = [" ".join((await li.text_content() or "").split()) for li in await page.query_selector_all("#waysIn li")]
    for way, words in zip(ways, [("browser", "WebRTC"), ("camera", "RTSP"), ("encoder", "RTMP"), ("WHIP",)],
                          strict=True):
        assert all(word in way for word in words), (way, words)
    assert "rtmp://127.0.0.1:1935/live/NAME" in ways[2]
    assert f"{server.http_url}/whip/NAME" in ways[3]  # this very server's WHIP address
