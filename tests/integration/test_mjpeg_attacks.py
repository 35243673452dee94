"""MJPEG against hostile watchers (issue 22, item 7): each attack through real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import psutil
import pytest

from tests.conftest import RunningServer
from tests.integration.test_dashboards import publishing, read_parts

pytestmark = pytest.mark.integration


def stalled_watcher(port: int, path: str) -> socket.socket:
    """A watcher that asks for the MJPEG url and then never reads: its receive window stays tiny and full."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closed (or reset) `sock`: drain what it sent, then see the end."""
    sock.setblocking(False)
    try:
        while True:
            if not sock.recv(1 << 20):
                return True
    except BlockingIOError:
        return False
    except ConnectionError:
        return True


async def test_a_stalled_watcher_loses_its_connection_with_its_slot(start_server: Callable[..., Any]) -> None:
    # Issue 22: watchers that never read kept their connections after the write timeout freed their slot
    # (40 stalled against a per-stream cap of 20, +212 MB at 4K).
    server: RunningServer = await start_server(mjpeg_max_watchers_per_stream=20, mjpeg_write_timeout=2.0,
                                               http_header_timeout=3.0,
                                               mjpeg_max_fps=10)
    process = psutil.Process(os.getpid())
    async with publishing(server, "big", 1280, 720):
        fds_before = process.num_fds()
        stalled = []
        for _ in range(40):  # twice the cap: the second half is refused 429 or let in as slots free
            stalled.append(await asyncio.to_thread(
                stalled_watcher, server.port, "/streams/big/stream.mjpeg?fps=10&quality=100"))
        assert server.node is not None
        await asyncio.sleep(6)  # well past the write timeout
        closed = [await asyncio.to_thread(closed_by_server, sock) for sock in stalled]
        assert all(closed), f"{closed.count(False)} stalled watchers still connected, {server.node.mjpeg.watchers}"
        assert server.node.mjpeg.watchers == 0
        for sock in stalled:
            sock.close()
        await asyncio.sleep(0.5)
        assert process.num_fds() <= fds_before + 2
        async with aiohttp.ClientSession() as http, \
                http.get(f"{server.http_url}/streams/big/stream.mjpeg") as reader:  # the slots are free again
            assert reader.status == 200
            assert len(await asyncio.wait_for(read_parts(reader, 2), 10)) == 2


async def test_one_stream_gives_mjpeg_only_so_many_picture_sizes(start_server: Callable[..., Any],
                                                                http: aiohttp.ClientSession) -> None:
    server: RunningServer = await start_server(mjpeg_max_sizes_per_stream=3)
    async with publishing(server, "cam", 320, 240):
        held = []
        try:
            for width in (160, 200, 240):
                response = await http.get(f"{server.http_url}/streams/cam/stream.mjpeg", params={"width": width})
                assert response.status == 200
                held.append(response)
            same = await http.get(f"{server.http_url}/streams/cam/stream.mjpeg", params={"width": 200})
            held.append(same)
            assert same.status == 200  # a size already made is shared, not another
            async with http.get(f"{server.http_url}/streams/cam/stream.mjpeg", params={"width": 280}) as refused:
                assert refused.status == 429
                body = await refused.json()
                assert body["reason"] == "too_many_picture_sizes" and "at most 3" in body["error"]
        finally:
            for response in held:
                response.close()

async def test_mjpeg_yields_to_pictures_somebody_waits_for(start_server: Callable[..., Any]) -> None:
    # Issue 22: 20 MJPEG watchers of distinct sizes starved other streams' pictures (38/38 served -> 23/35
    # refused). MJPEG frames are the server's own steady work: made only while the workers have room.
    server: RunningServer = await start_server(snapshot_workers=1, snapshot_deadline_ms=300.0,
                                               mjpeg_max_fps=30, mjpeg_max_sizes_per_stream=8)
    async with contextlib.AsyncExitStack() as stack:
        for name in ("w1", "w2", "w3"):
            await stack.enter_async_context(publishing(server, name, 1280, 720))
        await stack.enter_async_context(publishing(server, "asked", 640, 480))
        http = await stack.enter_async_context(aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)))
        feeds = [await http.get(f"{server.http_url}/streams/{name}/stream.mjpeg",
                                params={"fps": 30, "width": width, "quality": 95})
                 for name in ("w1", "w2", "w3") for width in (1280, 1200, 1120, 1040, 960, 880, 800, 640)]
        for feed in feeds:
            stack.callback(feed.close)
            assert feed.status == 200
        await asyncio.sleep(1)  # 24 feeds of 720p streams at 30 pictures a second: far more than one worker makes
        statuses = []
        started = time.monotonic()
        while time.monotonic() - started < 6:
            async with http.get(f"{server.http_url}/streams/asked/snapshot.png", params={"max_age_ms": 0}) as picture:
                statuses.append(picture.status)
                await picture.read()
            await asyncio.sleep(0.25)
        assert statuses.count(200) == len(statuses), statuses
        assert server.node is not None and server.node.engine.stats.overloaded > 0  # MJPEG frames were skipped
