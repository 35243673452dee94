"""streamsnap's cluster benchmark: cross-node pictures, Redis traffic, dead nodes, workers, in one run.

    python bench/cluster.py             # the full run (up to about 45 minutes)
    python bench/cluster.py --quick     # shorter windows and fewer trials (about 7 minutes)
    python bench/cluster.py --only redis

Starts its own `redis-server` on a free port and the nodes as `python -m streamsnap serve
--redis URL --node-id NAME` processes on loopback (STREAMSNAP_CLUSTER_SECRET set); publishers
replay pre-encoded 640x480 VP8 clips (bench/publisher.py). Parts:

- latency: the same streams asked on their own node and through another node (image url,
  PNG and JPEG, one at a time and 10 at once), with picture reuse off so that every answer
  is a fresh decode and encode on the owner;
- redis: what Redis sees per publish, per picture, per listing, per release and per
  heartbeat (client round trips from MONITOR, commands run inside the Lua scripts, and
  `INFO commandstats`), key sizes (`MEMORY USAGE`), and the Redis CPU time of each
  operation at scale on synthetic keys (200 streams per heartbeat, 200 000 names);
- ttl: seconds from `kill -9` of a node until its stream leaves another node's GET /streams;
- workers: `serve --workers 2` against one worker, idle streams and capacity at one picture
  per stream per second (open loop, as bench/run.py's capacity part).

Nothing is pinned to a CPU: the publishers, the benchmark client, Redis and the nodes share
the machine's cores. Prints markdown tables and writes bench/results/cluster-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import hashlib
import itertools
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.harness import free_port, wait_listening  # noqa: E402

import streamsnap  # noqa: E402
from bench.common import cpu_seconds, percentile, save_results, table  # noqa: E402
from streamsnap.cluster import registry as cluster_registry  # noqa: E402
from streamsnap.wcsclient import SnapshotFailed, WcsClient  # noqa: E402

SECRET = "bench-cluster-secret-0123456789abcdef"
PREFIX = "{streamsnap}:"
LOGS = Path(tempfile.mkdtemp(prefix="streamsnap-bench-cluster-"))
SCRIPTS = {hashlib.sha1(getattr(cluster_registry, name).encode()).hexdigest(): name.strip("_").lower()
           for name in ("_CLAIM", "_REFRESH", "_RELEASE", "_UPDATE", "_ALL", "_COUNT")}
"The registry's Lua scripts by SHA1, to name each EVALSHA (private names, read only)."
STARTED: list[subprocess.Popen[bytes]] = []
"Every node started, stopped at exit whatever happened (a failed start must not leave others running)."


@atexit.register
def _stop_started() -> None:
    for proc in STARTED:
        stop(proc, signal.SIGKILL)


# Processes.

def stop(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class RedisServer:
    """A redis-server of its own on a free loopback port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="redis-", dir=LOGS))
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(self.port, self.proc)
        self.client = redis.Redis(port=self.port)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

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
        stop(self.proc, signal.SIGKILL)


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    try:
        yield server
    finally:
        server.close()


@dataclass
class Node:
    name: str
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/bench"

    def pids(self) -> list[int]:
        """The node's process and, with --workers, its workers."""
        pids = [self.proc.pid]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with suppress(OSError, ValueError, IndexError):
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == self.proc.pid:  # its parent
                    pids.append(int(stat.parent.name))
        return pids

    def cpu(self) -> float:
        total = 0.0
        for pid in self.pids():
            with suppress(OSError):
                total += cpu_seconds(pid)
        return total


def start_node(name: str, redis_url: str, *, ttl: float = 5.0, workers: int = 1, env: dict[str, str] | None = None,
               ) -> Node:
    port = free_port()
    environment = os.environ | {
        "STREAMSNAP_CLUSTER_SECRET": SECRET, "STREAMSNAP_CLUSTER_TTL": str(ttl),
        # The load comes from one address standing for many clients: no per-address limit for it.
        "STREAMSNAP_MAX_SNAPSHOTS_PER_CLIENT": "100000", **(env or {})}
    log = (LOGS / f"node-{name}-{port}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamsnap", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--ice-address", "127.0.0.1", "--log-level", "warning", "--redis", redis_url, "--node-id", name,
         *(["--workers", str(workers)] if workers > 1 else [])],
        env=environment, stdout=log, stderr=subprocess.STDOUT)
    STARTED.append(proc)
    wait_listening(port, proc)
    if workers > 1:
        time.sleep(2)  # the other workers come up a little later on the shared port
    return Node(name, port, proc)


@contextmanager
def nodes(*started: Node) -> Iterator[None]:
    try:
        yield
    finally:
        for node in started:
            stop(node.proc)


@contextmanager
def publishers(node: Node, streams: int, prefix: str = "s", size: str = "640x480") -> Iterator[subprocess.Popen[str]]:
    """`streams` publishers on `node` (names prefix0..), READY when all publish."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "publisher.py"), node.ws, "--streams", str(streams), "--codec", "VP8",
         "--size", size, "--prefix", prefix], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60 + streams)
        line = proc.stdout.readline() if ready else ""
        if line.strip() != "READY":
            raise RuntimeError(f"publishers did not start: {line!r}")
        # It goes on printing a STATS line a second: read them, so that the pipe never fills.
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        yield proc
    finally:
        stop(proc, signal.SIGKILL)


async def listed(http: aiohttp.ClientSession, node: Node) -> set[str]:
    async with http.get(f"{node.http}/streams") as response:
        return {stream["name"] for stream in await response.json()}


async def wait_listed(node: Node, names: set[str], timeout: float = 20) -> None:
    async with aiohttp.ClientSession() as http, asyncio.timeout(timeout):
        while not names <= await listed(http, node):  # noqa: ASYNC110 -- another process
            await asyncio.sleep(0.1)


# Part 1: cross-node latency.

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


async def measure_latency(owner: Node, other: Node, streams: int, sequential: int, rounds: int,
                          concurrent: int) -> list[LatencyRow]:
    rows: list[LatencyRow] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=15)) as http:

        async def one(row: LatencyRow, node: Node, stream: int, ext: str) -> None:
            started = time.perf_counter()
            try:
                async with http.get(f"{node.http}/streams/s{stream}/snapshot.{ext}") as response:
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


async def measure_hop(owner: Node, other: Node, count: int) -> list[LatencyRow]:
    """The hop alone: one stream's picture, reused on the owner (max_age_ms=60000), asked here and there."""
    rows = [LatencyRow("JPEG", "sequential, reused picture", f"local (on {owner.name})"),
            LatencyRow("JPEG", "sequential, reused picture", f"cross-node (via {other.name})")]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
        for node in (owner, other):  # prime: a picture to reuse, and the connections
            async with http.get(f"{node.http}/streams/s0/snapshot.jpg?max_age_ms=60000") as response:
                await response.read()
        for i in range(count):
            pairs = [(rows[0], owner), (rows[1], other)]
            for row, node in pairs if i % 2 == 0 else pairs[::-1]:
                started = time.perf_counter()
                async with http.get(f"{node.http}/streams/s0/snapshot.jpg?max_age_ms=60000") as response:
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
        with nodes(a, b), publishers(a, streams):
            asyncio.run(wait_listed(b, {f"s{k}" for k in range(streams)}))
            time.sleep(3)
            rows = asyncio.run(measure_latency(a, b, streams, sequential, rounds, 10))
        server.client.flushall()
        a, b = start_node("a2", server.url), start_node("b2", server.url)
        with nodes(a, b), publishers(a, 1):
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


# Part 2: what Redis sees.

class Monitor:
    """`redis-cli monitor` over one window: client round trips, and the commands each script ran."""

    def __init__(self, port: int) -> None:
        self.path = LOGS / f"monitor-{time.monotonic_ns()}.txt"
        self.file = self.path.open("w")
        self.proc = subprocess.Popen(["redis-cli", "-p", str(port), "monitor"], stdout=self.file,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and "OK" not in self.path.read_text():
            time.sleep(0.02)

    def finish(self) -> tuple[Counter[str], Counter[str]]:
        """({round trip kind: count}, {script: commands run inside it})."""
        time.sleep(0.2)
        stop(self.proc)
        self.file.close()
        trips: Counter[str] = Counter()
        inside: Counter[str] = Counter()
        script = "?"
        for line in self.path.read_text().splitlines():
            match = re.match(r'[\d.]+ \[\d+ (\S+?)\] "(\w+)"(?: "([^"]*)")?', line)
            if match is None:
                continue
            source, command, first = match[1], match[2].lower(), match[3]
            if source == "lua":
                inside[script] += 1
                continue
            if command in ("info", "memory", "monitor", "ping", "client", "hello", "command"):
                continue
            if command == "evalsha":
                script = SCRIPTS.get(first or "", "other script")
                trips[f"EVALSHA {script}"] += 1
            elif command in ("get", "set", "hget") and first:
                kind = first.removeprefix(PREFIX).split(":", 1)[0]
                trips[f"{command.upper()} {kind}"] += 1
            else:
                trips[command.upper()] += 1
        return trips, inside


@dataclass
class RedisRow:
    operation: str
    count: int
    "How many of the operation the window held."
    round_trips: float = 0.0
    "Client commands sent to Redis, per operation."
    detail: str = ""
    "Those commands by kind, per operation."
    inside_scripts: float = 0.0
    "Commands the Lua scripts ran, per operation."
    redis_calls: float = 0.0
    "INFO commandstats calls (client and scripts), per operation."
    redis_usec: float = 0.0
    "INFO commandstats microseconds, per operation (MONITOR attached: inflated)."
    bytes_in: float = 0.0
    "Bytes Redis received (INFO stats total_net_input_bytes), per operation."
    trips: dict[str, int] = field(default_factory=dict, repr=False)
    "Round trips of the window by kind (not per operation)."


def window(server: RedisServer, operation: str, count: int, action: Any) -> RedisRow:
    before = server.commandstats()
    monitor = Monitor(server.port)
    bytes_before = server.client.info("stats")["total_net_input_bytes"]
    action()
    bytes_in = server.client.info("stats")["total_net_input_bytes"] - bytes_before
    trips, inside = monitor.finish()
    after = server.commandstats()
    calls = usec = 0
    for command, (c, u) in after.items():
        if command in ("info", "monitor"):
            continue
        c0, u0 = before.get(command, (0, 0))
        calls, usec = calls + c - c0, usec + u - u0
    n = max(count, 1)
    detail = ", ".join(f"{kind} {value / n:.2f}" for kind, value in trips.most_common())
    row = RedisRow(operation, count, sum(trips.values()) / n, detail, sum(inside.values()) / n, calls / n, usec / n,
                   bytes_in / n, dict(trips))
    print(f"  {row}", file=sys.stderr, flush=True)
    return row


def run_redis(quick: bool) -> dict[str, Any]:
    n_publish, n_pictures, hb_seconds = (10, 40, 6) if quick else (20, 200, 15)
    rows: list[RedisRow] = []
    sizes: dict[str, Any] = {}
    with redis_server() as server:
        # A heartbeat every 200 s on a and b: no heartbeat of theirs falls in the windows below.
        a, b = start_node("a", server.url, ttl=600), start_node("b", server.url, ttl=600)
        with nodes(a, b):
            with publishers(a, 1, prefix="warm"):  # loads every script once, outside the windows
                asyncio.run(wait_listed(b, {"warm0"}))
                asyncio.run(fetch_all([f"{b.http}/streams/warm0/snapshot.jpg"]))
            time.sleep(2)
            box: dict[str, Any] = {}

            def publish() -> None:
                box["pub"] = publishers(a, n_publish, prefix="p")
                box["proc"] = box["pub"].__enter__()
                time.sleep(1)

            rows.append(window(server, "publish (claim, then the record updated at the first frame)", n_publish,
                               publish))
            try:
                record = server.client.hget(f"{PREFIX}stream:p0", "record") or b""
                sizes = {
                    "stream hash (one stream)": server.client.memory_usage(f"{PREFIX}stream:p0", samples=0),
                    "record JSON in it": len(record),
                    f"names sorted set ({server.client.zcard(f'{PREFIX}streams')} names)":
                        server.client.memory_usage(f"{PREFIX}streams", samples=0),
                    "node record": server.client.memory_usage(f"{PREFIX}node:a", samples=0),
                    "node record JSON": len(server.client.get(f"{PREFIX}node:a") or b""),
                }
                box["record"] = record
                names = [f"p{i % n_publish}" for i in range(n_pictures)]
                started = time.monotonic()
                rows.append(window(server, "picture of another node's stream (image url, one at a time)",
                                   n_pictures, lambda: asyncio.run(fetch_all(
                                       [f"{b.http}/streams/{name}/snapshot.jpg" for name in names]))))
                box["remote_seconds"] = time.monotonic() - started
                rows.append(window(server, "picture of a local stream", n_pictures, lambda: asyncio.run(fetch_all(
                    [f"{a.http}/streams/{name}/snapshot.jpg" for name in names]))))
                rows.append(window(server, f"GET /streams ({n_publish} streams)", 10,
                                   lambda: asyncio.run(fetch_all([f"{b.http}/streams"] * 10))))
            finally:
                if "pub" in box:
                    rows.append(window(server, "unpublish (release)", n_publish,
                                       lambda: (box["pub"].__exit__(None, None, None), time.sleep(3))))
        # Heartbeats: a node with a short TTL (one every second), idle, then holding streams.
        c = start_node("c", server.url, ttl=3)
        with nodes(c):
            time.sleep(1.5)
            rows.append(heartbeat_window(server, "heartbeat, no streams", hb_seconds))
            with publishers(c, 10, prefix="h"):
                time.sleep(1.5)
                rows.append(heartbeat_window(server, "heartbeat, 10 streams", hb_seconds))
        synthetic = run_synthetic(server, box.get("record") or b"{}", quick)
    print("\n### What Redis sees (Redis 7.0 on loopback)\n")
    print("Round trips are the commands a node sends (from MONITOR; connection set-up commands left out); inside "
          "scripts, the commands the Lua scripts run; commandstats calls count both kinds (and the set-up). Redis "
          "CPU time is in the next table, measured without MONITOR, which inflates it.\n")
    print(table(rows, [("operation", "operation"), ("count", "n"), ("round_trips", "round trips each"),
                       ("detail", "of which"), ("inside_scripts", "inside scripts each"),
                       ("redis_calls", "commandstats calls each"), ("bytes_in", "bytes sent to Redis each")]))
    remote = rows[1]
    print(f"\n(The {n_pictures} cross-node pictures took {box.get('remote_seconds', 0):.1f} s: the node record "
          f"GET is cached 1 s, so it is paid about once a second per owner, here {remote.detail}.)")
    print("\n### Key sizes (MEMORY USAGE, bytes)\n")
    for name, value in sizes.items():
        print(f"- {name}: {value}")
    print("\n### Redis time per operation at scale (synthetic keys, the registry's scripts, commandstats; the "
          "least of 5 rounds)\n")
    print(table(synthetic.pop("table"), [("operation", "operation"), ("calls", "calls"), ("usec_per_call", "µs each")]))
    print(f"\n- sorted set of names: {synthetic['zset_bytes_per_name']:.1f} bytes per name "
          f"({synthetic['zset_names']} names, {synthetic['zset_bytes']} bytes)")
    print(f"- GET /streams answer at {synthetic['all_names']} names: {synthetic['all_reply_bytes']} bytes")
    for label, rate in synthetic["throughput"].items():
        print(f"- redis-benchmark, {label}: {rate:.0f} per second (50 clients, no pipelining, same machine)")
    return {"rows": [asdict(r) for r in rows], "sizes": sizes, "synthetic": synthetic}


def heartbeat_window(server: RedisServer, operation: str, seconds: float) -> RedisRow:
    """A node's heartbeats alone: each is one SET of the node record (and no other SET is sent)."""
    beats: dict[str, int] = {}

    def idle() -> None:
        before = server.commandstats().get("set", (0, 0))[0]
        time.sleep(seconds)
        beats["n"] = server.commandstats().get("set", (0, 0))[0] - before

    row = window(server, operation, 1, idle)
    seen = max(row.trips.get("SET node", 0), 1)  # MONITOR's window is a little wider than the INFO one
    row.count = seen
    for name in ("round_trips", "inside_scripts", "redis_calls"):
        setattr(row, name, getattr(row, name) / seen)
    row.detail = ", ".join(f"{kind} {value / seen:.2f}" for kind, value in Counter(row.trips).most_common())
    row.bytes_in /= max(beats["n"], 1)
    row.redis_usec /= max(beats["n"], 1)
    return row


async def fetch_all(urls: list[str]) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
        for url in urls:
            async with http.get(url) as response:
                await response.read()


@dataclass
class SyntheticRow:
    operation: str
    calls: int
    usec_per_call: float


def run_synthetic(server: RedisServer, record: bytes, quick: bool) -> dict[str, Any]:
    """The scripts' cost at the sizes of docs/scaling.md, on keys under another hash tag."""
    client = server.client
    tag = "{synthetic}:"
    text = record.decode() if record else "{}"
    rows: list[SyntheticRow] = []

    def measured(operation: str, command: str, calls: int, action: Any, rounds: int = 5) -> None:
        """The least time per call over `rounds` rounds: commandstats counts wall time, and the machine is shared."""
        best: tuple[int, float] | None = None
        for _ in range(rounds):
            client.config_resetstat()
            action()
            got = server.commandstats().get(command, (0, 0))
            per_call = got[1] / max(got[0], 1)
            if best is None or per_call < best[1]:
                best = (got[0], per_call)
        assert best is not None
        rows.append(SyntheticRow(operation, best[0], best[1]))

    now_ms = int(time.time() * 1000)
    far = now_ms + 3_600_000
    names = 200_000
    for start in range(0, names, 10_000):
        client.zadd(f"{tag}streams", {f"cam-{i:06d}": far for i in range(start, start + 10_000)})
    zset_bytes = client.memory_usage(f"{tag}streams", samples=0) or 0

    refresh = client.register_script(cluster_registry._REFRESH)
    claim = client.register_script(cluster_registry._CLAIM)
    every = client.register_script(cluster_registry._ALL)
    per_node = 200
    keys = [f"{tag}streams"] + [f"{tag}stream:node1-{i}" for i in range(per_node)]
    args: list[Any] = [5000]
    for i in range(per_node):
        args += [f"node1-{i}", f"lease{i}", text.replace('"p0"', f'"node1-{i}"'), "1732570000.0", "node1"]
    refresh(keys=keys, args=args)
    measured(f"heartbeat script refreshing {per_node} streams ({names} names in the set)", "evalsha",
             5 if quick else 20, lambda: [refresh(keys=keys, args=args) for _ in range(5 if quick else 20)])
    claim(keys=[f"{tag}streams", f"{tag}stream:warm"], args=["warm", "l", text, "1", "n", 10**9, 5000])
    fresh = itertools.count()  # a new name at each claim, in every round
    measured(f"claim script ({names} names in the set)", "evalsha", 200,
             lambda: [claim(keys=[f"{tag}streams", f"{tag}stream:new-{i}"],
                            args=[f"new-{i}", "l", text, "1", "n", 10**9, 5000])
                      for i in itertools.islice(fresh, 200)])
    measured("HGET of a record (a lookup)", "hget", 1000,
             lambda: [client.hget(f"{tag}stream:node1-{i % per_node}", "record") for i in range(1000)])
    client.set(f"{tag}node:node1", b'{"id":"node1","url":"http://10.0.0.1:40000","started_at":1732570000.0}')
    measured("GET of a node record", "get", 1000, lambda: [client.get(f"{tag}node:node1") for _ in range(1000)])
    # The listing (GET /streams, /metrics) reads every live record: measured on a set of its own.
    all_names = 2000 if quick else 10_000
    pipe = client.pipeline(transaction=False)
    for i in range(all_names):
        pipe.zadd("{listing}:streams", {f"cam-{i}": far})
        pipe.hset(f"{{listing}}:stream:cam-{i}", mapping={"record": text, "lease": "l", "node": "n", "started": "1"})
    pipe.execute()
    reply: dict[str, int] = {}

    def listing() -> None:
        for _ in range(2):
            reply["bytes"] = sum(len(r) for r in every(keys=["{listing}:streams"], args=["{listing}:stream:"]))

    measured(f"GET /streams listing script ({all_names} live streams)", "evalsha", 3, listing)
    # What one Redis thread answers on this machine, one command per round trip, 50 clients.
    throughput: dict[str, float] = {}
    for label, command in (("GET of a node record", ["get", f"{tag}node:node1"]),
                           ("HGET of a record (a lookup)", ["hget", f"{tag}stream:node1-0", "record"])):
        out = subprocess.run(["redis-benchmark", "-p", str(server.port), "-c", "50", "-n",
                              "50000" if quick else "200000", "--csv", *command], capture_output=True, text=True,
                             check=True).stdout
        rates = re.findall(r'^"[^"]*","([\d.]+)"', out, re.MULTILINE)
        throughput[label] = float(rates[-1]) if rates else float("nan")
    return {"throughput": throughput, "rows": [asdict(r) for r in rows], "table": rows, "zset_names": names,
            "zset_bytes": zset_bytes, "zset_bytes_per_name": zset_bytes / names,
            "all_names": all_names, "all_reply_bytes": reply.get("bytes", 0)}


# Part 3: from kill -9 to the stream's disappearance.

@dataclass
class TtlRow:
    ttl: float
    trials: int
    vanished_s: list[float] = field(default_factory=list)
    min_s: float = 0.0
    median_s: float = 0.0
    max_s: float = 0.0
    picture_before: str = ""
    "What a picture of the stream via the other node answered right after the kill."
    picture_after: str = ""
    "What it answered once the stream was gone."


async def status_of(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url) as response:
        if response.status == 200:
            return "200"
        return f"{response.status} {(await response.json()).get('reason', '')}"


async def time_vanish(observer: Node, name: str, victim: subprocess.Popen[bytes], timeout: float) -> tuple[float, str,
                                                                                                           str]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        victim.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        before = await status_of(http, f"{observer.http}/streams/{name}/snapshot.jpg")
        async with asyncio.timeout(timeout):
            while name in await listed(http, observer):  # noqa: ASYNC110 -- another process
                await asyncio.sleep(0.05)
        vanished = time.monotonic() - killed
        after = await status_of(http, f"{observer.http}/streams/{name}/snapshot.jpg")
    return vanished, before, after


def run_ttl(quick: bool) -> list[TtlRow]:
    trials = 3 if quick else 6
    rows = []
    with redis_server() as server:
        for ttl in (5.0, 2.0):
            row = TtlRow(ttl, trials)
            observer = start_node("observer", server.url, ttl=ttl)
            with nodes(observer):
                for trial in range(trials):
                    victim = start_node(f"victim{trial}", server.url, ttl=ttl)
                    with nodes(victim), publishers(victim, 1, prefix=f"doomed{trial}-", size="320x240"):
                        name = f"doomed{trial}-0"
                        asyncio.run(wait_listed(observer, {name}))
                        time.sleep(trial * ttl / 3 / trials)  # spread the kill over the heartbeat's phase
                        vanished, before, after = asyncio.run(time_vanish(observer, name, victim.proc, ttl * 3))
                    victim.proc.wait()
                    row.vanished_s.append(vanished)
                    row.picture_before, row.picture_after = before, after
                    print(f"  ttl {ttl}: {vanished:.2f} s ({before} / {after})", file=sys.stderr, flush=True)
            row.min_s, row.max_s = min(row.vanished_s), max(row.vanished_s)
            row.median_s = percentile(row.vanished_s, 50)
            rows.append(row)
    print("\n### From kill -9 of a node to its stream leaving another node's GET /streams\n")
    print(table(rows, [("ttl", "cluster_ttl s"), ("trials", "trials"), ("min_s", "min s"), ("median_s", "median s"),
                       ("max_s", "max s"), ("picture_before", "picture via the other node, just after the kill"),
                       ("picture_after", "once gone")]))
    print("\n(Records expire `ttl` after the last heartbeat, which comes every ttl/3: expected between 2/3 ttl "
          "and ttl.)")
    return rows


# Part 4: --workers 2 against 1.

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


async def probe_healthz(node: Node, seconds: float) -> list[float]:
    samples = []
    stop_at = time.monotonic() + seconds
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            async with http.get(f"{node.http}/healthz", headers={"Connection": "close"}) as response:
                await response.read()
            samples.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.1)
    return samples


def measure_idle(server: RedisServer, workers: int, streams: int, seconds: float, warmup: float) -> IdleRow:
    row = IdleRow(workers, streams)
    server.client.flushall()  # no record of an earlier step's names
    node = start_node("box", server.url, workers=workers)
    with nodes(node), publishers(node, streams) as load:
        time.sleep(warmup)
        cpu0, load0, wall0, busy0, own0 = node.cpu(), cpu_seconds(load.pid), time.monotonic(), machine_busy(), \
            time.process_time()
        samples = asyncio.run(probe_healthz(node, seconds))
        wall = time.monotonic() - wall0
        row.server_cpu = (node.cpu() - cpu0) / wall
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


async def open_loop(url: str, streams: int, rate: float, seconds: float, row: WorkersCapacityRow) -> None:
    """Ask each stream `rate` WCS snapshots a second on a fixed schedule, whatever the answers (open loop).

    As bench/run.py's capacity part did at the time of issue 14; several sessions, which the kernel spreads over
    the workers, so that with 2 workers about half the pictures are routed to the other one.
    """
    sessions = max(1, streams // 10)  # stay far from the per-session limit of requests in flight
    clients = [await WcsClient.connect(url) for _ in range(sessions)]
    latencies: list[float] = []
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.5

    async def one(k: int) -> None:
        started = time.perf_counter()
        try:
            await clients[k % sessions].snapshot(f"s{k}", timeout=10)
        except (SnapshotFailed, TimeoutError):
            row.errors += 1
            return
        latencies.append((time.perf_counter() - started) * 1000)

    async def stream_schedule(k: int) -> None:
        tasks = []
        at = start + k / streams / rate  # spread evenly over one period
        while at < start + seconds:
            await asyncio.sleep(max(0.0, at - loop.time()))
            tasks.append(asyncio.ensure_future(one(k)))
            at += 1 / rate
        await asyncio.gather(*tasks)

    try:
        await asyncio.gather(*(stream_schedule(k) for k in range(streams)))
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
    with nodes(node), publishers(node, streams) as load:
        time.sleep(warmup)
        server0, load0, wall0, client0, busy0 = node.cpu(), cpu_seconds(load.pid), time.monotonic(), \
            time.process_time(), machine_busy()
        asyncio.run(open_loop(node.ws, streams, 1.0, seconds, row))
        wall = time.monotonic() - wall0
        row.receiver_cpu = (node.cpu() - server0) / wall
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short windows, fewer trials (numbers are rougher)")
    parser.add_argument("--only", choices=["latency", "redis", "ttl", "workers"], help="run one part")
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        sys.exit("bench/cluster.py: redis-server is not installed (apt-get install redis-server)")
    load = os.getloadavg()[0]
    print(f"streamsnap cluster benchmark{' (quick)' if args.quick else ''}, {time.strftime('%Y-%m-%d %H:%M')}; "
          f"{os.cpu_count()} cores, shared (load average {load:.2f} at the start), nothing pinned; streamsnap from "
          f"{Path(streamsnap.__file__).parent}; logs in {LOGS}")
    report: dict[str, Any] = {"quick": args.quick, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                              "cores": os.cpu_count(), "load_average_at_start": load,
                              "streamsnap": str(Path(streamsnap.__file__).parent)}
    parts = {"latency": run_latency, "redis": run_redis, "ttl": run_ttl, "workers": run_workers}
    for name, part in parts.items():
        if args.only in (None, name):
            result = part(args.quick)
            report[name] = [asdict(r) for r in result] if isinstance(result, list) else result
    report["load_average_at_end"] = os.getloadavg()[0]
    save_results(report, prefix="cluster-")


if __name__ == "__main__":
    main()
