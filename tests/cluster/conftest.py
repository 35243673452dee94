"""Real redis-server processes and real `streamsnap serve` nodes on loopback, for the cluster tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import harness
from tests.conftest import TEST_LISTEN_TIMEOUT

CLUSTER_SECRET = "a-test-cluster-secret-0123456789"
TTL = 2.0
"A short time to live, so that a dead node's streams vanish quickly in tests."


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[harness.Redis]:
    """A fresh redis-server on a free port (`make test` installs Debian's package when missing)."""
    if not harness.redis_available():
        pytest.fail("redis-server is not installed (make test installs it)")
    server = harness.Redis(harness.free_port(), tmp_path, start_timeout=TEST_LISTEN_TIMEOUT)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def start_node() -> Iterator[Callable[..., harness.Node]]:
    """Start nodes (`streamsnap serve --redis ...`) as separate processes; all are stopped at teardown."""
    nodes: list[harness.Node] = []

    def start(name: str, redis_url: str, *extra: str, env: dict[str, str] | None = None) -> harness.Node:
        node = harness.start_node("--redis", redis_url, "--node-id", name, *extra, name=name,
                                  env={"STREAMSNAP_CLUSTER_SECRET": CLUSTER_SECRET, "STREAMSNAP_CLUSTER_TTL": str(TTL),
                                       **(env or {})},
                                  timeout=TEST_LISTEN_TIMEOUT)
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        harness.stop(node.proc)
