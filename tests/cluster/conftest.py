"""Real redis-server processes and real `streamsnap serve` nodes on loopback, for the cluster tests."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import free_port, wait_listening

CLUSTER_SECRET = "a-test-cluster-secret-0123456789"
TTL = 2.0
"A short time to live, so that a dead node's streams vanish quickly in tests."


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Redis:
    """One redis-server on loopback (restartable on the same port)."""

    port: int
    directory: Path
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory), *self.extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_listening(self.port, self.proc)

    def kill(self) -> None:
        if self.proc is not None:
            stop(self.proc, signal.SIGKILL)


def redis_available() -> bool:
    return shutil.which("redis-server") is not None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Redis]:
    """A fresh redis-server on a free port (`make test` installs Debian's package when missing)."""
    if not redis_available():
        pytest.fail("redis-server is not installed (make test installs it)")
    server = Redis(free_port(), tmp_path)
    server.start()
    yield server
    server.kill()


@dataclass
class Node:
    """One `streamsnap serve` process of the cluster."""

    name: str
    port: int
    proc: subprocess.Popen[str]

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def start_node() -> Iterator[Callable[..., Node]]:
    """Start nodes (`streamsnap serve --redis ...`) as separate processes; all are stopped at teardown."""
    nodes: list[Node] = []

    def start(name: str, redis_url: str, *extra: str, env: dict[str, str] | None = None) -> Node:
        port = free_port()
        environment = os.environ | {"STREAMSNAP_CLUSTER_SECRET": CLUSTER_SECRET, "STREAMSNAP_CLUSTER_TTL": str(TTL),
                                    "STREAMSNAP_ICE_ADDRESSES": "127.0.0.1", **(env or {})}
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamsnap", "serve", "--host", "127.0.0.1", "--port", str(port),
             "--redis", redis_url, "--node-id", name, *extra],
            env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_listening(port, proc)
        node = Node(name, port, proc)
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        stop(node.proc)
