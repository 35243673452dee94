"""Cluster benchmark, latency: a picture asked on its stream's own node and through another node.

    python bench/cluster_latency.py             # 200 pictures one at a time and 30 rounds of 10 per case, 1000 hops
    python bench/cluster_latency.py --quick     # 60, 10 rounds and 200 hops

Two nodes, a and b, on one redis-server of its own; 10 publishers (640x480 VP8) on a. The same
streams asked on a and through b over the image url, PNG and JPEG, one at a time and 10 at once,
with picture reuse off so that every answer is a fresh decode and encode on the owner. Then the
hop alone: one stream whose picture a reuses, asked on a and through b. Goal: cross-node p99
within local p99 + 20 ms. Prints markdown tables and writes bench/results/cluster-latency-<time>.json.
(bench/cluster.py runs it with the other cluster benchmarks.)
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests import harness

from bench.cluster_common import main, nodes, publishers_on, redis_server, start_node, wait_listed
from bench.common import percentile, table


@dataclass
class LatencyRow:
    format: str
    mode: str
    where: str
    requests: int = 0
    errors: int = 0
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    samples: list[float] = field(default_factory=list, repr=False)


async def measure_latency(owner: harness.Node, other: harness.Node, streams: int, sequential: int, rounds: int,
                          concurrent: int) -> list[LatencyRow]:
    rows: list[LatencyRow] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=15)) as http:

        async def one(row: LatencyRow, node: harness.Node, stream: int, ext: str) -> None:
            started = time.perf_counter()
            try:
                async with http.get(f"{node.http_url}/streams/s{stream}/snapshot.{ext}") as response:
                    await response.read()
                    ok = response.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            if ok:
                row.samples.append((time.perf_counter() - started) * 1000)
            else:
                row.errors += 1

        for ext, label in (("png", "PNG"), ("jpg", "JPEG")):
            for mode in ("sequential", f"{concurrent} concurrent"):
                local = LatencyRow(label, mode, f"local (on {owner.name})")
                remote = LatencyRow(label, mode, f"cross-node (via {other.name})")
                count = sequential if mode == "sequential" else rounds
                for i in range(count):
                    # Alternate which goes first, so that neither always finds the fresher keyframe.
                    pairs = [(local, owner), (remote, other)]
                    for row, node in pairs if i % 2 == 0 else pairs[::-1]:
                        if mode == "sequential":
                            await one(row, node, i % streams, ext)
                            await asyncio.sleep(0.05)
                        else:
                            await asyncio.gather(*(one(row, node, k % streams, ext) for k in range(concurrent)))
                            await asyncio.sleep(0.3)
                for row in (local, remote):
                    row.requests = len(row.samples) + row.errors
                    row.p50_ms, row.p95_ms, row.p99_ms = (percentile(row.samples, p) for p in (50, 95, 99))
                    rows.append(row)
                print(f"  {local}\n  {remote}", file=sys.stderr, flush=True)
    return rows


async def measure_hop(owner: harness.Node, other: harness.Node, count: int) -> list[LatencyRow]:
    """The hop alone: one stream's picture, reused on the owner (max_age_ms=60000), asked here and there."""
    rows = [LatencyRow("JPEG", "sequential, reused picture", f"local (on {owner.name})"),
            LatencyRow("JPEG", "sequential, reused picture", f"cross-node (via {other.name})")]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
        for node in (owner, other):  # prime: a picture to reuse, and the connections
            async with http.get(f"{node.http_url}/streams/s0/snapshot.jpg?max_age_ms=60000") as response:
                await response.read()
        for i in range(count):
            pairs = [(rows[0], owner), (rows[1], other)]
            for row, node in pairs if i % 2 == 0 else pairs[::-1]:
                started = time.perf_counter()
                async with http.get(f"{node.http_url}/streams/s0/snapshot.jpg?max_age_ms=60000") as response:
                    await response.read()
                    if response.status != 200:
                        row.errors += 1
                        continue
                row.samples.append((time.perf_counter() - started) * 1000)
                await asyncio.sleep(0.01)
    for row in rows:
        row.requests = len(row.samples) + row.errors
        row.p50_ms, row.p95_ms, row.p99_ms = (percentile(row.samples, p) for p in (50, 95, 99))
    return rows


def run_latency(quick: bool) -> dict[str, Any]:
    streams = 10
    sequential, rounds, hops = (60, 10, 200) if quick else (200, 30, 1000)
    # Reuse off: every answer is a fresh decode and encode on the owner, local or routed.
    env = {"STREAMSNAP_PICTURE_CACHE_BYTES": "0"}
    with redis_server() as server:
        a, b = start_node("a", server.url, env=env), start_node("b", server.url, env=env)
        with nodes(a, b), publishers_on(a, streams):
            asyncio.run(wait_listed(b, {f"s{k}" for k in range(streams)}))
            time.sleep(3)
            rows = asyncio.run(measure_latency(a, b, streams, sequential, rounds, 10))
        server.client.flushall()
        a, b = start_node("a2", server.url), start_node("b2", server.url)
        with nodes(a, b), publishers_on(a, 1):
            asyncio.run(wait_listed(b, {"s0"}))
            time.sleep(2)
            rows += asyncio.run(measure_hop(a, b, hops))
    print(f"\n### Cross-node picture latency ({streams} live 640x480 VP8 streams on node a; image url, request "
          "sent to file received; picture reuse off on the owner, so each answer is a fresh decode and encode; "
          "last rows: one stream, its picture reused, so only the hop differs)\n")
    print(table(rows, [("format", "format"), ("mode", "requests"), ("where", "asked"), ("requests", "n"),
                       ("errors", "errors"), ("p50_ms", "p50 ms"), ("p95_ms", "p95 ms"), ("p99_ms", "p99 ms")]))
    print()
    goals = []
    for i in range(0, len(rows), 2):
        local, remote = rows[i], rows[i + 1]
        met = remote.p99_ms <= local.p99_ms + 20
        goals.append({"format": local.format, "mode": local.mode, "local_p99_ms": local.p99_ms,
                      "cross_p99_ms": remote.p99_ms, "met": met})
        print(f"- {local.format}, {local.mode}: cross-node p99 within local p99 + 20 ms: {'yes' if met else 'no'} "
              f"({remote.p99_ms:.1f} vs {local.p99_ms:.1f} + 20; p50 difference "
              f"{remote.p50_ms - local.p50_ms:+.1f} ms)")
    return {"rows": [asdict(r) | {"samples": None} for r in rows], "goal": goals}


if __name__ == "__main__":
    main("latency", __doc__, run_latency)
