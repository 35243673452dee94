"""Periodic thumbnails with a real publisher: files written atomically, history rotated, webhook called."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from PIL import Image

from streamsnap.access import SIGNATURE_HEADER, signature_valid
from streamsnap.media.pattern import FPS, PatternTrack, read_counter
from streamsnap.service.thumbnails import file_stem
from streamsnap.wcsclient import WcsClient
from tests.conftest import serve_on_loopback

pytestmark = pytest.mark.integration

INTERVAL = 0.3
WEBHOOK_KEY = "thumbnail-webhook-key"
MAX_LAG_FRAMES = 20 + int(INTERVAL * FPS)


async def test_thumbnails_are_written_rotated_and_announced(start_server: Callable[..., Any],
                                                            tmp_path: Path) -> None:
    posts: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    signed: list[bool] = []

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        signed.append(signature_valid(WEBHOOK_KEY, body, request.headers.get(SIGNATURE_HEADER)))
        posts.put_nowait(json.loads(body))
        return web.Response(status=204)

    receiver = web.Application()
    receiver.router.add_post("/hook", hook)
    runner, port = await serve_on_loopback(receiver)
    hook_url = f"http://127.0.0.1:{port}/hook"

    folder = tmp_path / "thumbs"
    server = await start_server(thumbnail_interval=INTERVAL, thumbnail_dir=str(folder), thumbnail_history=2,
                                thumbnail_width=320, thumbnail_webhook=hook_url, backend_secret=WEBHOOK_KEY)
    name = "lobby/cam.1"
    track = PatternTrack(640, 480)
    publisher = await WcsClient.connect(server.ws_url)
    try:
        await publisher.publish(name, [track])
        seen = [await asyncio.wait_for(posts.get(), 10) for _ in range(4)]
        published_then = track.counter
        current = folder / f"{file_stem(name)}.jpg"
        assert file_stem(name) == "lobby%2Fcam%2E1"
        for post in seen:
            assert post["name"] == name
            assert post["path"] == str(current)
            assert post["taken_at"].endswith("Z")
        assert [p["taken_at"] for p in seen] == sorted(p["taken_at"] for p in seen)
        assert signed and all(signed)  # signed like the backend hooks, so the receiver can tell forgeries

        image = Image.open(io.BytesIO(current.read_bytes()))
        assert image.format == "JPEG"
        assert image.size == (320, 240)
        assert 0 <= published_then - read_counter(image) <= MAX_LAG_FRAMES

        history = sorted((folder / file_stem(name)).glob("*.jpg"))
        assert len(history) == 2  # four or more written, the two newest kept
        counters = [read_counter(Image.open(path)) for path in history]
        assert counters[0] < counters[1]  # a new picture each round, not the same one
        assert not list(folder.glob(".*.tmp"))  # atomic writes leave no temporary files
    finally:
        await publisher.close()
        await runner.cleanup()


async def test_thumbnails_are_off_by_default(start_server: Callable[..., Any], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    server = await start_server()
    publisher = await WcsClient.connect(server.ws_url)
    try:
        await publisher.publish("quiet", [PatternTrack(320, 240)])
        await asyncio.sleep(0.5)
        assert not (tmp_path / "thumbnails").exists()
        assert server.node.engine.stats.requests == 0  # nothing decoded while nobody asks
    finally:
        await publisher.close()
