"""streamsnap's own Stream Snapshot example page, in real Chromium with a known camera picture."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page

from streamsnap.access import TokenPolicy
from tests.conftest import RunningServer
from tests.e2e.conftest import assert_halves, image_png, write_y4m

pytestmark = pytest.mark.e2e

EXAMPLE = "/client/examples/demo/streaming/stream-snapshot/stream-snapshot.html"
RED, BLUE, GREEN, YELLOW = (220, 40, 40), (40, 40, 220), (40, 200, 40), (220, 220, 40)


async def open_example(server: RunningServer, launch: Callable[[Path], Any], y4m: Path, name: str) -> Page:
    browser = await launch(y4m)
    page: Page = await browser.new_page()
    await page.goto(server.http_url + EXAMPLE)
    await page.fill("#streamName", name)
    return page


async def wait_text(page: Page, selector: str, text: str, timeout: float = 20000) -> None:
    await page.wait_for_function(
        "([s, t]) => (document.querySelector(s).textContent || '').trim() === t", arg=[selector, text],
        timeout=timeout,
    )


async def publish(page: Page) -> None:
    await page.click("#publishBtn")
    await wait_text(page, "#status", "PUBLISHING")


async def take_snapshot(page: Page) -> bytes:
    previous = await page.get_attribute("#snapshotImg", "src")
    await page.click("#snapshotBtn")
    await page.wait_for_function(
        "([p]) => { const s = document.querySelector('#snapshotImg').src || '';"
        " return s.startsWith('data:image/png') && s !== p; }",
        arg=[previous or ""], timeout=15000,
    )
    await wait_text(page, "#snapshotStatus", "SNAPSHOT_COMPLETE")
    return await image_png(page, "#snapshotImg")


async def test_page_publishes_snapshots_and_stops(
    server: RunningServer, launch_chromium: Callable[[Path], Any], tmp_path: Path, artifacts: Path
) -> None:
    page = await open_example(server, launch_chromium, write_y4m(tmp_path / "cam.y4m", RED, BLUE), "page-cam")
    url = await page.input_value("#url")
    assert url.startswith(f"ws://127.0.0.1:{server.port}/") and len(url.rsplit("/", 1)[1]) == 8
    assert await page.is_disabled("#snapshotBtn")
    await publish(page)

    image = assert_halves(await take_snapshot(page), RED, BLUE)
    camera = await page.evaluate("[document.querySelector('#localVideo').videoWidth,"
                                 " document.querySelector('#localVideo').videoHeight]")
    assert list(image.size) == camera
    await page.screenshot(path=str(artifacts / "example-page.png"), full_page=True)

    await page.click("#publishBtn")  # Stop
    await wait_text(page, "#status", "UNPUBLISHED")
    assert await page.is_disabled("#snapshotBtn")
    assert server.node is not None
    assert await server.node.registry.lookup("page-cam") is None


async def test_snapshot_of_a_name_nobody_publishes_fails(
    server: RunningServer, launch_chromium: Callable[[Path], Any], tmp_path: Path
) -> None:
    page = await open_example(server, launch_chromium, write_y4m(tmp_path / "cam.y4m", RED, BLUE), "unused")
    await page.fill("#otherName", "nobody-here")
    await page.click("#otherSnapshotBtn")
    await wait_text(page, "#snapshotStatus", "FAILED")
    assert "Stream not found" in (await page.text_content("#snapshotInfo") or "")


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_page_codec_choice(
    server: RunningServer, launch_chromium: Callable[[Path], Any], tmp_path: Path, codec: str
) -> None:
    page = await open_example(server, launch_chromium, write_y4m(tmp_path / "cam.y4m", GREEN, YELLOW), "codec")
    await page.select_option("#codec", codec)
    await publish(page)
    assert server.node is not None
    stream = await server.node.registry.lookup("codec")
    assert stream is not None and stream.codec == codec  # the record, as listings show it
    assert_halves(await take_snapshot(page), GREEN, YELLOW)


async def test_two_browsers_each_snapshot_shows_its_own_picture(
    server: RunningServer, launch_chromium: Callable[[Path], Any], tmp_path: Path
) -> None:
    first = await open_example(server, launch_chromium, write_y4m(tmp_path / "a.y4m", RED, BLUE), "first")
    second = await open_example(server, launch_chromium, write_y4m(tmp_path / "b.y4m", GREEN, YELLOW), "second")
    await publish(first)
    await publish(second)
    assert_halves(await take_snapshot(first), RED, BLUE)
    assert_halves(await take_snapshot(second), GREEN, YELLOW)
    # and across: the first page asks for the second stream by name
    await first.fill("#otherName", "second")
    previous = await first.get_attribute("#snapshotImg", "src")
    await first.click("#otherSnapshotBtn")
    await first.wait_for_function(
        "([p]) => (document.querySelector('#snapshotImg').src || '') !== p", arg=[previous], timeout=15000
    )
    assert_halves(await image_png(first, "#snapshotImg"), GREEN, YELLOW)


async def connect_with(page: Page, url: str) -> None:
    await page.fill("#url", url)
    await page.click("#connectBtn")


async def test_page_recovers_from_bad_urls_and_connects_and_disconnects(
    server: RunningServer, launch_chromium: Callable[[Path], Any], tmp_path: Path, artifacts: Path
) -> None:
    page = await open_example(server, launch_chromium, write_y4m(tmp_path / "cam.y4m", RED, BLUE), "recovered")
    await connect_with(page, f"127.0.0.1:{server.port}/abc")  # no ws://
    await wait_text(page, "#sessionStatus", "FAILED")
    assert "ws://" in (await page.text_content("#sessionInfo") or "")
    assert await page.is_enabled("#url") and await page.is_enabled("#token")
    assert (await page.text_content("#connectBtn")) == "Connect"

    # The same mistake through Publish: the stream fails with the reason, nothing stays locked.
    await page.click("#publishBtn")
    await wait_text(page, "#status", "FAILED")
    assert "ws://" in (await page.text_content("#info") or "")
    assert await page.is_enabled("#url") and (await page.text_content("#publishBtn")) == "Publish"

    await connect_with(page, "ws://127.0.0.1:9/nothing")  # nobody listens there
    await wait_text(page, "#sessionStatus", "FAILED")
    assert "Cannot connect to ws://127.0.0.1:9/nothing" in (await page.text_content("#sessionInfo") or "")
    assert await page.is_enabled("#url")

    await connect_with(page, f"ws://127.0.0.1:{server.port}/")  # the root path is signaling too
    await wait_text(page, "#sessionStatus", "ESTABLISHED")
    assert await page.is_disabled("#url") and (await page.text_content("#connectBtn")) == "Disconnect"
    await page.click("#connectBtn")
    await wait_text(page, "#sessionStatus", "DISCONNECTED")
    assert await page.is_enabled("#url") and (await page.text_content("#connectBtn")) == "Connect"

    await publish(page)  # a new session, opened by Publish
    assert_halves(await take_snapshot(page), RED, BLUE)
    await page.screenshot(path=str(artifacts / "example-page-recovered.png"), full_page=True)


async def test_token_field_and_the_servers_refusal(
    start_server: Callable[..., Any], launch_chromium: Callable[[Path], Any], tmp_path: Path,
    http: aiohttp.ClientSession, artifacts: Path,
) -> None:
    secret = "e2e-secret-" + "0123456789abcdef" * 3
    server: RunningServer = await start_server(auth_secret=secret)
    page = await open_example(server, launch_chromium, write_y4m(tmp_path / "cam.y4m", GREEN, YELLOW), "guarded")
    await page.click("#connectBtn")
    await wait_text(page, "#sessionStatus", "DISCONNECTED")
    assert (await page.text_content("#sessionInfo")) == "Restricted access"
    assert await page.is_enabled("#token")
    await page.screenshot(path=str(artifacts / "example-page-refused.png"), full_page=True)

    token = TokenPolicy(secret).issue(["publish", "snapshot"])
    await page.fill("#token", token)
    await page.click("#connectBtn")
    await wait_text(page, "#sessionStatus", "ESTABLISHED")
    await publish(page)
    assert_halves(await take_snapshot(page), GREEN, YELLOW)
    image_url = await page.input_value("#imageUrl")
    assert image_url == f"{server.http_url}/streams/guarded/snapshot.png?access_token={token}"
    async with http.get(image_url) as answer:  # the url works as it is, token included
        assert answer.status == 200 and answer.content_type == "image/png"
        assert_halves(await answer.read(), GREEN, YELLOW)


async def test_picture_is_labelled_downloadable_and_a_failure_takes_it_down(
    server: RunningServer, launch_chromium: Callable[[Path], Any], tmp_path: Path,
    http: aiohttp.ClientSession, artifacts: Path,
) -> None:
    browser = await launch_chromium(write_y4m(tmp_path / "cam.y4m", RED, BLUE))
    context = await browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    page = await context.new_page()
    await page.goto(server.http_url + EXAMPLE)
    await page.fill("#streamName", "labelled cam")  # a space: the image url must encode it
    await publish(page)
    png = await take_snapshot(page)
    width, height = assert_halves(png, RED, BLUE).size

    label = await page.text_content("#snapshotLabel") or ""
    size = f"{width}\u00d7{height}"  # a multiplication sign, as the page writes sizes
    assert re.fullmatch(rf"labelled cam · {size} · frame age \d+ ms · \d{{1,2}}:\d\d:\d\d( [AP]M)?", label), label
    await page.screenshot(path=str(artifacts / "example-page-labelled.png"), full_page=True)

    async with page.expect_download() as download_info:
        await page.click("#downloadBtn")
    download = await download_info.value
    assert re.fullmatch(r"labelled_cam-\d{8}-\d{6}\.png", download.suggested_filename)
    assert await asyncio.to_thread(Path(await download.path()).read_bytes) == png

    await page.click("#copyUrlBtn")
    await wait_text(page, "#copyStatus", "Copied")
    copied = await page.evaluate("navigator.clipboard.readText()")
    assert copied == f"{server.http_url}/streams/labelled%20cam/snapshot.png"
    async with http.get(copied) as answer:
        assert answer.status == 200
        assert_halves(await answer.read(), RED, BLUE)

    await page.fill("#otherName", "nobody-here")
    await page.click("#otherSnapshotBtn")
    await wait_text(page, "#snapshotStatus", "FAILED")
    assert await page.get_attribute("#snapshotImg", "src") is None  # the old picture is gone
    assert (await page.text_content("#snapshotPlaceholder")) == "No picture of nobody-here: Stream not found"
    assert await page.is_visible("#snapshotPlaceholder")
    assert "nobody-here · snapshot failed" in (await page.text_content("#snapshotLabel") or "")
    assert await page.is_hidden("#downloadBtn") and await page.is_hidden("#copyUrlBtn")
    await page.screenshot(path=str(artifacts / "example-page-failed-snapshot.png"), full_page=True)
