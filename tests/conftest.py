"""Fixtures shared by every kind of test: real servers on free loopback ports."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import hypothesis  # noqa: F401  # see below
import pytest
from aiohttp import web
from PIL import Image

from streamsnap.config import Settings
from streamsnap.server.listeners import Server
from streamsnap.service.node import Node
from tests import harness

# hypothesis is imported here, at collection, on purpose: imported late (by its pytest
# plugin's end-of-run summary, when only integration tests ran), CPython 3.11.7's parser
# fails with "AST constructor recursion depth mismatch" and pytest ends in INTERNALERROR.

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"

# How far behind the publisher's newest frame a snapshot may be: the frame in flight
# through encoder, network and jitter buffer, plus the time to answer.
MAX_LAG_FRAMES = 20

TEST_LISTEN_TIMEOUT = 20.0
"""How long a test waits for a process it started to listen (the harness's default is the benchmarks'):
long enough for a slow start, short enough to fail with the process's output inside pytest's timeout."""

# Loopback only: tests never send traffic anywhere else.
TEST_SETTINGS = Settings().replace(host="127.0.0.1", port=0, ice_addresses=["127.0.0.1"], keepalive_interval=1.0,
                                   rtsp_allowed_hosts=["127.0.0.0/8"])


@dataclass
class RunningServer:
    """A streamsnap server started by a test."""

    port: int
    node: Node | None = None
    "In-process servers expose their parts, for counters; None for subprocesses."

    @property
    def ws_url(self) -> str:
        """The signaling url, with a random-looking path as the official example makes."""
        return f"ws://127.0.0.1:{self.port}/k3j5h2q9"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def serve_on_loopback(app: web.Application, **runner_options: Any) -> tuple[web.AppRunner, int]:
    """Start a plain aiohttp `app` (a backend, a webhook) on a free 127.0.0.1 port; return its runner and port."""
    runner = web.AppRunner(app, **runner_options)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port: int = runner.addresses[0][1]
    return runner, port


@pytest.fixture
async def start_full_server() -> AsyncIterator[Callable[..., Any]]:
    """`Server`s as `serve` runs them (every listener its settings ask for: http, https, rest, metrics,
    rtmp; guarded, the safe access log), with the test settings plus overrides (flat or dotted names);
    all are stopped at teardown."""
    servers: list[Server] = []

    async def start(**overrides: Any) -> Server:
        server = Server(TEST_SETTINGS.replace(**overrides))
        servers.append(server)
        await server.start()
        return server

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture
async def start_server(start_full_server: Callable[..., Any]) -> Callable[..., Any]:
    """Start in-process servers (settings overridable per call); all are stopped at teardown."""

    async def start(**overrides: Any) -> RunningServer:
        server: Server = await start_full_server(**overrides)
        return RunningServer(server.port("http"), server.node)

    return start


@pytest.fixture
async def server(start_server: Callable[..., Any]) -> RunningServer:
    """One in-process server with the test settings."""
    result: RunningServer = await start_server()
    return result


@pytest.fixture
def server_process() -> Iterator[RunningServer]:
    """`streamsnap serve` in a subprocess, as a user starts it."""
    node = harness.start_node(timeout=TEST_LISTEN_TIMEOUT)
    yield RunningServer(node.port)
    harness.stop(node.proc, timeout=10)


@pytest.fixture
def processes() -> Iterator[harness.Processes]:
    """Background processes of a README or `--help` listing, each in its own process group, ended at teardown."""
    started = harness.Processes()
    yield started
    started.stop_all()


def png_image(data: bytes) -> Image.Image:
    """Open PNG bytes, asserting they are a PNG."""
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    image.load()
    return image


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client for the tests (every request bounded in time)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        yield session


@pytest.fixture
def artifacts() -> Path:
    """Folder for files a person may want to look at after the run (screenshots, snapshots)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
