"""The official WCS Web SDK and its own Stream Snapshot example, unmodified, against streamsnap."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunningServer
from tests.e2e.conftest import PREFER_H264, assert_halves, image_png, write_y4m

pytestmark = pytest.mark.e2e

LEFT, RIGHT = (220, 40, 40), (40, 40, 220)
EXAMPLE = "/examples/demo/streaming/stream-snapshot/stream-snapshot.html"


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_official_example_publishes_snapshots_and_stops(
    server: RunningServer, websdk_site: str, launch_chromium: Callable[[Path], Any], tmp_path: Path,
    artifacts: Path, codec: str,
) -> None:
    browser = await launch_chromium(write_y4m(tmp_path / "camera.y4m", LEFT, RIGHT))
    page = await browser.new_page()
    if codec == "H264":
        await page.add_init_script(PREFER_H264)
    await page.goto(websdk_site + EXAMPLE)
    # The example names the stream after the url's path; the user types the server's address.
    name = f"sdk{codec.lower()}"
    await page.fill("#url", f"ws://127.0.0.1:{server.port}/{name}")
    await page.click("#publishBtn")
    await page.wait_for_function("document.querySelector('#status').textContent === 'PUBLISHING'", timeout=20000)
    assert server.node is not None
    stream = await server.node.registry.lookup(name)
    assert stream is not None and stream.codec == codec  # the record, as listings show it

    await page.wait_for_selector("#snapshotBtn:not([disabled])")
    await page.click("#snapshotBtn")
    await page.wait_for_function(
        "(document.querySelector('#dynImg').src || '').startsWith('data:image/png')", timeout=15000
    )
    image = assert_halves(await image_png(page, "#dynImg"), LEFT, RIGHT)
    camera = await page.evaluate(
        "(() => { const v = document.querySelector('#localVideo video'); return [v.videoWidth, v.videoHeight]; })()"
    )
    assert list(image.size) == camera
    assert (await page.text_content("#snapshotStatus")) == ""  # the example clears it on SNAPSHOT_COMPLETE
    await page.screenshot(path=str(artifacts / f"official-websdk-{codec}.png"))

    await page.click("#publishBtn")  # now labelled Stop
    await page.wait_for_function("document.querySelector('#status').textContent === 'UNPUBLISHED'", timeout=10000)
    assert await page.is_disabled("#snapshotBtn")
    assert await server.node.registry.lookup(name) is None
