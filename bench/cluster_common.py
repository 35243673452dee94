"""What the cluster benchmarks (bench/cluster_*.py) share: a redis-server to query, nodes, publishers, the report.

Each benchmark starts its own `redis-server` on a free port and its nodes as `python -m streamsnap
serve --redis URL --node-id NAME` processes on loopback (STREAMSNAP_CLUSTER_SECRET set), their
output in a log folder of its own; publishers replay pre-encoded 640x480 VP8 clips
(bench/publisher.py). Nothing is pinned to a CPU: the publishers, the benchmark client, Redis and
the nodes share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import redis
from tests import harness

import streamsnap
from bench.common import ONE_ADDRESS_FOR_MANY, publishers, save_results

SECRET = "bench-cluster-secret-0123456789abcdef"
LOGS = Path(tempfile.mkdtemp(prefix="streamsnap-bench-cluster-"))
STARTED: list[subprocess.Popen[str]] = []
"Every node started, stopped at exit whatever happened (a failed start must not leave others running)."


@atexit.register
def _stop_started() -> None:
    for proc in STARTED:
        harness.stop(proc, signal.SIGKILL)


class RedisServer:
    """A redis-server of its own on a free loopback port, and a client to ask it what it saw."""

    def __init__(self) -> None:
        self.server = harness.Redis(harness.free_port(), Path(tempfile.mkdtemp(prefix="redis-", dir=LOGS)),
                                    output=subprocess.DEVNULL)
        self.server.start()
        self.port = self.server.port
        self.client = redis.Redis(port=self.port)

    @property
    def url(self) -> str:
        return self.server.url

    def commandstats(self) -> dict[str, tuple[int, int]]:
        """`redis-cli info commandstats` as {command: (calls, usec)}."""
        out = subprocess.run(["redis-cli", "-p", str(self.port), "info", "commandstats"], capture_output=True,
                             text=True, check=True).stdout
        stats = {}
        for match in re.finditer(r"cmdstat_(\S+?):calls=(\d+),usec=(\d+)", out):
            stats[match[1]] = (int(match[2]), int(match[3]))
        return stats

    def close(self) -> None:
        self.client.close()
        self.server.kill()


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    try:
        yield server
    finally:
        server.close()


def start_node(name: str, redis_url: str, *, ttl: float = 5.0, workers: int = 1, env: dict[str, str] | None = None,
               ) -> harness.Node:
    """A node of the cluster on a free port, logging to LOGS/node-NAME-PORT.log."""
    port = harness.free_port()
    with (LOGS / f"node-{name}-{port}.log").open("wb") as log:
        node = harness.start_node(
            "--ice-address", "127.0.0.1", "--log-level", "warning", "--redis", redis_url, "--node-id", name,
            *(["--workers", str(workers)] if workers > 1 else []), name=name, port=port, output=log,
            env={"STREAMSNAP_CLUSTER_SECRET": SECRET, "STREAMSNAP_CLUSTER_TTL": str(ttl), **ONE_ADDRESS_FOR_MANY,
                 **(env or {})})
    STARTED.append(node.proc)
    if workers > 1:
        time.sleep(2)  # the other workers come up a little later on the shared port
    return node


def signaling_url(node: harness.Node) -> str:
    return f"ws://127.0.0.1:{node.port}/bench"


@contextmanager
def nodes(*started: harness.Node) -> Iterator[None]:
    """Stop `started` on leaving."""
    try:
        yield
    finally:
        for node in started:
            harness.stop(node.proc)


@contextmanager
def publishers_on(node: harness.Node, streams: int, prefix: str = "s", size: str = "640x480",
                  ) -> Iterator[subprocess.Popen[str]]:
    """`streams` VP8 publishers on `node` (names prefix0..), once all publish."""
    with publishers(signaling_url(node), streams, "VP8", size, prefix=prefix, cpu=None,
                    ready_timeout=60 + streams) as proc:
        assert proc.stdout is not None
        # It goes on printing a STATS line a second: read them, so that the pipe never fills.
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        yield proc


async def listed(http: aiohttp.ClientSession, node: harness.Node) -> set[str]:
    async with http.get(f"{node.http_url}/streams") as response:
        return {stream["name"] for stream in await response.json()}


async def wait_listed(node: harness.Node, names: set[str], timeout: float = 20) -> None:
    async with aiohttp.ClientSession() as http, asyncio.timeout(timeout):
        while not names <= await listed(http, node):  # noqa: ASYNC110 -- another process
            await asyncio.sleep(0.1)


def main(name: str, doc: str, run: Callable[[bool], Any]) -> None:
    """A cluster benchmark's command line: `--quick`, then `run(quick)`, its result in
    bench/results/cluster-NAME-<time>.json beside the machine's state."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short windows, fewer trials (numbers are rougher)")
    args = parser.parse_args()
    if not harness.redis_available():
        sys.exit(f"bench/cluster_{name}.py: redis-server is not installed (apt-get install redis-server)")
    load = os.getloadavg()[0]
    print(f"streamsnap cluster benchmark, {name}{' (quick)' if args.quick else ''}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}; {os.cpu_count()} cores, shared (load average {load:.2f} at the "
          f"start), nothing pinned; streamsnap from {Path(streamsnap.__file__).parent}; logs in {LOGS}")
    report: dict[str, Any] = {"quick": args.quick, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                              "cores": os.cpu_count(), "load_average_at_start": load,
                              "streamsnap": str(Path(streamsnap.__file__).parent)}
    report[name] = run(args.quick)
    report["load_average_at_end"] = os.getloadavg()[0]
    save_results(report, prefix=f"cluster-{name}-")
