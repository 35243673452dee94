"""Cluster benchmark, workers: `serve --workers 2` against one worker, idle streams and capacity.

    python bench/cluster_workers.py             # idle 30, 60, 100 streams; capacity steps 16 to 80 streams
    python bench/cluster_workers.py --quick     # idle 30, 60; capacity steps 20 to 60, shorter windows

One node (`--node-id box`) on one redis-server of its own, with 1 and with 2 workers in turn.
Idle: the server's CPU per live 640x480 VP8 stream and /healthz round trips. Capacity: one WCS
picture per stream per second in an open loop (as bench/run.py's capacity part does over the
image url), both setups at each step, each until a step fails (an error, or p99 of 1 s or
more); with 2 workers about half the pictures are routed to the other worker. Goal: 2 workers
sustain at least 1.8x the streams of one. The machine's other users' CPU is shown beside.
Prints markdown tables and writes bench/results/cluster-workers-<time>.json. (bench/cluster.py
runs it with the other cluster benchmarks.)
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests import harness

from bench.cluster_common import (
    RedisServer,
    main,
    nodes,
    publishers_on,
    redis_server,
    signaling_url,
    start_node,
)
from bench.common import cpu_seconds, open_loop, percentile, table
from streamsnap.wcsclient import SnapshotFailed, WcsClient


def node_pids(node: harness.Node) -> list[int]:
    """The node's process and, with --workers, its workers."""
    pids = [node.proc.pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == node.proc.pid:  # its parent
                pids.append(int(stat.parent.name))
    return pids


def node_cpu(node: harness.Node) -> float:
    """CPU seconds the node's processes have used (one that ended meanwhile is left out)."""
    total = 0.0
    for pid in node_pids(node):
        with suppress(OSError):
            total += cpu_seconds(pid)
    return total


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine so far (every process, ours and other users')."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


@dataclass
class IdleRow:
    workers: int
    streams: int
    server_cpu: float = 0.0
    "Cores the server's processes used."
    cpu_per_stream: float = 0.0
    load_cpu: float = 0.0
    "Cores the publishers used."
    healthz_p50_ms: float = 0.0
    healthz_p99_ms: float = 0.0
    "GET /healthz round trip (new connection each, so spread over workers): the event loops' lag."
    projected_streams: float = 0.0
    "workers / CPU per stream: idle streams until the server's cores are full (a projection)."
    others_cpu: float = 0.0
    "Cores the rest of the machine used meanwhile (other users of this shared machine)."


async def probe_healthz(node: harness.Node, seconds: float) -> list[float]:
    samples = []
    stop_at = time.monotonic() + seconds
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            async with http.get(f"{node.http_url}/healthz", headers={"Connection": "close"}) as response:
                await response.read()
            samples.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.1)
    return samples


def measure_idle(server: RedisServer, workers: int, streams: int, seconds: float, warmup: float) -> IdleRow:
    row = IdleRow(workers, streams)
    server.client.flushall()  # no record of an earlier step's names
    node = start_node("box", server.url, workers=workers)
    with nodes(node), publishers_on(node, streams) as load:
        time.sleep(warmup)
        cpu0, load0, wall0, busy0, own0 = node_cpu(node), cpu_seconds(load.pid), time.monotonic(), machine_busy(), \
            time.process_time()
        samples = asyncio.run(probe_healthz(node, seconds))
        wall = time.monotonic() - wall0
        row.server_cpu = (node_cpu(node) - cpu0) / wall
        row.load_cpu = (cpu_seconds(load.pid) - load0) / wall
        own = (time.process_time() - own0) / wall
        row.others_cpu = max(0.0, (machine_busy() - busy0) / wall - row.server_cpu - row.load_cpu - own)
    row.cpu_per_stream = row.server_cpu / streams
    row.healthz_p50_ms, row.healthz_p99_ms = percentile(samples, 50), percentile(samples, 99)
    row.projected_streams = workers / row.cpu_per_stream if row.cpu_per_stream else 0.0
    print(f"  {row}", file=sys.stderr, flush=True)
    return row


@dataclass
class WorkersCapacityRow:
    workers: int
    streams: int
    rate: float = 1.0
    "Pictures per second asked of each stream."
    requests: int = 0
    errors: int = 0
    "Failed or not answered within 10 s."
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    receiver_cpu: float = 0.0
    "Cores the server's processes used."
    cpu_per_stream: float = 0.0
    "Server cores per stream (its reception and its picture a second)."
    publisher_cpu: float = 0.0
    "Cores the publishers and this client used."
    others_cpu: float = 0.0
    "Cores the rest of the machine used meanwhile (other users of this shared machine)."
    sustained: bool = False


async def wcs_open_loop(url: str, streams: int, rate: float, seconds: float, row: WorkersCapacityRow) -> None:
    """Ask each stream `rate` WCS snapshots a second on a fixed schedule, whatever the answers (open loop).

    As bench/run.py's capacity part did at the time of issue 14; several sessions, which the kernel spreads over
    the workers, so that with 2 workers about half the pictures are routed to the other one.
    """
    sessions = max(1, streams // 10)  # stay far from the per-session limit of requests in flight
    clients = [await WcsClient.connect(url) for _ in range(sessions)]
    latencies: list[float] = []

    async def one(k: int) -> None:
        started = time.perf_counter()
        try:
            await clients[k % sessions].snapshot(f"s{k}", timeout=10)
        except (SnapshotFailed, TimeoutError):
            row.errors += 1
            return
        latencies.append((time.perf_counter() - started) * 1000)

    try:
        await open_loop(streams, rate, seconds, one)
    finally:
        for client in clients:
            await client.close()
    row.requests = len(latencies) + row.errors
    row.p50_ms, row.p99_ms = percentile(latencies, 50), percentile(latencies, 99)


def measure_step(server: RedisServer, workers: int, streams: int, seconds: float,
                 warmup: float) -> WorkersCapacityRow:
    row = WorkersCapacityRow(workers, streams)
    server.client.flushall()  # no record of an earlier step's names
    node = start_node("box", server.url, workers=workers)
    with nodes(node), publishers_on(node, streams) as load:
        time.sleep(warmup)
        server0, load0, wall0, client0, busy0 = node_cpu(node), cpu_seconds(load.pid), time.monotonic(), \
            time.process_time(), machine_busy()
        asyncio.run(wcs_open_loop(signaling_url(node), streams, 1.0, seconds, row))
        wall = time.monotonic() - wall0
        row.receiver_cpu = (node_cpu(node) - server0) / wall
        row.publisher_cpu = (cpu_seconds(load.pid) - load0 + time.process_time() - client0) / wall
        row.others_cpu = max(0.0, (machine_busy() - busy0) / wall - row.receiver_cpu - row.publisher_cpu)
    row.cpu_per_stream = row.receiver_cpu / streams
    row.sustained = row.errors == 0 and row.p99_ms < 1000
    print(f"  {row}", file=sys.stderr, flush=True)
    return row


def measure_capacity(server: RedisServer, steps: list[int], seconds: float, warmup: float) -> list[WorkersCapacityRow]:
    """Both setups at each step in turn (so that other users' load falls on both alike); each stops at its limit."""
    rows = []
    going = {1: True, 2: True}
    for streams in steps:
        for workers in (1, 2):
            if going[workers]:
                row = measure_step(server, workers, streams, seconds, warmup)
                rows.append(row)
                going[workers] = row.sustained
        if not any(going.values()):
            break
    return sorted(rows, key=lambda r: (r.workers, r.streams))


def run_workers(quick: bool) -> dict[str, Any]:
    seconds, warmup = (7.5, 6) if quick else (30, 10)
    idle_streams = [30, 60] if quick else [30, 60, 100]
    steps = [20, 28, 36, 44, 52, 60] if quick else [16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60, 70, 80]
    with redis_server() as server:
        idle = [measure_idle(server, workers, streams, seconds, warmup) for streams in idle_streams
                for workers in (1, 2)]
        capacity = measure_capacity(server, steps, seconds, warmup)
    print(f"\n### serve --workers 2 against 1 on this {os.cpu_count()}-core machine (shared with the load and other "
          "users)\n")
    print(f"Idle 640x480@30 VP8 streams ({seconds:g} s window):\n")
    print(table(idle, [("workers", "workers"), ("streams", "live streams"), ("server_cpu", "server CPU (cores)"),
                       ("cpu_per_stream", "CPU per stream"), ("load_cpu", "publishers CPU (cores)"),
                       ("healthz_p50_ms", "/healthz p50 ms"), ("healthz_p99_ms", "/healthz p99 ms"),
                       ("projected_streams", "idle streams to fill the workers' cores (projected)"),
                       ("others_cpu", "other users' CPU meanwhile (cores)")]))
    print("\nOne picture per stream per second, open loop (WCS snapshots, sessions spread over the workers by the "
          "kernel, so about half the pictures with 2 workers are routed to the other worker):\n")
    print(table(capacity, [("workers", "workers"), ("streams", "live streams"), ("requests", "requests"),
                           ("errors", "errors"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"),
                           ("receiver_cpu", "server CPU (cores)"), ("cpu_per_stream", "server CPU per stream"),
                           ("publisher_cpu", "load-side CPU (cores)"), ("others_cpu", "other users' CPU (cores)"),
                           ("sustained", "p99 < 1 s")]))
    best = {w: max([r.streams for r in capacity if r.workers == w and r.sustained], default=0) for w in (1, 2)}
    tried_all = {w: all(r.sustained for r in capacity if r.workers == w) for w in (1, 2)}
    ratio = best[2] / best[1] if best[1] else float("nan")
    print(f"\nSustained: 1 worker {best[1]} streams{' (largest step tried)' if tried_all[1] else ''}, "
          f"2 workers {best[2]} streams{' (largest step tried)' if tried_all[2] else ''}: "
          f"ratio {ratio:.2f} (goal at least 1.8: {'yes' if ratio >= 1.8 else 'no'})")
    return {"idle": [asdict(r) for r in idle], "capacity": [asdict(r) for r in capacity], "sustained": best,
            "ratio": ratio}


if __name__ == "__main__":
    main("workers", __doc__, run_workers)
