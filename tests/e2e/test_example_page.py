"""streamsnap's own Stream Snapshot example page, in real Chromium with a known camera picture."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page

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
    assert server.services is not None
    assert await server.services.registry.lookup("page-cam") is None


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
    assert server.services is not None
    stream = await server.services.registry.lookup("codec")
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
