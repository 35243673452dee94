"""Cluster benchmark, redis: what Redis sees per publish, picture, listing, release and heartbeat, and at scale.

    python bench/cluster_redis.py             # 20 publishes, 200 pictures per window, 15 s of heartbeats
    python bench/cluster_redis.py --quick     # 10 publishes, 40 pictures, 6 s, fewer synthetic calls

Two nodes, a and b, on one redis-server of its own (and a third, c, for heartbeats). Per
operation: client round trips (from MONITOR), commands run inside the registry's Lua scripts,
`INFO commandstats` calls and bytes sent to Redis; key sizes (`MEMORY USAGE`); then the Redis CPU
time of each script at scale on synthetic keys (200 streams per heartbeat, 200 000 names) and
`redis-benchmark` throughput. Prints markdown tables and writes
bench/results/cluster-redis-<time>.json. (bench/cluster.py runs it with the other cluster benchmarks.)
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests import harness

from bench.cluster_common import (
    LOGS,
    RedisServer,
    main,
    nodes,
    publishers_on,
    redis_server,
    start_node,
    wait_listed,
)
from bench.common import table
from streamsnap.cluster import registry as cluster_registry

PREFIX = "{streamsnap}:"
SCRIPTS = {hashlib.sha1(getattr(cluster_registry, name).encode()).hexdigest(): name.strip("_").lower()
           for name in ("_CLAIM", "_REFRESH", "_RELEASE", "_UPDATE", "_ALL", "_COUNT")}
"The registry's Lua scripts by SHA1, to name each EVALSHA (private names, read only)."


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
        harness.stop(self.proc)
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
            with publishers_on(a, 1, prefix="warm"):  # loads every script once, outside the windows
                asyncio.run(wait_listed(b, {"warm0"}))
                asyncio.run(fetch_all([f"{b.http_url}/streams/warm0/snapshot.jpg"]))
            time.sleep(2)
            box: dict[str, Any] = {}

            def publish() -> None:
                box["pub"] = publishers_on(a, n_publish, prefix="p")
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
                                       [f"{b.http_url}/streams/{name}/snapshot.jpg" for name in names]))))
                box["remote_seconds"] = time.monotonic() - started
                rows.append(window(server, "picture of a local stream", n_pictures, lambda: asyncio.run(fetch_all(
                    [f"{a.http_url}/streams/{name}/snapshot.jpg" for name in names]))))
                rows.append(window(server, f"GET /streams ({n_publish} streams)", 10,
                                   lambda: asyncio.run(fetch_all([f"{b.http_url}/streams"] * 10))))
            finally:
                if "pub" in box:
                    rows.append(window(server, "unpublish (release)", n_publish,
                                       lambda: (box["pub"].__exit__(None, None, None), time.sleep(3))))
        # Heartbeats: a node with a short TTL (one every second), idle, then holding streams.
        c = start_node("c", server.url, ttl=3)
        with nodes(c):
            time.sleep(1.5)
            rows.append(heartbeat_window(server, "heartbeat, no streams", hb_seconds))
            with publishers_on(c, 10, prefix="h"):
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


if __name__ == "__main__":
    main("redis", __doc__, run_redis)
