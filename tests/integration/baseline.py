"""Leak checks: after a scenario the server must hold what it held before it."""

from __future__ import annotations

import asyncio
import gc
import threading
from dataclasses import dataclass

from aiortc import RTCPeerConnection

from tests.conftest import RunningServer

# Threads that belong to bounded pools created on first use and kept for the server's life.
POOL_PREFIXES = ("snapshot", "asyncio_")


def open_peer_connections() -> list[RTCPeerConnection]:
    """Every peer connection in this process that is not closed (server's and test clients')."""
    return [o for o in gc.get_objects() if isinstance(o, RTCPeerConnection) and o.connectionState != "closed"]


def _threads() -> set[int]:
    return {t.ident or 0 for t in threading.enumerate() if not t.name.startswith(POOL_PREFIXES)}


@dataclass(frozen=True)
class Baseline:
    """What the process held when a scenario began."""

    tasks: int
    threads: frozenset[int]


def take_baseline() -> Baseline:
    """Record tasks and threads now (call after the server started, before the scenario)."""
    return Baseline(len(asyncio.all_tasks()), frozenset(_threads()))


async def assert_back_to_baseline(server: RunningServer, baseline: Baseline, timeout: float = 10.0) -> None:
    """Wait until registry, sessions, peer connections, tasks and threads are back to `baseline`."""
    services = server.node
    assert services is not None
    state: dict[str, object] = {}
    try:
        async with asyncio.timeout(timeout):
            while True:
                state = {
                    "streams": [s.name for s in await services.registry.all()],
                    "sessions": len(services.sessions),
                    "snapshots_in_flight": services.snapshots.in_flight,
                    "peer_connections": len(open_peer_connections()),
                    "extra_tasks": len(asyncio.all_tasks()) - baseline.tasks,
                    "extra_threads": len(_threads() - baseline.threads),
                }
                if state == {"streams": [], "sessions": 0, "snapshots_in_flight": 0, "peer_connections": 0,
                             "extra_tasks": 0, "extra_threads": 0}:
                    return
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"not back to baseline after {timeout} s: {state}") from None
