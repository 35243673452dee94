"""Real Chromium (Debian's, driven by Playwright) publishing its fake camera to a real server."""

from __future__ import annotations

import base64
import io
import shutil
import subprocess
import tarfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiohttp import web
from PIL import Image
from playwright.async_api import Browser, Page, async_playwright

from tests.conftest import ROOT, serve_on_loopback

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
WEBSDK_VERSION = "2.0.276"
WEBSDK_CACHE = ROOT / "build" / "websdk" / WEBSDK_VERSION

RGB = tuple[int, int, int]


def write_y4m(path: Path, left: RGB, right: RGB, width: int = 320, height: int = 240, frames: int = 30) -> Path:
    """A y4m clip whose every frame has `left` colour on its left half and `right` on its right."""
    rgb = np.empty((height, width, 3), dtype=np.uint8)
    rgb[:, : width // 2] = left
    rgb[:, width // 2 :] = right
    yuv = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p").to_ndarray()
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            out.write(b"FRAME\n")
            out.write(yuv.tobytes())
    return path


def assert_halves(png: bytes, left: RGB, right: RGB, tolerance: int = 40) -> Image.Image:
    """Assert a snapshot shows `left` on its left half and `right` on its right half."""
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    height, width, _ = pixels.shape
    for expected, x0 in ((left, width // 8), (right, width * 5 // 8)):
        area = pixels[height // 4 : height * 3 // 4, x0 : x0 + width // 4]
        mean = area.reshape(-1, 3).mean(axis=0)
        assert all(abs(m - e) < tolerance for m, e in zip(mean, expected, strict=True)), (mean, expected)
    return image


async def image_png(page: Page, selector: str) -> bytes:
    """The PNG shown by an <img> whose src is a data: url."""
    src = await page.get_attribute(selector, "src")
    assert src and src.startswith("data:image/png;base64,"), src and src[:40]
    return base64.b64decode(src.split(",", 1)[1])


@pytest.fixture
async def launch_chromium() -> AsyncIterator[Callable[[Path], Any]]:
    """Start Chromium browsers whose fake camera plays a given y4m file; all closed at teardown."""
    if shutil.which(CHROMIUM) is None:
        pytest.fail("Debian chromium is not installed: run `make test`, which installs it")
    browsers: list[Browser] = []
    async with async_playwright() as playwright:

        async def launch(y4m: Path) -> Browser:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, args=[*CHROMIUM_FLAGS, f"--use-file-for-fake-video-capture={y4m}"]
            )
            browsers.append(browser)
            return browser

        yield launch
        for browser in browsers:
            await browser.close()


def fetch_websdk() -> Path:
    """The official Web SDK package, pinned, fetched with npm once and cached under build/."""
    package = WEBSDK_CACHE / "package"
    if (package / "flashphoner.js").is_file():
        return package
    if shutil.which("npm") is None:
        pytest.fail("npm is not installed: run `make test`, which installs it")
    WEBSDK_CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["npm", "pack", f"@flashphoner/websdk@{WEBSDK_VERSION}", "--pack-destination", str(WEBSDK_CACHE)],
        check=True, capture_output=True, timeout=300,
    )
    (tarball,) = WEBSDK_CACHE.glob("*.tgz")
    with tarfile.open(tarball) as archive:
        archive.extractall(WEBSDK_CACHE, filter="data")
    tarball.unlink()
    return package


@pytest.fixture
async def websdk_site() -> AsyncIterator[str]:
    """The unmodified official SDK package served over http; yields its base url."""
    package = fetch_websdk()
    app = web.Application()
    app.router.add_static("/", package)
    runner, port = await serve_on_loopback(app)
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


# Makes Chromium offer H.264 only, the way a page could with setCodecPreferences, without
# touching the SDK: the SDK adds its tracks, then calls createOffer.
PREFER_H264 = """
(() => {
  const createOffer = RTCPeerConnection.prototype.createOffer;
  RTCPeerConnection.prototype.createOffer = function (...args) {
    for (const transceiver of this.getTransceivers()) {
      const track = transceiver.sender && transceiver.sender.track;
      if (track && track.kind === 'video') {
        const codecs = RTCRtpSender.getCapabilities('video').codecs
          .filter((c) => c.mimeType === 'video/H264' || c.mimeType === 'video/rtx');
        transceiver.setCodecPreferences(codecs);
      }
    }
    return createOffer.apply(this, args);
  };
})();
"""
