"""The official WCS Web SDK's Stream Snapshot example takes a picture of an RTSP camera by its url, as on WCS."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunningServer, png_image
from tests.e2e.conftest import image_png, write_y4m
from tests.harness import RtspCamera
from tests.integration.test_rtsp import BLUE, assert_colour, cameras  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

EXAMPLE = "/examples/demo/streaming/stream-snapshot/stream-snapshot.html"

# The example's own `snapshot(name)` (session.createStream({name}).snapshot()) on a session made
# with the SDK: the example's page publishes its camera first, which a camera picture does not need.
SNAPSHOT_OF = """
([url, name]) => new Promise((resolve, reject) => {
  Flashphoner.createSession({urlServer: url})
    .on(Flashphoner.constants.SESSION_STATUS.ESTABLISHED, () => { snapshot(name); resolve(); })
    .on(Flashphoner.constants.SESSION_STATUS.FAILED, () => reject(new Error('session failed')));
})
"""


async def test_official_example_pictures_an_rtsp_camera_by_its_url(
    server: RunningServer, websdk_site: str, launch_chromium: Callable[[Path], Any], tmp_path: Path,
    artifacts: Path, cameras: Callable[..., Awaitable[RtspCamera]],  # noqa: F811
) -> None:
    camera = await cameras(BLUE, user="viewer", password="pw-in-url")
    browser = await launch_chromium(write_y4m(tmp_path / "camera.y4m", (0, 0, 0), (0, 0, 0)))
    page = await browser.new_page()
    await page.goto(websdk_site + EXAMPLE)
    await page.evaluate(SNAPSHOT_OF, [f"ws://127.0.0.1:{server.port}/rtsp", camera.url])
    await page.wait_for_function(
        "(document.querySelector('#dynImg').src || '').startsWith('data:image/png')", timeout=30000
    )
    image = png_image(await image_png(page, "#dynImg"))
    assert image.size == (320, 240)
    assert_colour(image, BLUE)
    assert (await page.text_content("#snapshotStatus")) == ""  # cleared on SNAPSHOT_COMPLETE
    await page.screenshot(path=str(artifacts / "official-websdk-rtsp.png"))
    assert server.node is not None
    assert await server.node.registry.lookup(camera.public_url) is not None

    await page.evaluate("snapshot('rtsp://127.0.0.1:1/nothing')")  # a camera that is not there
    await page.wait_for_function("document.querySelector('#snapshotStatus').textContent === 'FAILED'",
                                 timeout=30000)
