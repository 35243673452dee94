"""streamsnap's own Stream Snapshot example page, in real Chromium with a known camera picture.

The page shows each status in words a person reads (`#status`), with the WCS protocol's word
in small print beside it (`#statusWcs`) and on the element (`data-wcs`, the tooltip); the tests
wait on the protocol's word and assert what a person reads.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page

from streamsnap.access import TokenPolicy
from streamsnap.media.pattern import PatternTrack
from streamsnap.wcsclient import WcsClient
from tests.conftest import RunningServer, png_image
from tests.e2e.conftest import assert_halves, image_png, write_y4m

pytestmark = pytest.mark.e2e

EXAMPLE = "/client/examples/demo/streaming/stream-snapshot/stream-snapshot.html"
RED, BLUE, GREEN, YELLOW = (220, 40, 40), (40, 40, 220), (40, 200, 40), (220, 220, 40)
TIMES = "\u00d7"
"The multiplication sign the page writes sizes with."


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


async def wait_offered(page: Page, name: str, timeout: float = 15000) -> None:
    """Wait until the list of live streams offers `name`."""
    await page.wait_for_function(
        "([n]) => Array.from(document.querySelectorAll('#otherStream option')).some((o) => o.value === n)",
        arg=[name], timeout=timeout,
    )


async def wait_wcs(page: Page, selector: str, wcs: str, timeout: float = 20000) -> None:
    """Wait until the status at `selector` stands for the WCS status `wcs`."""
    await page.wait_for_function(
        "([s, w]) => document.querySelector(s).dataset.wcs === w", arg=[selector, wcs], timeout=timeout,
    )


async def publish(page: Page) -> None:
    await page.click("#publishBtn")
    await wait_wcs(page, "#status", "PUBLISHING")
    assert (await page.text_content("#status")) == "Live"


async def take_snapshot(page: Page) -> bytes:
    previous = await page.get_attribute("#snapshotImg", "src")
    await page.click("#snapshotBtn")
    await page.wait_for_function(
        "([p]) => { const s = document.querySelector('#snapshotImg').src || '';"
        " return s.startsWith('data:image/png') && s !== p; }",
        arg=[previous or ""], timeout=15000,
    )
    await wait_wcs(page, "#snapshotStatus", "SNAPSHOT_COMPLETE")
    assert (await page.text_content("#snapshotStatus")) == "Snapshot taken"
    return await image_png(page, "#snapshotImg")


async def test_page_publishes_snapshots_and_stops(
    server: RunningServer, launch_chromium: Callable[[Path], Any], tmp_path: Path, artifacts: Path
) -> None:
    page = await open_example(server, launch_chromium, write_y4m(tmp_path / "cam.y4m", RED, BLUE), "page-cam")
    url = await page.input_value("#url")
    assert url.startswith(f"ws://127.0.0.1:{server.port}/") and len(url.rsplit("/", 1)[1]) == 8
    assert await page.is_disabled("#snapshotBtn")
    await page.click("#publishBtn")
    await wait_wcs(page, "#status", "PUBLISHING")
    # What a person reads, and the protocol's word in small print and in the tooltip for developers.
    assert (await page.text_content("#status")) == "Live"
    assert (await page.text_content("#info")) == "The server receives your camera."
    assert (await page.text_content("#statusWcs")) == "PUBLISHING"
    assert (await page.get_attribute("#status", "title")) == "WCS: PUBLISHING"

    image = assert_halves(await take_snapshot(page), RED, BLUE)
    assert (await page.text_content("#snapshotWcs")) == "SNAPSHOT_COMPLETE"
    camera = await page.evaluate("[document.querySelector('#localVideo').videoWidth,"
                                 " document.querySelector('#localVideo').videoHeight]")
    assert list(image.size) == camera
    await page.screenshot(path=str(artifacts / "example-page.png"), full_page=True)

    await page.click("#publishBtn")  # Stop
    await wait_wcs(page, "#status", "UNPUBLISHED")
    assert (await page.text_content("#status")) == "Stopped"
    assert (await page.text_content("#info")) == "You stopped publishing."
    assert (await page.text_content("#statusWcs")) == "UNPUBLISHED · Stopped by publisher stop"
    assert await page.is_disabled("#snapshotBtn")
    assert server.node is not None
    assert await server.node.registry.lookup("page-cam") is None


async def test_snapshot_of_a_name_nobody_publishes_fails(
    server: RunningServer, launch_chromium: Callable[[Path], Any], tmp_path: Path
) -> None:
    page = await open_example(server, launch_chromium, write_y4m(tmp_path / "cam.y4m", RED, BLUE), "unused")
    await snapshot_of_typed_name(page, "nobody-here")
    await wait_wcs(page, "#snapshotStatus", "FAILED")
    assert (await page.text_content("#snapshotStatus")) == "No snapshot"
    assert (await page.text_content("#snapshotInfo")) == "No live stream has this name."
    assert (await page.text_content("#snapshotWcs")) == "FAILED · Stream not found"


async def snapshot_of_typed_name(page: Page, name: str) -> None:
    """Ask for a snapshot of `name` through "Another name…" and the text field it shows."""
    assert await page.is_hidden("#otherName") or await page.input_value("#otherStream") == ""
    await page.select_option("#otherStream", "")
    assert await page.is_visible("#otherName")
    await page.fill("#otherName", name)
    await page.click("#otherSnapshotBtn")


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
    # and across: the first page picks the second stream from the list of live streams
    await wait_offered(first, "second")
    await first.select_option("#otherStream", "second")
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
    assert (await page.text_content("#sessionStatus")) == "Not connected"
    await connect_with(page, f"127.0.0.1:{server.port}/abc")  # no ws://
    await wait_wcs(page, "#sessionStatus", "FAILED")
    assert (await page.text_content("#sessionStatus")) == "Not connected"
    assert "ws://" in (await page.text_content("#sessionInfo") or "")
    assert await page.is_enabled("#url") and await page.is_enabled("#token")
    assert (await page.text_content("#connectBtn")) == "Connect"

    # The same mistake through Publish: the stream fails with the reason, nothing stays locked.
    await page.click("#publishBtn")
    await wait_wcs(page, "#status", "FAILED")
    assert (await page.text_content("#status")) == "Not published"
    assert "ws://" in (await page.text_content("#info") or "")
    assert await page.is_enabled("#url") and (await page.text_content("#publishBtn")) == "Publish"

    await connect_with(page, "ws://127.0.0.1:9/nothing")  # nobody listens there
    await wait_wcs(page, "#sessionStatus", "FAILED")
    assert "Cannot connect to ws://127.0.0.1:9/nothing" in (await page.text_content("#sessionInfo") or "")
    assert await page.is_enabled("#url")

    await connect_with(page, f"ws://127.0.0.1:{server.port}/")  # the root path is signaling too
    await wait_wcs(page, "#sessionStatus", "ESTABLISHED")
    assert (await page.text_content("#sessionStatus")) == "Connected"
    assert (await page.text_content("#sessionWcs")) == "ESTABLISHED"
    assert await page.is_disabled("#url") and (await page.text_content("#connectBtn")) == "Disconnect"
    await page.click("#connectBtn")
    await wait_wcs(page, "#sessionStatus", "DISCONNECTED")
    assert (await page.text_content("#sessionStatus")) == "Disconnected"
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
    await wait_wcs(page, "#sessionStatus", "DISCONNECTED")
    assert (await page.text_content("#sessionStatus")) == "Disconnected"
    assert (await page.text_content("#sessionInfo")) == (
        "The server refused: it needs an access token that allows this (enter one above).")
    assert (await page.text_content("#sessionWcs")) == "DISCONNECTED · Restricted access"
    assert await page.is_enabled("#token")
    await page.screenshot(path=str(artifacts / "example-page-refused.png"), full_page=True)

    token = TokenPolicy(secret).issue(["publish", "snapshot"])
    await page.fill("#token", token)
    await page.click("#connectBtn")
    await wait_wcs(page, "#sessionStatus", "ESTABLISHED")
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
    size = f"{width}{TIMES}{height}"
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

    await snapshot_of_typed_name(page, "nobody-here")
    await wait_wcs(page, "#snapshotStatus", "FAILED")
    assert await page.get_attribute("#snapshotImg", "src") is None  # the old picture is gone
    placeholder = await page.text_content("#snapshotPlaceholder")
    assert placeholder == "No picture of nobody-here: No live stream has this name."
    assert await page.is_visible("#snapshotPlaceholder")
    assert "nobody-here · snapshot failed" in (await page.text_content("#snapshotLabel") or "")
    assert await page.is_hidden("#downloadBtn") and await page.is_hidden("#copyUrlBtn")
    await page.screenshot(path=str(artifacts / "example-page-failed-snapshot.png"), full_page=True)


@pytest.fixture
async def publishers() -> AsyncIterator[list[WcsClient]]:
    """In-process WCS publishers of a moving pattern (320x240, VP8); closed at teardown."""
    started: list[WcsClient] = []
    yield started
    for client in started:
        await client.close()


async def publish_pattern(server: RunningServer, publishers: list[WcsClient], name: str) -> WcsClient:
    client = await WcsClient.connect(server.ws_url)
    publishers.append(client)
    await client.publish(name, [PatternTrack(320, 240)], codec="VP8")
    return client


# Every camera the page opens, kept where a test can look at its tracks after the page let go of them.
RECORD_CAMERAS = """
(() => {
  window.openedCameras = [];
  const getUserMedia = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = async (constraints) => {
    const stream = await getUserMedia(constraints);
    window.openedCameras.push(stream);
    return stream;
  };
})();
"""


@pytest.mark.parametrize("choice", ["1280x720", ""], ids=["1280x720", "cameras-own"])
async def test_a_720p_camera_arrives_at_720p_within_10_seconds(
    server: RunningServer, launch_chromium: Callable[[Path], Any], tmp_path: Path, http: aiohttp.ClientSession,
    artifacts: Path, choice: str,
) -> None:
    """Issue 24: the page asks for the camera's size and the browser keeps it (maintain-resolution)."""
    camera = write_y4m(tmp_path / "hd.y4m", RED, BLUE, width=1280, height=720, frames=10)
    page = await open_example(server, launch_chromium, camera, "hd-cam")
    await page.select_option("#resolution", choice)
    clicked = time.monotonic()
    await page.click("#publishBtn")
    sizes: list[tuple[int | None, int | None]] = []
    while time.monotonic() - clicked < 10:
        async with http.get(f"{server.http_url}/streams") as answer:
            listed = {s["name"]: s for s in await answer.json()}
        stream = listed.get("hd-cam")
        if stream is not None:
            sizes.append((stream["width"], stream["height"]))
            if sizes[-1] == (1280, 720):
                break
        await asyncio.sleep(0.25)
    assert sizes and sizes[-1] == (1280, 720), f"sizes the server listed within 10 s: {sizes}"

    sender = await page.evaluate("""() => {
        const pc = window.streamsnapPage.stream.getRTCPeerConnection();
        const p = pc.getSenders().find((s) => s.track && s.track.kind === 'video').getParameters();
        return {preference: p.degradationPreference, scale: p.encodings[0].scaleResolutionDownBy,
                maxBitrate: p.encodings[0].maxBitrate};
    }""")
    assert sender == {"preference": "maintain-resolution", "scale": 1, "maxBitrate": 2_500_000}
    image = png_image(await take_snapshot(page))
    assert image.size == (1280, 720)
    assert_halves(await image_png(page, "#snapshotImg"), RED, BLUE)
    # What the publisher reads under the camera: its size and the size the server receives.
    await wait_text(page, "#cameraSize", f"· camera 1280{TIMES}720")
    await page.wait_for_function(
        "(document.querySelector('#receivedSize').textContent || '').startsWith('· server receives 1280\u00d7720 at ')",
        timeout=10000,
    )
    await page.screenshot(path=str(artifacts / f"example-page-720p-{choice or 'cameras-own'}.png"), full_page=True)


async def test_a_refused_name_stops_the_camera_and_says_why(
    server: RunningServer, launch_chromium: Callable[[Path], Any], tmp_path: Path, publishers: list[WcsClient],
    artifacts: Path,
) -> None:
    await publish_pattern(server, publishers, "taken")
    browser = await launch_chromium(write_y4m(tmp_path / "cam.y4m", RED, BLUE))
    page = await browser.new_page()
    await page.add_init_script(RECORD_CAMERAS)
    await page.goto(server.http_url + EXAMPLE)
    await page.fill("#streamName", "taken")
    await page.click("#publishBtn")
    await wait_wcs(page, "#status", "FAILED")

    assert (await page.text_content("#status")) == "Not published"
    assert (await page.text_content("#info")) == (
        "This name is already live on the server (published here or elsewhere): choose another name.")
    assert (await page.text_content("#statusWcs")) == "FAILED · Stream name is already in use"
    # The camera was opened for the offer, and is off now: every track ended, nothing on screen.
    states = await page.evaluate("window.openedCameras.flatMap((s) => s.getTracks().map((t) => t.readyState))")
    assert states and set(states) == {"ended"}, states
    assert await page.evaluate("document.querySelector('#localVideo').srcObject === null")
    assert (await page.text_content("#cameraSize")) == ""
    assert (await page.text_content("#publishBtn")) == "Publish" and await page.is_enabled("#streamName")
    await page.screenshot(path=str(artifacts / "example-page-name-in-use.png"), full_page=True)

    await page.fill("#streamName", "free")  # another name works, with a camera opened again
    await publish(page)
    assert_halves(await take_snapshot(page), RED, BLUE)


async def test_another_stream_is_chosen_from_the_live_streams(
    server: RunningServer, launch_chromium: Callable[[Path], Any], tmp_path: Path, publishers: list[WcsClient],
    artifacts: Path,
) -> None:
    lobby = await publish_pattern(server, publishers, "lobby")
    page = await open_example(server, launch_chromium, write_y4m(tmp_path / "cam.y4m", RED, BLUE), "mine")
    await wait_offered(page, "lobby")
    # The live stream is chosen already, with how it comes in and its size; no text field needed.
    assert await page.input_value("#otherStream") == "lobby"
    assert (await page.text_content("#otherStream option:checked")) == f"lobby · WebRTC · 320{TIMES}240"
    assert await page.is_hidden("#otherName")
    assert (await page.text_content("#otherListInfo")) == "1 live stream on the server."
    await page.click("#otherSnapshotBtn")
    await wait_wcs(page, "#snapshotStatus", "SNAPSHOT_COMPLETE")
    assert png_image(await image_png(page, "#snapshotImg")).size == (320, 240)
    assert (await page.text_content("#snapshotLabel") or "").startswith(f"lobby · 320{TIMES}240 · ")

    await publish(page)  # the page's own stream joins the list, marked as its own
    await wait_offered(page, "mine")
    own = await page.text_content("#otherStream option[value='mine']")
    assert own is not None and own.startswith("mine · WebRTC · ") and own.endswith(" · yours"), own
    assert await page.input_value("#otherStream") == "lobby"  # the choice stays through refreshes
    await page.screenshot(path=str(artifacts / "example-page-stream-list.png"), full_page=True)

    publishers.remove(lobby)
    await lobby.close()  # an ended stream leaves the list
    await page.wait_for_function(
        "!Array.from(document.querySelectorAll('#otherStream option')).some((o) => o.value === 'lobby')",
        timeout=15000,
    )
    # Free text stays possible: "Another name…" shows the field.
    await page.select_option("#otherStream", "")
    assert await page.is_visible("#otherName")
